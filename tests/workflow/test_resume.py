"""Checkpoint/resume on real Spotify track names: an interrupted run, resumed, ends exactly where
an uninterrupted run with the same seed ends; writes are atomic; foreign checkpoints are refused."""
import pandas as pd
import pytest
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import CSVLogger
from fastai.callback.rnn import ModelResetter
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.torch_core import set_seed

from fastai_context import ContextTextDataLoaders
from fastai_context.workflow.checkpoint import Checkpoint, load_checkpoint
from tests.helpers import ROOT, TinyContextLM

EPOCHS = 3


class Interrupt(Exception):
    pass


class InterruptAt(Callback):
    "Stop training in the middle of epoch `epoch`, like a kill."
    def __init__(self, epoch):
        self.stop_epoch = epoch

    def after_batch(self):
        if self.training and self.epoch == self.stop_epoch and self.iter == self.n_iter // 2:
            raise Interrupt("killed mid-epoch")


@pytest.fixture(scope="module")
def titles_df(tracks):
    df = tracks.dropna(subset=["track_name"]).sample(300, random_state=0)
    return df[["track_name", "energy", "playlist_genre"]].reset_index(drop=True)


def make_learner(df, path, seed, context_cols=("energy",), shuffle_seed=None):
    path.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    dls = ContextTextDataLoaders.from_df(df, "track_name", list(context_cols), bs=8, seq_len=12, seed=0,
                                         min_freq=1, device="cpu", shuffle_seed=shuffle_seed)
    model = TinyContextLM(len(dls.vocab), dls.context_encoder.n_features)
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), path=path, cbs=ModelResetter())


def fit(learn, resume=False, extra=()):
    learn.fit_one_cycle(EPOCHS, 1e-2, cbs=[CSVLogger(append=True), Checkpoint(resume=resume), *extra])


def params(learn):
    return {k: v.clone() for k, v in learn.model.state_dict().items()}


@pytest.mark.parametrize("shuffle_seed", [None, 7])
def test_resume_matches_uninterrupted(titles_df, tmp_path, shuffle_seed):
    full = make_learner(titles_df, tmp_path / "full", seed=1, shuffle_seed=shuffle_seed)
    with full.no_bar():
        fit(full)

    part = make_learner(titles_df, tmp_path / "part", seed=1, shuffle_seed=shuffle_seed)
    with part.no_bar(), pytest.raises(Interrupt):
        fit(part, extra=[InterruptAt(1)])
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pth")["epoch"] == 1

    resumed = make_learner(titles_df, tmp_path / "part", seed=99, shuffle_seed=shuffle_seed)  # other init and RNG
    with resumed.no_bar():
        fit(resumed, resume=True)

    assert [list(map(float, v)) for v in resumed.recorder.values] == [list(map(float, v)) for v in full.recorder.values]
    for k, v in params(full).items():
        assert torch.equal(v, params(resumed)[k]), k
    hist = pd.read_csv(tmp_path / "part" / "history.csv")
    assert list(hist["epoch"]) == list(range(EPOCHS))
    full_hist = pd.read_csv(tmp_path / "full" / "history.csv")
    pd.testing.assert_frame_equal(hist.drop(columns="time"), full_hist.drop(columns="time"))


def test_checkpoint_contents(titles_df, tmp_path):
    learn = make_learner(titles_df, tmp_path, seed=0)
    with learn.no_bar():
        learn.fit(1, 1e-2, cbs=Checkpoint())
    ck = load_checkpoint(tmp_path / "checkpoint.pth")
    assert ck["epoch"] == 1 and ck["vocab"] == list(learn.dls.vocab)
    assert ck["context_encoder"].same_as(learn.dls.context_encoder)
    assert set(ck["rng"][0]) >= {"python", "numpy", "torch"}
    assert set(ck["model"]) == set(learn.model.state_dict())
    assert ck["opt"]["state"]


def test_kill_during_write_keeps_previous_checkpoint(titles_df, tmp_path, monkeypatch):
    learn = make_learner(titles_df, tmp_path, seed=0)
    with learn.no_bar():
        learn.fit(1, 1e-2, cbs=Checkpoint())
    before = (tmp_path / "checkpoint.pth").read_bytes()

    def dying_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed while writing")
    monkeypatch.setattr(torch, "save", dying_save)
    with learn.no_bar(), pytest.raises(KeyboardInterrupt):
        learn.fit(1, 1e-2, cbs=Checkpoint())
    assert (tmp_path / "checkpoint.pth").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]   # no temp file left behind


def test_refuses_other_vocab_or_encoder(titles_df, tmp_path):
    learn = make_learner(titles_df, tmp_path, seed=0)
    with learn.no_bar():
        learn.fit(1, 1e-2, cbs=Checkpoint())

    other_docs = make_learner(titles_df.iloc[::-1].iloc[:200], tmp_path, seed=0)
    with other_docs.no_bar(), pytest.raises(ValueError, match="different vocabulary"):
        other_docs.fit(1, 1e-2, cbs=Checkpoint(resume=True))

    shifted = titles_df.assign(energy=titles_df.energy * 0.5)      # same texts, other context statistics
    other_enc = make_learner(shifted, tmp_path, seed=0)
    with other_enc.no_bar(), pytest.raises(ValueError, match="different context encoder"):
        other_enc.fit(1, 1e-2, cbs=Checkpoint(resume=True))


