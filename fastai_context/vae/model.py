"""`SentenceVAE`: the sentence variational autoencoder of Bowman et al. (2016), in plain PyTorch.

    tokens -> embedding -> encoder RNN -> (mu, logvar) -> z = mu + sigma * eps
    [z; context] -> decoder initial state, and [z; context] concatenated to every decoder input
    decoder RNN over xxbos + tokens -> logits of tokens + xxeos

Each RNN is one `nn.LSTM`/`nn.GRU` call (no Python loop over time steps), and the output layer
and the loss only see the real tokens (packed order), never padding. The RNNs themselves run on
the padded batch when it is nearly full (length-bucketed training batches are): on a CPU,
torch runs an unpacked LSTM through oneDNN's fused kernel (2.5x faster forward + backward than
packed, at 26 tokens x 32 sentences) and projects an unpacked GRU's inputs for all steps in one
matmul (12% faster); steps past a sentence's end cannot change its outputs, since the RNN is
unidirectional, so only their cost differs. Sparse batches (and bidirectional encoders) run packed.
With `z_dim=0` the same module is a plain (or, with context, a context-conditioned) RNN language
model: the baseline the VAE is measured against.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

__all__ = ["SentenceVAE", "packed_tokens", "append_eos", "gaussian_kl"]

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
#: The fraction of real (non-pad) positions from which a unidirectional RNN runs on the padded batch
#: rather than packed: the break-even points measured on a CPU (one thread), see the module docstring.
PADDED_MIN_FILL = {"lstm": 0.4, "gru": 0.85}


def packed_tokens(t: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The real (non-pad) entries of a padded `(bs, T, ...)` tensor, in packed-sequence order.

    The model's packed logits and the loss's targets both go through this one function,
    so they line up token for token."""
    return pack_padded_sequence(t, lengths.cpu(), batch_first=True, enforce_sorted=False).data


def append_eos(x: torch.Tensor, pad_idx: int, eos_idx: int) -> torch.Tensor:
    "The decoder's targets `(bs, T + 1)`: each row's tokens of `x`, then xxeos, then padding."
    lengths = (x != pad_idx).sum(1)
    y = torch.cat([x, x.new_full((len(x), 1), pad_idx)], 1)
    y[torch.arange(len(x), device=x.device), lengths] = eos_idx
    return y


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    "KL(N(mu, exp(logvar)) || N(0, I)) per latent dimension: shape of `mu`."
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


