"""Data-parallel training of context language models with PyTorch DDP, through fastai and Accelerate.

fastai's `DistributedTrainer` wraps every loader in `DistributedDL`, which hands each rank a
contiguous block of items. For a language-model loader that breaks the stream layout (rows
no longer continue across batches), crashes on the short last batch, shuffles documents
with each rank's own random state, reports `n_inp = 1`, and broadcasts through `.cuda()`.
`ContextDistributedTrainer` keeps fastai's DDP/Accelerate machinery but shards the training
`ContextLanguageModelLoader` itself: `bs * world_size` streams cut from one per-epoch document
order shared by all ranks, each rank serving its own `bs` streams. Validation is not sharded:
every rank evaluates the whole validation set, so metrics equal those of one process.

Launch one process per device: `accelerate launch script.py` or
`torchrun --nproc_per_node N script.py` (CPU processes use the gloo backend).
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from fastai.callback.progress import ProgressCallback
from fastai.distributed import DistributedTrainer
from fastai.learner import Learner
from fastai.torch_core import num_distrib, rank_distrib

from .data import ContextLanguageModelLoader

__all__ = ["ContextDistributedTrainer", "distrib_ctx", "shared_seed"]


def shared_seed(seed: int | None = None) -> int:
    "`seed`, or a random seed drawn on rank 0 and broadcast, so that every rank shuffles alike."
    if seed is not None:
        return int(seed)
    seed = [random.randrange(2**31)]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(seed, src=0)
    return seed[0]


class ContextDistributedTrainer(DistributedTrainer):
    """fastai's `DistributedTrainer` (model in DDP via Accelerate), with the training
    `ContextLanguageModelLoader` sharded by rank instead of wrapped in `DistributedDL`."""

    def __init__(self, sync_bn: bool = True, shuffle_seed: int | None = None, **kwargs):
        kwargs.setdefault("cpu", not torch.cuda.is_available())   # Accelerate needs it to see several CPU processes
        super().__init__(sync_bn=sync_bn, **kwargs)
        self.shuffle_seed = shuffle_seed

    def before_fit(self):
        self._train = self.dls.train
        self._seed = shared_seed(self.shuffle_seed if self.shuffle_seed is not None
                                 else getattr(self._train, "shuffle_seed", None))
        super().before_fit()

    def _wrap_dl(self, dl):
        if not isinstance(dl, ContextLanguageModelLoader):
            return super()._wrap_dl(dl)
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        if dl is not self._train or (dl.rank, dl.world_size) == (rank, world):
            return dl        # validation, or already sharded
        return dl.new(rank=rank, world_size=world, shuffle_seed=self._seed)


@contextmanager
def distrib_ctx(learn: Learner, sync_bn: bool = True, shuffle_seed: int | None = None, **kwargs) -> Iterator[Learner]:
    """Train `learn` data-parallel inside this block when launched with several processes
    (`accelerate launch` / `torchrun`); a no-op in a single process. Only rank 0 shows
    progress bars and logs. `kwargs` go to `accelerate.Accelerator`."""
    if num_distrib() <= 1:
        yield learn
        return
    cb = ContextDistributedTrainer(sync_bn=sync_bn, shuffle_seed=shuffle_seed, **kwargs)
    learn.add_cb(cb)
    removed = [c for c in learn.cbs if isinstance(c, ProgressCallback)] if rank_distrib() else []
    learn.remove_cbs(removed)
    try:
        yield learn
    finally:
        learn.remove_cb(cb)
        learn.add_cbs(removed)
