"""ContextAWD_LSTM, its language model, and the fast sampler, on small constructed inputs."""
import pytest
import torch
from fastai.text.models.awdlstm import awd_lstm_lm_config

from fastai_context import ContextAWD_LSTM, ContextLSTMSampler, context_lm_config, get_context_language_model
from fastai_context.lm.sampling import sample_next
from fastai_context.lm.model import context_awd_lstm_lm_split

SMALL = dict(context_lm_config, emb_sz=16, n_hid=32)


def small_lm(n_context=2, vocab_sz=50, **kw):
    torch.manual_seed(0)
    return get_context_language_model(ContextAWD_LSTM, vocab_sz, n_context, config=dict(SMALL, **kw))


def batch(bs=3, sl=7, n_context=2, vocab_sz=50):
    g = torch.Generator().manual_seed(1)
    return torch.randint(2, vocab_sz, (bs, sl), generator=g), torch.randn(bs, sl, n_context, generator=g)


@pytest.mark.parametrize("proj", [0, 5])
def test_first_layer_reads_embedding_and_context(proj):
    model = small_lm(context_proj=proj)
    enc = model[0]
    assert enc.rnns[0].module.input_size == 16 + (proj or 2)
    assert enc.rnns[-1].module.hidden_size == 16              # last layer outputs emb_sz ...
    assert model[1].decoder.weight is enc.encoder.weight     # ... for the tied decoder
    x, ctx = batch()
    logits, raw, dropped = model(x, ctx)
    assert logits.shape == (3, 7, 50) and raw.shape == (3, 7, 16)


def test_context_changes_outputs_and_reset_clears_state():
    model = small_lm().eval()
    x, ctx = batch()
    model.reset()
    a = model(x, ctx)[0]
    model.reset()
    b = model(x, ctx + 1.)[0]
    assert not torch.allclose(a, b)
    model.reset()
    assert torch.equal(model(x, ctx)[0], a)


def test_fastai_dropouts_are_kept_and_active_in_training():
    model = small_lm()
    enc = model[0]
    assert (enc.encoder_dp.embed_p, enc.input_dp.p, enc.hidden_dps[0].p, enc.rnns[0].weight_p) == (0.02, 0.25, 0.15, 0.2)
    x, ctx = batch()
    model.train()
    model.reset()
    a = model(x, ctx)[0]
    model.reset()
    assert not torch.equal(a, model(x, ctx)[0])


def test_bad_context_shape_is_a_clear_error():
    model = small_lm()
    x, ctx = batch()
    with pytest.raises(ValueError, match=r"context has shape \(3, 7, 3\); expected \(3, 7, 2\)"):
        model(x, torch.zeros(3, 7, 3))
    with pytest.raises(ValueError, match="one context vector per token"):
        model(x, ctx[:, :1])
    with pytest.raises(ValueError, match="one context vector per token"):
        model(x[:, :2], ctx[:, :2, 0])        # (bs, seq_len) with seq_len == n_context


def test_splitter_covers_every_parameter():
    model = small_lm(context_proj=4)
    groups = context_awd_lstm_lm_split(model)
    split = {id(p) for g in groups for p in g}
    assert split == {id(p) for p in model.parameters()}
    assert any(p is model[0].context_proj.weight for p in groups[0])


def test_configs_cpu_default_and_fastai_one_argument_away():
    cpu = get_context_language_model(ContextAWD_LSTM, 100, 1)
    assert (cpu[0].emb_sz, cpu[0].n_hid, cpu[0].n_layers) == (200, 400, 2)
    big = get_context_language_model(ContextAWD_LSTM, 100, 1, config="fastai")
    assert (big[0].emb_sz, big[0].n_hid, big[0].n_layers) == (awd_lstm_lm_config["emb_sz"], awd_lstm_lm_config["n_hid"], 3)
    assert big[0].rnns[0].module.input_size == 401
    partial = get_context_language_model(ContextAWD_LSTM, 100, 1, config=dict(emb_sz=24))
    assert (partial[0].emb_sz, partial[0].n_hid) == (24, 400)     # a dict overrides the default's keys
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['hidden'\]"):
        get_context_language_model(ContextAWD_LSTM, 100, 1, config=dict(hidden=24))
    with pytest.raises(ValueError, match="config='big'"):
        get_context_language_model(ContextAWD_LSTM, 100, 1, config="big")


