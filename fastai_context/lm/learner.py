"""`ContextLMLearner`: fastai's `LMLearner` for context-conditioned language models.

Training is fastai's (`fit_one_cycle`, `lr_find`, `RNNRegularizer`, `ModelResetter`,
`to_fp16`, `save`/`load`, `export`/`load_learner`); this module adds what conditioning
needs: generation at a chosen context, a check that the context matters, and starting
from a plain fastai language model.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import fastai.callback.fp16  # noqa: F401  (adds `to_fp16` to Learner)
import fastai.callback.schedule  # noqa: F401  (adds `fit_one_cycle` and `lr_find` to Learner)
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.metrics import Perplexity, accuracy
from fastai.text.learner import LMLearner, clean_raw_keys, match_embeds
from fastai.text.models.awdlstm import awd_lstm_lm_config
from fastcore.foundation import L
from fastcore.meta import delegates
from fastcore.xtras import load_pickle
from fastprogress.fastprogress import progress_bar
from torch.nn.utils.rnn import pad_sequence

from ..losses import CrossEntropyLossFlat
from ..workflow.checkpoint import RaiseOnNaNCallback
from .data import ContextLanguageModelLoader
from .sampling import ContextLSTMSampler
from .model import ContextAWD_LSTM, context_model_meta, get_context_language_model
from ..text import BOS, TextCodec, vocab_of

__all__ = ["ContextLMLearner", "context_language_model_learner", "ContextDropout", "ContextGainReport"]


class ContextDropout(Callback):
    """Context dropout: in each training epoch, every training document's context is replaced by
    the training mean (the encoded mean row) with probability `p`, for the whole document.

    One model then learns both p(text | context) and p(text | mean context), which is what
    classifier-free guidance contrasts (Ho & Salimans 2022; Sanchez et al. 2023): sampling with
    `guidance > 1` extrapolates from the mean context towards the asked one. Documents, not tokens,
    are dropped, because the LSTM carries its state along a document: a context that flickered from
    token to token would teach the model to ignore it. Validation is untouched."""
    order = -5      # before the batch is drawn; the loader reads `dl.context` for every batch

    def __init__(self, p: float = 0.2, seed: int | None = None):
        if not 0 <= p < 1:
            raise ValueError(f"ContextDropout p={p} must be in [0, 1)")
        self.p, self.seed, self._saved = p, seed, None

    def before_train(self):
        dl = self.learn.dls.train
        self._saved = dl.context
        gen = None if self.seed is None else torch.Generator().manual_seed(self.seed * 1_000 + self.epoch)
        drop = torch.rand(len(dl.context), generator=gen) < self.p           # (n_docs,)
        mean = dl.context_encoder.mean_context().to(dl.context).reshape(1, -1)   # (1, n_features)
        dl.context = torch.where(drop[:, None], mean, self._saved)

    def after_train(self):
        if self._saved is not None:
            self.learn.dls.train.context, self._saved = self._saved, None

    after_fit = after_train      # also restore after an interrupted epoch


@dataclass(repr=False)
class ContextGainReport:
    """Does the true context lower held-out perplexity? One row per comparison (`shuffled`: contexts
    permuted across all documents; `shuffled_within`: only among documents of the same group, e.g. the
    same decade; `mean`: every document at the training mean), with the perplexity at the true and at
    the other context, the relative gain `1 - ppl_true / ppl_other` and its bootstrap confidence
    interval over documents, and a one-sided bootstrap p-value for "no gain"."""
    table: pd.DataFrame
    doc_nll: pd.DataFrame       # per document: n_tokens and summed NLL under each variant
    n_boot: int
    ci: float

    def __repr__(self) -> str:
        t = self.table.copy()
        for c in ("gain", "ci_low", "ci_high"):
            t[c] = t[c].map(lambda v: f"{100 * v:+.2f}%")
        return (f"context gain on {len(self.doc_nll)} documents ({int(self.doc_nll.n_tokens.sum())} tokens), "
                f"{self.ci:.0%} bootstrap CI over documents ({self.n_boot} resamples)\n"
                + t.to_string(float_format=lambda v: f"{v:.4g}"))


class ContextLMLearner(LMLearner):
    "An `LMLearner` whose model reads a context vector per token, with conditioned generation."

    # ------------------------------------------------------------- context
    @property
    def context_encoder(self):
        "The `ContextEncoder` fitted on the training split (it travels with the loaders)."
        enc = getattr(self.dls.train, "context_encoder", None)
        if enc is None:
            raise AttributeError("these loaders carry no context_encoder: build them with "
                                 "ContextTextDataLoaders.from_df, or pass context_encoder= to the loaders")
        return enc

    # ---------------------------------------------------------- generation
    @property
    def codec(self) -> TextCodec:
        "The loaders' `TextCodec`: generation tokenizes prompts and decodes samples with it, as in training."
        return self.dls.codec

    def _tokenize(self, text: str) -> list[int]:
        "Token ids of `text` as in training (fastai's tokenizer puts `xxbos` first), one leading `xxbos`."
        codec = self.codec
        ids = codec.encode(text)
        bos = codec.token_id(BOS)
        while len(ids) > 1 and ids[0] == ids[1] == bos:     # start='xxbos' tokenizes as 'xxbos xxbos'
            ids = ids[1:]
        return ids

    def _decode(self, ids: Sequence[int], decoder=None, doc_sep: str | None = None) -> str:
        """fastai's `predict` decoding (`TextCodec.decode`): drop `xxbos`/`xxpad`, apply the
        capitalization/repetition rules, never leave a marker dangling before a special token."""
        return self.codec.decode(ids, doc_sep=doc_sep, decoder=decoder)

    def _context_rows(self, context, name: str = "context") -> torch.Tensor:
        "One encoded context row: None is the training mean; a mapping or a one-row DataFrame is encoded."
        enc = self.context_encoder
        if context is None:
            return enc.mean_context()
        if isinstance(context, pd.DataFrame):
            if len(context) != 1:
                raise ValueError(f"{name} is a DataFrame with {len(context)} rows: generation takes one context; "
                                 f"call generate once per row (e.g. for row in df.to_dict('records'))")
            context = context.iloc[0].to_dict()
        elif isinstance(context, pd.Series):
            context = context.to_dict()
        if not isinstance(context, Mapping):
            raise TypeError(f"{name} must be a mapping feature -> value (e.g. {{'{enc.columns[0]}': 0.9}}) or None "
                            f"for the training mean, got {type(context).__name__}")
        return enc.encode(context)

    def _sample_ids(self, context: torch.Tensor, start: str, n_streams: int, n_words: int, seed: int | None,
                    no_bar: bool, guidance: float = 1., negative: torch.Tensor | None = None,
                    **sampling) -> list[list[int]]:
        """Prime `n_streams` copies of `start` at one encoded `context` row; draw `n_words` tokens for each.
        With `guidance != 1`, each stream is guided away from the `negative` row (default: the mean)."""
        device = self.dls.device
        prompt = torch.tensor(self._tokenize(start), device=device).repeat(n_streams, 1)
        self.model.eval()
        if negative is None:
            negative = self.context_encoder.mean_context()
        sampler = ContextLSTMSampler(self.model, context.to(device).repeat(n_streams, 1),
                                     negative=negative.to(device).repeat(n_streams, 1), guidance=guidance)
        generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
        words = sampler.sample(prompt, n_words, generator=generator, no_bar=no_bar, **sampling)
        return torch.cat([prompt, words], dim=1).tolist()

    def never_drawn(self, no_unk: bool = True) -> list[int]:
        "Token ids generation never draws (`fastai_context.text.never_drawn`, a new document starting at `xxbos`)."
        return self.codec.never_drawn(no_unk=no_unk)

    def generate(self, context: Mapping | None = None, n_words: int = 100, n_samples: int = 1,
                 temperature: float = 1., top_k: int | None = None, top_p: float | None = None, start: str = BOS,
                 seed: int | None = None, no_unk: bool = True, no_bar: bool = False, doc_sep: str | None = None,
                 decoder=None, guidance: float = 1., negative: Mapping | None = None) -> list[str]:
        """Sample `n_samples` texts of `n_words` tokens after `start`, all at `context`
        (e.g. `{'energy': 1.0}`; None: the training mean, like `predict`), as one batch with the LSTM
        state carried forward: the cost is linear in `n_words`. Reproducible with `seed`. Returns
        one decoded string per sample (`start` included, like `predict`); `doc_sep` (e.g. `' / '`)
        marks where the model began a new document, which is dropped by default as in fastai's `predict`.

        `guidance` > 1 is classifier-free guidance (Sanchez et al. 2023): next-token logits
        `l(x|c0) + guidance * (l(x|c) - l(x|c0))` with `c0` the training-mean context, or `negative`
        (e.g. `{'energy': 0.0}` when sampling at 1.0). `guidance=1` is the model alone (exactly the
        unguided samples); a model trained with `ContextDropout` has learned what the mean means."""
        _check_counts(n_words=n_words, n_samples=n_samples)
        row = self._context_rows(context)
        neg = None if negative is None else self._context_rows(negative, "negative")
        ids = self._sample_ids(row, start, n_samples, n_words, seed, no_bar, guidance=guidance, negative=neg,
                               temperature=temperature, top_k=top_k, top_p=top_p, banned=self.never_drawn(no_unk))
        return [self._decode(row, decoder, doc_sep) for row in ids]

    def predict(self, text: str, n_words: int = 1, no_unk: bool = True, temperature: float = 1.,
                min_p: float | None = None, no_bar: bool = False, decoder=None,
                context: Mapping | None = None, seed: int | None = None, guidance: float = 1.,
                negative: Mapping | None = None) -> str:
        """fastai's `LMLearner.predict` at a `context` (a mapping feature -> value, encoded by
        `dls.context_encoder`; `None` feeds the training mean): return `text` and the `n_words`
        that come after. Carries the LSTM state forward instead of re-running the text per word.
        `guidance` and `negative` as in `generate`."""
        _check_counts(n_words=n_words)
        row = self._context_rows(context)
        neg = None if negative is None else self._context_rows(negative, "negative")
        ids = self._sample_ids(row, text, 1, n_words, seed, no_bar, guidance=guidance, negative=neg,
                               temperature=temperature, min_p=min_p, banned=self.never_drawn(no_unk))
        return self._decode(ids[0], decoder)

    def text_perplexity(self, texts: str | Sequence[str], context: Mapping | None = None) -> float:
        """Perplexity of `texts` (raw or generated strings, each read as one document after `xxbos`)
        under this model at `context` (None: the training mean); each token weighs the same. Used to
        score the fluency of generated text."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        docs = [self._tokenize(t) for t in texts]
        docs = [d for d in docs if len(d) > 1]
        if not docs:
            raise ValueError("text_perplexity got no text with at least one token to score")
        self.model.eval()
        device, row = self.dls.device, self._context_rows(context)
        nll, n = 0., 0
        for i in range(0, len(docs), 64):        # documents of similar length in one batch would be faster;
            batch = docs[i:i + 64]               # padding + a mask is simplest and exact
            lens = torch.tensor([len(d) for d in batch], device=device)                        # (n_docs,)
            ids = pad_sequence([torch.tensor(d, device=device) for d in batch], batch_first=True)  # (n_docs, width)
            mask = torch.arange(ids.shape[1] - 1, device=device) < (lens - 1)[:, None]         # (n_docs, width - 1)
            sampler = ContextLSTMSampler(self.model, row.to(device).repeat(len(batch), 1))
            tok_nll = sampler.score(ids)                            # (n_docs, width - 1)
            nll += float(tok_nll[mask].sum())
            n += int(mask.sum())
        return math.exp(nll / n)

    # ----------------------------------------------------- does context help?
    def _doc_nll(self, dl: ContextLanguageModelLoader) -> tuple[np.ndarray, np.ndarray]:
        """Summed NLL and token count per document of `dl` `(n_docs,)`, in the loader's document order.

        The loss of predicting stream position p + 1 is charged to the document that token belongs to
        (`dl.stream_docs`), so a document's first token (predicted from the end of the previous one)
        counts for it, as every token counts in the token-level perplexity."""
        self.model.eval()
        self.model.reset()
        n_docs = len(dl.context)
        nll, n = torch.zeros(n_docs, dtype=torch.float64), torch.zeros(n_docs, dtype=torch.float64)
        with torch.no_grad():
            for k, (x, ctx, y) in enumerate(progress_bar(dl, leave=False)):
                logits = self.model(x, ctx)[0]
                tok = F.cross_entropy(logits.flatten(0, 1).float(), y.as_subclass(torch.Tensor).flatten(),
                                      reduction="none").view(y.shape).double().cpu()          # (bs, sl)
                docs = dl.stream_docs(dl.target_positions(k, *y.shape)).flatten()
                nll.index_add_(0, docs, tok.flatten())
                n.index_add_(0, docs, torch.ones_like(tok.flatten()))
        self.model.reset()
        return nll.numpy(), n.numpy()

    def _context_variants(self, dl: ContextLanguageModelLoader, seed: int, within, features) -> dict:
        "The encoded context of every document of `dl` under each variant: true, shuffled, [shuffled_within], mean."
        if not isinstance(dl, ContextLanguageModelLoader):
            raise TypeError(f"context_perplexity needs a ContextLanguageModelLoader (e.g. dls.valid or "
                            f"dls.test_dl(df)), got {type(dl).__name__}")
        n_docs = len(dl.context)
        if n_docs == 0 or dl.n == 0:
            raise ValueError("the loader holds no documents (or too few tokens for one batch): nothing to measure; "
                             "pass a loader over some texts, e.g. dls.test_dl(df)")
        cols = self._shuffled_columns(features)
        gen = torch.Generator().manual_seed(seed)
        true = dl.context

        def permuted(perm):
            out = true.clone()
            out[:, cols] = true[perm][:, cols]
            return out

        variants = {"true": true, "shuffled": permuted(torch.randperm(n_docs, generator=gen))}
        if within is not None:
            groups = _group_labels(dl, within)
            perm = torch.arange(n_docs)
            for g in pd.unique(groups):
                idx = torch.as_tensor(np.flatnonzero(groups == g))
                perm[idx] = idx[torch.randperm(len(idx), generator=gen)]
            variants["shuffled_within"] = permuted(perm)
        mean = true.clone()
        mean[:, cols] = self.context_encoder.mean_context().to(true).reshape(-1)[cols]
        variants["mean"] = mean
        return variants

    def _shuffled_columns(self, features) -> list[int]:
        "Indices of the encoded context columns that belong to the context `features` (None: all)."
        enc = self.context_encoder
        names = list(enc.feature_names)
        if features is None:
            return list(range(len(names)))
        features = [features] if isinstance(features, str) else list(features)
        unknown = [f for f in features if f not in enc.columns]
        if unknown:
            raise KeyError(f"features {unknown} are not context columns of this learner; it has {enc.columns}")
        return [i for i, name in enumerate(names) if any(name == f or name.startswith(f"{f}=") for f in features)]

    def context_perplexity(self, dl: ContextLanguageModelLoader | None = None, seed: int = 0, within=None,
                           features: str | Sequence[str] | None = None) -> dict[str, float]:
        """Perplexity of `dl` (default: the validation set) with the true context (`'true'`), with
        the contexts shuffled across documents (`'shuffled'`, permutation drawn with `seed`) and with
        every document at the training mean (`'mean'`). If context helps, `'true'` is clearly the lowest.

        `within`: also shuffle only among documents of the same group (`'shuffled_within'`), so a gain
        cannot come from what the groups share (e.g. `within='decade'`: the era). Pass the name of a
        column of the DataFrame the loaders were built from (`dls.valid`), or one label per document in
        the loader's order (e.g. `within=df['decade']` for `dls.test_dl(df)`). `features` restricts the
        shuffling and the mean to those context columns (e.g. `'energy'` in an energy + year model).
        `context_gain` gives the same numbers with confidence intervals and p-values."""
        dl = self.dls.valid if dl is None else dl
        out = {}
        for k, ctx in self._context_variants(dl, seed, within, features).items():
            nll, n = self._doc_nll(dl.new(context=ctx, shuffle=False))
            out[k] = float(np.exp(nll.sum() / n.sum()))
        return out

    def context_gain(self, dl: ContextLanguageModelLoader | None = None, within=None, seed: int = 0,
                     n_boot: int = 2000, ci: float = 0.95, features: str | Sequence[str] | None = None
                     ) -> ContextGainReport:
        """`context_perplexity` with a paired test per document: for each comparison (shuffled,
        shuffled within groups, mean) the relative perplexity gain of the true context
        `1 - ppl_true / ppl_other`, a bootstrap confidence interval (`ci`, resampling whole documents
        `n_boot` times, so the correlation of tokens within a song is respected) and the one-sided
        bootstrap p-value of "the true context does not lower perplexity" (the share of resamples
        with no gain; its floor is 1 / (n_boot + 1)). Arguments as in `context_perplexity`."""
        if not 0 < ci < 1:
            raise ValueError(f"ci={ci} must be in (0, 1)")
        _check_counts(n_boot=n_boot)
        dl = self.dls.valid if dl is None else dl
        doc = {}
        for k, ctx in self._context_variants(dl, seed, within, features).items():
            doc[k], n = self._doc_nll(dl.new(context=ctx, shuffle=False))
        keep = n > 0
        doc_nll = pd.DataFrame({"n_tokens": n[keep], **{k: v[keep] for k, v in doc.items()}})
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(doc_nll), size=(n_boot, len(doc_nll)))       # (n_boot, n_docs)
        n_tok = doc_nll.n_tokens.to_numpy()
        boot_n = n_tok[idx].sum(1)
        true = doc_nll["true"].to_numpy()
        rows = []
        for k in [c for c in doc if c != "true"]:
            diff = doc_nll[k].to_numpy() - true            # per-document NLL saved by the true context
            delta = diff.sum() / n_tok.sum()               # nats per token
            boot = diff[idx].sum(1) / boot_n
            lo, hi = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2])
            rows.append({"vs": k, "ppl_true": math.exp(true.sum() / n_tok.sum()),
                         "ppl_other": math.exp(doc_nll[k].sum() / n_tok.sum()), "gain": 1 - math.exp(-delta),
                         "ci_low": 1 - math.exp(-lo), "ci_high": 1 - math.exp(-hi),
                         "p_value": (1 + int((boot <= 0).sum())) / (n_boot + 1),
                         "docs_better": float((diff > 0).mean())})
        return ContextGainReport(pd.DataFrame(rows).set_index("vs"), doc_nll, n_boot, ci)

    # ------------------------------------------- fastai APIs that do not fit
    def get_preds(self, ds_idx: int = 1, dl=None, *args, reorder: bool = True, **kwargs):
        """fastai's `get_preds`, per token window. A context loader's items are token windows, not
        documents: fastai's `reorder` has no document order to restore, so it is refused with a clear
        error (pass `reorder=False`); per-document scores come from `context_gain`."""
        if reorder and isinstance(self.dls[ds_idx] if dl is None else dl, ContextLanguageModelLoader):
            raise NotImplementedError(
                "get_preds(reorder=True) cannot reorder a context language model loader (its items are token "
                "windows, not documents). Call learn.get_preds(reorder=False) for the logits batch by batch, or "
                "learn.context_gain() for per-document scores")
        return super().get_preds(ds_idx, dl=dl, *args, reorder=reorder, **kwargs)

    def show_results(self, *args, **kwargs):
        raise NotImplementedError("show_results is not available for context language models: use "
                                  "learn.dls.valid.show_batch() for the data and learn.generate(context, n_words) "
                                  "or learn.predict(text, n_words, context=...) for the model's text")

    # ------------------------------------------------- start from a plain LM
    def load_plain_lm(self, weights: str | Path | Mapping, vocab: str | Path | Sequence[str]) -> "ContextLMLearner":
        """Load a plain fastai `AWD_LSTM` language model (a `.pth` file or state dict, saved with
        or without optimizer, and its vocabulary as a list or `.pkl`) into this context model.

        Embeddings are matched to this vocabulary like fastai's `load_pretrained`; the first
        layer's context input weights (and the context projection) start at zero, so right after
        loading the outputs equal the plain model's. Unlike `load_pretrained` this does not
        freeze: `freeze()` would also freeze the context weights of the first layer.

        The vocabulary must be the one the weights were trained with (as many tokens as the
        embedding has rows); if it is also this learner's vocabulary, rows are copied one for one."""
        if isinstance(weights, (str, Path)):
            try:
                weights = torch.load(weights, map_location="cpu", weights_only=False)
            except FileNotFoundError:
                raise FileNotFoundError(f"no weights file at {str(weights)!r}") from None
            except Exception as e:
                raise ValueError(f"{str(weights)!r} is not a PyTorch weights file ({type(e).__name__}: "
                                 f"{' '.join(str(e).split())[:120]}); pass the .pth that learn.save or torch.save "
                                 "wrote for the plain language model") from None
        if not isinstance(weights, Mapping):
            raise ValueError(f"the weights must be a state dict (a mapping of parameter names to tensors), "
                             f"not {type(weights).__name__}")
        weights = dict(weights.get("model", weights))
        if isinstance(vocab, (str, Path)):
            try:
                vocab = load_pickle(vocab)
            except FileNotFoundError:
                raise FileNotFoundError(f"no vocabulary file at {str(vocab)!r}") from None
            except Exception as e:
                raise ValueError(f"{str(vocab)!r} is not a pickled vocabulary ({type(e).__name__}: "
                                 f"{' '.join(str(e).split())[:120]}); pass the .pkl list saved with the weights") from None
        if isinstance(vocab, str) or not isinstance(vocab, Sequence) or not all(isinstance(t, str) for t in vocab):
            raise ValueError("the vocabulary must be a list of token strings (the one saved with the weights)")
        weights, old_vocab, new_vocab = clean_raw_keys(weights), list(vocab), vocab_of(self.dls)
        emb = weights.get("0.encoder.weight")
        if emb is not None and emb.shape[0] != len(old_vocab):
            raise ValueError(f"the vocabulary has {len(old_vocab)} tokens but the weights' embedding has "
                             f"{emb.shape[0]} rows: pass the vocabulary saved with these weights")
        if old_vocab != new_vocab:                 # `match_embeds` maps every duplicate `xxfake` to the last one
            weights = match_embeds(weights, old_vocab, new_vocab)
        encoder = self.model[0]
        emb_sz = encoder.emb_sz
        state = self.model.state_dict()
        expected = {k for k in state if not k.startswith(("0.context_proj.", "1.context_out."))}
        if set(weights) != expected:
            raise ValueError(f"these weights are not a plain AWD_LSTM language model of this architecture: "
                             f"missing {sorted(expected - set(weights))}, unexpected {sorted(set(weights) - expected)}")
        for k, w in weights.items():
            target = state[k]
            if k == "0.rnns.0.module.weight_ih_l0":     # plain input [emb] -> context input [emb ; ctx]
                if w.shape != (target.shape[0], emb_sz):
                    raise ValueError(f"{k} has shape {tuple(w.shape)}; this model needs {(target.shape[0], emb_sz)} "
                                     f"plus the context columns: use the same config as the plain model")
                target[:, :emb_sz] = w
                target[:, emb_sz:] = 0.
            elif w.shape != target.shape:
                raise ValueError(f"{k} has shape {tuple(w.shape)} but this model's is {tuple(target.shape)}: "
                                 "build the learner with the plain model's config (e.g. config='fastai')")
            else:
                target.copy_(w)
        # The output is exactly the plain model's: the context columns of the input weights are zero (above),
        # and so is the direct context-to-logits path. A context projection keeps its random start: were it
        # zero too, neither it nor those columns would ever get a gradient.
        for k in set(state) - expected:
            if k.startswith("1.context_out."):
                state[k].zero_()
        self.model.load_state_dict(state)
        self.model.reset()
        return self


