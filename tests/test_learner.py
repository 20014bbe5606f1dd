"""ContextLMLearner on the real Spotify tracks and on a corpus where the context decides the words."""
import numpy as np
import pandas as pd
import pytest
import torch
from fastai.learner import load_learner
from fastai.text.learner import match_embeds
from fastai.text.models.awdlstm import AWD_LSTM
from fastai.text.models.core import get_language_model

from fastai_context import ContextLMLearner, ContextTextDataLoaders, context_language_model_learner, context_lm_config

TINY = dict(context_lm_config, emb_sz=32, n_hid=64)
HIGH = "loud fast rage storm fire power scream drive".split()
LOW = "calm slow soft rain sleep quiet dream still".split()


def quiet_fit(learn, *args):
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(*args)


@pytest.fixture(scope="module")
def context_decides():
    "400 six-word documents: high energy draws from HIGH, low energy from LOW. Trained once."
    rng = np.random.default_rng(0)
    rows = [dict(text=" ".join(rng.choice(HIGH if i % 2 else LOW, 6)),
                 energy=float(rng.uniform(0.8, 1.0) if i % 2 else rng.uniform(0.0, 0.2))) for i in range(400)]
    dls = ContextTextDataLoaders.from_df(pd.DataFrame(rows), "text", "energy", bs=16, seq_len=20, seed=0)
    torch.manual_seed(0)
    learn = context_language_model_learner(dls, config=TINY)
    quiet_fit(learn, 6, 3e-2)
    return learn


@pytest.fixture(scope="module")
def tracks_dls(tracks):
    return ContextTextDataLoaders.from_df(tracks.dropna(subset=["track_name"]).sample(3000, random_state=0), "track_name",
                                          ["energy", "playlist_genre"], bs=32, seq_len=24, seed=0)


def test_learner_is_a_fastai_lm_learner_with_rnn_callbacks(tracks_dls):
    learn = context_language_model_learner(tracks_dls, config=TINY)
    assert isinstance(learn, ContextLMLearner)
    names = {type(cb).__name__ for cb in learn.cbs}
    assert {"ModelResetter", "RNNCallback", "RNNRegularizer"} <= names
    assert [m.name for m in learn.metrics] == ["accuracy", "perplexity"]
    assert learn.model[0].rnns[0].module.input_size == 32 + tracks_dls.context_encoder.n_features


def test_training_on_real_tracks_lowers_validation_loss(tracks_dls):
    torch.manual_seed(0)
    learn = context_language_model_learner(tracks_dls, config=TINY)
    before = learn.validate()[0]
    quiet_fit(learn, 2, 1e-2)
    after = learn.validate()[0]
    assert after < before - 1.0, (before, after)
    ppl = learn.context_perplexity()
    assert set(ppl) == {"true", "shuffled", "mean"} and all(isinstance(v, float) and v > 1 for v in ppl.values())
    assert ppl["true"] == pytest.approx(np.exp(after), rel=0.05)


def test_true_context_beats_shuffled_and_mean(context_decides):
    ppl = context_decides.context_perplexity()
    assert ppl["true"] < 0.6 * ppl["shuffled"], ppl
    assert ppl["true"] < 0.8 * ppl["mean"], ppl


@pytest.mark.parametrize("energy,words,other", [(1.0, HIGH, LOW), (0.0, LOW, HIGH)])
def test_generation_at_a_context_uses_that_contexts_words(context_decides, energy, words, other):
    texts = context_decides.generate({"energy": energy}, 40, n_samples=5, seed=0, no_bar=True)
    assert len(texts) == 5 and all(isinstance(t, str) for t in texts)
    toks = " ".join(texts).lower().split()
    assert np.mean([t in words for t in toks]) > 0.8
    assert np.mean([t in other for t in toks]) < 0.1


def test_generation_is_reproducible_with_a_seed(context_decides):
    gen = lambda seed: context_decides.generate({"energy": 0.5}, 30, n_samples=3, seed=seed, no_bar=True)
    a, b, c = gen(1), gen(1), gen(2)
    assert a == b and a != c
    assert len(set(a)) == 3                       # the streams of one batch are independent samples


def test_generation_options(context_decides):
    learn = context_decides
    greedy = learn.generate({"energy": 1.0}, 10, n_samples=2, top_k=1, no_bar=True)
    assert greedy[0] == greedy[1]
    assert learn.generate({"energy": 1.0}, 0, no_bar=True) == [""]
    prompt = learn.generate({"energy": 0.0}, 5, start="loud", seed=0, no_bar=True)[0]
    assert prompt.split()[0] == "loud" and len(prompt.split()) >= 5
    sep = learn.generate({"energy": 0.0}, 40, seed=0, doc_sep=" / ", no_bar=True)[0]
    assert " / " in sep and sep.replace(" / ", " ") == learn.generate({"energy": 0.0}, 40, seed=0, no_bar=True)[0]
    nucleus = learn.generate({"energy": 1.0}, 30, top_p=0.9, temperature=0.7, seed=0, no_bar=True)[0]
    assert all(t.lower() in HIGH for t in nucleus.split()[:20])