def test_refuses_other_epoch_count(titles_df, tmp_path):
    learn = make_learner(titles_df, tmp_path, seed=0)
    with learn.no_bar():
        learn.fit_one_cycle(2, 1e-2, cbs=Checkpoint())
    again = make_learner(titles_df, tmp_path, seed=0)
    with again.no_bar(), pytest.raises(ValueError, match="2-epoch run"):
        again.fit_one_cycle(3, 1e-2, cbs=Checkpoint(resume=True))


# ---------------------------------------------------------------------- the command line, killed
@pytest.mark.slow
def test_cli_resume_after_kill_matches_uninterrupted(tmp_path):
    """Kill a `fastai-context train-lm` subprocess in the middle of its second epoch, resume it with
    `--resume`, and reach the metrics and weights of an uninterrupted run with the same seed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from fastai_context.cli import main

    cfg = ROOT / "fastai_context" / "configs" / "tiny-lm.yaml"
    args = ["train-lm", str(cfg), "epochs=3", "n_docs=1500", "perplexity=false", "sample_words=0"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "fastai_context.cli", *args, "--run-dir", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 240
        while not (killed / "checkpoint.pth").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint after 240 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)                 # epoch 2 has just begun
    finally:
        proc.kill()
        proc.wait()
    assert load_checkpoint(killed / "checkpoint.pth")["epoch"] == 1
    assert not (killed / "model.pkl").exists()
    assert len(pd.read_csv(killed / "history.csv")) == 1

    main(["train-lm", "--resume", str(killed)])
    full = tmp_path / "full"
    main([*args, "--run-dir", str(full)])

    got, want = (pd.read_csv(d / "history.csv").drop(columns="time") for d in (killed, full))
    pd.testing.assert_frame_equal(got, want)
    a, b = (load_checkpoint(d / "checkpoint.pth")["model"] for d in (killed, full))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (killed / "model.pkl").exists()


def test_cli_resume_refuses_a_run_of_another_command(tmp_path):
    from fastai_context.cli import main
    from fastai_context.workflow.runs import save_config
    save_config(tmp_path, {"epochs": 1}, "train-vae")
    with pytest.raises(SystemExit, match="is a train-vae run, not train-lm"):
        main(["train-lm", "--resume", str(tmp_path)])


class CountingSchedule(Callback):
    "A callback with state of its own (like a KL-annealing step count): it scales the lr by its step."
    def __init__(self):
        self.step = 0

    def before_batch(self):
        if self.training:
            self.opt.set_hyper("lr", 1e-2 / (1 + 0.01 * self.step))

    def after_batch(self):
        if self.training:
            self.step += 1

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = state["step"]


def test_resume_restores_callback_state(titles_df, tmp_path):
    full = make_learner(titles_df, tmp_path / "full", seed=1, shuffle_seed=3)
    with full.no_bar():
        full.fit(EPOCHS, cbs=[CountingSchedule(), Checkpoint()])
    part = make_learner(titles_df, tmp_path / "part", seed=1, shuffle_seed=3)
    with part.no_bar(), pytest.raises(Interrupt):
        part.fit(EPOCHS, cbs=[CountingSchedule(), Checkpoint(), InterruptAt(2)])
    resumed = make_learner(titles_df, tmp_path / "part", seed=5, shuffle_seed=3)
    schedule = CountingSchedule()
    with resumed.no_bar():
        resumed.fit(EPOCHS, cbs=[schedule, Checkpoint(resume=True)])
    assert schedule.step == EPOCHS * len(resumed.dls.train)
    for k, v in params(full).items():
        assert torch.equal(v, params(resumed)[k]), k


def test_vae_resume_continues_the_kl_schedule(tmp_path):
    "A sentence VAE resumed mid-run ends where an uninterrupted one ends: the KL step count is checkpointed."
    from fastai_context import SentenceDataLoaders, datasets, vae_learner
    from fastai_context.vae import KLAnnealing
    titles = datasets.song_titles()[:300]

    def learner(path, seed):
        path.mkdir(parents=True, exist_ok=True)
        set_seed(seed)
        dls = SentenceDataLoaders.from_texts(titles, bs=16, seed=0, min_freq=1, device="cpu")
        return vae_learner(dls, z_dim=4, emb_sz=16, hidden_sz=24, kl_warmup=0.5, path=path)

    def run(learn, resume=False, extra=()):
        with learn.no_bar():
            learn.fit_one_cycle(EPOCHS, 3e-3, cbs=[Checkpoint(resume=resume), *extra])

    full = learner(tmp_path / "full", seed=1)
    run(full)
    part = learner(tmp_path / "part", seed=1)
    with pytest.raises(Interrupt):
        run(part, extra=[InterruptAt(1)])
    resumed = learner(tmp_path / "part", seed=5)
    run(resumed, resume=True)
    kl = [cb for cb in resumed.cbs if isinstance(cb, KLAnnealing)][0]
    assert kl.kl_step == [cb for cb in full.cbs if isinstance(cb, KLAnnealing)][0].kl_step > 0
    assert [list(map(float, v)) for v in resumed.recorder.values] == [list(map(float, v)) for v in full.recorder.values]
    for k, v in params(full).items():
        assert torch.equal(v, params(resumed)[k]), k
