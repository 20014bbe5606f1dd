"""The context-conditioned AWD-LSTM: fastai's `AWD_LSTM` whose first LSTM layer (or every
layer, `context_layers='all'`) reads `[input ; context]` at every step, and optionally
(`context_out=True`) a decoder that adds a learned linear function of the context to the
next-word logits.

Concatenating the context to every input (rather than, say, initializing the hidden state
from it) is the blog's design: the model is reminded of the song's energy at each word, so
the signal cannot fade over a long document. Everything else is fastai's AWD-LSTM (embedding,
weight, input and hidden dropouts, `reset()`, a decoder tied to the embedding), so fastai's
callbacks, splitters and training loop apply unchanged.
"""
from __future__ import annotations

from collections.abc import Mapping

from statistics import NormalDist

import torch
import torch.nn.functional as F
from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config
from fastai.text.models.core import LinearDecoder, SequentialRNN
from fastai.torch_core import params
from fastcore.foundation import L
from torch import nn

from ..compat import awd_lstm_layer

__all__ = ["ContextAWD_LSTM", "ContextLinearDecoder", "ContextSequentialRNN", "context_lm_config", "context_awd_lstm_lm_split",
           "get_context_language_model"]

#: CPU-sized default: 200-d embeddings, 400 hidden units, 2 layers (about 14x fewer LSTM
#: weights than fastai's 400/1152/3 `awd_lstm_lm_config`), with fastai's LM dropouts.
#: The context options (measured in docs/benchmarks.md, "Energy ablation"):
#: - `context_proj`: 0 feeds the encoded context as is; k > 0 learns a k-d projection of it first.
#: - `context_act`: None keeps that projection linear; 'tanh' makes it a learned nonlinear context
#:   embedding (a linear map of one number into k dims followed by another linear map is still linear
#:   in that number: only a nonlinearity lets the model treat energy 0.2 and 0.8 differently in kind).
#: - `context_layers`: 'first' concatenates the context to the first layer's input only (the blog's
#:   design); 'all' to every layer's input, so upper layers need not carry it through the lower ones.
#: - `context_out` (on by default: measured in docs/benchmarks.md, it is what makes energy show in the
#:   samples): also connect the context straight to the output layer (Mikolov & Zweig 2012,
#:   "Context dependent recurrent neural network language model", the matrix G from the feature layer
#:   to the output): logits += W c, one learned slope per word and context feature, zero at the start.
#:   Which words a high-energy song uses more is what a bag-of-words regressor reads; through the
#:   LSTM the model learns that only slowly (a song's energy is worth about a nat over ~430 tokens, so
#:   its gradient is faint), through W every token of every song teaches its own word's slope directly.
#:   With `context_proj` the decoder reads the projection too (so with 'tanh', a nonlinear curve per word).
#: - `context_bins`: 0 reads each (standardized) feature as one number; k > 0 also gives the model which of
#:   k equally likely bins of a standard normal it falls in, as a one-hot (a per-word step function on top
#:   of the slope: a song's vocabulary need not change linearly with its energy). Measured in
#:   docs/benchmarks.md ("Energy"): with k = 5 the true energy beats shuffled energies by 1.01% of perplexity
#:   in a one-epoch ablation, by 0.77-0.84% in the notebooks' setting (about 0.7-0.8% without bins).
context_lm_config = dict(emb_sz=200, n_hid=400, n_layers=2, pad_token=1, bidir=False, output_p=0.1,
                         hidden_p=0.15, input_p=0.25, embed_p=0.02, weight_p=0.2, tie_weights=True,
                         out_bias=True, context_proj=0, context_act=None, context_layers="first",
                         context_out=True, context_bins=0)