def test_drop_mult_scales_every_dropout():
    model = get_context_language_model(ContextAWD_LSTM, 50, 1, config=SMALL, drop_mult=0.5)
    assert model[0].input_dp.p == pytest.approx(0.125) and model[1].output_dp.p == pytest.approx(0.05)


def test_context_at_every_layer_and_learned_embedding():
    model = small_lm(context_layers="all", context_proj=4, context_act="tanh", n_layers=3)
    enc = model[0]
    assert [r.module.input_size for r in enc.rnns] == [16 + 4, 32 + 4, 32 + 4]
    x, ctx = batch()
    model.eval().reset()
    with torch.no_grad():
        a = model(x, ctx)[0]
        model.reset()
        b = model(x, ctx + 1.)[0]
    assert not torch.allclose(a, b)
    # the tanh embedding is bounded: a huge context cannot blow up the gates
    assert enc.context_input(torch.full((1, 2), 1e6)).abs().max() <= 1.
    for bad, match in [(dict(context_layers="some"), "context_layers"), (dict(context_act="relu"), "context_act"),
                       (dict(context_act="tanh"), "context_proj > 0")]:
        with pytest.raises(ValueError, match=match):
            small_lm(**bad)


@pytest.mark.parametrize("opts", [dict(context_proj=0), dict(context_proj=3), dict(context_layers="all"),
                                  dict(context_proj=3, context_act="tanh", context_layers="all"),
                                  dict(context_layers="all", context_out=True),
                                  dict(context_proj=3, context_act="tanh", context_out=True),
                                  dict(context_bins=5, context_layers="all", context_out=True)])
def test_sampler_matches_the_model_step_by_step(opts):
    "The fast sampler computes what fastai's forward computes in eval mode, one token at a time."
    model = small_lm(**opts).eval()
    x, ctx = batch(sl=9)
    ctx = ctx[:, :1].expand_as(ctx).contiguous()     # one context per stream, as in generation
    if opts.get("context_out"):                       # it starts at zero: give it weights to check
        torch.nn.init.normal_(model[1].context_out.weight)
    model.reset()
    with torch.no_grad():
        ref = model(x, ctx)[0]
    sampler = ContextLSTMSampler(model, ctx[:, 0])
    steps = torch.stack([sampler.feed(x[:, t]) for t in range(x.shape[1])], dim=1)
    torch.testing.assert_close(steps, ref, atol=1e-5, rtol=1e-5)


def test_sample_next_filters():
    logits = torch.tensor([[0., 1., 5., 2.]]).repeat(200, 1)
    g = torch.Generator().manual_seed(0)
    assert (sample_next(logits, top_k=1, generator=g) == 2).all()
    assert (sample_next(logits, top_p=0.5, generator=g) == 2).all()
    assert (sample_next(logits, banned=[2], top_k=1, generator=g) == 3).all()
    assert set(sample_next(logits, top_k=2, generator=g).tolist()) == {2, 3}
    assert (sample_next(logits, min_p=0.5, generator=g) == 2).all()
    with pytest.warns(UserWarning, match="no item with probability >= 0.99"):
        assert set(sample_next(logits, min_p=0.99, generator=g).tolist()) > {2}
    cold = sample_next(logits, temperature=0.05, generator=g)
    assert (cold == 2).all()
    for bad in (dict(temperature=0), dict(top_k=0), dict(top_p=1.5)):
        with pytest.raises(ValueError):
            sample_next(logits, **bad)


def test_sampling_follows_the_distribution_and_never_draws_zero_probability():
    probs = torch.tensor([[0.1, 0., 0.6, 0.3, 0.]]).repeat(20_000, 1)
    draws = sample_next(probs.log(), generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5) / len(draws)
    torch.testing.assert_close(freq, probs[0], atol=0.01, rtol=0)
    assert freq[1] == 0 and freq[4] == 0


def test_bidirectional_model_cannot_generate():
    model = small_lm(bidir=True)
    with pytest.raises(ValueError, match="unidirectional"):
        ContextLSTMSampler(model, torch.zeros(1, 2))


def test_sampler_needs_a_prompt():
    sampler = ContextLSTMSampler(small_lm().eval(), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="prompt_len >= 1"):
        sampler.sample(torch.zeros(2, 0, dtype=torch.long), 5)
    assert sampler.sample(torch.full((2, 1), 2), 5, no_bar=True).shape == (2, 5)