@delegates(Learner.__init__)
def context_language_model_learner(dls, arch=ContextAWD_LSTM, config: Mapping | str | None = None,
                                   drop_mult: float = 1., pretrained: bool = False, metrics=None,
                                   context_dropout: float = 0., **kwargs) -> ContextLMLearner:
    """Like fastai's `language_model_learner`, for context loaders (`ContextTextDataLoaders`).

    `config=None` is a CPU-sized model (`context_lm_config`); `config='fastai'` is fastai's
    `awd_lstm_lm_config` (needed for `pretrained=True`, which downloads fastai's WikiText-103
    weights and loads them with `load_plain_lm`). Metrics default to accuracy and perplexity.
    `context_dropout` > 0 adds a `ContextDropout(p=context_dropout)` callback, which trains the
    model also at the mean context (for `generate(..., guidance=...)`)."""
    vocab = vocab_of(dls)
    if vocab is None:
        raise ValueError("these loaders have no vocabulary: build them with ContextTextDataLoaders.from_df, "
                         "or pass codec= (or vocab=) to the loaders")
    n_context = dls.train.context.shape[1]
    model = get_context_language_model(arch, len(vocab), n_context, config=config, drop_mult=drop_mult)
    metrics = [accuracy, Perplexity()] if metrics is None else metrics
    if context_dropout:
        kwargs["cbs"] = [*L(kwargs.get("cbs")), ContextDropout(context_dropout)]
    learn = ContextLMLearner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=metrics,
                             splitter=context_model_meta[arch]["split_lm"], **kwargs)
    if pretrained:
        enc, wt103 = learn.model[0], awd_lstm_lm_config
        if (enc.emb_sz, enc.n_hid, enc.n_layers) != (wt103["emb_sz"], wt103["n_hid"], wt103["n_layers"]):
            raise ValueError("pretrained=True loads fastai's WikiText-103 AWD_LSTM (emb 400, hidden 1152, 3 layers): "
                             "pass config='fastai'")
        from fastai.data.external import URLs, untar_data
        path = untar_data(URLs.WT103_FWD, c_key="model")
        learn.load_plain_lm(next(path.glob("*.pth")), next(path.glob("*.pkl")))
    return learn.add_cb(RaiseOnNaNCallback())      # a diverged fit stops with a clear error