def test_predict_keeps_fastai_signature_and_takes_context(context_decides):
    learn = context_decides
    out = learn.predict("fire", n_words=10, context={"energy": 1.0}, seed=0, no_bar=True)
    assert out.split()[0] == "fire" and len(out.split()) >= 8
    assert all(t.lower() in HIGH for t in out.split())
    assert isinstance(learn.predict("calm", 3, temperature=0.5, min_p=0.01, no_bar=True), str)   # mean context


def test_bad_context_at_generation_is_rejected(context_decides, tracks_dls):
    learn = context_decides
    with pytest.raises(KeyError, match="missing context key"):
        learn.generate({}, 5)
    with pytest.raises(KeyError, match=r"unknown context key\(s\) \['valence'\]"):
        learn.generate({"energy": 0.5, "valence": 0.1}, 5)
    with pytest.raises(ValueError, match="must be a number"):
        learn.generate({"energy": "high"}, 5)
    with pytest.raises(ValueError, match="needs a context"):
        learn.generate(None, 5)
    with pytest.raises(KeyError, match="unknown context key"):
        learn.predict("fire", context={"valence": 0.3})
    genre = context_language_model_learner(tracks_dls, config=TINY)
    with pytest.raises(ValueError, match="unseen categories .* 'polka'"):
        genre.generate({"energy": 0.5, "playlist_genre": "polka"}, 5)
    assert len(genre.generate({"energy": 0.5, "playlist_genre": "rock"}, 5, no_bar=True)) == 1


def test_export_load_learner_round_trip_gives_identical_generations(context_decides, tmp_path):
    learn = context_decides
    learn.export(tmp_path / "lm.pkl")
    loaded = load_learner(tmp_path / "lm.pkl")
    assert isinstance(loaded, ContextLMLearner) and loaded.context_encoder.same_as(learn.context_encoder)
    kw = dict(n_words=25, n_samples=4, seed=3, no_bar=True)
    assert loaded.generate({"energy": 0.9}, **kw) == learn.generate({"energy": 0.9}, **kw)


def test_save_load_round_trip(context_decides, tmp_path):
    learn = context_decides
    path, learn.path = learn.path, tmp_path
    try:
        learn.save("lm")
        fresh = context_language_model_learner(learn.dls, config=TINY, path=tmp_path).load("lm")
    finally:
        learn.path = path
    kw = dict(n_words=15, seed=0, no_bar=True)
    assert fresh.generate({"energy": 0.1}, **kw) == learn.generate({"energy": 0.1}, **kw)


@pytest.mark.parametrize("proj", [0, 4])
def test_load_plain_lm_is_exact_at_start(tracks_dls, tmp_path, proj):
    "A plain fastai AWD_LSTM LM with its own vocabulary order: after loading, identical outputs."
    torch.manual_seed(0)
    vocab = list(tracks_dls.vocab)
    plain_vocab = vocab[::-1] + ["unseenword"]
    plain_cfg = {k: v for k, v in TINY.items() if k != "context_proj"}
    plain = get_language_model(AWD_LSTM, len(plain_vocab), config=dict(plain_cfg))
    torch.save(plain.state_dict(), tmp_path / "plain.pth")
    learn = context_language_model_learner(tracks_dls, config=dict(TINY, context_proj=proj))
    assert learn.load_plain_lm(tmp_path / "plain.pth", plain_vocab) is learn
    # The plain model, its embeddings reordered to this vocabulary as fastai's load_pretrained does.
    reference = get_language_model(AWD_LSTM, len(vocab), config=dict(plain_cfg))
    reference.load_state_dict(match_embeds(dict(plain.state_dict()), plain_vocab, vocab))
    x, ctx, _ = tracks_dls.valid.one_batch()
    reference.eval().reset()
    learn.model.eval().reset()
    with torch.no_grad():
        assert torch.equal(learn.model(x, ctx)[0], reference(x)[0])


def test_load_plain_lm_rejects_another_architecture(tracks_dls):
    wider = {k: v for k, v in TINY.items() if k != "context_proj"} | dict(emb_sz=48)
    plain = get_language_model(AWD_LSTM, 10, config=wider)
    learn = context_language_model_learner(tracks_dls, config=TINY)
    with pytest.raises(ValueError, match="shape"):
        learn.load_plain_lm(plain.state_dict(), [f"w{i}" for i in range(10)])
    with pytest.raises(ValueError, match="not a plain AWD_LSTM"):
        learn.load_plain_lm({"0.encoder.weight": torch.zeros(10, 32)}, [f"w{i}" for i in range(10)])


def test_lr_find_runs(context_decides):
    learn = context_language_model_learner(context_decides.dls, config=TINY)
    with learn.no_bar(), learn.no_logging():
        res = learn.lr_find(num_it=20, show_plot=False)
    assert res.valley > 0


def test_pretrained_needs_fastais_config(tracks_dls):
    with pytest.raises(ValueError, match="config='fastai'"):
        context_language_model_learner(tracks_dls, config=TINY, pretrained=True)
