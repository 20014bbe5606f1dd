"""Data-parallel training of context language models with PyTorch DDP, through fastai and Accelerate.

fastai's `DistributedTrainer` wraps every loader in `DistributedDL`, which hands each rank a
contiguous block of items. For a language-model loader that breaks the stream layout (rows
no longer continue across batches), crashes on the short last batch, shuffles documents
with each rank's own random state, reports `n_inp = 1`, and broadcasts through `.cuda()`.
`ContextDistributedTrainer` keeps fastai's DDP/Accelerate machinery but shards the training
`ContextLanguageModelLoader` itself: `bs * world_size` streams cut from one per-epoch document
order shared by all ranks, each rank serving its own `bs` streams. Validation is not sharded:
every rank evaluates the whole validation set, so metrics equal those of one process.

Launch one process per device (CPU processes use the gloo backend):
`torchrun --nproc_per_node N script.py`, or `accelerate launch --multi_gpu --num_processes N script.py`.
`--multi_gpu` matters: without it, on a machine with fewer than two GPUs, accelerate's simple
launcher starts ONE process (it expects `mpirun` to start the others), and training would
silently run alone; `check_launch` turns that into a clear error. With `--multi_gpu`
accelerate starts the N processes through torchrun, on CPUs as well as GPUs.
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from fastai.callback.progress import ProgressCallback
from fastai.learner import Learner
from fastai.torch_core import num_distrib, rank_distrib

from ..compat import HookedDistributedTrainer
from ..lm.data import ContextLanguageModelLoader
from .runs import ConfigError

__all__ = ["ContextDistributedTrainer", "distrib_ctx", "shared_seed", "check_launch"]

# What a launcher that really started several processes sets: torchrun (also behind `accelerate launch
# --multi_gpu`) sets RANK/WORLD_SIZE; mpirun (accelerate's simple launcher with a hostfile) its own.
_STARTED_RANKS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def check_launch(environ: Mapping[str, str] = os.environ) -> None:
    """Refuse a one-process run that was launched as several: `accelerate launch --num_processes N`
    without `--multi_gpu` on a machine with fewer than two GPUs runs its "simple launcher", which
    starts this process alone (it sets MASTER_ADDR for an mpirun that never ran, and no RANK)."""
    simple_launcher = "ACCELERATE_USE_CPU" in environ and "ACCELERATE_MIXED_PRECISION" in environ
    if simple_launcher and "MASTER_ADDR" in environ and not any(k in environ for k in _STARTED_RANKS):
        raise ConfigError(
            "accelerate launch started only this one process although --num_processes asked for several: without "
            "--multi_gpu (and with fewer than two GPUs) it leaves starting the others to mpirun. Use "
            "`accelerate launch --multi_gpu --num_processes N -m fastai_context.cli ...` (it starts N processes "
            "through torchrun, on CPUs too) or `torchrun --nproc_per_node N -m fastai_context.cli ...`; for one "
            "process drop --num_processes.")


def shared_seed(seed: int | None = None) -> int:
    "`seed`, or a random seed drawn on rank 0 and broadcast, so that every rank shuffles alike."
    if seed is not None:
        return int(seed)
    seed = [random.randrange(2**31)]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(seed, src=0)
    return seed[0]


class ContextDistributedTrainer(HookedDistributedTrainer):
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

    def wrap_dl(self, dl):
        "Shard the training context loader by rank; any other loader as fastai does (`DistributedDL`)."
        if not isinstance(dl, ContextLanguageModelLoader):
            return super().wrap_dl(dl)
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
