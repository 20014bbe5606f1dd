"""Everything that depends on fastai's private details, in one file.

fastai's public API (DataLoaders, Learner, callbacks, `AWD_LSTM`, `Tokenizer`, `Numericalize`) is
used everywhere else; what follows relies on names or behaviour fastai does not promise to keep.
Each item says what it relies on and what breaks if fastai changes it, so a fastai upgrade is
checked here (the tests named beside each item exercise it). No other module imports a private
name from fastai or from another module of this package.
"""
from __future__ import annotations

import inspect
import sys
from collections import Counter, defaultdict
from itertools import chain, count

import numpy as np
import pandas as pd
from fastai.callback.core import Callback
from fastai.data.core import Pipeline
from fastai.data.transforms import ColReader
from fastai.distributed import DistributedTrainer
from fastai.learner import Learner
from fastai.text import core as text_core
from fastai.text.core import Tokenizer, _join_texts, defaults
from fastai.text.data import Numericalize
from fastai.text.models.awdlstm import AWD_LSTM
from fastcore.basics import ifnone, noop
from fastcore.foundation import L
from torch import nn

from .text import flat_ids

__all__ = ["text_pipeline", "CountingTokenizer", "awd_lstm_layer", "lstm_eval_weight_hh", "HookedDistributedTrainer",
           "smooth_loss_state", "load_smooth_loss_state", "close_csv_logger", "in_lr_find", "is_noop_hook",
           "calling_learner", "reads_one_input"]


# ------------------------------------------------------------------ fastai's text pipeline
def text_pipeline(dataset) -> tuple[Tokenizer, Numericalize, pd.Series | None]:
    """The fitted `Tokenizer` and `Numericalize` of a fastai `TextBlock.from_df` dataset, and its
    tokenized text column (one token list per document; None when the dataset holds no DataFrame,
    e.g. the empty one `learn.export` saves).

    Relies on: `Datasets.tls[0].tfms.fs` being `[ColReader, Tokenizer, Numericalize]` (fasttransform's
    `Pipeline.fs`), `Tokenizer(mode='df')` having tokenized the DataFrame `items` in place into the
    `ColReader`'s column. If fastai changes that shape this raises `RuntimeError` (the codec cannot be
    built from the pipeline; `ContextTextDataLoaders.from_df` fails loudly rather than going slow).
    Used once per `from_df`, and to read learners exported before `TextCodec` existed
    (tests/lm/test_data.py)."""
    tls = getattr(dataset, "tls", None)
    tl = tls[0] if tls is not None and len(tls) == 1 else dataset
    fs = list(getattr(getattr(tl, "tfms", None), "fs", []))
    items = getattr(tl, "items", None)
    ok = (len(fs) == 3 and isinstance(fs[0], ColReader) and isinstance(fs[1], Tokenizer)
          and isinstance(fs[2], Numericalize) and len(fs[0].cols) == 1 and getattr(fs[1], "mode", None) == "df")
    if ok and isinstance(items, pd.DataFrame):
        ok = fs[0].cols[0] in items.columns
    elif ok:
        return fs[1], fs[2], None
    if not ok:
        raise RuntimeError("fastai's TextBlock pipeline is not ColReader -> Tokenizer -> Numericalize over a tokenized "
                           "DataFrame: fastai_context does not support this fastai version (see fastai_context/compat.py)")
    return fs[1], fs[2], items[fs[0].cols[0]]


