"""Sentence data for the VAE: one padded sentence per row, batched by similar length.

Unlike the language-model loaders (contiguous token streams), a sentence VAE encodes each
sentence on its own, so a batch is `bs` whole sentences padded to the longest one. Batches
are bucketed by length (shuffled within buckets) so little padding is ever built, and the
model packs them so none is computed on.
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.text.core import Tokenizer, WordTokenizer
from fastai.text.data import make_vocab
from fastai.torch_core import default_device, display_df

from torch.nn.utils.rnn import pad_sequence

from .model import append_eos
from ..context import ContextEncoder, check_columns, first_rows
from ..lm.data import check_texts
from ..text import EOS, PAD, SPECIAL_TOKENS, UNK, TextCodec

__all__ = ["split_sentences", "SentenceLoader", "SentenceDataLoaders", "SentenceTokenizer"]


def split_sentences(df: pd.DataFrame, text_col: str, keep: Sequence[str] | None = None,
                    language: str = "english") -> pd.DataFrame:
    """Split every text of `df[text_col]` into sentences with NLTK punkt, one row per sentence.

    Each sentence row keeps its document's columns `keep` (default: every other column, e.g.
    url, title, song and context features), so a sentence always knows its review and song.
    Added columns: `sentence`, `doc` (the document's index label in `df`) and `sent_idx`
    (the sentence's position in its document). Needs punkt offline: set `NLTK_DATA`."""
    import nltk
    check_columns(df, [text_col], "text column")
    keep = [c for c in df.columns if c != text_col] if keep is None else list(keep)
    check_columns(df, keep, "keep column")
    check_texts(df, text_col)
    try:
        nltk.data.find("tokenizers/punkt_tab")
    except LookupError as e:
        raise LookupError("NLTK's punkt_tab sentence splitter was not found: set NLTK_DATA to a folder holding "
                          "tokenizers/punkt_tab (e.g. ../shared/data/nltk_data)") from e
    docs, idxs, sents = [], [], []
    for label, text in zip(df.index, df[text_col]):
        for i, s in enumerate(nltk.sent_tokenize(text, language=language)):
            s = " ".join(s.split())
            if s:
                docs.append(label), idxs.append(i), sents.append(s)
    out = df.loc[docs, keep].reset_index(drop=True)
    out.insert(0, "sent_idx", idxs)
    out.insert(0, "doc", docs)
    out.insert(0, "sentence", sents)
    return out


class SentenceTokenizer(TextCodec):
    """The sentence VAE's `TextCodec`: fastai tokenization + numericalization of single sentences,
    the same at training and inference time: `tok` and `rules` as in fastai's `Tokenizer`, `vocab`
    from `make_vocab`.

    fastai's rules add `xxbos`; sentence boundaries are the model's business (it feeds `xxbos`
    to the decoder and predicts `xxeos`), so boundary tokens are stripped when tokenizing, and
    decoding stops at the first `xxeos`."""
    end = EOS
    keep_boundaries = False

    def __init__(self, tok=None, rules=None, vocab: Sequence[str] | None = None):
        super().__init__(vocab, Tokenizer(WordTokenizer() if tok is None else tok, rules=rules))

    def setup(self, tokens: Sequence[Sequence[str]], min_freq: int = 2, max_vocab: int = 60000) -> None:
        "Build the vocabulary (fastai's `make_vocab`: special tokens first) from training tokens."
        self.vocab = make_vocab(Counter(t for ts in tokens for t in ts), min_freq=min_freq, max_vocab=max_vocab)

    def numericalize_tokens(self, tokens: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        "One id tensor per sentence (`numericalize`, all sentences at once, then split)."
        flat, lens = self.numericalize(tokens)
        return list(torch.from_numpy(flat.astype(np.int64)).split(lens.tolist()))


class SentenceLoader(DataLoader):
    """A fastai `DataLoader` of padded sentence batches `(x, y)` or, with context, `(x, ctx, y)`.

    `x` is `(bs, T)` token ids padded with `xxpad`; `y` is `(bs, T + 1)`: the same tokens
    followed by `xxeos` (the decoder reads `xxbos` + x and predicts y); `ctx` is
    `(bs, n_features)`. When shuffling, sentences are bucketed by length: shuffled, cut into
    chunks of `bs * bucket` sentences, each chunk sorted by length, and the batches shuffled."""

    def __init__(self, dataset=None, context: torch.Tensor | None = None, tokenizer: SentenceTokenizer | None = None,
                 context_encoder: ContextEncoder | None = None, bucket: int = 50, bs: int = 32,
                 shuffle: bool = False, **kwargs):
        self.sentences = [] if dataset is None else list(dataset)
        self.context = context
        if context is not None and len(context) != len(self.sentences):
            raise ValueError(f"context has {len(context)} rows but there are {len(self.sentences)} sentences")
        self.tokenizer, self.context_encoder, self.bucket = tokenizer, context_encoder, bucket
        self.lengths = np.array([len(s) for s in self.sentences], dtype=np.int64)
        super().__init__(self.sentences, bs=bs, shuffle=shuffle, **kwargs)

    @property
    def codec(self) -> SentenceTokenizer:
        "The `TextCodec` of these sentences (the same object as `tokenizer`)."
        return self.tokenizer

    @property
    def vocab(self) -> list[str]:
        return self.tokenizer.vocab

    @property
    def n_inp(self) -> int:
        "Two inputs with context, so fastai's `Learner` calls `model(x, ctx)`."
        return 1 if self.context is None else 2

    def get_idxs(self):
        "Bucketed order: whole batches of similar length, in shuffled order when shuffling."
        n = len(self.sentences)
        if not self.shuffle:
            return list(range(n))
        idxs = np.random.permutation(n)
        chunk = self.bs * self.bucket
        batches = []
        for start in range(0, n, chunk):
            part = idxs[start:start + chunk]
            part = part[np.argsort(-self.lengths[part], kind="stable")]
            batches += [part[i:i + self.bs] for i in range(0, len(part), self.bs)]
        if self.drop_last and batches and len(batches[-1]) < self.bs:
            batches = batches[:-1]
        np.random.shuffle(batches)
        return [int(i) for b in batches for i in b]

    def create_item(self, i):
        return i

    def create_batch(self, b):
        "Pad the sentences of item indices `b` into `(x, [ctx,] y)`."
        pad = self.vocab.index(PAD)
        eos = self.vocab.index(EOS)
        x = pad_sequence([self.sentences[i] for i in b], batch_first=True, padding_value=pad)
        y = append_eos(x, pad, eos)
        if self.context is None:
            return x, y
        return x, self.context[torch.as_tensor(b, dtype=torch.long)], y

    def new(self, dataset=None, context=None, **kwargs):
        "Like `DataLoader.new`, carrying tokenizer, context encoder and bucket size."
        if dataset is None:
            dataset, context = self.sentences, self.context if context is None else context
        for k in ("tokenizer", "context_encoder", "bucket"):
            kwargs.setdefault(k, getattr(self, k))
        if context is None and self.context is not None:
            if len(dataset):
                raise ValueError("new(dataset=...) of a loader with context needs the matching context=: "
                                 "one encoded row per sentence")
            context = torch.zeros(0, self.context.shape[1])
        return super().new(dataset=dataset, context=context, **kwargs)

    def show_batch(self, b=None, max_n: int = 9, show: bool = True, **kwargs) -> pd.DataFrame | None:
        """Display the sentences of a batch (and their context values by column name); with
        `show=False` return them as a DataFrame instead (fastai's behaviour)."""
        if b is None:
            b = self.one_batch()
        x = b[0].cpu()
        recs = []
        for i in range(min(max_n, len(x))):
            rec = {"sentence": self.tokenizer.decode(x[i])}
            if self.context is not None and self.context_encoder is not None:
                rec.update(self.context_encoder.decode(b[1][i].cpu()))
            recs.append(rec)
        df = pd.DataFrame(recs)
        if not show:             # as fastai: `show=False` returns what would be shown, `show=True` only shows it
            return df
        display_df(df)


class SentenceDataLoaders(DataLoaders):
    "fastai `DataLoaders` of `SentenceLoader`s, with the shared `tokenizer`, `vocab` and `context_encoder`."

    @property
    def tokenizer(self) -> SentenceTokenizer:
        return self.train.tokenizer

    @property
    def codec(self) -> SentenceTokenizer:
        "The `TextCodec` (tokenize, numericalize, decode, tokens never drawn) shared by both loaders."
        return self.train.tokenizer

    @property
    def vocab(self) -> list[str]:
        return self.train.vocab

    @property
    def context_encoder(self) -> ContextEncoder | None:
        return self.train.context_encoder

    def new_empty(self) -> "SentenceDataLoaders":
        "Loaders with no sentences but the same tokenizer, vocabulary and encoder (what `export` saves)."
        return type(self)(*[dl.new([]) for dl in self.loaders], path=self.path, device=self.device)

    @classmethod
    def from_df(cls, df: pd.DataFrame, text_col: str, context_cols: str | Sequence[str] | None = None,
                min_len: int = 1, max_len: int | None = None, valid_pct: float = 0.1, bs: int = 32,
                seed: int | None = None, valid_col: str | None = None, vocab: Sequence[str] | None = None,
                tok=None, rules=None, min_freq: int = 2, max_vocab: int = 60000, fill: Any = None,
                bucket: int = 50, device=None, path: str = ".", **kwargs) -> "SentenceDataLoaders":
        """Tokenize the sentences of `df[text_col]` with fastai (`tok`, `rules`; default: fastai's
        word tokenizer and rules), build the vocabulary on the training split (unless `vocab`),
        and encode `context_cols` with a `ContextEncoder` fitted on the training split.

        Sentences with fewer than `min_len` tokens are dropped (so empty ones always are);
        sentences longer than `max_len` tokens are truncated, with one warning saying how many.
        `valid_col` (a boolean column) or a random `valid_pct` split with `seed` chooses validation."""
        check_columns(df, [text_col], "text column")
        context_cols = [] if context_cols is None else [context_cols] if isinstance(context_cols, str) else list(context_cols)
        check_columns(df, context_cols, "context column")
        df = ContextEncoder.drop_missing(df, context_cols) if fill == "drop" else df
        check_texts(df, text_col)
        if min_len < 1:
            raise ValueError(f"min_len={min_len}: a sentence needs at least one token")
        tokenizer = SentenceTokenizer(tok, rules, vocab)
        tokens = tokenizer.tokenize(df[text_col].tolist())
        lens = np.array([len(t) for t in tokens])
        keep = lens >= min_len
        df, tokens = df[keep], [t for t, k in zip(tokens, keep) if k]
        if max_len is not None:
            n_long = int((lens[keep] > max_len).sum())
            if n_long:
                warnings.warn(f"{n_long} sentences are longer than max_len={max_len} tokens and were truncated")
                tokens = [t[:max_len] for t in tokens]
        if len(df) < 2:
            raise ValueError(f"only {len(df)} sentences have at least min_len={min_len} tokens; need 2 or more")
        if valid_col is not None:
            check_columns(df, [valid_col], "valid column")
            is_valid = df[valid_col].to_numpy(dtype=bool)
        else:
            rng = np.random.default_rng(seed)
            is_valid = np.zeros(len(df), dtype=bool)
            is_valid[rng.permutation(len(df))[:max(1, int(round(valid_pct * len(df))))]] = True
        if is_valid.all() or not is_valid.any():
            raise ValueError(f"the split left {(~is_valid).sum()} training and {is_valid.sum()} validation sentences")
        train_toks = [t for t, v in zip(tokens, is_valid) if not v]
        if vocab is None:
            tokenizer.setup(train_toks, min_freq=min_freq, max_vocab=max_vocab)
        ids = tokenizer.numericalize_tokens(tokens)
        encoder = ContextEncoder.fit(df[~is_valid], context_cols, fill=fill) if context_cols else None
        context = encoder.encode(df) if encoder is not None else None
        device = default_device() if device is None else device
        common = dict(tokenizer=tokenizer, context_encoder=encoder, bucket=bucket, bs=bs, device=device, **kwargs)

        def loader(mask, shuffle):
            idx = np.flatnonzero(mask)
            ctx = None if context is None else context[torch.as_tensor(idx)]
            return SentenceLoader([ids[i] for i in idx], context=ctx, shuffle=shuffle, **common)
        return cls(loader(~is_valid, True), loader(is_valid, False), path=path, device=device)

    @classmethod
    def from_texts(cls, texts: Sequence[str], valid_texts: Sequence[str] | None = None, **kwargs) -> "SentenceDataLoaders":
        """From a list of sentences (one per item); `valid_texts` gives a fixed validation set,
        otherwise `valid_pct` of `texts` is held out. Keyword arguments as in `from_df`."""
        texts = list(texts)
        df = pd.DataFrame({"text": texts})
        if valid_texts is not None:
            df = pd.concat([df.assign(is_valid=False),
                            pd.DataFrame({"text": list(valid_texts), "is_valid": True})], ignore_index=True)
            kwargs["valid_col"] = "is_valid"
        return cls.from_df(df, "text", **kwargs)

    def encode_texts(self, texts: Sequence[str], max_len: int | None = None,
                     allow_unknown: bool = False) -> list[torch.Tensor]:
        """Tokenize and numericalize sentences exactly as in training. An empty sentence raises a
        `ValueError` naming it, and so does one whose tokens are all unknown (its code would carry
        no information) unless `allow_unknown` (evaluation data such as PTB's test split has some);
        one longer than `max_len` tokens is truncated with a warning."""
        if isinstance(texts, str):
            raise TypeError("pass a list of sentences, e.g. ['it was my turn']")
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"sentences {first_rows(bad)} are not strings (e.g. {texts[bad[0]]!r})")
        tokens = self.tokenizer.tokenize(texts)
        empty = [i for i, t in enumerate(tokens) if not [w for w in t if w not in SPECIAL_TOKENS or w == UNK]]
        if empty:
            raise ValueError(f"sentences {first_rows(empty)} are empty (e.g. {texts[empty[0]]!r}): nothing to encode")
        ids = self.tokenizer.numericalize_tokens(tokens)
        unk = self.vocab.index(UNK)
        all_unk = [i for i, s in enumerate(ids) if bool((s == unk).all())]
        if all_unk and not allow_unknown:
            raise ValueError(f"sentences {first_rows(all_unk)} have only unknown words (e.g. {texts[all_unk[0]]!r}); "
                             "their code would carry no information")
        if max_len is not None:
            long = [i for i, s in enumerate(ids) if len(s) > max_len]
            if long:
                warnings.warn(f"sentences {first_rows(long)} are longer than max_len={max_len} tokens and were truncated")
                ids = [s[:max_len] for s in ids]
        return ids

    def sentence_dl(self, texts: Sequence[str], context=None, max_len: int | None = None, allow_unknown: bool = False,
                    **kwargs) -> SentenceLoader:
        "An unshuffled loader over new sentences (and their encoded `context` rows), checked as in `encode_texts`."
        ids = self.encode_texts(texts, max_len=max_len, allow_unknown=allow_unknown)
        return self.valid.new(ids, context=context, shuffle=False, **kwargs)
