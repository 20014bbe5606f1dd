"""VAELearner on real song titles: training lowers the ELBO and keeps the code in use; inference
(encode, greedy/sample/beam decoding, reconstruct, sample, homotopy), IW-NLL, bad sentences,
a conditional VAE on Spotify track names with energy, and export/load_learner."""
import warnings

import pytest
import torch
from fastai.callback.core import Callback
from fastai.learner import load_learner
from fastai.torch_core import set_seed

from fastai_context import datasets
from fastai_context.vae import Homotopy, SentenceDataLoaders, VAELearner, vae_learner

PAIR = ("it had taken years to believe", "but it was all lies at the end")


@pytest.fixture(scope="module")
def trained(data_dir):
    "A small VAE trained for two epochs on the real song titles (plus the blog's sentences)."
    set_seed(0)
    titles = datasets.song_titles() + list(PAIR) + ["he was silent for a long moment", "it was my turn"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = SentenceDataLoaders.from_texts(titles, bs=64, seed=0, max_len=16)
    learn = vae_learner(dls, z_dim=8, emb_sz=32, hidden_sz=64, kl_schedule="linear", kl_warmup=200,
                        word_dropout=0.3, free_bits=0.25)
    before = dict(zip([m.name for m in learn.metrics], learn.validate()[1:]))
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 3e-3)
    return learn, before


def metrics(learn):
    names = learn.recorder.metric_names[1:-1]                  # drop 'epoch' and 'time'
    return dict(zip(names, learn.recorder.values[-1]))


def test_training_lowers_elbo_and_uses_the_code(trained):
    learn, before = trained
    after = metrics(learn)
    assert {"rec", "kl", "beta", "elbo", "ppl", "au", "mi"} <= set(after)
    assert after["elbo"] < before["elbo"] - 5                  # nats per sentence
    assert after["elbo"] == pytest.approx(after["rec"] + after["kl"], rel=1e-4)
    assert after["beta"] == 1.0 and after["kl"] > 0.5 and after["au"] >= 1 and after["mi"] > 0
    assert 1 < after["ppl"] < before["ppl"]
    assert learn.loss_func.beta == 1.0 and learn.cbs.filter(lambda c: hasattr(c, "kl_step"))[0].kl_step == 2 * len(learn.dls.train)


def test_encode_decode_greedy_is_deterministic(trained):
    learn, _ = trained
    mu, logvar = learn.encode(list(PAIR))
    assert mu.shape == logvar.shape == (2, 8)
    assert torch.equal(learn.encode(list(PAIR))[0], mu)        # posterior mean, no sampling
    first = learn.decode(mu)
    assert first == learn.decode(mu) and all(isinstance(s, str) and s for s in first)
    assert learn.reconstruct(list(PAIR)) == first
    assert learn.decode(mu, strategy="beam", beam_size=1) == first
    beams = learn.decode(mu, strategy="beam", beam_size=4)
    assert len(beams) == 2 and all(isinstance(s, str) for s in beams)
    assert all(len(s.split()) <= 3 for s in learn.decode(mu, max_len=3))
    assert all("xxpad" not in s and "xxbos" not in s and "xxmaj" not in s for s in first + beams)


def test_sampling(trained):
    learn, _ = trained
    a = learn.sample(6, seed=1)
    assert len(a) == 6 and a == learn.sample(6, seed=1)
    s1 = learn.sample(6, strategy="sample", temperature=1.0, seed=2)
    assert s1 == learn.sample(6, strategy="sample", temperature=1.0, seed=2)
    assert len(set(s1)) > 1
    with pytest.raises(ValueError, match="strategy='top'"):
        learn.sample(2, strategy="top")
    with pytest.raises(ValueError, match="shape \\(n, 8\\)"):
        learn.decode(torch.zeros(2, 3))