class CountingTokenizer(Tokenizer):
    """fastai's `Tokenizer` for a DataFrame (`CountingTokenizer.from_df`, as `Tokenizer.from_df`) whose
    setup numericalizes in the pass that counts the tokens.

    fastai's `tokenize_df` counts the tokenized corpus with `Counter(outputs.concat())`, and the
    language-model loader must then look every token up again in the vocabulary. Here one C-level pass
    gives each token a provisional id in order of first appearance (`defaultdict(count().__next__)`);
    `np.bincount` of those ids is the count, and once `Numericalize` has fitted the vocabulary,
    `ids(o2i)` maps the provisional ids through it with array lookups, in place. At 20M tokens this saves
    about 3 s of `from_df` (docs/benchmarks.md). The tokenized DataFrame, its `text_length` column and
    the `Counter` (same counts, same order of first appearance, hence the same vocabulary) are
    exactly `tokenize_df`'s (tests/lm/test_data.py compares them).

    Relies on: `Tokenizer.setups` in 'df' mode being `tokenize_df(dsets.items, text_cols,
    rules=self.rules, **self.kwargs)` then setting `counter` and `lengths`; `tokenize_df`'s steps
    (`_join_texts`, `fastai.text.core.parallel_tokenize`'s unordered `(idx, tokens)` pairs, the other
    columns kept) and its keyword arguments (`n_workers, mark_fields, tok, tok_text_col`)."""

    def setups(self, dsets):
        if self.mode != "df" or not isinstance(dsets.items, pd.DataFrame):
            return          # as fastai's: only a DataFrame is tokenized at setup
        dsets.items, count_ = self._tokenize_df(dsets.items, self.text_cols, rules=self.rules, **self.kwargs)
        if self.counter is None:
            self.counter = count_
        if self.lengths is None:
            self.lengths = dsets.items[f"{self.tok_text_col}_length"].values
        return dsets

    def _tokenize_df(self, df: pd.DataFrame, text_cols, n_workers: int = defaults.cpus, rules=None,
                     mark_fields: bool | None = None, tok=None, tok_text_col: str = "text"):
        text_cols = [df.columns[c] if isinstance(c, int) else c for c in L(text_cols)]
        mark_fields = len(text_cols) > 1 if mark_fields is None else mark_fields
        texts = _join_texts(df[text_cols], mark_fields=mark_fields)
        rules = L(ifnone(rules, defaults.text_proc_rules.copy()))
        pairs = sorted(text_core.parallel_tokenize(texts, tok, rules, n_workers=n_workers))    # (idx, tokens), by idx
        outputs = L(toks for _, toks in pairs)
        del pairs
        res = df[df.columns[~df.columns.isin(text_cols)]].copy()
        res[tok_text_col] = outputs
        lists = [t.items if isinstance(t, L) else t for t in outputs]     # plain lists: C-level len and iteration
        lens = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))        # (n_docs,)
        res[f"{tok_text_col}_length"] = lens
        first_seen = defaultdict(count().__next__)          # token -> provisional id, in order of first appearance
        n_tokens = int(lens.sum())
        kind = np.int32 if n_tokens <= np.iinfo(np.int32).max else np.int64     # at most one new id per token
        ids = np.fromiter(map(first_seen.__getitem__, chain.from_iterable(lists)), dtype=kind,
                          count=n_tokens)                   # (n_tokens,)
        step = 1 << 20          # np.bincount casts to int64: a million ids at a time, not a copy of the corpus
        counts = sum((np.bincount(ids[i:i + step], minlength=len(first_seen)) for i in range(0, n_tokens, step)),
                     np.zeros(len(first_seen), dtype=np.int64))
        self._ids = (ids, lens, list(first_seen))
        return res, Counter(dict(zip(first_seen, counts.tolist())))

    def ids(self, o2i: dict, unk: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
        """The tokenized DataFrame's tokens through the vocabulary `o2i` (token -> id; missing tokens get
        `unk`), all documents in the DataFrame's order: flat ids `(n_tokens,)` (int32 while the vocabulary
        fits, else int64) and lengths `(n_docs,)`; None when `setups` did not tokenize a DataFrame.
        Hands the arrays over once (they are not kept, so an exported learner does not carry them)."""
        if getattr(self, "_ids", None) is None:
            return None
        ids, lens, tokens = self._ids
        self._ids = None
        to_vocab = flat_ids([tokens], o2i, unk)[0]              # (n_distinct,) each provisional id's vocabulary id
        if ids.dtype != to_vocab.dtype:
            return to_vocab[ids], lens
        for i in range(0, len(ids), 1 << 20):       # in place, a million at a time: no second copy of the corpus
            ids[i:i + (1 << 20)] = to_vocab[ids[i:i + (1 << 20)]]
        return ids, lens


def is_noop_hook(f) -> bool:
    """Whether a `TfmdDL` hook (`after_item`, `before_batch`) does nothing: an empty fasttransform
    `Pipeline` (its `fs` list) or fastcore's `noop`. Relies on `Pipeline.fs`; if it goes, every hook
    looks set and `ContextLanguageModelLoader` refuses to build (loudly, never silently skipping one)."""
    return len(f.fs) == 0 if isinstance(f, Pipeline) else f is noop


# ------------------------------------------------------------------ AWD-LSTM internals
def awd_lstm_layer(awd: AWD_LSTM, n_in: int, n_out: int, bidir: bool, weight_p: float, l: int) -> nn.Module:
    """fastai's weight-dropped LSTM layer `l` (`AWD_LSTM._one_rnn`).

    Relies on: `AWD_LSTM.__init__` building its layers through the overridable `_one_rnn(n_in, n_out,
    bidir, weight_p, l)`, and calling it from inside `__init__`: so `ContextAWD_LSTM` must set the
    attributes its override reads (`context_sz`, `context_layers`) BEFORE calling `AWD_LSTM.__init__`.
    If fastai renames the hook, the context columns are silently not added to the input width and
    the first forward fails with a shape error (tests/lm/test_model.py checks the widths)."""
    return AWD_LSTM._one_rnn(awd, n_in, n_out, bidir, weight_p, l)


def lstm_eval_weight_hh(rnn: nn.Module):
    """The hidden-to-hidden weight an `AWD_LSTM` layer uses at evaluation time.

    Relies on: fastai's `WeightDropout` keeping the undropped weight as `<name>_raw`
    (`weight_hh_l0_raw`) and the wrapped `nn.LSTM` as `.module`. Without `_raw` (a plain LSTM) the
    module's own weight is the one. If fastai renames it, generation would use a stale or dropped
    weight: tests/lm/test_learner.py compares `ContextLSTMSampler` with the model's forward."""
    return getattr(rnn, "weight_hh_l0_raw", rnn.module.weight_hh_l0)


# ------------------------------------------------------------------ distributed training
class HookedDistributedTrainer(DistributedTrainer):
    """fastai's `DistributedTrainer` with its private per-loader hook made public: override
    `wrap_dl(dl)` (fastai's default wraps it in a `DistributedDL`).

    Relies on: `DistributedTrainer` routing every loader through `_wrap_dl` in `before_fit`,
    `before_train` and `before_validate`. If fastai renames it, the context loader gets wrapped in
    `DistributedDL` (no per-rank streams): tests/workflow/test_distributed.py compares ranks' batches."""

    def _wrap_dl(self, dl):
        return self.wrap_dl(dl)

    def wrap_dl(self, dl):
        "fastai's wrapping (a `DistributedDL`, unless it already is one)."
        return DistributedTrainer._wrap_dl(self, dl)


# ------------------------------------------------------------------ Recorder and loggers
def smooth_loss_state(smooth) -> dict:
    """The state of the Recorder's `smooth_loss` (fastai's `AvgSmoothLoss`): its `state_dict()` if a
    future fastai gives it one, else its attributes (`beta`, `count`, `val`). Relies on those
    attributes being all its state; if fastai adds one, a resumed run's smoothed loss could differ
    from an uninterrupted one (tests/workflow/test_resume.py compares them)."""
    return smooth.state_dict() if callable(getattr(type(smooth), "state_dict", None)) else dict(vars(smooth))


def load_smooth_loss_state(smooth, state: dict) -> None:
    "Restore what `smooth_loss_state` saved."
    if callable(getattr(type(smooth), "load_state_dict", None)):
        smooth.load_state_dict(state)
    else:
        vars(smooth).update(state)


def close_csv_logger(cb: Callback) -> None:
    """End a `CSVLogger`'s fit early (as its `after_fit` does: close its file, give the learner its
    previous `logger` back). Relies on `CSVLogger.after_fit` doing just that; used when a refused
    resume stops `fit` before fastai's own `after_fit` runs (tests/workflow/test_resume.py)."""
    cb.after_fit()


def in_lr_find(learn) -> bool:
    "Whether `learn` runs fastai's `lr_find`: relies on `LRFinder` setting `learn.lr_finder` while it runs."
    return hasattr(learn, "lr_finder")


def calling_learner(max_depth: int = 12) -> Learner | None:
    """The fastai `Learner` whose loop is iterating a loader right now, or None: the `self` of the
    nearest `Learner` method up the call stack. Relies on fastai iterating its loaders inside
    `Learner` methods (`all_batches`: `for o in enumerate(self.dl)`); if that changes, this returns
    None and the check it feeds (the loaders' "this model reads no context") is skipped, nothing
    else breaks (tests/lm/test_learner.py::test_fastai_language_model_learner_is_refused)."""
    frame = sys._getframe(1)
    for _ in range(max_depth):
        frame = frame.f_back
        if frame is None:
            return None
        obj = frame.f_locals.get("self")
        if isinstance(obj, Learner):
            return obj
    return None


def reads_one_input(model: nn.Module) -> bool:
    "Whether `model(...)` takes exactly one positional input (fastai's `SequentialRNN`, any `nn.Sequential`)."
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    kinds = [p.kind for p in params]
    positional = [k for k in kinds if k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return inspect.Parameter.VAR_POSITIONAL not in kinds and len(positional) == 1
