"""Text conventions shared by every module: fastai's special tokens, in one place."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from fastai.text.core import BOS, EOS, FLD, PAD, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK, defaults

__all__ = ["SPECIAL_TOKENS", "BOS", "EOS", "PAD", "UNK", "FLD", "TK_MAJ", "TK_UP", "TK_REP", "TK_WREP",
           "GENERATED_SPECIAL_TOKENS", "is_blank_doc", "never_drawn"]

#: fastai's special tokens (xxunk, xxpad, xxbos, xxeos, xxfld, xxrep, xxwrep, xxup, xxmaj).
SPECIAL_TOKENS: tuple[str, ...] = tuple(defaults.text_spec_tok)

#: The special tokens a model may generate besides its end token: fastai's case and repetition
#: markers are part of the training text (`xxmaj love` is how "Love" is written). Every other
#: special token (`xxpad`, `xxfld`, the other boundary token, fastai's `xxfake` vocabulary
#: fillers, and `xxunk` unless asked for) is never drawn.
GENERATED_SPECIAL_TOKENS: tuple[str, ...] = (TK_MAJ, TK_UP, TK_REP, TK_WREP)


def is_blank_doc(tokens: Iterable[str]) -> bool:
    "True if a tokenized document holds nothing but special tokens (e.g. an empty or blank text)."
    return all(t in SPECIAL_TOKENS for t in tokens)


def never_drawn(vocab: Sequence[str], end: str = BOS, no_unk: bool = True) -> list[int]:
    """Ids of `vocab` a sampler must never draw: every special token except `end` (the token that
    closes a text: `xxbos` starts the next document of a language model, `xxeos` ends a VAE's
    sentence) and `GENERATED_SPECIAL_TOKENS`; also `xxunk` when `no_unk`. The one definition
    both the language model and the sentence VAE sample with."""
    allowed = {end, *GENERATED_SPECIAL_TOKENS} | (set() if no_unk else {UNK})
    return [i for i, tok in enumerate(vocab)
            if (tok in SPECIAL_TOKENS or tok.startswith("xxfake")) and tok not in allowed]