class SentenceVAE(nn.Module):
    """Sentence VAE. `forward(x, ctx=None)` takes padded tokens `x (bs, T)` (and context
    `ctx (bs, n_context)` for a conditional VAE) and returns `(logits, mu, logvar)`: logits of
    the packed targets (`packed_tokens(y, lengths + 1)`) and the posterior parameters.

    `word_dropout` replaces decoder input words by `xxunk` in training only (Bowman et al.),
    weakening the decoder so that it relies on z. `emb_dropout` is ordinary dropout on the
    decoder's input embeddings (timbmg/Sentence-VAE's `embedding_dropout`, default 0.5 there): a
    regularizer of the decoder, where word dropout removes whole words. `dropout` applies to
    the decoder's outputs before the output layer (and between stacked RNN layers).
    `tie_weights` shares the embedding matrix with the output layer (needs `emb_sz == hidden_sz`)."""

    def __init__(self, vocab_sz: int, emb_sz: int = 256, hidden_sz: int = 256, z_dim: int = 32,
                 n_layers: int = 1, bidirectional: bool = False, cell: str = "lstm", n_context: int = 0,
                 word_dropout: float = 0.0, dropout: float = 0.0, emb_dropout: float = 0.0,
                 tie_weights: bool = False, pad_idx: int = 1, bos_idx: int = 2, eos_idx: int = 3, unk_idx: int = 0):
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"cell={cell!r}: use 'lstm' or 'gru'")
        if not 0.0 <= word_dropout <= 1.0:
            raise ValueError(f"word_dropout={word_dropout} must be in [0, 1]")
        for name, p in (("dropout", dropout), ("emb_dropout", emb_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name}={p} must be in [0, 1)")
        if z_dim < 0 or n_layers < 1:
            raise ValueError(f"z_dim={z_dim} must be >= 0 and n_layers={n_layers} >= 1")
        self.cell, self.z_dim, self.n_context, self.n_layers, self.hidden_sz = cell, z_dim, n_context, n_layers, hidden_sz
        self.n_dirs = 2 if bidirectional else 1
        self.word_dropout, self.pad_idx, self.bos_idx, self.eos_idx, self.unk_idx = word_dropout, pad_idx, bos_idx, eos_idx, unk_idx
        rnn = _CELLS[cell]
        self.embedding = nn.Embedding(vocab_sz, emb_sz, padding_idx=pad_idx)   # shared by encoder and decoder
        if z_dim:
            self.encoder = rnn(emb_sz, hidden_sz, n_layers, batch_first=True, bidirectional=bidirectional,
                               dropout=dropout if n_layers > 1 else 0.0)
            self.to_mu = nn.Linear(self.n_dirs * hidden_sz + n_context, z_dim)      # q(z | x, context)
            self.to_logvar = nn.Linear(self.n_dirs * hidden_sz + n_context, z_dim)
        self.cond_sz = z_dim + n_context
        n_states = n_layers * (2 if cell == "lstm" else 1)
        self.to_state = nn.Linear(self.cond_sz, n_states * hidden_sz) if self.cond_sz else None
        self.decoder = rnn(emb_sz + self.cond_sz, hidden_sz, n_layers, batch_first=True,
                           dropout=dropout if n_layers > 1 else 0.0)
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.out_dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_sz, vocab_sz)
        if tie_weights:       # one matrix for input and output words (Press & Wolf 2017; Inan et al. 2017)
            if emb_sz != hidden_sz:
                raise ValueError(f"tie_weights needs emb_sz == hidden_sz, got {emb_sz} and {hidden_sz}")
            self.out.weight = self.embedding.weight

    def __setstate__(self, state):
        "Models exported before `emb_dropout` existed load with none."
        super().__setstate__(state)
        self._modules.setdefault("emb_dropout", nn.Dropout(0.0))

    # ----------------------------------------------------------------- encoder
    def encode(self, x: torch.Tensor, ctx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior `(mu, logvar)`, each `(bs, z_dim)`, from the last layer's final state in each
        direction (and the context, for a conditional VAE)."""
        lengths = (x != self.pad_idx).sum(1)
        if not self.z_dim:
            empty = x.new_zeros(len(x), 0, dtype=torch.float)
            return empty, empty
        if self.n_dirs == 1 and self._run_padded(lengths, x.shape[1]):
            out, _ = self.encoder(self.embedding(x))                         # (bs, T, hidden), last layer
            h = out[torch.arange(len(x), device=x.device), lengths - 1]     # its state at each sentence's end
        else:
            packed = pack_padded_sequence(self.embedding(x), lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, h = self.encoder(packed)
            if self.cell == "lstm":
                h = h[0]                                               # hidden, not cell, state
            h = h.view(self.n_layers, self.n_dirs, len(x), self.hidden_sz)[-1]   # (n_dirs, bs, hidden)
            h = h.transpose(0, 1).reshape(len(x), self.n_dirs * self.hidden_sz)
        h = self.condition(h, ctx)
        return self.to_mu(h), self.to_logvar(h)

    def _run_padded(self, lengths: torch.Tensor, width: int) -> bool:
        "Whether an RNN over these sentences is cheaper on the padded batch than packed (see `PADDED_MIN_FILL`)."
        return float(lengths.sum()) >= PADDED_MIN_FILL[self.cell] * len(lengths) * width

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    # ----------------------------------------------------------------- decoder
    def condition(self, h: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
        "`[h; ctx]` for a conditional model, `h` otherwise (the decoder's condition is `[z; ctx]`)."
        if not self.n_context:
            if ctx is not None:
                raise ValueError("this model was trained without context: do not pass ctx")
            return h
        if ctx is None or ctx.shape != (len(h), self.n_context):
            got = None if ctx is None else tuple(ctx.shape)
            raise ValueError(f"this model is conditioned on {self.n_context} context features: "
                             f"pass ctx of shape ({len(h)}, {self.n_context}), got {got}")
        return torch.cat([h, ctx.to(h.dtype)], 1)

    def initial_state(self, cond: torch.Tensor):
        "Decoder initial state from the condition: `h0` (GRU) or `(h0, c0)` (LSTM), each `(n_layers, bs, hidden)`."
        bs = len(cond)
        if self.to_state is None:
            h = cond.new_zeros(self.n_layers, bs, self.hidden_sz)
            return (h, h.clone()) if self.cell == "lstm" else h
        s = torch.tanh(self.to_state(cond)).view(bs, -1, self.n_layers, self.hidden_sz).permute(1, 2, 0, 3)
        return (s[0].contiguous(), s[1].contiguous()) if self.cell == "lstm" else s[0].contiguous()

    def decoder_inputs(self, tokens: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        "Embeddings of `tokens (bs, T)` (dropped out in training) with the condition concatenated at every step."
        emb = self.emb_dropout(self.embedding(tokens))                  # (bs, T, emb_sz)
        if not self.cond_sz:
            return emb
        return torch.cat([emb, cond[:, None].expand(-1, tokens.shape[1], -1)], 2)

    def drop_words(self, tokens: torch.Tensor) -> torch.Tensor:
        "Word dropout: real words (not xxbos, not padding) become xxunk with probability `word_dropout`."
        if not (self.training and self.word_dropout > 0):
            return tokens
        real = (tokens != self.pad_idx) & (tokens != self.bos_idx)
        drop = torch.rand(tokens.shape, device=tokens.device) < self.word_dropout
        return tokens.masked_fill(drop & real, self.unk_idx)

    def decode_packed(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        "Logits `(n_tokens, vocab)` of the packed targets x + xxeos, given the condition: one fused RNN call."
        lengths = (x != self.pad_idx).sum(1) + 1
        tokens = torch.cat([x.new_full((len(x), 1), self.bos_idx), x], 1)
        inp = self.decoder_inputs(self.drop_words(tokens), cond)                  # (bs, T + 1, emb + cond)
        if self._run_padded(lengths, tokens.shape[1]):
            out, _ = self.decoder(inp, self.initial_state(cond))                  # (bs, T + 1, hidden)
            out = packed_tokens(out, lengths)                                      # (n_tokens, hidden), real only
        else:
            packed = pack_padded_sequence(inp, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out = self.decoder(packed, self.initial_state(cond))[0].data   # the RNN puts the state in packed order
        return self.out(self.out_dropout(out))

    def step(self, tokens: torch.Tensor, cond: torch.Tensor, state):
        "One decoding step for inference: `tokens (bs,)` -> `(logits (bs, vocab), state)`."
        out, state = self.decoder(self.decoder_inputs(tokens[:, None], cond), state)
        return self.out(out[:, 0]), state

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | None = None):
        "Training and validation both decode from a sampled z: the reconstruction term of the ELBO."
        mu, logvar = self.encode(x, ctx)
        z = self.reparameterize(mu, logvar)
        return self.decode_packed(x, self.condition(z, ctx)), mu, logvar

    def sentence_nll(self, x: torch.Tensor, z: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        "-log p(x | z) per sentence, `(bs,)`, summed over its tokens and xxeos (for IW-NLL and tests)."
        lengths = (x != self.pad_idx).sum(1) + 1
        logits = self.decode_packed(x, self.condition(z, ctx))
        target = packed_tokens(append_eos(x, self.pad_idx, self.eos_idx), lengths)
        sent = packed_tokens(torch.arange(len(x), device=x.device)[:, None].expand(-1, x.shape[1] + 1), lengths)
        nll = nn.functional.cross_entropy(logits, target, reduction="none")
        return torch.zeros(len(x), device=x.device, dtype=nll.dtype).index_add_(0, sent, nll)
