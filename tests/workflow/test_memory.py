"""TrimMemory: freed heap pages go back to the system, on a schedule, by default in vae_learner."""
import subprocess
import sys
import warnings

import pytest

from fastai_context import TrimMemory, datasets
from fastai_context.vae import SentenceDataLoaders, vae_learner
from fastai_context.workflow import memory

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or memory._TRIM is None,
                           reason="malloc_trim is glibc's")


FRAGMENT = """
import os, torch
from fastai_context.workflow.memory import trim_memory
def rss_mb(): return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
# What a run with varying batch shapes does to glibc's heap: blocks of changing sizes freed while
# smaller tensors allocated between them live on, so the heap cannot shrink from its top.
big = torch.empty(8 * 2**20 // 4)
del big                                           # glibc now serves blocks up to 8 MB from its heap
blocks, pins = [], []
for i in range(100):
    blocks.append(torch.ones(2 * 2**20 // 4 + 64 * i))       # ~2 MB each, touched
    pins.append(torch.ones(16384))                             # 64 KB each, kept
del blocks
kept = rss_mb()
print(kept, trim_memory(), rss_mb(), len(pins))
"""


@glibc
def test_trim_memory_returns_the_pages_a_fragmented_heap_keeps():
    # in a fresh interpreter: the test process's own heap (free chunks of earlier tests) would
    # decide where the small tensors go
    out = subprocess.run([sys.executable, "-c", FRAGMENT], capture_output=True, text=True, check=True).stdout
    kept, ok, trimmed, pins = out.split()
    assert ok == "True" and pins == "100"
    assert float(trimmed) < float(kept) - 120      # ~200 MB were free but still resident


def test_trim_memory_is_called_every_n_batches_and_after_validation(monkeypatch, data_dir):
    calls = []
    monkeypatch.setattr(memory, "trim_memory", lambda: calls.append(1) or True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = SentenceDataLoaders.from_texts(datasets.song_titles()[:640], bs=32, seed=0, max_len=12)
    learn = vae_learner(dls, z_dim=4, emb_sz=16, hidden_sz=16, cbs=TrimMemory(every=5))
    assert len(learn.cbs.filter(lambda c: isinstance(c, TrimMemory))) == 1     # the caller's, not a second one
    n_train = len(dls.train)
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-3)
    assert len(calls) == 2 * (n_train // 5 + 1)    # every 5th training batch, and after each validation


def test_vae_learner_trims_by_default_and_every_must_be_positive(data_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = SentenceDataLoaders.from_texts(datasets.song_titles()[:320], bs=32, seed=0, max_len=12)
    learn = vae_learner(dls, z_dim=4, emb_sz=16, hidden_sz=16)
    assert [cb.every for cb in learn.cbs if isinstance(cb, TrimMemory)] == [100]
    with pytest.raises(ValueError, match="every=0"):
        TrimMemory(every=0)