def test_guided_sampler_extrapolates_from_the_negative_context():
    "Classifier-free guidance: l(x|c0) + g * (l(x|c) - l(x|c0)), the two contexts as rows of one batch."
    model = small_lm().eval()
    x, ctx = batch(sl=6)
    pos, neg = ctx[:, 0], -ctx[:, 0]
    plain = ContextLSTMSampler(model, pos)
    guided_one = ContextLSTMSampler(model, pos, negative=neg, guidance=1.)
    guided = ContextLSTMSampler(model, pos, negative=neg, guidance=2.5)
    at_neg = ContextLSTMSampler(model, neg)
    for t in range(x.shape[1]):
        l_c, l_0 = plain.feed(x[:, t]), at_neg.feed(x[:, t])
        assert torch.equal(guided_one.feed(x[:, t]), l_c)         # guidance 1 runs no extra streams
        torch.testing.assert_close(guided.feed(x[:, t]), l_0 + 2.5 * (l_c - l_0), atol=1e-5, rtol=1e-5)
    assert guided.state[0][0].shape[0] == 2 * len(pos) and guided_one.state[0][0].shape[0] == len(pos)
    with pytest.raises(ValueError, match="negative has shape"):
        ContextLSTMSampler(model, pos, negative=neg[:1], guidance=2.)
    with pytest.raises(ValueError, match="guidance=nan"):
        ContextLSTMSampler(model, pos, negative=neg, guidance=float("nan"))


def test_sampler_scores_a_text_as_the_model_does():
    model = small_lm().eval()
    x, ctx = batch(sl=8)
    ctx = ctx[:, :1].expand_as(ctx).contiguous()
    model.reset()
    with torch.no_grad():
        logp = model(x, ctx)[0].log_softmax(-1)
    ref = -logp[:, :-1].gather(2, x[:, 1:, None]).squeeze(2)
    torch.testing.assert_close(ContextLSTMSampler(model, ctx[:, 0]).score(x), ref, atol=1e-5, rtol=1e-5)


def test_sample_next_rejects_nan_and_infinite_temperature():
    logits = torch.zeros(2, 5)
    for t in (float("nan"), float("inf"), -1.):
        with pytest.raises(ValueError, match="temperature"):
            sample_next(logits, temperature=t)


def test_context_out_adds_a_learned_slope_per_word():
    "`context_out=True`: logits += W c, W (vocab, n_context) starting at zero, trained with the decoder."
    model = small_lm(context_out=True)
    dec = model[1]
    assert dec.context_out.weight.shape == (50, 2) and not dec.context_out.weight.any()
    assert any(p is dec.context_out.weight for p in context_awd_lstm_lm_split(model)[-1])
    x, ctx = batch()
    model.eval().reset()
    with torch.no_grad():
        base = model(x, ctx)[0]
        dec.context_out.weight[7, 1] = 2.
        model.reset()
        moved = model(x, ctx)[0]
    torch.testing.assert_close(moved - base, (2. * ctx[..., 1:2]) * torch.nn.functional.one_hot(torch.tensor(7), 50))
    model.train().reset()
    model(x, ctx)[0].logsumexp(-1).mean().backward()
    assert dec.context_out.weight.grad.abs().sum() > 0


def test_context_bins_add_a_one_hot_of_each_features_bin():
    "`context_bins=k`: each standardized feature also as the one-hot of its bin among k equally likely ones."
    model = small_lm(context_bins=5)
    enc = model[0]
    assert enc.context_sz == 2 * (1 + 5) and enc.rnns[0].module.input_size == 16 + 12
    assert model[1].context_out.weight.shape == (50, 12)
    ctx = torch.tensor([[-2., 0.], [0.5, 2.]])
    got = enc.context_input(ctx)
    assert torch.equal(got[:, :2], ctx)
    assert got[:, 2:7].argmax(1).tolist() == [0, 3] and got[:, 7:].argmax(1).tolist() == [2, 4]
    assert got[:, 2:].sum(1).tolist() == [2., 2.]
    for bad in (1, -1, 2.5, True):
        with pytest.raises(ValueError, match="context_bins"):
            small_lm(context_bins=bad)
    with pytest.raises(ValueError, match="context_out"):
        small_lm(context_out="yes")
