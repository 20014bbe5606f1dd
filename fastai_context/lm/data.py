"""Language-model data where every token carries its document's context vector.

`ContextLanguageModelLoader` keeps fastai's `LMDataLoader` layout exactly (the corpus is
cut into `bs` contiguous streams, batch k holds tokens k*seq_len.. of each stream, so
row i of batch k+1 continues row i of batch k), but keeps the documents as one flat token
array (`TokenDocuments`) and builds each batch with one vectorized gather from it, instead
of slicing `Chunks` item by item in Python.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import islice
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastai.data.block import DataBlock
from fastai.data.core import DataLoaders, TfmdDL
from fastai.data.transforms import ColReader, ColSplitter, RandomSplitter
from fastai.text.data import LMDataLoader, LMTensorText, TensorText, TextBlock
from fastai.torch_core import default_device, display_df
from fastcore.xtras import ReindexCollection

from ..compat import CountingTokenizer, calling_learner, is_noop_hook, reads_one_input, text_pipeline
from ..context import ContextEncoder, check_columns, first_rows
from ..workflow.runs import atomic_path
from ..text import SPECIAL_TOKENS, UNK, TextCodec, blank_docs, flat_ids, vocab_of

__all__ = ["ContextLanguageModelLoader", "ContextTextDataLoaders", "TokenDocuments"]


def _positive_int(name: str, v) -> int:
    "A batch-size-like argument as an int >= 1, or a clear error naming it."
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _as_context(context, n_docs: int) -> torch.Tensor:
    "Validate `context` as a float `(n_docs, n_features)` tensor."
    if isinstance(context, pd.DataFrame):
        bad = [c for c in context.columns if not pd.api.types.is_numeric_dtype(context[c].dtype)]
        if bad:
            raise ValueError(f"context columns {bad} are not numeric: encode them first "
                             "(ContextEncoder.fit(df, cols).encode(df), or use ContextTextDataLoaders.from_df)")
        context = context.to_numpy(dtype=np.float32)
    if not isinstance(context, torch.Tensor):
        arr = np.asarray(context)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"context must hold numbers, got an array of {arr.dtype} (e.g. {arr.flat[0]!r} if any): "
                             "encode text or categories first (ContextEncoder, or ContextTextDataLoaders.from_df)")
        context = torch.from_numpy(arr)
    context = context.float()
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


class TokenDocuments(Sequence):
    """Numericalized documents held as one flat token array plus per-document lengths.

    A list of 2.7M small tensors costs hundreds of bytes of object overhead per document; this
    costs 4 bytes per token (int32 while ids fit, int64 otherwise) and 16 per document. `tokens`
    may be a `numpy.memmap` (see `save`/`load`) for corpora larger than memory. Indexing gives
    document `i` as a 1-d int64 tensor, like the list of tensors it replaces.
    """

    def __init__(self, tokens: np.ndarray, lens: np.ndarray):
        self.tokens = tokens                                   # (n_tokens,) int32 or int64
        self.lens = np.asarray(lens, dtype=np.int64)           # (n_docs,)
        self.ends = np.cumsum(self.lens)                       # (n_docs,) one past each document's last token
        n = int(self.ends[-1]) if len(self.ends) else 0
        if n != len(tokens):
            raise ValueError(f"document lengths add up to {n} tokens but the token array holds {len(tokens)}")

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.lens)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"document {i} of {len(self)}")
        end = int(self.ends[i])
        return torch.from_numpy(np.asarray(self.tokens[end - int(self.lens[i]):end], dtype=np.int64))

    @classmethod
    def from_docs(cls, docs: Sequence, chunk_tokens: int = 1 << 22) -> "TokenDocuments":
        """From any sequence of id documents (tensors, arrays, lists, or fastai's `(doc,)` tuples),
        concatenated a few million tokens at a time, so that no int64 copy of the corpus is made."""
        if isinstance(docs, (list, tuple)) and all(isinstance(d, torch.Tensor) and d.dim() == 1 for d in docs):
            tensors = docs                 # the common case: C-level lengths, no per-document Python work
        else:
            tensors = []
            for i in range(len(docs)):     # a dataset: each item once (through its own pipeline)
                d = docs[i]
                tensors.append(torch.as_tensor(d[0] if isinstance(d, tuple) else d).reshape(-1))
        lens = np.fromiter(map(torch.Tensor.numel, tensors), dtype=np.int64, count=len(tensors))
        ends = np.cumsum(lens)
        out = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.int32)     # filled a chunk at a time
        cuts = np.searchsorted(ends, np.arange(chunk_tokens, len(out), chunk_tokens))
        for a, b in zip([0, *cuts], [*cuts, len(tensors)]):
            if a == b:
                continue
            part = tensors[a:b]
            flat = torch.cat(part) if len(part) > 1 else part[0]       # (chunk,) at most ~chunk_tokens ids
            if flat.is_floating_point() or flat.is_complex() or flat.dtype == torch.bool:
                i = a + next(j for j, d in enumerate(part) if d.dtype == flat.dtype)
                raise ValueError(f"document {i} holds {flat.dtype} values: documents must be integer token ids")
            if len(flat) and int(flat.min()) < 0:
                i = a + next(j for j, d in enumerate(part) if len(d) and int(d.min()) < 0)
                raise ValueError(f"document {i} holds negative token ids")
            if len(flat) and int(flat.max()) > np.iinfo(out.dtype).max:     # a vocabulary beyond 2**31 ids
                out = out.astype(np.int64)
            start = int(ends[a] - lens[a])
            out[start:start + len(flat)] = flat.numpy()
        return cls(out, lens)

    def blank(self, codec: TextCodec) -> np.ndarray:
        "Indices of the documents that hold nothing but special tokens of `codec`'s vocabulary (`text.blank_docs`)."
        special = [codec.o2i[t] for t in SPECIAL_TOKENS if t != UNK and t in codec.o2i]
        return blank_docs(self.tokens, self.lens, special)

    def take(self, idx: Sequence[int], chunk_tokens: int = 1 << 18) -> "TokenDocuments":
        """The documents `idx`, in that order, as a new `TokenDocuments` (e.g. a split's documents),
        gathered a quarter of a million tokens at a time so that the index arrays stay small."""
        idx = np.asarray(idx, dtype=np.int64)
        lens = self.lens[idx]                                   # (n_out,)
        starts = self.ends[idx] - lens                          # (n_out,) where each one starts in self.tokens
        out_ends = np.cumsum(lens)
        out = np.empty(int(out_ends[-1]) if len(out_ends) else 0, dtype=self.tokens.dtype)
        cuts = np.searchsorted(out_ends, np.arange(chunk_tokens, len(out), chunk_tokens))
        for a, b in zip([0, *cuts], [*cuts, len(idx)]):
            if a == b:
                continue
            n = lens[a:b]
            o0 = int(out_ends[a] - lens[a])
            # one source position per output token: the document's start, then +1 per token
            pos = np.repeat(starts[a:b] - (out_ends[a:b] - n - o0), n) + np.arange(int(n.sum()))
            out[o0:o0 + len(pos)] = self.tokens[pos]
        return type(self)(out, lens)

    @classmethod
    def from_token_lists(cls, token_lists: Sequence[Sequence[str]], o2i: dict | TextCodec) -> "TokenDocuments":
        """Tokenized documents through a fitted vocabulary (a `TextCodec`, or a token -> id map such as
        `Numericalize.o2i`), all at once (`text.flat_ids`); unknown tokens get `xxunk`'s id, as in fastai."""
        if isinstance(o2i, TextCodec):
            return cls(*o2i.numericalize(token_lists))
        return cls(*flat_ids(token_lists, o2i))

    def save(self, folder) -> Path:
        "Write `tokens.npy` and `lens.npy` into `folder` (made if needed), to `load` later."
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "tokens.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(self.tokens))
        with atomic_path(folder / "lens.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, self.lens)
        return folder

    @classmethod
    def load(cls, folder, mmap: bool = True) -> "TokenDocuments":
        "Read what `save` wrote; with `mmap` the tokens stay on disk and pages load as batches need them."
        folder = Path(folder)
        for name in ("tokens.npy", "lens.npy"):
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder / name} not found: write it with TokenDocuments.save")
        return cls(np.load(folder / "tokens.npy", mmap_mode="r" if mmap else None), np.load(folder / "lens.npy"))


def codec_from_pipeline(tokenizer, numericalize) -> TextCodec:
    "The `TextCodec` of a fastai text pipeline's fitted `Tokenizer` and `Numericalize`."
    cols = getattr(tokenizer, "text_cols", None)
    return TextCodec(numericalize.vocab, tokenizer, text_col=cols if isinstance(cols, str) else cols[0] if cols else None)


class ContextLanguageModelLoader(LMDataLoader):
    """An `LMDataLoader` whose batches are `(x, ctx, y)`: `ctx[i, t]` is the context row of
    the document that token `x[i, t]` came from.

    `context` holds one row per document of `dataset`. `numericalized`, optional, gives the
    dataset's documents as id tensors or a `TokenDocuments`, to skip fastai's per-item pipeline
    at construction; `dataset` may itself be a `TokenDocuments`. With `world_size > 1` the corpus
    is cut into `bs * world_size` streams from one per-epoch document order shared by all ranks
    (set `shuffle_seed`), and rank `r` serves streams `r*bs .. (r+1)*bs - 1`. `fastai_order=False`
    shuffles with numpy instead of Python's `random.shuffle` (see `shuffle_fn`). `codec`, the
    `TextCodec` the documents were numericalized with, travels with the loader (`new()` keeps it) for
    decoding and new texts; a fastai text dataset given without one gets the codec of its pipeline.

    Layout (fastai's, `bs=3`): this epoch's documents, in order, form one stream of `N` tokens,
    cut into `bs` rows of `bl = (N-1)//bs` tokens; batch `k` is columns `k*seq_len ..` of every row,
    so row i of batch k+1 continues row i of batch k:

        stream  d7 d7 d7 d2 d2 | d9 d9 d9 d9 d4 | d4 d1 d1 d1 d5 |
        rows    row 0          | row 1          | row 2          |

    Memory: one flat token array (`TokenDocuments`, shared with `new()` loaders) plus, per epoch,
    three int64 arrays over documents (the order, where each placed document ends in the stream,
    and its offset into the token array). Nothing per token is built per epoch: batches find the
    document of each position from the documents' stream ends (`_span`), 16 batches at a time.
    `lens` (checked against the documents) and `cache` (unused) are `LMDataLoader`'s arguments.
    """

    def __init__(self, dataset, context, lens=None, cache=2, bs=64, seq_len=72, num_workers=0,
                 context_encoder: ContextEncoder | None = None, rank: int = 0, world_size: int = 1,
                 shuffle_seed: int | None = None, vocab: Sequence[str] | None = None,
                 numericalized: Sequence[torch.Tensor] | TokenDocuments | None = None, fastai_order: bool = True,
                 codec: TextCodec | None = None, **kwargs):
        bs, seq_len, world_size = _positive_int("bs", bs), _positive_int("seq_len", seq_len), \
            _positive_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        if world_size > 1 and kwargs.get("shuffle", False) and shuffle_seed is None:
            raise ValueError("with world_size > 1 pass shuffle_seed so that all ranks share one document order")
        if numericalized is not None and len(numericalized) != len(dataset):
            raise ValueError(f"numericalized has {len(numericalized)} documents, the dataset {len(dataset)}")
        if numericalized is None and not isinstance(dataset, TokenDocuments):
            try:                        # a fastai text dataset: its token lists, numericalized all at once
                tok, num, token_lists = text_pipeline(dataset)
            except RuntimeError:
                pass
            else:
                codec = codec_from_pipeline(tok, num) if codec is None else codec
                if token_lists is not None:
                    numericalized = TokenDocuments.from_token_lists(token_lists, codec)
        if numericalized is None:       # a TokenDocuments, or any other dataset: its items, once, through its pipeline
            numericalized = dataset
        self.docs = numericalized if isinstance(numericalized, TokenDocuments) else TokenDocuments.from_docs(numericalized)
        if lens is not None and not np.array_equal(np.asarray(lens, dtype=np.int64), self.docs.lens):
            raise ValueError("lens does not match the documents' lengths; leave lens=None")
        self.context = _as_context(context, len(self.docs))
        self.context_encoder, self.rank, self.world_size, self.shuffle_seed = context_encoder, rank, world_size, shuffle_seed
        self.fastai_order, self._epoch = fastai_order, 0
        self.codec = codec
        vocab = codec.vocab if vocab is None and codec is not None else vocab
        if vocab is not None:     # otherwise `self.vocab` is the dataset's (fastai's GetAttr)
            self.vocab = list(vocab)
        # Same arithmetic as LMDataLoader, over the bs * world_size streams of all ranks.
        n_streams = bs * world_size
        corpus = max(self.docs.n_tokens - 1, 0) // n_streams * n_streams
        self.seq_len, self.bl = seq_len, corpus // n_streams
        if len(self.docs) and self.bl == 0:
            raise ValueError(f"the corpus has {self.docs.n_tokens} tokens, too few for {n_streams} streams "
                             f"(bs={bs} x world_size={world_size}): lower bs")
        self.n_batches = self.bl // seq_len + int(self.bl % seq_len != 0)
        self.last_len = self.bl - (self.n_batches - 1) * seq_len
        self._set_order(np.arange(len(self.docs), dtype=np.int64))
        # Skip LMDataLoader.__init__: it builds a ReindexCollection, a Python list of lengths and
        # `Chunks` over the documents, per-document Python objects the arrays above replace.
        TfmdDL.__init__(self, dataset=dataset, bs=bs, num_workers=num_workers, **kwargs)
        self.n = self.n_batches * bs
        for name in ("after_item", "before_batch"):
            # Batches are gathered whole (`create_batches`), so per-item fastai hooks never run:
            # refuse them rather than ignore them. `after_batch` runs as usual.
            f = getattr(self, name)
            if not is_noop_hook(f):
                raise ValueError(f"ContextLanguageModelLoader gathers whole batches and never runs {name} "
                                 f"transforms (got {f}); apply them to the documents first, or use after_batch")

    @property
    def codec(self) -> TextCodec | None:
        """The `TextCodec` the documents were numericalized with (None for a loader built from ids alone).
        A loader pickled before codecs existed rebuilds it from its fastai text pipeline."""
        codec = self.__dict__.get("_codec")
        if codec is None and self.__dict__.get("dataset") is not None:
            try:
                codec = self._codec = codec_from_pipeline(*text_pipeline(self.__dict__["dataset"])[:2])
            except RuntimeError:
                return None
        return codec

    @codec.setter
    def codec(self, codec: TextCodec | None) -> None:
        self._codec = codec

    @property
    def n_inp(self) -> int:
        "Two inputs, so fastai's `Learner` calls `model(x, ctx)` and the loss gets only `y`."
        return 2

    def before_iter(self):
        "Refuse a learner whose model reads only the tokens (fastai's `language_model_learner`), before its first batch."
        super().before_iter()
        learn = calling_learner()
        if learn is not None and reads_one_input(learn.model):
            raise TypeError(f"this learner's model ({type(learn.model).__name__}) reads only the tokens, but these "
                            "loaders give (tokens, context): build the learner with "
                            "context_language_model_learner(dls, ...) (the same arch, config, drop_mult and "
                            "pretrained arguments as fastai's language_model_learner)")

    @property
    def items(self) -> ReindexCollection:
        "The documents in this epoch's order, as `LMDataLoader.items` (`items.idxs` is the order)."
        return ReindexCollection(self.dataset, idxs=self._order)

    # ---------------------------------------------------------------- streams
    def _set_order(self, order: np.ndarray) -> None:
        "Lay out an epoch: `order[j]` is the document at place j of the stream."
        lens = self.docs.lens[order]                                # (n_docs,)
        self._order = order
        self._ends = np.cumsum(lens)                                # (n_docs,) stream end of place j
        self._shift = self.docs.ends[order] - self._ends            # (n_docs,) stream -> token array position

    def make_chunks(self):
        "Re-lay the stream in the current order (kept for `LMDataLoader` compatibility)."
        self._set_order(self._order)

    def shuffle_fn(self, idxs):
        """Shuffle documents (not items) once per epoch, like `LMDataLoader`, then re-lay the streams.
        With `fastai_order` (the default) this is Python's `random.shuffle`, exactly `LMDataLoader`'s
        order under the same seed, at about 1 us a document; otherwise a numpy permutation (seeded from
        the same generators, so `set_seed` and `shuffle_seed` still fix it), far faster on millions."""
        n = len(self._order)
        if self.shuffle_seed is None:   # process-global `random`, as fastai's `ReindexCollection.shuffle`
            rng = random
        else:   # same on all ranks; seed * 100_003 + epoch: one stream per (seed, epoch) while epochs < 100_003
            rng = random.Random(self.shuffle_seed * 100_003 + self._epoch)
        if self.fastai_order:
            order = self._order.tolist()
            rng.shuffle(order)
            order = np.fromiter(order, dtype=np.int64, count=n)
        else:
            order = self._order[np.random.default_rng(rng.getrandbits(64)).permutation(n)]
        self._epoch += 1
        self._set_order(order)
        return idxs

    def target_positions(self, k: int, bs: int, sl: int) -> np.ndarray:
        """The stream position of every target `y[i, t]` of batch `k` (`bs` rows of `sl` tokens) of
        this rank: row i reads stream span `(rank * self.bs + i) * bl + k * seq_len + [0, sl)`, and its
        targets are one ahead. `(bs, sl)`."""
        rows = np.arange(bs) + self.rank * self.bs
        return (rows * self.bl + k * self.seq_len)[:, None] + np.arange(1, sl + 1)

    def stream_docs(self, pos) -> torch.Tensor:
        """The document (an index into `dataset` and `context`) at each stream position `pos` (any
        shape) of this epoch's layout: the place whose span holds it, found by binary search."""
        pos = np.asarray(pos)
        return torch.from_numpy(self._order[np.searchsorted(self._ends, pos, side="right")])

    def state_dict(self) -> dict:
        "What a resumed run needs to continue the same sequence of epochs (see `Checkpoint`)."
        return {"rng": self.rng.getstate(), "doc_order": torch.from_numpy(self._order.copy()), "epoch": self._epoch}

    def load_state_dict(self, state: dict) -> None:
        if "rng" in state:
            self.rng.setstate(state["rng"])
        if "doc_order" in state:
            order = torch.as_tensor(state["doc_order"]).numpy().astype(np.int64)
            if len(order) != len(self.docs) or not np.array_equal(np.sort(order), np.arange(len(self.docs))):
                raise ValueError(f"the saved document order is not a permutation of this loader's {len(self.docs)} "
                                 "documents: it belongs to other data")
            self._set_order(order)
        if "epoch" in state:
            self._epoch = int(state["epoch"])

    #: Batches laid out together by `create_batches` (numpy's per-call overhead is paid once per group).
    group = 16

    def _span(self, rows: np.ndarray, a: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stream positions `a .. a+n-1` of this rank's streams `rows`: their tokens `(R, n)` int64 and
        the context of each one's document `(R, n-1, n_features)` (the last position is only a target)."""
        R, ends = len(rows), self._ends
        p0 = (rows + self.rank * self.bs) * self.bl + a                # (R,) first stream position of each row
        first = np.searchsorted(ends, p0, side="right")                 # (R,) place of the document holding p0
        last = np.searchsorted(ends, p0 + n - 1, side="right")          # (R,) ... holding each row's last position
        counts = last - first                                           # (R,) documents starting inside each row
        if counts.any():
            # Mark the column where each next document starts (empty documents mark twice, so are skipped);
            # a running count of the marks gives every position's place in the stream.
            row = np.repeat(np.arange(R), counts)                       # (n_starts,) row of each document start
            nxt = np.arange(len(row)) + np.repeat(first + 1 - (np.cumsum(counts) - counts), counts)
            col = ends[nxt - 1] - p0[row]                               # (n_starts,) column where place nxt starts
            marks = np.bincount(row * n + col, minlength=R * n).reshape(R, n)
            place = first[:, None] + np.cumsum(marks, 1)                # (R, n)
        else:
            place = np.broadcast_to(first[:, None], (R, n))
        pos = p0[:, None] + np.arange(n)                                # (R, n) stream positions
        txt = torch.from_numpy(np.asarray(self.docs.tokens[pos + self._shift[place]])).long()
        doc = torch.from_numpy(self._order[place[:, :-1]].reshape(-1))
        ctx = self.context.index_select(0, doc).view(R, n - 1, self.context.shape[1])
        return txt, ctx

    def _rows(self, k: int, rows: Sequence[int]) -> tuple:
        "Batch `k` of this rank's streams `rows`: (x, ctx, y)."
        sl = self.last_len if k == self.n_batches - 1 else self.seq_len
        txt, ctx = self._span(np.asarray(rows, dtype=np.int64), k * self.seq_len, sl + 1)
        return txt[:, :-1].as_subclass(LMTensorText), ctx, txt[:, 1:].as_subclass(TensorText)

    def create_item(self, seq):
        if seq is None:
            seq = 0
        if seq >= self.n:
            raise IndexError
        x, ctx, y = self._rows(seq // self.bs, [seq % self.bs])
        return x[0], ctx[0], y[0]

    def create_batches(self, samps):
        """`samps` are this worker's item indices, whole batches at a time. Without worker processes,
        `group` consecutive batches are gathered at once and cut into batches (same layout)."""
        group = 1 if self.fake_l.num_workers else self.group
        bs, span, samps = self.bs, None, iter(samps)
        every_row = list(range(bs))
        while chunk := list(islice(samps, bs)):
            k = chunk[0] // bs
            # fastai hands out items k*bs .. k*bs+bs-1 in order: every row of batch k
            rows = every_row if len(chunk) == bs and chunk[-1] - chunk[0] == bs - 1 and chunk[0] % bs == 0 \
                else [s % bs for s in chunk]
            if span is None or not span[0] <= k < span[1] or span[2] != rows:
                k1 = min(k + group, self.n_batches)
                a, b = k * self.seq_len, min(k1 * self.seq_len, self.bl)
                span = (k, k1, rows, *self._span(np.asarray(rows, dtype=np.int64), a, b - a + 1))
            sl = self.last_len if k == self.n_batches - 1 else self.seq_len
            c = (k - span[0]) * self.seq_len
            txt, ctx = span[3], span[4]
            yield (txt[:, c:c + sl].contiguous().as_subclass(LMTensorText), ctx[:, c:c + sl].contiguous(),
                   txt[:, c + 1:c + sl + 1].contiguous().as_subclass(TensorText))

    def new(self, dataset=None, context=None, seq_len=None, **kwargs):
        "Like `LMDataLoader.new`; a new `dataset` needs its own `context` (except an empty one)."
        if dataset is None:
            context = self.context if context is None else context
            kwargs.setdefault("numericalized", self.docs)       # shares the token array: no copy
        elif context is None:
            if len(dataset):
                raise ValueError("new(dataset=...) needs the matching context=: one row per document")
            context = torch.zeros(0, self.context.shape[1])
        # A loader unpickled from a learner exported by 0.1 lacks the attributes added since: their defaults.
        for k, default in (("context_encoder", None), ("rank", 0), ("world_size", 1), ("shuffle_seed", None),
                           ("fastai_order", True), ("codec", None)):
            kwargs.setdefault(k, self.__dict__.get(k, default) if k != "codec" else self.codec)
        kwargs.setdefault("vocab", getattr(self, "vocab", None))
        seq_len = self.seq_len if seq_len is None else seq_len
        # TfmdDL.new, not LMDataLoader.new: that one passes its Python list of lengths along.
        return TfmdDL.new(self, dataset=dataset, seq_len=seq_len, context=context, **kwargs)

    # ------------------------------------------------------------------- show
    @property
    def context_cols(self) -> list[str]:
        "The context's column names (`ContextEncoder.feature_names` are the encoded ones: `genre=rock`)."
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
                        else dict(zip(self.context_cols, r.tolist())))
        return vals

    def show_batch(self, b=None, max_n: int = 9, ctxs=None, show: bool = True, unique: bool = False,
                   trunc_at: int = 150, **kwargs):
        """Display text, the context values by feature name (one per document the row spans), and the target;
        with `show=False` return that table as a DataFrame instead (fastai's behaviour, so a notebook shows it once)."""
        if b is None:
            b = self.one_batch()
        x, ctx, y = (t.detach().cpu() for t in b)
        vocab = vocab_of(self)

        def text(ids):
            toks = [vocab[i] for i in ids.tolist()] if vocab is not None else [str(i) for i in ids.tolist()]
            s = " ".join(toks)
            return s if trunc_at is None else s[:trunc_at]

        records = []
        for i in range(min(max_n, len(x))):
            rec = {"text": text(x[i])}
            docs = self._context_values(ctx[i])
            for name in self.context_cols:
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


class ContextTextDataLoaders(DataLoaders):
    "fastai `DataLoaders` of `ContextLanguageModelLoader`s, with the fitted `context_encoder` and the `codec`."

    @property
    def context_encoder(self) -> ContextEncoder:
        return self.train.context_encoder

    @classmethod
    def from_df(cls, df: pd.DataFrame, text_col: str, context_cols: str | Sequence[str], valid_pct: float = 0.1,
                valid_col: str | None = None, bs: int = 64, seq_len: int = 72, seed: int | None = None,
                fill: Any = None, text_vocab: Sequence[str] | None = None, tok_tfm=None, min_freq: int = 3,
                max_vocab: int = 60000, path: str = ".", device=None, n_workers: int | None = None,
                **kwargs) -> "ContextTextDataLoaders":
        """Tokenize `df[text_col]` with fastai, numericalize with a training-split vocabulary, and
        encode `context_cols` with a `ContextEncoder` fitted on the training split.

        `fill` is the policy for missing numeric context: None (raise), 'mean', 'zero', a number,
        or 'drop' (drop those rows). `n_workers` is the number of tokenizing processes (fastai's
        default: all cores). Extra `kwargs` go to both loaders (e.g. `num_workers`). Errors name
        rows by index label, or by 0-based position when `df`'s index is not unique."""
        context_cols = [context_cols] if isinstance(context_cols, str) else list(context_cols)
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"from_df needs a pandas DataFrame, got {type(df).__name__}")
        check_columns(df, [text_col], "text column")
        check_columns(df, context_cols, "context column")
        _positive_int("bs", bs), _positive_int("seq_len", seq_len)
        if valid_col is not None:
            check_columns(df, [valid_col], "valid column")
        elif not (isinstance(valid_pct, Real) and 0 < valid_pct < 1):
            raise ValueError(f"valid_pct must be a fraction strictly between 0 and 1, got {valid_pct!r}")
        if not df.index.is_unique:      # labels would not name one row each: use positions
            df = df.reset_index(drop=True)
        if fill == "drop":
            df = ContextEncoder.drop_missing(df, context_cols)
        check_texts(df, text_col)
        splitter = RandomSplitter(valid_pct, seed=seed) if valid_col is None else ColSplitter(valid_col)
        splits = splitter(df)
        if len(splits[0]) == 0 or len(splits[1]) == 0:
            raise ValueError(f"the split left {len(splits[0])} training and {len(splits[1])} validation rows; "
                             "both need at least one document")
        tok_kw = {} if n_workers is None else {"n_workers": n_workers}
        # fastai's TextBlock.from_df, with a Tokenizer that numericalizes in the pass that counts tokens
        block = TextBlock(CountingTokenizer.from_df(text_col, tok=tok_tfm, **tok_kw), vocab=text_vocab, is_lm=True,
                          seq_len=seq_len, min_freq=min_freq, max_vocab=max_vocab)
        dblock = DataBlock(blocks=[block], get_x=ColReader("text"), splitter=lambda _: splits)
        dsets = dblock.datasets(df)
        # fastai tokenized the DataFrame and fitted the vocabulary: from here on the codec is the pipeline
        # (`compat.text_pipeline` raises if fastai's pipeline changed shape, rather than going slow)
        tok, num, _ = text_pipeline(dsets.train)
        codec = TextCodec(num.vocab, tok, text_col=text_col)
        ids = tok.ids(codec.o2i, unk=codec.o2i.get(UNK, 0)) if isinstance(tok, CountingTokenizer) else None
        if ids is None:        # fastai changed how a TextBlock sets its tokenizer up (see compat.CountingTokenizer)
            raise RuntimeError("fastai did not tokenize the DataFrame through fastai_context's CountingTokenizer: "
                               "fastai_context does not support this fastai version (see fastai_context/compat.py)")
        docs = TokenDocuments(*ids)                                                    # every row, in df's order
        parts = [(ds, np.asarray(split), docs.take(split), shuffle)
                 for ds, split, shuffle in ((dsets.train, splits[0], True), (dsets.valid, splits[1], False))]
        del docs
        blank = np.sort(np.concatenate([split[docs.blank(codec)] for _, split, docs, _ in parts]))
        if len(blank):
            raise ValueError(f"text column {text_col!r} is empty after tokenization in rows "
                             f"{first_rows(df.index[blank])}; drop those rows")
        encoder = ContextEncoder.fit(df.iloc[splits[0]], context_cols, fill=fill)
        device = default_device() if device is None else device
        common = dict(bs=bs, seq_len=seq_len, context_encoder=encoder, device=device, **kwargs)
        loaders = [ContextLanguageModelLoader(ds, encoder.encode(df.iloc[split]), numericalized=docs, codec=codec,
                                              shuffle=shuffle, **common) for ds, split, docs, shuffle in parts]
        return cls(*loaders, path=path, device=device)

    @property
    def codec(self) -> TextCodec:
        "The `TextCodec` (tokenizer, vocabulary, decoding) the documents were numericalized with."
        codec = self.train.codec
        if codec is None:
            raise AttributeError("these loaders carry no TextCodec (they were built from token ids): build them "
                                 "with ContextTextDataLoaders.from_df, or pass codec= to the loaders")
        return codec

    def test_dl(self, df: pd.DataFrame, text_col: str | None = None, **kwargs) -> ContextLanguageModelLoader:
        "A loader over new documents of `df`, tokenized, numericalized and context-encoded as in training."
        codec = self.codec
        text_col = text_col or codec.text_col
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"test_dl needs a DataFrame with the text column {text_col!r} and the context columns "
                            f"{self.context_encoder.columns}, got a {type(df).__name__}")
        check_columns(df, [text_col], "text column")
        check_texts(df, text_col)
        docs = TokenDocuments.from_token_lists(codec.tokenize(df[text_col]), codec)
        blank = docs.blank(codec)
        if len(blank):
            raise ValueError(f"text column {text_col!r} is empty after tokenization in rows "
                             f"{first_rows(df.index[blank])}; drop those rows")
        return self.valid.new(docs, context=self.context_encoder.encode(df), shuffle=False, **kwargs)
