"""Text conventions shared by every module: fastai's special tokens, the tokens never drawn, and
`TextCodec`, the one text pipeline (tokenize, numericalize, decode) both model families use."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain, repeat

import numpy as np
from fastai.text.core import BOS, EOS, FLD, PAD, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK, defaults
from fastcore.foundation import L

__all__ = ["SPECIAL_TOKENS", "BOS", "EOS", "PAD", "UNK", "FLD", "TK_MAJ", "TK_UP", "TK_REP", "TK_WREP",
           "GENERATED_SPECIAL_TOKENS", "blank_docs", "never_drawn", "decode_spec_tokens", "TextCodec",
           "vocab_of", "flat_ids"]

#: fastai's special tokens (xxunk, xxpad, xxbos, xxeos, xxfld, xxrep, xxwrep, xxup, xxmaj).
SPECIAL_TOKENS: tuple[str, ...] = tuple(defaults.text_spec_tok)

#: The special tokens a model may generate besides its end token: fastai's case and repetition
#: markers are part of the training text (`xxmaj love` is how "Love" is written). Every other
#: special token (`xxpad`, `xxfld`, the other boundary token, fastai's `xxfake` vocabulary
#: fillers, and `xxunk` unless asked for) is never drawn.
GENERATED_SPECIAL_TOKENS: tuple[str, ...] = (TK_MAJ, TK_UP, TK_REP, TK_WREP)


def blank_docs(ids: np.ndarray, lens: np.ndarray, special_ids: Iterable[int]) -> np.ndarray:
    """The indices of the numericalized documents (flat `ids` and their `lens`) that hold nothing but
    tokens of `special_ids` (an empty or blank text tokenizes to `xxbos` alone), vectorized. Pass the ids
    of the special tokens but `xxunk`: a word missing from the vocabulary becomes `xxunk` and is still text."""
    lens = np.asarray(lens, dtype=np.int64)
    is_text = ~np.isin(ids, np.fromiter(special_ids, dtype=np.int64))      # (n_tokens,) bool: the one temporary
    has_text = np.zeros(len(lens), dtype=bool)
    nonempty = np.flatnonzero(lens)
    if len(nonempty):        # segments from each non-empty document's start to the next one's (empty ones are skipped)
        has_text[nonempty] = np.logical_or.reduceat(is_text, (np.cumsum(lens) - lens)[nonempty])
    return np.flatnonzero(~has_text)


def never_drawn(vocab: Sequence[str], end: str = BOS, no_unk: bool = True) -> list[int]:
    """Ids of `vocab` a sampler must never draw: every special token except `end` (the token that
    closes a text: `xxbos` starts the next document of a language model, `xxeos` ends a VAE's
    sentence) and `GENERATED_SPECIAL_TOKENS`; also `xxunk` when `no_unk`. The one definition
    both the language model and the sentence VAE sample with."""
    allowed = {end, *GENERATED_SPECIAL_TOKENS} | (set() if no_unk else {UNK})
    return [i for i, tok in enumerate(vocab)
            if (tok in SPECIAL_TOKENS or tok.startswith("xxfake")) and tok not in allowed]


def flat_ids(token_lists: Sequence[Sequence[str]], o2i: dict, unk: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ids of tokenized documents all at once, through a vocabulary's token -> id map `o2i`: one
    C-level `map` over the flattened tokens (no per-document Python work). Returns the flat ids
    `(n_tokens,)`, int32 while the vocabulary fits (else int64), and the lengths `(n_docs,)` int64.
    Tokens missing from `o2i` get `unk` (fastai: 0, `xxunk`)."""
    # fastai's tokenizer gives fastcore `L`s, whose `len` and iteration are Python-level calls (about
    # 1 s per pass over 20M tokens): read the plain lists they hold instead.
    token_lists = [t.items if isinstance(t, L) else t for t in token_lists]
    lens = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    kind = np.int32 if len(o2i) <= np.iinfo(np.int32).max else np.int64
    get = o2i.get if type(o2i) is dict else dict(o2i).get      # a plain dict: no insertion on a miss
    flat = np.fromiter(map(get, chain.from_iterable(token_lists), repeat(unk)), dtype=kind, count=int(lens.sum()))
    return flat, lens


