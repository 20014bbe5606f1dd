"""Fast conditioned sampling from a `ContextAWD_LSTM` language model.

fastai's `LMLearner.predict` re-runs the whole growing text for every new word (quadratic
in the number of words), and its `WeightDropout` clones each hidden-to-hidden matrix on
every forward even in eval mode. `ContextLSTMSampler` instead reads the eval-mode weights
once, carries the LSTM state forward one token at a time for all streams as one batch, and
folds the (constant) context of each stream into the gate bias of every layer that reads
it (and into the decoder's bias with `context_out`), so a step costs two small matmuls per
layer plus the decoder. Classifier-free guidance runs the negative context as extra rows of
the same batch.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from numbers import Integral, Real

import torch
from fastprogress.fastprogress import progress_bar

from ..compat import lstm_eval_weight_hh
from .model import ContextSequentialRNN

__all__ = ["ContextLSTMSampler", "sample_next"]


class _Layer:
    "One LSTM layer's eval weights, stored transposed and contiguous so each step is two plain matmuls."

    def __init__(self, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor):
        self.w_ih_t, self.w_hh_t, self.bias = w_ih.t().contiguous(), w_hh.t().contiguous(), bias

    def step(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, bias: torch.Tensor | None = None):
        "PyTorch's LSTM cell: gates in the order input, forget, cell, output."
        gates = torch.addmm(self.bias if bias is None else bias, x, self.w_ih_t).addmm_(h, self.w_hh_t)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ContextLSTMSampler:
    """Step a `ContextSequentialRNN` in eval mode, one token for all streams at a time.

    `context` is `(n_streams, n_context)` (encoded, one row per stream). The state starts at
    zero, like `model.reset()`; `feed(tokens)` advances every stream by one token and returns
    the next-token logits `(n_streams, vocab)`.

    Classifier-free guidance (Sanchez et al. 2023, "Stay on topic with Classifier-Free
    Guidance"; Ho & Salimans 2022 for diffusion): with `negative` `(n_streams, n_context)` and
    `guidance` g, each stream also runs at its negative context c0 (extra rows of the same
    batch, fed the same tokens) and `feed` returns `l(x|c0) + g * (l(x|c) - l(x|c0))`. g = 1 is
    the model alone (the negative streams are then not run at all), g > 1 pushes the text further
    from c0 than the model would go by itself."""

    @torch.no_grad()
    def __init__(self, model: ContextSequentialRNN, context: torch.Tensor, negative: torch.Tensor | None = None,
                 guidance: float = 1.):
        encoder, decoder = model[0], model[1].decoder
        if encoder.n_dir != 1:
            raise ValueError("generation needs a unidirectional model (bidir=False)")
        if isinstance(guidance, bool) or not isinstance(guidance, Real) or not math.isfinite(guidance):
            raise ValueError(f"guidance={guidance!r} must be a finite number (1: no guidance)")
        self.emb = encoder.encoder.weight.detach()
        device, self.n_streams = self.emb.device, context.shape[0]
        self.guidance = float(guidance)
        if negative is not None and self.guidance != 1.:
            if tuple(negative.shape) != tuple(context.shape):
                raise ValueError(f"negative has shape {tuple(negative.shape)}; expected {tuple(context.shape)}, "
                                 "one negative context row per stream")
            context = torch.cat([context, negative.to(context)])     # rows n.. are the negative streams
        else:
            self.guidance = 1.
        n, self.layers, self.ctx_bias = context.shape[0], [], []
        ctx_in = encoder.context_input(context.to(device))
        reads = getattr(encoder, "reads_context", lambda l: l == 0)
        for l, rnn in enumerate(encoder.rnns):
            lstm = rnn.module
            w_ih = lstm.weight_ih_l0.detach()
            w_hh = lstm_eval_weight_hh(rnn).detach()          # WeightDropout's undropped weight (compat)
            bias = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach()
            if reads(l):   # the context part of this layer's input is constant per stream: fold it into the bias once
                in_sz = w_ih.shape[1] - ctx_in.shape[1]
                self.ctx_bias.append(torch.addmm(bias, ctx_in, w_ih[:, in_sz:].t()))   # (n, 4 * n_hid)
                w_ih = w_ih[:, :in_sz]
            else:
                self.ctx_bias.append(None)
            self.layers.append(_Layer(w_ih, w_hh, bias))
        self.dec_w_t = decoder.weight.detach().t().contiguous()
        self.dec_b = torch.zeros(self.dec_w_t.shape[1], device=device) if decoder.bias is None else decoder.bias.detach()
        context_out = getattr(model[1], "context_out", None)      # `ContextLinearDecoder`: constant per stream too
        if context_out is not None:
            self.dec_b = torch.addmm(self.dec_b, ctx_in.float(), context_out.weight.detach().t())  # (n, vocab)
        self.state = [(torch.zeros(n, rnn.module.hidden_size, device=device),) * 2 for rnn in encoder.rnns]

    @torch.no_grad()
    def feed(self, tokens: torch.Tensor) -> torch.Tensor:
        "Advance every stream by `tokens` `(n_streams,)`; return next-token logits `(n_streams, vocab)`."
        if self.guidance != 1.:
            tokens = torch.cat([tokens, tokens])      # the negative streams read the same text
        x = self.emb[tokens]
        for k, layer in enumerate(self.layers):
            h, c = layer.step(x, *self.state[k], bias=self.ctx_bias[k])
            self.state[k] = (h, c)
            x = h
        logits = torch.addmm(self.dec_b, x, self.dec_w_t)
        if self.guidance == 1.:
            return logits
        cond, neg = logits[:self.n_streams], logits[self.n_streams:]
        return neg.add_(cond - neg, alpha=self.guidance)      # l(x|c0) + g * (l(x|c) - l(x|c0))

    @torch.no_grad()
    def score(self, ids: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of each token `ids[:, t]` for t >= 1 given the tokens before it,
        `(n_streams, len - 1)`: the model (or the guided distribution) scoring a text."""
        nll = []
        for t in range(ids.shape[1] - 1):
            logp = self.feed(ids[:, t]).float().log_softmax(dim=1)
            nll.append(-logp.gather(1, ids[:, t + 1:t + 2]).squeeze(1))
        return torch.stack(nll, dim=1) if nll else ids.new_zeros(ids.shape[0], 0, dtype=torch.float)

    def prime(self, prompt: torch.Tensor) -> torch.Tensor:
        "Feed a prompt `(n_streams, prompt_len)`; return the logits after its last token."
        if prompt.ndim != 2 or prompt.shape[1] == 0:
            raise ValueError(f"the prompt must be (n_streams, prompt_len >= 1) token ids, got shape {tuple(prompt.shape)}")
        for t in range(prompt.shape[1]):
            logits = self.feed(prompt[:, t])
        return logits

    def sample(self, prompt: torch.Tensor, n_words: int, generator: torch.Generator | None = None,
               no_bar: bool = False, **sampling) -> torch.Tensor:
        "Prime with `prompt` then draw `n_words` tokens per stream: `(n_streams, n_words)`."
        logits = self.prime(prompt)
        out = []
        for _ in (range(n_words) if no_bar else progress_bar(range(n_words), leave=False)):
            nxt = sample_next(logits, generator=generator, **sampling)
            out.append(nxt)
            logits = self.feed(nxt)
        return torch.stack(out, dim=1) if out else prompt.new_zeros(prompt.shape[0], 0)


def _is_number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def sample_next(logits: torch.Tensor, temperature: float = 1., top_k: int | None = None, top_p: float | None = None,
                min_p: float | None = None, banned: Sequence[int] = (), generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row of `logits` `(n, vocab)`.

    `temperature` scales the logits; `top_k` keeps the k likeliest tokens; `top_p` keeps the
    smallest set whose probability reaches `top_p` (nucleus sampling); `min_p` drops tokens
    below that probability (fastai's `predict`); `banned` tokens are never drawn."""
    if not _is_number(temperature) or not temperature > 0 or not math.isfinite(temperature):   # NaN: False to all
        raise ValueError(f"temperature={temperature!r} must be a finite number > 0")
    for name, v in (("top_k", top_k), ("top_p", top_p), ("min_p", min_p)):
        if v is not None and not (_is_number(v) and (name != "top_k" or isinstance(v, Integral))):
            raise ValueError(f"{name}={v!r} must be {'a whole number' if name == 'top_k' else 'a number'} or None")
    logits = logits.float() / temperature
    if banned:
        logits[:, list(banned)] = -float("inf")
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k={top_k} must be >= 1")
        kth = logits.topk(min(top_k, logits.shape[1]), dim=1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    probs = logits.softmax(dim=1)
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p={top_p} must be in (0, 1]")
        sorted_p, order = probs.sort(dim=1, descending=True)
        drop = sorted_p.cumsum(1) - sorted_p >= top_p     # tokens after the nucleus is complete
        probs = probs.scatter(1, order, sorted_p.masked_fill(drop, 0.))
    if min_p is not None:
        keep = probs >= min_p
        if not keep.any(1).all():
            warnings.warn(f"There is no item with probability >= {min_p}, try a lower value.")  # fastai's warning
        probs = torch.where(keep.any(1, keepdim=True), probs * keep, probs)   # and, like fastai, min_p is ignored
    return _draw(probs, generator)


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row with probability proportional to `probs` (rows need not sum to 1).

    Inverse-CDF sampling: on CPU, `torch.multinomial` over a batch of rows costs ~20x more
    than a cumulative sum and a binary search, and it dominated the cost of a step."""
    cdf = probs.cumsum(dim=1)
    u = 1. - torch.rand(probs.shape[0], 1, generator=generator, device=probs.device)   # in (0, 1]
    # The first index whose cdf reaches u * total (<= total, so always found); never a
    # zero-probability token, since u > 0.
    return torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(1)
