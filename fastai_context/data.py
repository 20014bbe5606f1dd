"""Language-model data where every token carries its document's context vector.

`ContextLanguageModelLoader` keeps fastai's `LMDataLoader` layout exactly (the corpus is
cut into `bs` contiguous streams, batch k holds tokens k*seq_len.. of each stream, so
row i of batch k+1 continues row i of batch k), but builds each batch with one
vectorized gather from a token stream and an aligned document-id stream laid out once
per epoch, instead of slicing `Chunks` item by item in Python.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastai.data.block import DataBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import ColReader, ColSplitter, RandomSplitter
from fastai.text.core import Tokenizer
from fastai.text.data import LMDataLoader, LMTensorText, Numericalize, TensorText, TextBlock
from fastai.torch_core import default_device, display_df
from fastcore.basics import chunked

from .context import ContextEncoder, check_columns, first_rows
from .text import is_blank_doc

__all__ = ["ContextLanguageModelLoader", "ContextTextDataLoaders"]


def _as_doc(o) -> torch.Tensor:
    "A numericalized document as a plain 1-d int64 tensor (datasets may return `(doc,)` tuples)."
    if isinstance(o, tuple):
        o = o[0]
    return torch.as_tensor(o).as_subclass(torch.Tensor).reshape(-1).long()


def _as_context(context, n_docs: int) -> torch.Tensor:
    "Validate `context` as a float `(n_docs, n_features)` tensor."
    if isinstance(context, pd.DataFrame):
        context = context.to_numpy(dtype=np.float32)
    context = torch.as_tensor(context, dtype=torch.float32)
    if context.ndim == 1:
        context = context[:, None]
    if context.ndim != 2:
        raise ValueError(f"context must have shape (n_docs, n_features), got {tuple(context.shape)}")
    if context.shape[0] != n_docs:
        raise ValueError(f"context has {context.shape[0]} rows but the dataset has {n_docs} documents: "
                         "pass one context row per document, in the dataset's order")
    bad = (~torch.isfinite(context)).any(1).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"context has NaN or inf in rows {first_rows(bad)}")
    return context


def _tokenized_df_ids(dataset) -> list[torch.Tensor] | None:
    """Fast path for fastai's `from_df` text datasets (pipeline ColReader -> Tokenizer -> Numericalize
    over an already tokenized DataFrame): numericalize all documents at once. None otherwise."""
    tls = getattr(dataset, "tls", None)
    tl = tls[0] if tls is not None and len(tls) == 1 else dataset
    fs = list(getattr(getattr(tl, "tfms", None), "fs", []))
    items = getattr(tl, "items", None)
    if not (len(fs) == 3 and isinstance(fs[0], ColReader) and isinstance(fs[1], Tokenizer)
            and isinstance(fs[2], Numericalize) and isinstance(items, pd.DataFrame)):
        return None
    cols = list(fs[0].cols)
    if len(cols) != 1 or cols[0] not in items.columns or getattr(fs[1], "mode", None) != "df":
        return None
    return _ids(items[cols[0]], fs[2].o2i)


def _ids(token_lists, o2i) -> list[torch.Tensor]:
    "Documents through a fitted vocabulary, all at once (what `Numericalize.encodes` does per item)."
    return [torch.tensor([o2i[t] for t in toks], dtype=torch.long) for toks in token_lists]


class ContextLanguageModelLoader(LMDataLoader):
    """An `LMDataLoader` whose batches are `(x, ctx, y)`: `ctx[i, t]` is the context row of
    the document that token `x[i, t]` came from.

    `context` holds one row per document of `dataset`. `numericalized`, optional, gives the
    dataset's documents as id tensors, to skip fastai's per-item pipeline at construction. With `world_size > 1` the corpus is
    cut into `bs * world_size` streams from one per-epoch document order shared by all
    ranks (set `shuffle_seed`), and rank `r` serves streams `r*bs .. (r+1)*bs - 1`.
    """

    def __init__(self, dataset, context, lens=None, cache=2, bs=64, seq_len=72, num_workers=0,
                 context_encoder: ContextEncoder | None = None, rank: int = 0, world_size: int = 1,
                 shuffle_seed: int | None = None, vocab: Sequence[str] | None = None,
                 numericalized: Sequence[torch.Tensor] | None = None, **kwargs):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        if world_size > 1 and kwargs.get("shuffle", False) and shuffle_seed is None:
            raise ValueError("with world_size > 1 pass shuffle_seed so that all ranks share one document order")
        if numericalized is not None and len(numericalized) != len(dataset):
            raise ValueError(f"numericalized has {len(numericalized)} documents, the dataset {len(dataset)}")
        # `numericalized` (the dataset's documents as id tensors) skips fastai's per-item pipeline.
        if numericalized is None:
            numericalized = _tokenized_df_ids(dataset)
        docs = [_as_doc(d) for d in numericalized] if numericalized is not None \
            else [_as_doc(dataset[i]) for i in range(len(dataset))]
        self.context = _as_context(context, len(docs))
        self.context_encoder, self.rank, self.world_size, self.shuffle_seed = context_encoder, rank, world_size, shuffle_seed
        self._epoch = 0
        if vocab is not None:     # otherwise `self.vocab` is the dataset's (fastai's GetAttr)
            self.vocab = list(vocab)
        lens = [len(d) for d in docs] if lens is None else list(lens)
        self._doc_lens = torch.tensor(lens, dtype=torch.long)
        self._tokens = torch.cat(docs) if docs else torch.zeros(0, dtype=torch.long)
        self._doc_starts = torch.cumsum(self._doc_lens, 0) - self._doc_lens
        super().__init__(dataset, lens=lens, cache=cache, bs=bs, seq_len=seq_len, num_workers=num_workers, **kwargs)
        # Same arithmetic as LMDataLoader, over the bs * world_size streams of all ranks.
        n_streams = bs * world_size
        corpus = max(sum(lens) - 1, 0) // n_streams * n_streams
        self.bl = corpus // n_streams
        if docs and self.bl == 0:
            raise ValueError(f"the corpus has {sum(lens)} tokens, too few for {n_streams} streams "
                             f"(bs={bs} x world_size={world_size}): lower bs")
        self.n_batches = self.bl // seq_len + int(self.bl % seq_len != 0)
        self.last_len = self.bl - (self.n_batches - 1) * seq_len
        self.n = self.n_batches * bs

    @property
    def n_inp(self) -> int:
        "Two inputs, so fastai's `Learner` calls `model(x, ctx)` and the loss gets only `y`."
        return 2

    # ---------------------------------------------------------------- streams
    def make_chunks(self):
        "Lay out this epoch's token stream and its document ids, in the current document order."
        order = torch.as_tensor(list(self.items.idxs), dtype=torch.long)
        lens = self._doc_lens[order]
        ends = torch.cumsum(lens, 0)
        shift = self._doc_starts[order] - (ends - lens)   # stream position -> source position
        self._stream = self._tokens[torch.arange(int(ends[-1]) if len(ends) else 0) + shift.repeat_interleave(lens)]
        self._stream_doc = order.repeat_interleave(lens)

    def shuffle_fn(self, idxs):
        "Shuffle documents (not items) once per epoch, like `LMDataLoader`, then re-lay the streams."
        if self.shuffle_seed is None:
            self.items.shuffle()                      # process-global `random`, as fastai does
        else:                                          # shared by all ranks
            random.Random(self.shuffle_seed * 100_003 + self._epoch).shuffle(self.items.idxs)
        self._epoch += 1
        self.make_chunks()
        return idxs

    def _rows(self, k: int, rows: Sequence[int] | torch.Tensor) -> tuple:
        "Batch `k` of this rank's streams `rows`: (x, ctx, y)."
        sl = self.last_len if k == self.n_batches - 1 else self.seq_len
        rows = torch.as_tensor(rows, dtype=torch.long) + self.rank * self.bs
        idx = (rows * self.bl + k * self.seq_len)[:, None] + torch.arange(sl + 1)
        txt = self._stream[idx]
        ctx = self.context[self._stream_doc[idx[:, :-1]]]
        return LMTensorText(txt[:, :-1]), ctx, TensorText(txt[:, 1:])

    def create_item(self, seq):
        if seq is None:
            seq = 0
        if seq >= self.n:
            raise IndexError
        x, ctx, y = self._rows(seq // self.bs, [seq % self.bs])
        return x[0], ctx[0], y[0]

    def create_batches(self, samps):
        "One vectorized gather per batch; `samps` are this worker's item indices, whole batches at a time."
        for chunk in chunked(samps, self.bs):
            k = chunk[0] // self.bs
            yield self._rows(k, [s % self.bs for s in chunk])

    def new(self, dataset=None, context=None, seq_len=None, **kwargs):
        "Like `LMDataLoader.new`; a new `dataset` needs its own `context` (except an empty one)."
        if dataset is None:
            context = self.context if context is None else context
            kwargs.setdefault("numericalized", list(torch.split(self._tokens, self._doc_lens.tolist())))
        elif context is None:
            if len(dataset):
                raise ValueError("new(dataset=...) needs the matching context=: one row per document")
            context = torch.zeros(0, self.context.shape[1])
        for k in ("context_encoder", "rank", "world_size", "shuffle_seed"):
            kwargs.setdefault(k, getattr(self, k))
        kwargs.setdefault("vocab", getattr(self, "vocab", None))
        return super().new(dataset=dataset, seq_len=seq_len, context=context, **kwargs)

    # ------------------------------------------------------------------- show
    @property
    def feature_names(self) -> list[str]:
        if self.context_encoder is not None:
            return self.context_encoder.columns
        return [f"context_{i}" for i in range(self.context.shape[1])]

    def _context_values(self, rows: torch.Tensor) -> list[dict]:
        "Decoded context values of a row's documents, in order of appearance."
        vals = []
        prev = None
        for r in rows:
            if prev is not None and torch.equal(r, prev):
                continue
            prev = r
            vals.append(self.context_encoder.decode(r) if self.context_encoder is not None
                        else dict(zip(self.feature_names, r.tolist())))
        return vals

    def show_batch(self, b=None, max_n: int = 9, ctxs=None, show: bool = True, unique: bool = False,
                   trunc_at: int = 150, **kwargs):
        """Display text, the context values by feature name (one per document the row spans), and the target;
        with `show=False` return that table as a DataFrame instead (fastai's behaviour, so a notebook shows it once)."""
        if b is None:
            b = self.one_batch()
        x, ctx, y = (t.detach().cpu() for t in b)
        vocab = getattr(self, "vocab", None)
        if vocab is not None and len(vocab) and isinstance(vocab[0], (list, tuple)):
            vocab = vocab[0]

        def text(ids):
            toks = [vocab[i] for i in ids.tolist()] if vocab is not None else [str(i) for i in ids.tolist()]
            s = " ".join(toks)
            return s if trunc_at is None else s[:trunc_at]

        records = []
        for i in range(min(max_n, len(x))):
            rec = {"text": text(x[i])}
            docs = self._context_values(ctx[i])
            for name in self.feature_names:
                v = [d[name] for d in docs]
                rec[name] = " | ".join(f"{u:.3g}" if isinstance(u, float) else str(u) for u in v)
            rec["text_"] = text(y[i])
            records.append(rec)
        df = pd.DataFrame(records)
        if not show:             # as fastai: `show=False` returns what would be shown, `show=True` only shows it
            return df
        display_df(df)


def check_texts(df: pd.DataFrame, text_col: str) -> None:
    "Missing or non-string texts get a clear error here, not a TypeError deep inside fastai."
    s = df[text_col]
    bad = s.index[s.isna()]
    if len(bad):
        raise ValueError(f"text column {text_col!r} has missing (NaN) values in rows {first_rows(bad)}; "
                         "drop or fill them (note: pandas keeps NaN through astype(str))")
    bad = s.index[~s.map(lambda v: isinstance(v, str))]
    if len(bad):
        raise ValueError(f"text column {text_col!r} has non-string values in rows {first_rows(bad)} "
                         f"(e.g. {s.loc[bad[0]]!r}); convert them with df[{text_col!r}].astype(str)")


def _pipeline_tfm(dataset, cls):
    "The fitted fastai transform of type `cls` (Tokenizer, Numericalize) in a text dataset's pipeline."
    tls = getattr(dataset, "tls", [dataset])
    for f in tls[0].tfms.fs:
        if isinstance(f, cls):
            return f
    raise AttributeError(f"no {cls.__name__} in the dataset's pipeline")


class ContextTextDataLoaders(DataLoaders):
    "fastai `DataLoaders` of `ContextLanguageModelLoader`s, with the fitted `context_encoder`."

    @property
    def context_encoder(self) -> ContextEncoder:
        return self.train.context_encoder

    @classmethod
    def from_df(cls, df: pd.DataFrame, text_col: str, context_cols: str | Sequence[str], valid_pct: float = 0.1,
                valid_col: str | None = None, bs: int = 64, seq_len: int = 72, seed: int | None = None,
                fill: Any = None, text_vocab: Sequence[str] | None = None, tok_tfm=None, min_freq: int = 3,
                max_vocab: int = 60000, path: str = ".", device=None, **kwargs) -> "ContextTextDataLoaders":
        """Tokenize `df[text_col]` with fastai, numericalize with a training-split vocabulary, and
        encode `context_cols` with a `ContextEncoder` fitted on the training split.

        `fill` is the policy for missing numeric context: None (raise), 'mean', 'zero', a number,
        or 'drop' (drop those rows). Extra `kwargs` go to both loaders (e.g. `num_workers`)."""
        context_cols = [context_cols] if isinstance(context_cols, str) else list(context_cols)
        check_columns(df, [text_col], "text column")
        check_columns(df, context_cols, "context column")
        if valid_col is not None:
            check_columns(df, [valid_col], "valid column")
        if fill == "drop":
            df = ContextEncoder.drop_missing(df, context_cols)
        check_texts(df, text_col)
        splitter = RandomSplitter(valid_pct, seed=seed) if valid_col is None else ColSplitter(valid_col)
        splits = splitter(df)
        if len(splits[0]) == 0 or len(splits[1]) == 0:
            raise ValueError(f"the split left {len(splits[0])} training and {len(splits[1])} validation rows; "
                             "both need at least one document")
        block = TextBlock.from_df(text_col, vocab=text_vocab, is_lm=True, seq_len=seq_len, tok=tok_tfm,
                                  min_freq=min_freq, max_vocab=max_vocab)
        dblock = DataBlock(blocks=[block], get_x=ColReader("text"), splitter=lambda _: splits)
        dsets = dblock.datasets(df)
        blank = [i for i, toks in enumerate(dsets.items["text"]) if is_blank_doc(toks)]
        if blank:
            rows = df.index[blank]
            raise ValueError(f"text column {text_col!r} is empty after tokenization in rows {first_rows(rows)}; "
                             "drop those rows")
        train_df, valid_df = df.iloc[splits[0]], df.iloc[splits[1]]
        encoder = ContextEncoder.fit(train_df, context_cols, fill=fill)
        device = default_device() if device is None else device
        common = dict(bs=bs, seq_len=seq_len, context_encoder=encoder, device=device, **kwargs)
        train = ContextLanguageModelLoader(dsets.train, encoder.encode(train_df), shuffle=True, **common)
        valid = ContextLanguageModelLoader(dsets.valid, encoder.encode(valid_df), shuffle=False, **common)
        return cls(train, valid, path=path, device=device)

    def test_dl(self, df: pd.DataFrame, text_col: str | None = None, **kwargs) -> ContextLanguageModelLoader:
        "A loader over new documents of `df`, tokenized, numericalized and context-encoded as in training."
        tok = _pipeline_tfm(self.train.dataset, Tokenizer)
        cols = tok.text_cols
        text_col = text_col or (cols if isinstance(cols, str) else cols[0])
        check_columns(df, [text_col], "text column")
        check_texts(df, text_col)
        docs = _ids([tok(t) for t in df[text_col]], _pipeline_tfm(self.train.dataset, Numericalize).o2i)
        return self.valid.new(docs, context=self.context_encoder.encode(df), shuffle=False, **kwargs)