def _check_counts(**counts) -> None:
    "`n_words`, `n_samples`...: whole numbers (n_samples >= 1, the others >= 0), with an error naming the argument."
    for name, v in counts.items():
        low = 1 if name in ("n_samples", "n_boot") else 0
        if isinstance(v, bool) or not isinstance(v, Integral) or v < low:
            raise ValueError(f"{name}={v!r} must be a whole number >= {low}")


def _group_labels(dl: ContextLanguageModelLoader, within) -> np.ndarray:
    "One group label per document of `dl`: a column of the loader's DataFrame, or labels given per document."
    n_docs = len(dl.context)
    if isinstance(within, str):
        items = getattr(getattr(dl, "dataset", None), "items", None)
        if not isinstance(items, pd.DataFrame):
            raise ValueError(f"within={within!r} names a column, but this loader was not built from a DataFrame "
                             f"(e.g. dls.test_dl(df)): pass one label per document instead, e.g. within=df[{within!r}]")
        if within not in items.columns:
            raise KeyError(f"within={within!r} is not a column of the loader's DataFrame; it has "
                           f"{[c for c in items.columns if c not in ('text', 'text_length')]}")
        labels = items[within].to_numpy()
    else:
        labels = np.asarray(list(within.to_numpy() if isinstance(within, pd.Series) else within), dtype=object)
    if len(labels) != n_docs:
        raise ValueError(f"within has {len(labels)} labels but the loader holds {n_docs} documents: "
                         "pass one label per document, in the loader's order")
    missing = pd.isna(labels)
    if missing.any():
        raise ValueError(f"within has missing labels for documents {np.flatnonzero(missing)[:5].tolist()}")
    return labels
