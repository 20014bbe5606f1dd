"""SentenceVAE: hidden-state shapes for every cell/layers/direction, packed computation, word dropout."""
import pytest
import torch
from torch.nn import functional as F

from fastai_context.vae import SentenceVAE
from fastai_context.vae.model import append_eos, packed_tokens

PAD, BOS, EOS, UNK = 1, 2, 3, 0


def batch(lengths=(5, 2, 7, 1), vocab=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.full((len(lengths), max(lengths)), PAD)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randint(9, vocab, (n,), generator=g)
    return x


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes(cell, n_layers, bidirectional):
    torch.manual_seed(0)
    m = SentenceVAE(30, emb_sz=8, hidden_sz=12, z_dim=5, n_layers=n_layers, bidirectional=bidirectional, cell=cell)
    x = batch()
    logits, mu, logvar = m(x)
    assert mu.shape == logvar.shape == (4, 5)
    assert logits.shape == (int((x != PAD).sum()) + 4, 30)      # one row per real token + xxeos
    state = m.initial_state(m.reparameterize(mu, logvar))
    for s in (state if cell == "lstm" else (state,)):
        assert s.shape == (n_layers, 4, 12)
    logits1, state1 = m.step(torch.full((4,), BOS), mu, state)
    assert logits1.shape == (4, 30)
    # the encoder sees each sentence alone: padding a batch differently does not change its code
    m.eval()
    mu_alone, _ = m.encode(x[1:2, :2])
    assert torch.allclose(m.encode(x)[0][1], mu_alone[0], atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@torch.no_grad()
def test_packed_logits_match_padded_step_by_step(cell):
    "The fused packed decoder equals decoding each sentence step by step from the same z."
    torch.manual_seed(0)
    m = SentenceVAE(30, emb_sz=8, hidden_sz=12, z_dim=4, n_layers=2, cell=cell).eval()
    x = batch()
    z = torch.randn(4, 4)
    nll = m.sentence_nll(x, z)
    for i in range(4):
        n = int((x[i] != PAD).sum())
        tokens = torch.cat([torch.tensor([BOS]), x[i, :n]])
        target = torch.cat([x[i, :n], torch.tensor([EOS])])
        state, total = m.initial_state(z[i:i + 1]), 0.0
        for t in range(n + 1):
            logits, state = m.step(tokens[t:t + 1], z[i:i + 1], state)
            total += F.cross_entropy(logits, target[t:t + 1], reduction="sum")
        assert nll[i] == pytest.approx(float(total), rel=1e-4)


def test_packed_tokens_align_with_targets():
    x = batch()
    y = append_eos(x, PAD, EOS)
    assert (y == EOS).sum(1).tolist() == [1, 1, 1, 1]
    assert y[1].tolist()[:3] == [*x[1, :2].tolist(), EOS]
    lengths = (y != PAD).sum(1)
    assert packed_tokens(y, lengths).shape == (int(lengths.sum()),)
    assert (packed_tokens(y, lengths) != PAD).all()


def test_word_dropout_only_in_training():
    torch.manual_seed(0)
    m = SentenceVAE(30, emb_sz=8, hidden_sz=12, z_dim=4, word_dropout=0.5)
    tokens = torch.cat([torch.full((64, 1), BOS), batch((20,) * 64)], 1)
    tokens[:, -3:] = PAD
    m.train()
    dropped = m.drop_words(tokens)
    frac = float((dropped == UNK).sum()) / int(((tokens != PAD) & (tokens != BOS)).sum())
    assert 0.4 < frac < 0.6
    assert (dropped[:, 0] == BOS).all() and (dropped[:, -3:] == PAD).all()   # never xxbos or padding
    m.eval()
    assert torch.equal(m.drop_words(tokens), tokens)
    m.train()
    m.word_dropout = 0.0
    assert torch.equal(m.drop_words(tokens), tokens)


def test_conditional_and_plain_lm():
    torch.manual_seed(0)
    cvae = SentenceVAE(30, emb_sz=8, hidden_sz=12, z_dim=4, n_context=2, bidirectional=True)
    x, ctx = batch(), torch.randn(4, 2)
    logits, mu, _ = cvae(x, ctx)
    assert mu.shape == (4, 4) and cvae.to_state.in_features == 6
    with pytest.raises(ValueError, match="conditioned on 2 context features"):
        cvae(x)
    lm = SentenceVAE(30, emb_sz=8, hidden_sz=12, z_dim=0)        # the baseline: no latent code
    logits, mu, logvar = lm(x)
    assert mu.shape == (4, 0) and not hasattr(lm, "encoder") and lm.to_state is None
    assert logits.shape[0] == int((x != PAD).sum()) + 4
    with pytest.raises(ValueError, match="without context"):
        lm(x, ctx)


def test_bad_arguments():
    with pytest.raises(ValueError, match="cell='rnn'"):
        SentenceVAE(30, cell="rnn")
    with pytest.raises(ValueError, match="word_dropout"):
        SentenceVAE(30, word_dropout=1.5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padded_and_packed_rnn_agree(cell, monkeypatch):
    "A full batch runs its RNNs on the padded tensor (faster on a CPU); the numbers are those of packed."
    from fastai_context.vae import model as vae_model
    torch.manual_seed(0)
    m = SentenceVAE(30, emb_sz=8, hidden_sz=12, z_dim=5, n_layers=2, cell=cell).eval()
    x = batch(lengths=(7, 7, 6, 7, 5, 7))                       # 39 of 42 positions: padded path
    assert m._run_padded((x != PAD).sum(1), x.shape[1])
    mu, _ = m.encode(x)
    logits = m.decode_packed(x, mu)
    monkeypatch.setitem(vae_model.PADDED_MIN_FILL, cell, 2.0)  # never padded
    assert not m._run_padded((x != PAD).sum(1), x.shape[1])
    assert torch.allclose(m.encode(x)[0], mu, atol=1e-6)
    assert torch.allclose(m.decode_packed(x, mu), logits, atol=1e-5)


def test_embedding_dropout_and_tied_weights():
    torch.manual_seed(0)
    m = SentenceVAE(30, emb_sz=12, hidden_sz=12, z_dim=5, emb_dropout=0.5, tie_weights=True)
    assert m.out.weight is m.embedding.weight
    x = batch()
    tokens, z = torch.full((4, 3), BOS), torch.zeros(4, 5)
    m.train()
    inp = m.decoder_inputs(tokens, z)
    assert (inp[..., :12] == 0).float().mean() > 0.3              # about half the embedding units dropped
    m.eval()
    assert not (m.decoder_inputs(tokens, z)[..., :12] == 0).any()
    assert m(x)[0].shape[1] == 30
    with pytest.raises(ValueError, match="tie_weights needs emb_sz == hidden_sz"):
        SentenceVAE(30, emb_sz=8, hidden_sz=12, tie_weights=True)
    with pytest.raises(ValueError, match="emb_dropout=1.0"):
        SentenceVAE(30, emb_dropout=1.0)


def test_a_model_pickled_before_emb_dropout_still_loads():
    import pickle
    m = SentenceVAE(30, emb_sz=8, hidden_sz=12, z_dim=5)
    del m._modules["emb_dropout"]                       # as pickled by the earlier version
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.emb_dropout.p == 0.0 and m2(batch())[0].shape[1] == 30