@pytest.mark.parametrize("method", ["lerp", "slerp"])
def test_homotopy(trained, method):
    learn, _ = trained
    h = learn.homotopy(*PAIR, steps=5, method=method)
    assert isinstance(h, Homotopy) and len(h) == 7
    assert h[0] == PAIR[0] and h[-1] == PAIR[1]
    assert h.t[0] == 0 and h.t[-1] == 1 and h.is_input == [True] + [False] * 5 + [True]
    table = str(h).splitlines()
    assert len(table) == 7 and table[0].endswith(PAIR[0]) and table[-1].endswith(PAIR[1])
    assert len(learn.homotopy(*PAIR, steps=0)) == 2
    prior = learn.interpolate_prior(steps=3, seed=0, method=method)
    assert len(prior) == 5 and prior == learn.interpolate_prior(steps=3, seed=0, method=method)


def test_iw_nll_is_no_larger_than_the_elbo(trained):
    learn, _ = trained
    dl = learn.dls.valid.new(learn.dls.valid.sentences[:64])
    res = learn.iw_nll(dl, n_samples=100)
    assert res["n_sentences"] == 64 and res["n_tokens"] == sum(len(s) + 1 for s in dl.sentences)
    assert res["nll"] <= res["elbo"]
    assert res["ppl"] == pytest.approx(torch.tensor(res["nll"] * 64 / res["n_tokens"]).exp().item(), rel=1e-6)
    one = learn.iw_nll(dl, n_samples=1)
    assert one["nll"] > res["nll"]                              # more samples, tighter bound


def test_bad_sentences(trained):
    learn, _ = trained
    with pytest.raises(ValueError, match="empty"):
        learn.encode(["it was my turn", ""])
    with pytest.raises(ValueError, match="only unknown words"):
        learn.homotopy("qwzx vbnmq", "it was my turn")
    long = " ".join(["love me", "tonight", "in the", "dark"] * 6)       # 30 words (not one repeated word: xxwrep)
    with pytest.warns(UserWarning, match="longer than max_len=16"):
        mu, _ = learn.encode([long])
    assert mu.shape == (1, 8)
    with pytest.raises(ValueError, match="without context"):
        learn.reconstruct(["it was my turn"], context={"energy": 0.5})


def test_conditional_vae_on_track_names_with_energy(tracks, tmp_path):
    set_seed(0)
    df = tracks[["track_name", "energy"]].dropna().head(1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = SentenceDataLoaders.from_df(df, "track_name", context_cols="energy", bs=64, seed=0, max_len=12)
    learn = vae_learner(dls, z_dim=4, emb_sz=16, hidden_sz=32, cell="gru", bidirectional=True, n_layers=2,
                        kl_schedule="cyclical", kl_warmup=10, path=tmp_path)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 3e-3)
    assert learn.model.n_context == 1
    with pytest.raises(ValueError, match="conditioned on \\['energy'\\]"):
        learn.sample(2)
    with pytest.raises(KeyError, match="unknown context key"):
        learn.sample(2, context={"valence": 0.2})
    low, high = learn.sample(3, context={"energy": 0.1}, seed=0), learn.sample(3, context={"energy": 0.95}, seed=0)
    assert len(low) == len(high) == 3
    assert len(learn.homotopy("Love Me", "Dance Tonight", steps=2, context={"energy": 0.9})) == 4
    assert learn.iw_nll(n_samples=4)["nll"] > 0
    learn.export("vae.pkl")
    loaded = load_learner(tmp_path / "vae.pkl")
    assert isinstance(loaded, VAELearner) and loaded.dls.context_encoder.columns == ["energy"]
    assert loaded.reconstruct(["Love Me"], context={"energy": 0.5}) == learn.reconstruct(["Love Me"], context={"energy": 0.5})


def test_plain_lm_baseline(data_dir):
    dls = SentenceDataLoaders.from_texts(datasets.ptb("valid")[:400], bs=32, seed=0, min_freq=1)
    learn = vae_learner(dls, z_dim=0, emb_sz=16, hidden_sz=32)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 3e-3)
    res = learn.iw_nll(n_samples=50)                             # exact: no latent code to integrate
    assert res["nll"] == pytest.approx(res["elbo"], rel=1e-5)
    assert metrics(learn)["kl"] == 0 and metrics(learn)["au"] == 0


