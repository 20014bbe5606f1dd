"""Text conventions shared by every module: fastai's special tokens, in one place."""
from __future__ import annotations

from collections.abc import Iterable

from fastai.text.core import BOS, EOS, FLD, PAD, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK, defaults

__all__ = ["SPECIAL_TOKENS", "BOS", "EOS", "PAD", "UNK", "FLD", "TK_MAJ", "TK_UP", "TK_REP", "TK_WREP", "is_blank_doc"]

#: fastai's special tokens (xxunk, xxpad, xxbos, xxeos, xxfld, xxrep, xxwrep, xxup, xxmaj).
SPECIAL_TOKENS: tuple[str, ...] = tuple(defaults.text_spec_tok)


def is_blank_doc(tokens: Iterable[str]) -> bool:
    "True if a tokenized document holds nothing but special tokens (e.g. an empty or blank text)."
    return all(t in SPECIAL_TOKENS for t in tokens)