def vocab_of(dls) -> list[str] | None:
    """The token vocabulary of loaders (or of one loader): the codec's when they carry one, else
    `dls.vocab`, unwrapped from fastai's `(text vocab, label vocab)` pair. The one place that knows
    both shapes (checkpoint, analysis and learners ask here)."""
    codec = getattr(dls, "codec", None)
    if isinstance(codec, TextCodec) and codec.vocab is not None:
        return codec.vocab
    v = getattr(dls, "vocab", None)
    if v is not None and len(v) and isinstance(v[0], (list, tuple)):   # fastai's (text vocab, label vocab)
        v = v[0]
    return None if v is None else list(v)


class TextCodec:
    """One text pipeline: raw text -> tokens -> ids -> readable text, and the ids never to draw.

    `tokenizer` is fastai's `Tokenizer` (its `tok` and `rules`), applied exactly as fastai's
    `tokenize_df` applies it at training time (rules, word tokenizer, post-rules: `tokenize_texts`).
    `vocab` is fastai's (`make_vocab`: special tokens first, `xxfake` fillers); unknown tokens get the
    id of `xxunk`. The class attributes say where a text ends:

    - a language model (`TextCodec`, `end='xxbos'`) keeps fastai's `xxbos` in front of every document,
      and `xxbos` in generated ids starts the next document;
    - a sentence VAE (`vae.SentenceTokenizer`, `end='xxeos'`) strips boundary tokens when tokenizing
      (its model adds them) and stops decoding at the first `xxeos`.

    Both loaders carry one (`dl.codec`), and learners, checkpoints and analysis use it, as
    `ContextEncoder` is the one source of truth for context."""

    #: The token that ends a text when sampling (`never_drawn` allows it).
    end: str = BOS
    #: Whether `tokenize` keeps fastai's boundary tokens (`xxbos`, `xxeos`).
    keep_boundaries: bool = True

    def __init__(self, vocab: Sequence[str] | None, tokenizer=None, text_col: str | None = None):
        from fastai.text.core import Tokenizer, WordTokenizer
        self.tokenizer = Tokenizer(WordTokenizer()) if tokenizer is None else tokenizer
        self.text_col = text_col
        self.vocab = vocab

    # ----------------------------------------------------------------- vocabulary
    @property
    def vocab(self) -> list[str] | None:
        return self._vocab

    @vocab.setter
    def vocab(self, vocab: Sequence[str] | None) -> None:
        self._vocab = None if vocab is None else list(vocab)
        # fastai's `Numericalize.o2i`: every token but the `xxfake` fillers; a plain dict (no insertion on a miss)
        self.o2i = {} if vocab is None else {t: i for i, t in enumerate(self._vocab) if t != "xxfake"}

    def _need_vocab(self) -> list[str]:
        if self._vocab is None:
            raise ValueError("this TextCodec has no vocabulary yet: build it first (e.g. setup(tokens))")
        return self._vocab

    def token_id(self, token: str) -> int:
        "The id of `token` (e.g. `xxbos`), or a clear error if the vocabulary lacks it."
        i = self.o2i.get(token) if self._vocab is not None else None
        if i is None:
            raise KeyError(f"{token!r} is not in the vocabulary ({len(self._need_vocab())} tokens)")
        return i

    @property
    def sep(self) -> str:
        "What joins decoded tokens (fastai's `Tokenizer.sep`, a space)."
        return getattr(self.tokenizer, "sep", " ")

    # ------------------------------------------------------------------- encoding
    def tokenize(self, texts: Iterable[str]) -> list[list[str]]:
        "fastai's tokens of every text, in order, in this process (as fastai tokenized the training set)."
        from fastai.text.core import tokenize_texts
        toks = tokenize_texts(list(texts), n_workers=0, rules=self.tokenizer.rules, tok=self.tokenizer.tok)
        if self.keep_boundaries:
            return [list(t) for t in toks]
        return [[w for w in t if w not in (BOS, EOS)] for t in toks]

    def numericalize(self, token_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Ids of all tokenized documents at once: one C-level `map` over the flattened tokens.
        Returns the flat ids `(n_tokens,)` (int32 while the vocabulary fits, else int64) and the
        documents' lengths `(n_docs,)` int64. Unknown tokens get the id of `xxunk`."""
        self._need_vocab()
        return flat_ids(token_lists, self.o2i, unk=self.o2i.get(UNK, 0))

    def encode(self, text: str) -> list[int]:
        "The ids of one text, tokenized as in training."
        return self.numericalize(self.tokenize([text]))[0].tolist()

    # ------------------------------------------------------------------- decoding
    def decode(self, ids: Iterable[int], doc_sep: str | None = None, decoder=None) -> str:
        """Ids to readable text with fastai's rules (`xxmaj word` -> `Word`, `xxup word` -> `WORD`,
        `xxrep 3 a` -> `aaa`, `xxwrep 3 oh` -> `oh oh oh`; see `decode_spec_tokens`), padding dropped.
        With `end='xxeos'` decoding stops at the first `xxeos`; `xxbos` separates documents, joined by
        `doc_sep` (default: a space; fastai's `predict` drops the boundary). `decoder` replaces
        `decode_spec_tokens` (it gets each document's tokens)."""
        vocab, decoder = self._need_vocab(), decode_spec_tokens if decoder is None else decoder
        docs, cur = [], []
        for i in ids:
            tok = vocab[int(i)]
            if tok == self.end and self.end == EOS:
                break
            if tok == BOS:
                docs.append(cur)
                cur = []
            elif tok != PAD:
                cur.append(tok)
        sep = self.sep
        docs = [sep.join(decoder(d)) for d in docs + [cur] if d]
        return (sep if doc_sep is None else doc_sep).join(d for d in docs if d)

    def never_drawn(self, no_unk: bool = True) -> list[int]:
        "Ids a sampler must never draw (`never_drawn` of this vocabulary, with this codec's `end` token)."
        return never_drawn(self._need_vocab(), end=self.end, no_unk=no_unk)

    # ------------------------------------------------------------------- pickling
    def __getstate__(self) -> dict:
        return {"tokenizer": self.tokenizer, "text_col": self.text_col, "vocab": self._vocab}

    def __setstate__(self, state: dict) -> None:
        # also reads objects pickled before the codec existed (a `SentenceTokenizer` held `tokenizer`
        # and `vocab` only): `o2i` is rebuilt, missing attributes take their defaults
        self.tokenizer, self.text_col = state.get("tokenizer"), state.get("text_col")
        self.vocab = state.get("vocab", state.get("_vocab"))

    def __repr__(self) -> str:
        n = "no vocabulary" if self._vocab is None else f"{len(self._vocab)} tokens"
        return f"{type(self).__name__}({n}, end={self.end!r})"


def _cased_word(tokens: Sequence[str], j: int) -> tuple[str, int] | None:
    "The word at `tokens[j]` with its case marker (if any) applied, and the position after it; None if none."
    if j >= len(tokens):
        return None
    t = tokens[j]
    if t in (TK_MAJ, TK_UP):
        w = tokens[j + 1] if j + 1 < len(tokens) else None
        if w is None or w in SPECIAL_TOKENS:
            return None
        return (w[:1].upper() + w[1:].lower() if t == TK_MAJ else w.upper()), j + 2
    return None if t in SPECIAL_TOKENS else (t, j + 1)


def decode_spec_tokens(tokens: Sequence[str]) -> list[str]:
    """fastai's `decode_spec_tokens` (undo `xxmaj`, `xxup`, `xxrep n c`, `xxwrep n w`), with two
    fixes: a repetition applies to its one word (fastai's keeps repeating every later word, so
    `xxwrep 3 oh i love` came out `oh oh oh i i i love love love`), and a marker with nothing to
    act on (before another special token, or at the end) is dropped rather than turning the
    special token into a word such as `Xxbos`. Markers nest as fastai writes them:
    `xxwrep 3 xxmaj oh` is `Oh Oh Oh`."""
    out, i, n = [], 0, len(tokens)
    while i < n:
        t = tokens[i]
        if t in (TK_REP, TK_WREP):
            word = _cased_word(tokens, i + 2) if i + 1 < n and tokens[i + 1].isdigit() else None
            if word is not None:
                k = int(tokens[i + 1])
                out.extend([word[0] * k] if t == TK_REP else [word[0]] * k)
                i = word[1]
            else:
                i += 1                       # a marker with nothing to repeat
        elif t in (TK_MAJ, TK_UP):
            word = _cased_word(tokens, i)
            if word is not None:
                out.append(word[0])
            i = word[1] if word is not None else i + 1
        else:
            out.append(t)
            i += 1
    return out
