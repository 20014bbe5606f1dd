"""Faults and bad input through the Python API (issue 10): damaged checkpoints are refused by
name or fall back to the previous one, a refused resume changes no file, a diverging fit stops
naming its epoch and batch, dates and mixed context columns are refused, `fill='drop'` works for
both loaders, and `load_plain_lm` refuses a garbage file or a vocabulary of another model."""
import shutil
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import CSVLogger
from fastai.callback.rnn import ModelResetter
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.text.models.awdlstm import AWD_LSTM
from fastai.text.models.core import get_language_model
from fastai.torch_core import set_seed

from fastai_context import ContextEncoder, ContextTextDataLoaders, SentenceDataLoaders, context_language_model_learner
from fastai_context.workflow.checkpoint import (Checkpoint, CheckpointError, NonFiniteLossError, RaiseOnNaNCallback,
                                                load_checkpoint)
from tests.helpers import TinyContextLM

EPOCHS = 2


@pytest.fixture(scope="module")
def titles_df(tracks):
    df = tracks.dropna(subset=["track_name"]).sample(200, random_state=1)
    return df[["track_name", "energy", "playlist_genre"]].reset_index(drop=True)


def learner(df, path, cbs=(), **dls_kw):
    set_seed(0)
    dls = ContextTextDataLoaders.from_df(df, "track_name", "energy", bs=8, seq_len=12, seed=0, min_freq=1,
                                         device="cpu", **dls_kw)
    model = TinyContextLM(len(dls.vocab), dls.context_encoder.n_features, emb=8, hid=16)
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(),
                   path=path, cbs=[ModelResetter(), *cbs])


def fit(learn, resume=False, n_epoch=EPOCHS, lr=1e-2, extra=()):
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(n_epoch, lr, cbs=[CSVLogger(append=True), Checkpoint(resume=resume), *extra])


@pytest.fixture(scope="module")
def trained(titles_df, tmp_path_factory):
    "A finished 2-epoch run: checkpoint.pth (epoch 2), checkpoint.prev.pth (epoch 1), history.csv."
    path = tmp_path_factory.mktemp("trained")
    fit(learner(titles_df, path))
    return path


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def flip_a_tensor_byte(path: Path) -> None:
    "Flip one bit in the middle of the largest tensor's bytes (not in the archive's padding)."
    info = max(zipfile.ZipFile(path).infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGES = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "random": lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)),
    "flipped": flip_a_tensor_byte,
}


# ------------------------------------------------------------------------------------------ item 1
def test_checkpoint_keeps_the_previous_one(trained):
    assert load_checkpoint(trained / "checkpoint.pth")["epoch"] == EPOCHS
    assert load_checkpoint(trained / "checkpoint.prev.pth")["epoch"] == EPOCHS - 1


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_checkpoint_is_refused_by_name(trained, tmp_path, damage):
    f = tmp_path / "checkpoint.pth"
    shutil.copy(trained / "checkpoint.pth", f)
    DAMAGES[damage](f)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(f)
    assert str(f) in e.value.message and "\n" not in e.value.message


