"""ContextLMLearner on the real Spotify tracks and on a corpus where the context decides the words."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.learner import load_learner
from fastai.text.learner import match_embeds
from fastai.text.models.awdlstm import AWD_LSTM
from fastai.text.models.core import get_language_model

from fastai_context import (ContextDropout, ContextLMLearner, ContextLSTMSampler, ContextTextDataLoaders,
                            context_language_model_learner, context_lm_config)
from fastai_context.text import SPECIAL_TOKENS

TINY = dict(context_lm_config, emb_sz=32, n_hid=64)
PLAIN_TINY = {k: v for k, v in TINY.items() if not k.startswith("context_")}     # fastai's AWD_LSTM keys
HIGH = "loud fast rage storm fire power scream drive".split()
LOW = "calm slow soft rain sleep quiet dream still".split()


def quiet_fit(learn, *args):
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(*args)


@pytest.fixture(scope="module")
def context_decides():
    "400 six-word documents: high energy draws from HIGH, low energy from LOW. Trained once."
    rng = np.random.default_rng(0)
    rows = [dict(text=" ".join(rng.choice(HIGH if i % 2 else LOW, 6)), group="high" if i % 2 else "low",
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


@pytest.mark.parametrize("opts", [dict(context_proj=0), dict(context_proj=4), dict(context_out=True)])
def test_load_plain_lm_is_exact_at_start(tracks_dls, tmp_path, opts):
    "A plain fastai AWD_LSTM LM with its own vocabulary order: after loading, identical outputs."
    torch.manual_seed(0)
    vocab = list(tracks_dls.vocab)
    plain_vocab = vocab[::-1] + ["unseenword"]
    plain_cfg = dict(PLAIN_TINY)
    plain = get_language_model(AWD_LSTM, len(plain_vocab), config=dict(plain_cfg))
    torch.save(plain.state_dict(), tmp_path / "plain.pth")
    learn = context_language_model_learner(tracks_dls, config=dict(TINY, **opts))
    assert learn.load_plain_lm(tmp_path / "plain.pth", plain_vocab) is learn
    # The plain model, its embeddings reordered to this vocabulary as fastai's load_pretrained does.
    reference = get_language_model(AWD_LSTM, len(vocab), config=dict(plain_cfg))
    reference.load_state_dict(match_embeds(dict(plain.state_dict()), plain_vocab, vocab))
    x, ctx, _ = tracks_dls.valid.one_batch()
    reference.eval().reset()
    learn.model.eval().reset()
    with torch.no_grad():
        assert torch.equal(learn.model(x, ctx)[0], reference(x)[0])
    # ... and the context paths can still learn: the input columns it reads get a gradient
    learn.model.train().reset()
    learn.model(x, ctx)[0].logsumexp(-1).mean().backward()
    encoder = learn.model[0]
    assert encoder.rnns[0].module.weight_ih_l0.grad[:, encoder.emb_sz:].abs().sum() > 0


def test_load_plain_lm_rejects_another_architecture(tracks_dls):
    wider = PLAIN_TINY | dict(emb_sz=48)
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


# ------------------------------------------------------------------ issue 15: context in the model
def test_generate_without_context_uses_the_training_mean_like_predict(context_decides):
    learn = context_decides
    mean = learn.context_encoder.decode(learn.context_encoder.mean_context())
    kw = dict(n_words=20, n_samples=2, seed=0, no_bar=True)
    assert learn.generate(None, **kw) == learn.generate(mean, **kw)
    assert learn.generate(pd.DataFrame([{"energy": 0.9}]), **kw) == learn.generate({"energy": 0.9}, **kw)


def test_guidance_one_is_exactly_the_unguided_sampler(context_decides):
    "guidance=1 gives the same samples as the plain sampler, whatever the negative context."
    learn = context_decides
    kw = dict(n_words=30, n_samples=3, seed=5, no_bar=True)
    base = learn.generate({"energy": 0.7}, **kw)
    assert learn.generate({"energy": 0.7}, guidance=1.0, **kw) == base
    assert learn.generate({"energy": 0.7}, guidance=1.0, negative={"energy": 0.0}, **kw) == base
    # and the plain sampler on its own (what `generate` did before guidance existed) draws the same ids
    prompt = torch.tensor(learn._tokenize("xxbos")).repeat(3, 1)
    sampler = ContextLSTMSampler(learn.model.eval(), learn.context_encoder.encode({"energy": 0.7}).repeat(3, 1))
    ids = sampler.sample(prompt, 30, generator=torch.Generator().manual_seed(5), no_bar=True,
                         banned=learn.never_drawn())
    assert [learn._decode(r) for r in torch.cat([prompt, ids], 1).tolist()] == base
    assert learn.predict("fire", 10, context={"energy": 0.7}, seed=1, no_bar=True, guidance=1.) == \
        learn.predict("fire", 10, context={"energy": 0.7}, seed=1, no_bar=True)


def test_guidance_pushes_text_away_from_the_negative_context(context_decides):
    learn = context_decides
    share = lambda texts: np.mean([t in HIGH for t in " ".join(texts).lower().split()])
    kw = dict(n_words=40, n_samples=10, seed=0, no_bar=True)
    # at energy 0.5 the model mixes both vocabularies; guided away from energy 0.0 it says HIGH words
    plain = share(learn.generate({"energy": 0.5}, **kw))
    guided = share(learn.generate({"energy": 0.5}, guidance=4., negative={"energy": 0.0}, **kw))
    assert guided > plain + 0.2 and guided > 0.8, (plain, guided)
    assert share(learn.generate({"energy": 0.5}, guidance=4., negative={"energy": 1.0}, **kw)) < plain


def test_no_special_token_but_the_allowed_ones_is_ever_generated(tracks_dls):
    "An untrained model draws nearly uniformly: every token that can be drawn, will be."
    torch.manual_seed(0)
    learn = context_language_model_learner(tracks_dls, config=TINY)
    banned = set(learn.never_drawn())
    vocab = learn.dls.vocab
    assert {vocab.index(t) for t in ("xxpad", "xxfld", "xxeos", "xxunk")} <= banned
    assert not banned & {vocab.index(t) for t in ("xxbos", "xxmaj", "xxup", "xxrep", "xxwrep")}
    row = learn.context_encoder.encode({"energy": 0.5, "playlist_genre": "rock"})
    ids = np.array(learn._sample_ids(row, "xxbos", 20, 400, seed=0, no_bar=True, banned=sorted(banned)))
    assert not set(ids.flatten().tolist()) & banned
    drawn = {vocab[i] for i in ids.flatten()}
    assert {"xxmaj", "xxup", "xxbos"} <= drawn            # they were drawn, next to other special tokens
    texts = [learn._decode(r) for r in ids.tolist()]
    words = " ".join(texts).split()
    assert not [w for w in words if w.lower().startswith("xx") and w not in vocab], "a capitalised special token"
    assert not [w for w in words if w in SPECIAL_TOKENS], "a special token in decoded text"


def test_bad_generation_arguments_name_the_problem(context_decides):
    learn = context_decides
    with pytest.raises(ValueError, match="temperature=nan"):
        learn.generate({"energy": 0.5}, 5, temperature=float("nan"))
    with pytest.raises(ValueError, match="n_words=2.5"):
        learn.generate({"energy": 0.5}, 2.5)
    with pytest.raises(ValueError, match="n_samples=0"):
        learn.generate({"energy": 0.5}, 5, n_samples=0)
    with pytest.raises(ValueError, match="DataFrame with 3 rows"):
        learn.generate(pd.DataFrame({"energy": [0.1, 0.5, 0.9]}), 5)
    with pytest.raises(TypeError, match="mapping feature -> value"):
        learn.generate(0.5, 5)
    with pytest.raises(ValueError, match="n_words=-1"):
        learn.predict("fire", -1)


def test_fastai_apis_that_do_not_fit_say_what_to_call(context_decides):
    from fastai.interpret import Interpretation
    learn = context_decides
    with pytest.raises(NotImplementedError, match=r"get_preds\(reorder=False\)"):
        learn.get_preds()
    with pytest.raises(NotImplementedError, match="get_preds"):
        Interpretation.from_learner(learn)
    with pytest.raises(NotImplementedError, match="show_batch.*generate"):
        learn.show_results()
    preds, targs = learn.get_preds(reorder=False)
    assert preds.shape[:2] == targs.shape and preds.shape[2] == len(learn.dls.vocab)


def test_fastai_language_model_learner_is_refused(tracks_dls):
    "fastai's own `language_model_learner` on context loaders: a clear error before the first batch, nothing trained."
    from fastai.text.learner import language_model_learner
    learn = language_model_learner(tracks_dls, AWD_LSTM, config=PLAIN_TINY, pretrained=False)
    before = [p.detach().clone() for p in learn.model.parameters()]
    with learn.no_bar(), learn.no_logging(), pytest.raises(TypeError, match="context_language_model_learner"):
        learn.fit(1, 1e-3)
    with pytest.raises(TypeError, match=r"reads only the tokens.*\(tokens, context\)"):
        learn.validate()
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))


def test_context_perplexity_within_groups(context_decides):
    "Here the group (high/low) decides the words: shuffling within it costs nothing, across it a lot."
    learn = context_decides
    ppl = learn.context_perplexity(within="group")
    assert set(ppl) == {"true", "shuffled", "shuffled_within", "mean"}
    assert ppl["true"] < 0.6 * ppl["shuffled"]
    assert ppl["shuffled_within"] < 0.8 * ppl["shuffled"]
    assert ppl["shuffled_within"] == pytest.approx(ppl["true"], rel=0.1)
    labels = learn.dls.valid.dataset.items["group"].to_numpy()
    assert learn.context_perplexity(within=labels) == ppl
    with pytest.raises(KeyError, match="'decade' is not a column"):
        learn.context_perplexity(within="decade")
    with pytest.raises(ValueError, match="3 labels but the loader holds"):
        learn.context_perplexity(within=["a", "b", "c"])


def test_context_gain_paired_bootstrap_on_new_songs(context_decides):
    learn = context_decides
    rng = np.random.default_rng(1)
    df = pd.DataFrame([dict(text=" ".join(rng.choice(HIGH if i % 2 else LOW, 6)), group="high" if i % 2 else "low",
                            energy=0.9 if i % 2 else 0.1) for i in range(60)])
    dl = learn.dls.test_dl(df)
    with pytest.raises(ValueError, match=r"within=df\['group'\]"):
        learn.context_gain(dl, within="group")
    report = learn.context_gain(dl, within=df["group"], n_boot=500)
    t = report.table
    assert list(t.index) == ["shuffled", "shuffled_within", "mean"]
    assert t.loc["shuffled", "gain"] > 0.3 and t.loc["shuffled", "ci_low"] > 0.2
    assert t.loc["shuffled", "p_value"] < 0.01 and t.loc["mean", "p_value"] < 0.01
    assert abs(t.loc["shuffled_within", "gain"]) < 0.1
    assert len(report.doc_nll) == 60 and report.doc_nll.n_tokens.sum() == dl.bl * dl.bs    # every token scored once
    assert "shuffled_within" in repr(report) and "CI" in repr(report)
    ppl = learn.context_perplexity(dl, within=df["group"])
    assert ppl["true"] == pytest.approx(t.loc["shuffled", "ppl_true"])


def test_context_perplexity_on_an_empty_loader_is_a_clear_error(context_decides):
    learn = context_decides
    empty = learn.dls.valid.new(dataset=[], context=None)
    with pytest.raises(ValueError, match="holds no documents"):
        learn.context_perplexity(empty)


def test_context_dropout_replaces_whole_documents_by_the_mean_in_training_only(context_decides):
    from fastai.callback.core import Callback
    dls = context_decides.dls
    original = dls.train.context.clone()
    mean = dls.context_encoder.mean_context().reshape(1, -1)
    seen = []

    class Spy(Callback):
        def before_batch(self):
            if self.training:
                seen.append(float((self.dls.train.context == mean).all(1).float().mean()))
            else:
                assert torch.equal(self.dls.valid.context, context_decides.dls.valid.context)

    learn = context_language_model_learner(dls, config=TINY, context_dropout=0.5, cbs=Spy())
    assert any(isinstance(cb, ContextDropout) for cb in learn.cbs)
    quiet_fit(learn, 2, 1e-2)
    assert 0.35 < np.mean(seen) < 0.65
    assert torch.equal(dls.train.context, original)          # restored after fitting
    with pytest.raises(ValueError, match="p=1.5"):
        ContextDropout(1.5)


def test_text_perplexity_pads_documents_of_different_lengths_exactly(context_decides):
    "Scoring texts together (padded to the longest) equals scoring each alone, token-weighted."
    learn = context_decides
    texts = ["xxbos " + " ".join(HIGH[:2]), "xxbos " + " ".join(LOW * 3), "xxbos " + " ".join(HIGH * 2 + LOW)]
    n = [len(learn._tokenize(t)) - 1 for t in texts]
    alone = [math.log(learn.text_perplexity(t, context={"energy": 1.0})) for t in texts]
    together = math.log(learn.text_perplexity(texts, context={"energy": 1.0}))
    assert together == pytest.approx(sum(a * k for a, k in zip(alone, n)) / sum(n), rel=1e-5)


@pytest.mark.parametrize("kw", [dict(top_k=2.5), dict(top_k="5"), dict(temperature="1"), dict(top_p="0.9")])
def test_sampling_arguments_of_the_wrong_type_are_named(context_decides, kw):
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        context_decides.generate({"energy": 1.0}, n_words=3, no_bar=True, **kw)


def test_context_gain_refuses_a_fractional_n_boot_before_any_work(context_decides):
    with pytest.raises(ValueError, match="n_boot=1.5"):
        context_decides.context_gain(n_boot=1.5)