class ContextAWD_LSTM(AWD_LSTM):
    """fastai's `AWD_LSTM` taking a per-token context `(bs, seq_len, n_context)` next to the tokens.

    The first LSTM layer has `emb_sz + n_context` inputs (or `emb_sz + context_proj` with an
    optional learned projection of the context, off by default, made nonlinear by
    `context_act='tanh'`); with `context_layers='all'` every layer reads the context beside its
    input. Input dropout applies to the embeddings only: dropping context features would only add
    noise to the conditioning (`ContextDropout` drops whole documents' contexts instead)."""

    # Class defaults, so models pickled before these options existed still load and run.
    context_act: str | None = None
    context_layers: str = "first"
    context_bins: int = 0

    def __init__(self, vocab_sz: int, emb_sz: int, n_hid: int, n_layers: int, n_context: int = 1,
                 context_proj: int = 0, context_act: str | None = None, context_layers: str = "first",
                 context_bins: int = 0, pad_token: int = 1, hidden_p: float = 0.2, input_p: float = 0.6,
                 embed_p: float = 0.1, weight_p: float = 0.5, bidir: bool = False):
        if n_context < 1:
            raise ValueError(f"n_context={n_context}: a context model needs at least one context feature")
        if context_layers not in ("first", "all"):
            raise ValueError(f"context_layers={context_layers!r}: pass 'first' (the blog's design) or 'all'")
        if context_act not in (None, "tanh"):
            raise ValueError(f"context_act={context_act!r}: pass None (linear) or 'tanh'")
        if context_act is not None and not context_proj:
            raise ValueError(f"context_act={context_act!r} acts on the learned projection: set context_proj > 0 too")
        if isinstance(context_bins, bool) or not isinstance(context_bins, int) or context_bins < 0 or context_bins == 1:
            raise ValueError(f"context_bins={context_bins!r}: pass 0 (none) or a number of bins >= 2")
        self.context_bins = context_bins
        n_features = n_context * (1 + context_bins)            # each feature, plus its bin as a one-hot
        self.n_context, self.context_sz = n_context, context_proj or n_features
        self.context_act, self.context_layers = context_act, context_layers
        # Bin edges: the k-quantiles of a standard normal (the encoder standardizes numeric features).
        edges = [NormalDist().inv_cdf(i / context_bins) for i in range(1, context_bins)] if context_bins else []
        # Set before AWD_LSTM.__init__, whose `_one_rnn` hook reads `context_sz` and `context_layers`
        # (a fastai private detail: see `compat.awd_lstm_layer`).
        self.context_proj = nn.Linear(n_features, context_proj) if context_proj else None
        super().__init__(vocab_sz, emb_sz, n_hid, n_layers, pad_token=pad_token, hidden_p=hidden_p,
                         input_p=input_p, embed_p=embed_p, weight_p=weight_p, bidir=bidir)
        self.register_buffer("bin_edges", torch.tensor(edges), persistent=False)     # (context_bins - 1,)

    def reads_context(self, l: int) -> bool:
        "Whether layer `l` reads the context beside its input."
        return l == 0 or self.context_layers == "all"

    def _one_rnn(self, n_in, n_out, bidir, weight_p, l):
        "fastai's weight-dropped LSTM layer, with the context's width added to the input of the layers that read it."
        return awd_lstm_layer(self, n_in + self.context_sz if self.reads_context(l) else n_in, n_out, bidir, weight_p, l)

    def context_input(self, context: torch.Tensor) -> torch.Tensor:
        "What the layers read of the context: the features (and their bins), or their learned (linear or tanh) projection."
        context = context.as_subclass(torch.Tensor).float()
        if self.context_bins:                                   # (..., n_context) -> (..., n_context * (1 + bins))
            bins = torch.bucketize(context.contiguous(), self.bin_edges.to(context.device))
            context = torch.cat([context, F.one_hot(bins, self.context_bins).flatten(-2).to(context.dtype)], dim=-1)
        if self.context_proj is None:
            return context
        context = self.context_proj(context)
        return torch.tanh(context) if self.context_act == "tanh" else context

    def forward(self, inp: torch.Tensor, context: torch.Tensor, from_embeds: bool = False) -> torch.Tensor:
        bs, sl = inp.shape[:2]
        if tuple(context.shape) != (bs, sl, self.n_context):
            raise ValueError(f"context has shape {tuple(context.shape)}; expected ({bs}, {sl}, {self.n_context}): "
                             "one context vector per token")
        if bs != self.bs:
            self._change_hidden(bs)
        emb = self.input_dp(inp if from_embeds else self.encoder_dp(inp))
        # fastai's typed tensors (LMTensorText...) refuse `torch.cat` with plain ones.
        output = emb.as_subclass(torch.Tensor)
        ctx = self.context_input(context).to(output.dtype)      # (bs, sl, context_sz)
        new_hidden = []
        for l, (rnn, hid_dp) in enumerate(zip(self.rnns, self.hidden_dps)):
            if self.reads_context(l):
                output = torch.cat([output, ctx], dim=-1)
            output, new_h = rnn(output, self.hidden[l])
            new_hidden.append(new_h)
            if l != self.n_layers - 1:
                output = hid_dp(output)
        self.hidden = [tuple(h.detach() for h in hc) for hc in new_hidden]
        return output


