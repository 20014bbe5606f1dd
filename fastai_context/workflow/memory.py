"""Long CPU runs that keep a flat memory footprint.

glibc's `malloc` keeps freed blocks in its heap for reuse and gives pages back to the system only
from the heap's top. Tensors whose sizes change from batch to batch (sentence batches of varying
length, the logits of a varying number of tokens) leave that heap fragmented, so a long run on a
CPU grows for as long as it trains: the PTB language model of `bench/ptb_vae.py --full` (2 x 650
LSTM, sentence batches) grew by about 300 MB every 131 batches and was killed by the kernel's OOM
killer at 16 GB after two hours. `malloc_trim(0)` hands the free pages inside the heap back too;
called once a minute, the same run stayed at about 1 GB at the same speed. (Capping the heap
instead, `MALLOC_MMAP_THRESHOLD_`, either slowed it by a third, at 4 MB, or still let it grow, at
32 MB: docs/benchmarks.md.)
"""
from __future__ import annotations

import ctypes
import ctypes.util

from fastai.callback.core import Callback

__all__ = ["TrimMemory", "trim_memory"]


def _malloc_trim():
    "glibc's `malloc_trim`, or None where the C library has none (macOS, Windows, musl)."
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim") if name else None
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def trim_memory() -> bool:
    "Give the C heap's free pages back to the system; False where the C library cannot (not glibc)."
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


class TrimMemory(Callback):
    """Call `trim_memory()` every `every` training batches and after every validation, so that a
    long CPU run's resident memory stays flat (see the module docstring for why it grows without).
    `vae_learner` adds it; add it to any learner whose batches change shape:
    `learn.fit(n, cbs=TrimMemory())`. A no-op where the C library is not glibc."""
    order = 95          # after everything else has let go of the batch

    def __init__(self, every: int = 100):
        if every < 1:
            raise ValueError(f"TrimMemory(every={every}): `every` must be at least 1 batch")
        self.every = every

    def after_batch(self):
        if self.training and (self.iter + 1) % self.every == 0:
            trim_memory()

    def after_validate(self):
        trim_memory()