def test_vae_learner_needs_sentence_loaders(trained):
    with pytest.raises(TypeError, match="SentenceDataLoaders"):
        vae_learner(trained[0].dls.train)


def test_decoding_draws_through_the_one_sampler(trained):
    "Greedy, sampled and beam decoding never produce the special tokens `text.never_drawn` bans."
    learn, _ = trained
    vocab, bias = learn.dls.vocab, learn.model.out.bias
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    greedy = learn.decode(z)
    assert learn.decode(z, strategy="sample", top_k=1, seed=0) == greedy      # top-k of 1 is greedy
    nucleus = learn.decode(z, strategy="sample", top_p=0.9, seed=3)
    assert nucleus == learn.decode(z, strategy="sample", top_p=0.9, seed=3)
    with pytest.raises(ValueError, match="top_k and top_p apply to strategy='sample'"):
        learn.decode(z, top_k=5)
    saved = bias.detach().clone()
    try:
        with torch.no_grad():                  # make the banned tokens the likeliest ones
            bias[[vocab.index("xxfld"), vocab.index("xxunk")]] += 100.
        for strategy in ("greedy", "sample", "beam"):
            out = " ".join(learn.decode(z[:2], strategy=strategy, seed=0, max_len=5, no_unk=True))
            assert "xxfld" not in out and "xxunk" not in out, strategy
        assert "xxunk" in " ".join(learn.decode(z[:2], max_len=5))               # allowed unless no_unk
    finally:
        with torch.no_grad():
            bias.copy_(saved)


def test_bad_inference_inputs_name_the_problem(trained):
    from fastai_context.vae.learner import slerp
    learn, _ = trained
    with pytest.raises(ValueError, match="no sentences"):
        learn.encode([])
    with pytest.raises(ValueError, match="max_len=-1 must be a positive"):
        learn.decode(torch.zeros(1, 8), max_len=-1)
    for n in (0, -1):
        with pytest.raises(ValueError, match=f"sample\\(n={n}\\).*positive integer"):
            learn.sample(n)
    with pytest.raises(ValueError, match="loader has no sentences"):
        learn.iw_nll(learn.dls.valid.new([]))
    z = torch.zeros(3, 8)
    z[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"z rows \[?1\]? are not finite"):
        learn.decode(z)
    with pytest.raises(ValueError, match="z has no rows"):
        learn.decode(torch.zeros(0, 8))
    with pytest.raises(ValueError, match="start point is the zero vector.*method='lerp'"):
        slerp(torch.zeros(8), torch.ones(8), torch.linspace(0, 1, 4))
    assert learn._path(torch.zeros(8), torch.ones(8), 2, "lerp")[0].isfinite().all()   # lerp is fine from 0


def test_batch_logger_and_readable_table(tmp_path):
    "Per-batch rec/KL/beta/ELBO rows in a CSV; the epoch table's columns stay apart."
    from fastai_context.vae import LatentMeans, VAEBatchLogger, VAEProgress
    from fastai_context.vae.callbacks import BATCH_COLUMNS, _fmt
    set_seed(0)
    titles = datasets.song_titles()[:300]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = SentenceDataLoaders.from_texts(titles, bs=32, seed=0, max_len=12)
    learn = vae_learner(dls, z_dim=4, emb_sz=16, hidden_sz=16, kl_schedule="logistic", kl_k=0.5, kl_x0=4,
                        path=tmp_path, cbs=[VAEBatchLogger(), LatentMeans()])
    assert isinstance(learn.progress, VAEProgress)
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-3)
    lines = (tmp_path / "batches.csv").read_text().splitlines()
    assert lines[0] == ",".join(BATCH_COLUMNS) and len(lines) == 1 + 2 * len(dls.train)
    rows = [dict(zip(BATCH_COLUMNS, map(float, ln.split(",")))) for ln in lines[1:]]
    assert [r["iter"] for r in rows] == list(range(1, 2 * len(dls.train) + 1))
    assert rows[0]["beta"] < 0.2 < 0.8 < rows[-1]["beta"]                # the logistic schedule, batch by batch
    assert all(r["elbo"] == pytest.approx(r["rec"] + r["kl"], abs=2e-4) for r in rows)
    assert len(_fmt(118.6356162195051)) + 2 <= 10                         # fits an 8-character column + 2 spaces
    mu = torch.load(tmp_path / "latents" / "epoch_1.pt")                   # the validation sentences' means
    assert mu.shape == (len(dls.valid.sentences), 4) and (tmp_path / "latents" / "epoch_0.pt").exists()


