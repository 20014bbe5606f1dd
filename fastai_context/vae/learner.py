"""`VAELearner`: a fastai `Learner` for `SentenceVAE`, with inference (encode, decode with greedy,
sampling or beam search, reconstruct, sample, homotopy) and the importance-weighted NLL."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from fastai.callback.progress import ProgressCallback
from fastai.callback.training import GradientClip
from fastai.learner import Learner
from fastcore.basics import listify
from fastprogress.fastprogress import progress_bar
from torch.nn import functional as F

from ..context import first_rows
from ..lm.sampling import sample_next
from ..text import BOS, EOS, PAD, UNK
from ..workflow.memory import TrimMemory
from .annealing import KLAnnealing
from .callbacks import VAEProgress
from .data import SentenceDataLoaders, SentenceLoader
from .metrics import VAELoss, vae_metrics
from .model import SentenceVAE, gaussian_kl

__all__ = ["Homotopy", "VAELearner", "vae_learner"]

STRATEGIES = ("greedy", "sample", "beam")


class Homotopy(list):
    """Sentences along a line in latent space, as in Bowman et al.'s tables: a list of strings
    (`t` holds each one's position from 0 to 1, `is_input` marks the given sentences) whose
    `str()` is the table."""

    def __init__(self, sentences: Sequence[str], t: Sequence[float], is_input: Sequence[bool]):
        super().__init__(sentences)
        self.t, self.is_input = list(t), list(is_input)

    def __str__(self) -> str:
        return "\n".join(f"{t:4.2f} {'>' if inp else ' '} {s}" for s, t, inp in zip(self, self.t, self.is_input))

    def __repr__(self) -> str:
        return str(self)


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    "Spherical interpolation (White 2016): along the great circle, so norms stay typical of the prior."
    for name, v in (("start", z0), ("end", z1)):
        if not bool(v.norm() > 0):
            raise ValueError(f"slerp: the {name} point is the zero vector, which has no direction to interpolate "
                             "along; use method='lerp'")
    omega = torch.arccos(((z0 / z0.norm()) * (z1 / z1.norm())).sum().clamp(-1, 1))
    if omega.abs() < 1e-6:
        return torch.lerp(z0, z1, t[:, None])
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so)[:, None] * z0 + (torch.sin(t * omega) / so)[:, None] * z1


class VAELearner(Learner):
    """A `Learner` for `SentenceVAE`. Sentences are plain strings, tokenized as in training.

    Conditional models (trained with context columns) take `context=`: a mapping such as
    `{'energy': 0.9}` for every sentence, or a DataFrame with one row per sentence."""

    max_len: int = 50

    # ----------------------------------------------------------------- helpers
    @property
    def vae(self) -> SentenceVAE:
        return self.model

    def _context(self, context, n: int) -> torch.Tensor | None:
        "Encoded context `(n, n_features)` on the model's device, or None for an unconditional model."
        if not self.vae.n_context:
            if context is not None:
                raise ValueError("this model was trained without context columns: do not pass context=")
            return None
        enc = self.dls.context_encoder
        if context is None:
            raise ValueError(f"this model is conditioned on {enc.columns}: pass context=, e.g. "
                             f"{{{enc.columns[0]!r}: ...}}")
        if isinstance(context, pd.DataFrame):
            if len(context) != n:
                raise ValueError(f"context has {len(context)} rows for {n} sentences: pass one row per sentence "
                                 "or a single mapping")
            ctx = enc.encode(context)
        elif isinstance(context, Mapping):
            ctx = enc.encode(context)[None].expand(n, -1)
        else:
            raise TypeError(f"context must be a mapping or a DataFrame, not {type(context).__name__}")
        return ctx.to(self._device)

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _sentence_dl(self, sentences: Sequence[str], context=None, max_len: int | None = None) -> SentenceLoader:
        ctx = self._context(context, len(listify(sentences)) if not isinstance(sentences, str) else 1)
        ctx = None if ctx is None else ctx.cpu()
        return self.dls.sentence_dl(sentences, context=ctx, max_len=self.max_len if max_len is None else max_len,
                                    device=self._device)

    # ---------------------------------------------------------------- encoding
    @torch.no_grad()
    def encode(self, sentences: Sequence[str], context=None, max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior `(mu, logvar)`, each `(n, z_dim)`, of `sentences`. An empty or all-unknown
        sentence raises a `ValueError`; one longer than `max_len` tokens (default: the
        learner's `max_len`) is truncated with a warning."""
        if not isinstance(sentences, str) and len(listify(sentences)) == 0:
            raise ValueError("encode() got no sentences: pass a list of at least one sentence")
        self.model.eval()
        mus, logvars = [], []
        for b in self._sentence_dl(sentences, context, max_len):
            mu, logvar = self.vae.encode(*b[:-1])
            mus.append(mu.cpu()), logvars.append(logvar.cpu())
        return torch.cat(mus), torch.cat(logvars)

    # ---------------------------------------------------------------- decoding
    @torch.no_grad()
    def decode(self, z: torch.Tensor, strategy: str = "greedy", temperature: float = 1.0, beam_size: int = 5,
               max_len: int | None = None, context=None, seed: int | None = None, top_k: int | None = None,
               top_p: float | None = None, no_unk: bool = False) -> list[str]:
        """Decode latent codes `z (n, z_dim)` to sentences: `'greedy'` (deterministic), `'sample'`
        (`generation.sample_next`, the language models' sampler: softmax at `temperature`, optionally
        restricted to the `top_k` likeliest tokens or the `top_p` nucleus; reproducible with `seed`) or
        `'beam'` (beam search of width `beam_size`, highest total log-probability; beam 1 is greedy).
        At most `max_len` tokens (default: the learner's `max_len`) before xxeos. Special tokens other
        than xxeos and fastai's case/repetition markers are never generated (`text.never_drawn`), nor
        `xxunk` with `no_unk=True`."""
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r}: use one of {STRATEGIES}")
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        if strategy != "sample" and (top_k is not None or top_p is not None):
            raise ValueError(f"top_k and top_p apply to strategy='sample', not {strategy!r}")
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.ndim != 2 or z.shape[1] != self.vae.z_dim:
            raise ValueError(f"z must have shape (n, {self.vae.z_dim}), got {tuple(z.shape)}")
        if len(z) == 0:
            raise ValueError("z has no rows: nothing to decode")
        bad = (~torch.isfinite(z)).any(1).nonzero().flatten().tolist()
        if bad:
            raise ValueError(f"z rows {first_rows(bad)} are not finite (NaN or inf): decoding them would be meaningless")
        max_len = self.max_len if max_len is None else max_len
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len={max_len!r} must be a positive number of tokens")
        self.model.eval()
        cond = self.vae.condition(z.to(self._device), self._context(context, len(z)))
        banned = self.dls.codec.never_drawn(no_unk=no_unk)     # the codec's end token, xxeos, ends a sentence
        if strategy == "beam":
            ids = [self._beam(cond[i:i + 1], beam_size, max_len, banned) for i in range(len(z))]
        else:
            gen = None if seed is None else torch.Generator(self._device).manual_seed(seed)
            sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p) if strategy == "sample" else None
            ids = self._decode_steps(cond, sampling, max_len, banned, gen)
        return [self.dls.codec.decode(i) for i in ids]

    def _decode_steps(self, cond, sampling: dict | None, max_len: int, banned: list[int], gen) -> list[list[int]]:
        "Greedy (`sampling=None`) or sampled decoding of a batch, one step at a time (inference only)."
        vocab = self.dls.vocab
        eos = vocab.index(EOS)
        state = self.vae.initial_state(cond)
        tok = torch.full((len(cond),), vocab.index(BOS), dtype=torch.long, device=cond.device)
        out, done = [], torch.zeros(len(cond), dtype=torch.bool, device=cond.device)
        for _ in range(max_len + 1):
            logits, state = self.vae.step(tok, cond, state)                       # (n, vocab)
            if sampling is None:
                logits[:, banned] = -float("inf")
                tok = logits.argmax(-1)
            else:
                tok = sample_next(logits, banned=banned, generator=gen, **sampling)
            out.append(tok)
            done |= tok == eos
            if done.all():
                break
        return torch.stack(out, 1).tolist()

    def _beam(self, cond: torch.Tensor, beam_size: int, max_len: int, banned: list[int]) -> list[int]:
        "Beam search for one condition `(1, c)`: the finished hypothesis with the highest log-probability."
        if beam_size < 1:
            raise ValueError(f"beam_size={beam_size} must be >= 1")
        vocab = self.dls.vocab
        eos = vocab.index(EOS)
        state = self.vae.initial_state(cond)
        tok = torch.full((1,), vocab.index(BOS), dtype=torch.long, device=cond.device)
        hyps, scores, finished = [[]], torch.zeros(1, device=cond.device), []
        for _ in range(max_len + 1):
            logits, state = self.vae.step(tok, cond.expand(len(tok), -1), state)
            logits[:, banned] = -float("inf")
            logp = F.log_softmax(logits, -1)
            cand = (scores[:, None] + logp).flatten()
            top = cand.topk(min(beam_size, len(cand)))
            beams, words = top.indices // logp.shape[1], top.indices % logp.shape[1]
            keep = []
            for s, b, w in zip(top.values.tolist(), beams.tolist(), words.tolist()):
                if w == eos:
                    finished.append((s, hyps[b] + [w]))
                else:
                    keep.append((s, b, w))
            if len(finished) >= beam_size or not keep:
                break
            hyps = [hyps[b] + [w] for _, b, w in keep]
            scores = torch.tensor([s for s, _, _ in keep], device=cond.device)
            idx = torch.tensor([b for _, b, _ in keep], device=cond.device)
            state = tuple(s.index_select(1, idx) for s in state) if isinstance(state, tuple) else state.index_select(1, idx)
            tok = torch.tensor([w for _, _, w in keep], device=cond.device)
        else:
            finished += [(s, h) for s, h in zip(scores.tolist(), hyps)]
        return max(finished, key=lambda f: f[0])[1]

    def reconstruct(self, sentences: Sequence[str], context=None, strategy: str = "greedy", **kwargs) -> list[str]:
        "Decode each sentence's posterior mean (greedy by default, as Bowman et al.)."
        mu, _ = self.encode(sentences, context)
        return self.decode(mu, strategy=strategy, context=context, **kwargs)

    def sample(self, n: int = 5, strategy: str = "greedy", context=None, seed: int | None = None, **kwargs) -> list[str]:
        "`n` sentences decoded from codes drawn from the prior N(0, I) (reproducible with `seed`)."
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"sample(n={n!r}): n is the number of sentences to draw, a positive integer")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.vae.z_dim, generator=gen)
        return self.decode(z, strategy=strategy, context=context, seed=seed, **kwargs)

    def _path(self, z0: torch.Tensor, z1: torch.Tensor, steps: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
        if method not in ("lerp", "slerp"):
            raise ValueError(f"method={method!r}: use 'lerp' or 'slerp'")
        if steps < 0:
            raise ValueError(f"steps={steps} must be >= 0")
        t = torch.linspace(0, 1, steps + 2)
        z = torch.lerp(z0[None], z1[None], t[:, None]) if method == "lerp" else slerp(z0, z1, t)
        return z, t

    def homotopy(self, s0: str, s1: str, steps: int = 5, method: str = "lerp", context=None,
                 strategy: str = "greedy", **kwargs) -> Homotopy:
        """The sentences between `s0` and `s1`: their posterior means z0, z1 and `steps` points
        between them (`'lerp'` or `'slerp'`), greedily decoded; `s0` and `s1` themselves at
        the ends. `steps + 2` lines; `print` shows the table."""
        mu, _ = self.encode([s0, s1], context)
        z, t = self._path(mu[0], mu[1], steps, method)
        mid = self.decode(z[1:-1], strategy=strategy, context=context, **kwargs) if steps else []
        return Homotopy([s0, *mid, s1], t.tolist(), [True] + [False] * steps + [True])

    def interpolate_prior(self, steps: int = 5, method: str = "lerp", context=None, seed: int | None = None,
                          strategy: str = "greedy", **kwargs) -> Homotopy:
        "Decodes of `steps + 2` points from one random prior point to another (both ends decoded)."
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z0, z1 = torch.randn(2, self.vae.z_dim, generator=gen)
        z, t = self._path(z0, z1, steps, method)
        return Homotopy(self.decode(z, strategy=strategy, context=context, **kwargs), t.tolist(), [False] * (steps + 2))

    # ------------------------------------------------------------- evaluation
    @torch.no_grad()
    def iw_nll(self, dl=None, n_samples: int = 500, chunk: int = 4096, seed: int | None = 0) -> dict:
        """Importance-weighted estimate of -log p(x) (Burda et al. 2016) with `n_samples` draws
        from q(z|x) per sentence, over `dl` (default: the validation loader).

        Returns a dict: `'nll'` (nats per sentence), `'ppl'` (exp of total NLL over tokens,
        xxeos included), `'elbo'` (negative ELBO, the bound the IW estimate tightens, from the
        same draws), `'n_sentences'`, `'n_tokens'`. `chunk` caps sentences decoded at once."""
        if n_samples < 1:
            raise ValueError(f"n_samples={n_samples} must be >= 1")
        dl = self.dls.valid if dl is None else dl
        self.model.eval()
        gen = torch.Generator(self._device).manual_seed(seed) if seed is not None else None
        pad = self.dls.vocab.index(PAD)
        nll_total, elbo_total, n_sent, n_tok = 0.0, 0.0, 0, 0
        for b in progress_bar(dl, leave=False):
            x, ctx = b[0], (b[1] if len(b) == 3 else None)
            nll, elbo = self._iw_batch(x, ctx, n_samples if self.vae.z_dim else 1, chunk, gen)
            nll_total, elbo_total = nll_total + float(nll.sum()), elbo_total + float(elbo.sum())
            n_sent += len(x)
            n_tok += int((x != pad).sum()) + len(x)
        if n_sent == 0:
            raise ValueError("iw_nll: the loader has no sentences to score (is it empty, or were all sentences "
                             "dropped?)")
        return {"nll": nll_total / n_sent, "ppl": math.exp(nll_total / n_tok), "elbo": elbo_total / n_sent,
                "n_sentences": n_sent, "n_tokens": n_tok}

    def _iw_batch(self, x, ctx, n_samples: int, chunk: int, gen) -> tuple[torch.Tensor, torch.Tensor]:
        "Per sentence: IW-NLL and negative ELBO (mean reconstruction over the draws + analytic KL)."
        mu, logvar = self.vae.encode(x, ctx)
        std = (0.5 * logvar).exp()
        per = max(1, chunk // len(x))                      # draws decoded in one call
        log_w, recs = [], []
        for start in range(0, n_samples, per):
            s = min(per, n_samples - start)
            eps = torch.randn((s, *mu.shape), generator=gen, device=mu.device)
            z = mu + eps * std                                                     # (s, bs, nz)
            rec = self.vae.sentence_nll(x.repeat(s, 1), z.reshape(s * len(x), -1),
                                        None if ctx is None else ctx.repeat(s, 1)).view(s, len(x))
            log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
            log_qz = -0.5 * (eps.pow(2) + math.log(2 * math.pi) + logvar).sum(-1)
            log_w.append(-rec + log_pz - log_qz)
            recs.append(rec)
        log_w = torch.cat(log_w)
        nll = -(torch.logsumexp(log_w, 0) - math.log(n_samples))
        return nll, torch.cat(recs).mean(0) + gaussian_kl(mu, logvar).sum(-1)


def vae_learner(dls: SentenceDataLoaders, z_dim: int = 32, emb_sz: int = 256, hidden_sz: int = 256,
                n_layers: int = 1, bidirectional: bool = False, cell: str = "lstm", kl_schedule: str = "linear",
                kl_warmup: int | float = 0.3, word_dropout: float = 0.0, free_bits: float = 0.0,
                kl_ratio: float = 0.5, dropout: float = 0.0, clip: float | None = 5.0, max_len: int | None = None,
                metrics=None, cbs=None, emb_dropout: float = 0.0, tie_weights: bool = False, kl_k: float | None = None,
                kl_x0: float | None = None, **kwargs) -> VAELearner:
    """A `VAELearner` for a `SentenceVAE` on `dls` (a `SentenceDataLoaders`).

    Loss: reconstruction NLL summed over tokens + beta * KL, beta from `KLAnnealing(kl_schedule,
    kl_warmup, kl_ratio)` (`kl_warmup`: batches, or a fraction of the first fit's batches; for
    `'cyclical'` the cycle length; `kl_k`, `kl_x0`: the logistic schedule's steepness and midpoint in
    batches, as timbmg/Sentence-VAE's `k`, `x0`). `free_bits` floors each latent dimension's KL.
    `word_dropout` replaces decoder input words by xxunk; `emb_dropout` drops decoder input embedding
    units; `dropout` drops decoder outputs; `tie_weights` shares the embedding with the output layer. Metrics
    default to `vae_metrics()`. `max_len` bounds decoding (default: the longest training sentence).
    `z_dim=0` gives the plain RNN language model with the same decoder. A `TrimMemory` callback
    (unless `cbs` has one) keeps a long CPU run's memory from growing with the varying batch shapes.
    Other `kwargs` go to `Learner` (e.g. `lr`, `opt_func`, `path`)."""
    if not isinstance(dls, SentenceDataLoaders):
        raise TypeError(f"vae_learner needs SentenceDataLoaders (from SentenceDataLoaders.from_df/.from_texts), "
                        f"not {type(dls).__name__}")
    vocab = dls.vocab
    enc = dls.context_encoder
    model = SentenceVAE(len(vocab), emb_sz=emb_sz, hidden_sz=hidden_sz, z_dim=z_dim, n_layers=n_layers,
                        bidirectional=bidirectional, cell=cell, n_context=0 if enc is None else enc.n_features,
                        word_dropout=word_dropout, dropout=dropout, emb_dropout=emb_dropout, tie_weights=tie_weights,
                        pad_idx=vocab.index(PAD), bos_idx=vocab.index(BOS), eos_idx=vocab.index(EOS), unk_idx=vocab.index(UNK))
    cbs = [KLAnnealing(kl_schedule, kl_warmup, kl_ratio, k=kl_k, x0=kl_x0), *listify(cbs)]
    if not any(isinstance(cb, TrimMemory) for cb in cbs):      # sentence batches vary in shape: see TrimMemory
        cbs.append(TrimMemory())
    if clip:
        cbs.append(GradientClip(clip))
    learn = VAELearner(dls, model, loss_func=VAELoss(vocab.index(PAD), free_bits),
                       metrics=vae_metrics() if metrics is None else metrics, cbs=cbs, **kwargs)
    learn.max_len = int(dls.train.lengths.max()) if max_len is None else max_len
    if type(getattr(learn, "progress", None)) is ProgressCallback:     # fastai's default: a table that runs together
        learn.remove_cb(learn.progress)
        learn.add_cb(VAEProgress())
    return learn