class ContextLinearDecoder(LinearDecoder):
    """fastai's `LinearDecoder` plus a direct path from the context to the logits (`context_out=True`):
    `logits = W_dec h + b + W_ctx c`, with `W_ctx` `(vocab, n_context)` starting at zero, so the model
    starts as the plain decoder and learns each word's slope in each context feature. `c` is what the
    encoder's layers read (`ContextAWD_LSTM.context_input`: with `context_bins` or `context_proj`,
    `n_context` is the encoder's `context_sz`, not the number of raw features)."""

    def __init__(self, n_out: int, n_hid: int, n_context: int, output_p: float = 0.1, tie_encoder=None,
                 bias: bool = True):
        super().__init__(n_out, n_hid, output_p, tie_encoder=tie_encoder, bias=bias)
        self.context_out = nn.Linear(n_context, n_out, bias=False)
        nn.init.zeros_(self.context_out.weight)

    def forward(self, input: torch.Tensor, context: torch.Tensor):
        decoded, raw, dropped = super().forward(input)                  # (bs, sl, vocab), (bs, sl, emb_sz) x2
        ctx = context.as_subclass(torch.Tensor).to(decoded.dtype)       # (bs, sl, n_context)
        return decoded + self.context_out(ctx), raw, dropped


class ContextSequentialRNN(SequentialRNN):
    "fastai's `SequentialRNN` (encoder, decoder) whose encoder (and `ContextLinearDecoder`) also take the context: `model(x, ctx)`."

    def forward(self, inp: torch.Tensor, context: torch.Tensor):
        out = self[0](inp, context)
        if isinstance(self[1], ContextLinearDecoder):     # the decoder reads what the LSTM layers read of the context
            return self[1](out, self[0].context_input(context))
        return self[1](out)


def context_awd_lstm_lm_split(model: ContextSequentialRNN) -> list:
    "fastai's `awd_lstm_lm_split`, with the context projection (if any) in the first layer's group."
    encoder = model[0]
    groups = [nn.Sequential(rnn, dp) for rnn, dp in zip(encoder.rnns, encoder.hidden_dps)]
    if encoder.context_proj is not None:
        groups[0].append(encoder.context_proj)
    groups = L(groups + [nn.Sequential(encoder.encoder, encoder.encoder_dp, model[1])])
    return groups.map(params)


#: Per architecture: the config `config=None` means, the name of the decoder's input size, the splitter.
context_model_meta = {ContextAWD_LSTM: dict(config_lm=context_lm_config, hid_name="emb_sz",
                                             split_lm=context_awd_lstm_lm_split)}


def _resolve_config(arch, config: Mapping | str | None) -> dict:
    "`None`: the CPU-sized default; `'fastai'`: fastai's `awd_lstm_lm_config`; a dict overrides keys of the default."
    if arch not in context_model_meta:
        raise ValueError(f"unknown architecture {arch!r}; available: {[a.__name__ for a in context_model_meta]}")
    if config is None:
        return dict(context_model_meta[arch]["config_lm"])
    if isinstance(config, str):
        if config != "fastai":
            raise ValueError(f"config={config!r}: pass None (CPU-sized default), 'fastai' (awd_lstm_lm_config) or a dict")
        context_keys = {k: v for k, v in context_model_meta[arch]["config_lm"].items() if k.startswith("context_")}
        return {**awd_lstm_lm_config, **context_keys}      # fastai's sizes, this package's context options
    default = context_model_meta[arch]["config_lm"]
    unknown = sorted(set(config) - set(default))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; {arch.__name__} takes {sorted(default)}")
    return {**default, **config}


def get_context_language_model(arch, vocab_sz: int, n_context: int, config: Mapping | str | None = None,
                               drop_mult: float = 1.) -> ContextSequentialRNN:
    """Like fastai's `get_language_model`, for a context architecture: `model(x, ctx)` returns
    `(logits, last_layer_output, dropped_output)`; with `tie_weights` the decoder shares the embedding."""
    config = _resolve_config(arch, config)
    for k in config:
        if k.endswith("_p"):
            config[k] *= drop_mult
    tie_weights, output_p, out_bias = (config.pop(k) for k in ("tie_weights", "output_p", "out_bias"))
    context_out = config.pop("context_out", False)      # configs saved before the option existed: off
    if not isinstance(context_out, bool):
        raise ValueError(f"context_out={context_out!r}: pass True (the context also feeds the logits) or False")
    encoder = arch(vocab_sz, n_context=n_context, **config)
    n_hid, tie = config[context_model_meta[arch]["hid_name"]], encoder.encoder if tie_weights else None
    decoder = (ContextLinearDecoder(vocab_sz, n_hid, encoder.context_sz, output_p, tie_encoder=tie, bias=out_bias)
               if context_out else LinearDecoder(vocab_sz, n_hid, output_p, tie_encoder=tie, bias=out_bias))
    return ContextSequentialRNN(encoder, decoder)