def test_damaged_latest_falls_back_to_previous(trained, titles_df, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    flip_a_tensor_byte(run / "checkpoint.pth")
    learn = learner(titles_df, run)
    fit(learn, resume=True)
    out = capsys.readouterr().out
    assert "checkpoint.pth' is damaged" in out and "resuming from the previous checkpoint" in out
    hist = pd.read_csv(run / "history.csv")                 # epoch 2 retrained from epoch 1: one row each
    assert list(hist.epoch) == list(range(EPOCHS))
    assert load_checkpoint(run / "checkpoint.pth")["epoch"] == EPOCHS


def test_both_damaged_is_refused_and_changes_nothing(trained, titles_df, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    DAMAGES["truncated"](run / "checkpoint.pth")
    DAMAGES["empty"](run / "checkpoint.prev.pth")
    before = snapshot(run)
    with pytest.raises(CheckpointError) as e:
        fit(learner(titles_df, run), resume=True)
    assert "checkpoint.pth' is damaged or truncated" in e.value.message and "checkpoint.prev.pth' is empty" in e.value.message
    assert snapshot(run) == before


# ------------------------------------------------------------------------------------- items 2, 3, 17
def test_refused_resume_changes_no_file(trained, titles_df, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = snapshot(run)
    for _ in range(2):                                        # no header is appended, however often
        with pytest.raises(CheckpointError, match=f"{EPOCHS}-epoch run"):
            fit(learner(titles_df, run), resume=True, n_epoch=EPOCHS + 1)
        with pytest.raises(CheckpointError, match="different context encoder"):
            fit(learner(titles_df.assign(energy=titles_df.energy / 2), run), resume=True)
    assert snapshot(run) == before
    assert pd.read_csv(run / "history.csv").epoch.dtype == np.int64


def test_resume_without_checkpoint_starts_over_with_one_header(trained, titles_df, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    for f in ("checkpoint.pth", "checkpoint.prev.pth"):
        (run / f).unlink()
    (run / ".checkpoint.pth.x1y2.tmp").write_bytes(b"half a checkpoint")      # a kill during a write
    fit(learner(titles_df, run), resume=True)
    lines = (run / "history.csv").read_text().splitlines()
    assert len(lines) == EPOCHS + 1 and lines[0].startswith("epoch,")
    assert not list(run.glob(".*.tmp"))


# ------------------------------------------------------------------------------------------ item 4
class PoisonLoss(Callback):
    "Make the loss NaN at one batch, as a diverging model would."
    order = 0

    def after_loss(self):
        if self.training and self.epoch == 1 and self.iter == 2:
            self.learn.loss = self.learn.loss * float("nan")


def test_nan_loss_stops_naming_epoch_and_batch(titles_df, tmp_path):
    learn = learner(titles_df, tmp_path, cbs=[RaiseOnNaNCallback()])
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 1, batch 2 \(of \d+\)"):
        fit(learn, extra=[PoisonLoss()])
    assert load_checkpoint(tmp_path / "checkpoint.pth")["epoch"] == 1     # the last good epoch is kept
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


@pytest.mark.parametrize("lr", [float("nan"), -1.0])
def test_bad_learning_rate_stops_before_the_first_step(titles_df, tmp_path, lr):
    learn = learner(titles_df, tmp_path, cbs=[RaiseOnNaNCallback()])
    before = [p.detach().clone() for p in learn.model.parameters()]
    with pytest.raises(NonFiniteLossError, match=r"learning rate is .* at epoch 0, batch 0"):
        fit(learn, lr=lr)
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
    assert not (tmp_path / "checkpoint.pth").exists()


def test_fit_without_epochs_is_refused(titles_df, tmp_path):
    learn = learner(titles_df, tmp_path, cbs=[RaiseOnNaNCallback()])
    with learn.no_bar(), pytest.raises(ValueError, match="n_epoch=0: train at least one epoch"):
        learn.fit(0, 1e-2)


def test_context_learner_guards_against_nan_by_default(titles_df):
    dls = ContextTextDataLoaders.from_df(titles_df, "track_name", "energy", bs=8, seq_len=12, seed=0, device="cpu")
    learn = context_language_model_learner(dls, config=dict(emb_sz=8, n_hid=16, n_layers=1))
    assert any(isinstance(cb, RaiseOnNaNCallback) for cb in learn.cbs)
    with learn.no_bar(), learn.no_logging():
        res = learn.lr_find(num_it=10, show_plot=False)            # lr_find's divergence is not an error
    assert res.valley > 0


# ------------------------------------------------------------------------------------- items 5, 8
def test_datetime_context_is_refused_with_advice(tracks):
    df = tracks.head(50).assign(released=pd.to_datetime(tracks.head(50).track_album_release_date, errors="coerce"))
    df.loc[3, "released"] = pd.NaT
    with pytest.raises(TypeError, match=r"'released' holds dates .*\.dt\.year"):
        ContextEncoder.fit(df, ["energy", "released"])
    enc = ContextEncoder.fit(df.assign(released=df.released.dt.year), ["released"], fill="mean")
    assert torch.isfinite(enc.encode(df.assign(released=df.released.dt.year))).all()   # NaT -> NaN -> filled
    num = ContextEncoder.fit(df, ["energy"])
    with pytest.raises(TypeError, match="'energy' holds dates"):
        num.encode(df.assign(energy=df.released))


def test_numbers_mixed_with_text_are_refused(tracks):
    df = tracks.head(40)[["energy"]].astype(object)
    df.loc[::3, "energy"] = "high"                               # mostly numbers: numeric, bad rows named
    with pytest.raises(ValueError, match=r"'energy' is numeric but has non-numeric values in rows \[0, 3"):
        ContextEncoder.fit(df, "energy")
    df.loc[df.index % 3 != 1, "energy"] = "high"                 # mostly text, some numbers
    with pytest.raises(ValueError, match=r"'energy' mixes numbers \(e.g. 0\.\d+\) and text \(e.g. 'high'"):
        ContextEncoder.fit(df, "energy")
    text = df.assign(energy=df.energy.astype(str))              # numbers as text among words: categorical, said
    with pytest.warns(UserWarning, match="'energy' is treated as categorical"):
        enc = ContextEncoder.fit(text, "energy")
    with pytest.raises(ValueError, match=r"'energy' is categorical in this model .* the number 0.946"):
        enc.encode({"energy": 0.946})
    with pytest.raises(ValueError, match=r"'energy' is numeric in this model and must be a number, got 'high'"):
        ContextEncoder.fit(tracks.head(40), "energy").encode({"energy": "high"})


def test_fill_drop_is_one_policy_for_both_loaders(tracks):
    df = tracks.dropna(subset=["track_name"]).head(120)[["track_name", "energy"]].reset_index(drop=True)
    df.loc[[5, 17], "energy"] = np.nan
    df.loc[9, "energy"] = np.inf
    assert list(ContextEncoder.drop_missing(df, "energy").index) == [i for i in range(120) if i not in (5, 9, 17)]
    lm = ContextTextDataLoaders.from_df(df, "track_name", "energy", fill="drop", bs=4, seq_len=8, seed=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = SentenceDataLoaders.from_df(df, "track_name", "energy", fill="drop", bs=4, seed=0, device="cpu")
    for dls in (lm, vae):
        assert len(dls.train.context) + len(dls.valid.context) == 117
        assert torch.isfinite(dls.train.context).all() and torch.isfinite(dls.valid.context).all()
    with pytest.raises(ValueError, match=r"'energy' has NaN or inf in rows \[5, 9, 17\]; fill='drop' drops"):
        lm.context_encoder.encode(df)


# ------------------------------------------------------------------------------------ items 6, 10
TINY_AWD = dict(emb_sz=16, n_hid=24, n_layers=1)


@pytest.fixture(scope="module")
def lm_dls(titles_df):
    return ContextTextDataLoaders.from_df(titles_df, "track_name", "energy", bs=8, seq_len=12, seed=0, device="cpu")


def plain_lm(vocab_sz: int):
    from fastai.text.models.awdlstm import awd_lstm_lm_config
    torch.manual_seed(0)
    return get_language_model(AWD_LSTM, vocab_sz, config=dict(awd_lstm_lm_config, **TINY_AWD))


def test_load_plain_lm_refuses_a_garbage_file(lm_dls, tmp_path):
    learn = context_language_model_learner(lm_dls, config=TINY_AWD)
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ValueError, match="'.*weights.pth' is not a PyTorch weights file"):
        learn.load_plain_lm(bad, list(lm_dls.vocab))
    with pytest.raises(FileNotFoundError, match="no weights file"):
        learn.load_plain_lm(tmp_path / "none.pth", list(lm_dls.vocab))
    torch.save(plain_lm(len(lm_dls.vocab)).state_dict(), tmp_path / "ok.pth")
    (tmp_path / "vocab.pkl").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="'.*vocab.pkl' is not a pickled vocabulary"):
        learn.load_plain_lm(tmp_path / "ok.pth", tmp_path / "vocab.pkl")


def test_load_plain_lm_refuses_a_vocabulary_of_other_weights(lm_dls):
    learn = context_language_model_learner(lm_dls, config=TINY_AWD)
    weights = plain_lm(len(lm_dls.vocab)).state_dict()
    for vocab in (["xxunk"], list(lm_dls.vocab)[:-5]):
        with pytest.raises(ValueError, match=rf"vocabulary has {len(vocab)} tokens but the weights' embedding has "
                                             rf"{len(lm_dls.vocab)} rows"):
            learn.load_plain_lm(weights, vocab)


def test_load_plain_lm_same_vocabulary_copies_every_row(lm_dls):
    vocab = list(lm_dls.vocab)
    assert sum(t.startswith("xxfake") for t in vocab) > 1 or len(vocab) % 8 == 0
    plain = plain_lm(len(vocab))
    learn = context_language_model_learner(lm_dls, config=TINY_AWD).load_plain_lm(plain.state_dict(), vocab)
    for k in ("0.encoder.weight", "1.decoder.weight", "1.decoder.bias"):
        assert torch.equal(learn.model.state_dict()[k], plain.state_dict()[k]), k