def test_bfloat16_training_on_the_cpu_stays_close_to_float32():
    "CPUMixedPrecision autocasts on the learner's device (fastai's MixedPrecision is CUDA only)."
    from fastai_context.vae import CPUMixedPrecision
    titles = datasets.song_titles()[:640]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = SentenceDataLoaders.from_texts(titles, bs=64, seed=0, max_len=12, device="cpu")
    losses = {}
    for bf16 in (False, True):
        set_seed(0)
        learn = vae_learner(dls, z_dim=4, emb_sz=32, hidden_sz=32, cbs=CPUMixedPrecision() if bf16 else None)
        seen = []
        learn.add_cb(type("Seen", (Callback,), {"after_batch": lambda self: seen.append(
            (self.learn.pred[0].dtype, float(self.loss.detach()))) if self.training else None})())
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 3e-3)
        losses[bf16] = [v for _, v in seen]
        assert {d for d, _ in seen} == {torch.float32}                  # fastai's after_pred casts back to float
        assert next(learn.model.parameters()).dtype == torch.float32
    assert all(torch.isfinite(torch.tensor(losses[True])))
    assert losses[True][-1] == pytest.approx(losses[False][-1], rel=0.05)


def test_batch_logger_drops_the_redone_epochs_rows_on_resume(tmp_path):
    from fastai.callback.core import CancelFitException
    from fastai_context.workflow.checkpoint import Checkpoint
    from fastai_context.vae import VAEBatchLogger

    class Interrupt(Callback):                       # a kill in the middle of epoch 2
        def after_batch(self):
            if self.training and self.epoch == 2 and self.iter == 1:
                raise CancelFitException
    titles = datasets.song_titles()[:200]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = SentenceDataLoaders.from_texts(titles, bs=32, seed=0, max_len=12)
    n = len(dls.train)
    for cbs in ([Interrupt()], []):
        set_seed(0)
        learn = vae_learner(dls, z_dim=4, emb_sz=16, hidden_sz=16, path=tmp_path,
                            cbs=[Checkpoint(resume=True), VAEBatchLogger(), *cbs])
        with learn.no_bar(), learn.no_logging():
            learn.fit(3, 1e-3)
        epochs = [int(ln.split(",")[1]) for ln in (tmp_path / "batches.csv").read_text().splitlines()[1:]]
        if cbs:                                              # stopped during epoch 2, after 1 or 2 rows of it
            assert epochs[:2 * n] == [0] * n + [1] * n and set(epochs[2 * n:]) == {2} and len(epochs) < 3 * n
    assert epochs == [0] * n + [1] * n + [2] * n                # epoch 2's partial rows were dropped, then redone


def test_batch_logger_resume_drops_a_row_a_kill_cut_short(tmp_path):
    "A kill while appending leaves half a row; resuming keeps the whole rows of finished epochs only."
    from types import SimpleNamespace

    from fastai_context.vae.callbacks import BATCH_COLUMNS, VAEBatchLogger
    rows = [",".join(BATCH_COLUMNS), "0,0,1,2,0.1,3,3", "1,0,1,2,0.1,3,3", "2,1,1,2,0.1,3,3", "3,1"]
    (tmp_path / "batches.csv").write_text("\n".join(rows) + "\n")
    cb = VAEBatchLogger()
    cb.learn = SimpleNamespace(path=tmp_path, checkpoint=SimpleNamespace(start_epoch=2))
    cb.before_fit()
    assert (tmp_path / "batches.csv").read_text().splitlines() == rows[:4]
