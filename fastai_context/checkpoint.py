"""Resumable training: an atomic checkpoint after every epoch, and exact resumption from it.

A checkpoint holds everything the next epoch depends on: weights, optimizer state, the
number of completed epochs, the python/numpy/torch random states (per rank), the loaders'
document order, random generators and epoch counters, the recorder's smoothed loss and
history, the state of callbacks that have a `state_dict()`, plus the vocabulary and context
encoder so that a checkpoint is never loaded into a model whose token ids or context
features mean something else.

Resuming replays the completed epochs as no-ops (like fastai's `start_epoch`, but without
logging empty rows), so the one-cycle schedule, the shuffling and the dropout masks of the
remaining epochs are those of an uninterrupted run with the same seed.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.core import Callback, CancelEpochException
from fastai.callback.progress import CSVLogger
from fastai.torch_core import get_model, rank_distrib

from .context import ContextEncoder
from .runs import atomic_path

__all__ = ["Checkpoint", "load_checkpoint", "check_compatible"]


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _loader_state(dl) -> dict:
    """A loader's state through its own `state_dict()` (a language-model loader: its random
    generator, document order and epoch counter); else just its random generator."""
    if hasattr(dl, "state_dict"):
        return dl.state_dict()
    return {"rng": dl.rng.getstate()} if isinstance(getattr(dl, "rng", None), random.Random) else {}


def _set_loader_state(dl, state: dict) -> None:
    if hasattr(dl, "load_state_dict"):
        dl.load_state_dict(state)
    elif "rng" in state:
        dl.rng.setstate(state["rng"])


def _cb_key(cb) -> str:
    return type(cb).__name__


def _has(cb, method: str) -> bool:
    "Whether the callback's class defines `method` (a fastai callback forwards unknown attributes to the learner)."
    return callable(getattr(type(cb), method, None))


def _row_epoch(line: str) -> int | None:
    "The epoch of a CSVLogger row (None for a header or a blank line)."
    first = line.split(",", 1)[0]
    return int(first) if first.isdigit() else None


def _all_ranks(obj: Any) -> list:
    "`obj` of every rank, in rank order (just `[obj]` outside distributed training)."
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    out = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def _vocab(dls) -> list[str] | None:
    v = getattr(dls, "vocab", None)
    if v is not None and len(v) and isinstance(v[0], (list, tuple)):   # fastai's (text vocab, label vocab)
        v = v[0]
    return None if v is None else list(v)


def _encoder(dls) -> ContextEncoder | None:
    return getattr(dls.train, "context_encoder", None) if getattr(dls, "loaders", None) else None


def check_compatible(ckpt: dict, dls, fname: str | Path = "checkpoint") -> None:
    "Refuse a checkpoint whose vocabulary or context encoder differs from the one of `dls`."
    vocab, saved = _vocab(dls), ckpt.get("vocab")
    if saved is not None and vocab is not None and saved != vocab:
        diff = next((i for i, (a, b) in enumerate(zip(saved, vocab)) if a != b), min(len(saved), len(vocab)))
        at = (f"; first difference at id {diff}: {saved[diff]!r} in the checkpoint vs {vocab[diff]!r} now"
              if diff < min(len(saved), len(vocab)) else "")
        raise ValueError(f"checkpoint {str(fname)!r} was trained with a different vocabulary "
                         f"({len(saved)} tokens in the checkpoint, {len(vocab)} now{at}); "
                         "rebuild the DataLoaders with the checkpoint's vocabulary (text_vocab=...) or start a new run")
    enc, saved_enc = _encoder(dls), ckpt.get("context_encoder")
    if saved_enc is not None and enc is not None and not saved_enc.same_as(enc):
        raise ValueError(f"checkpoint {str(fname)!r} was trained with a different context encoder: "
                         f"{saved_enc!r} with statistics {saved_enc.numeric} and categories {saved_enc.categories}, "
                         f"but the DataLoaders have {enc!r} with {enc.numeric} and {enc.categories}; "
                         "build them from the same training data and context columns, or start a new run")


def load_checkpoint(path: str | Path) -> dict:
    "Read a checkpoint written by `Checkpoint` (it pickles the encoder and random states: load only your own)."
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    return torch.load(path, map_location="cpu", weights_only=False)


class Checkpoint(Callback):
    """After every epoch, atomically write `fname` (in `path`, default `learn.path`) with
    model, optimizer, completed epochs, random states, vocab and context encoder.

    With `resume=True` and an existing checkpoint, `before_fit` restores it and the epochs it
    completed are skipped. Call `fit`/`fit_one_cycle` with the same arguments as the original
    run; a `CSVLogger(append=True)` keeps one row per epoch. A callback with state of its own
    (e.g. a schedule's step count) is saved and restored too if it has `state_dict()` and
    `load_state_dict(state)`, as torch modules and optimizers do."""
    order = 61   # after Recorder (50) has logged the epoch and CSVLogger/ProgressCallback (60) set up

    def __init__(self, path: str | Path | None = None, fname: str = "checkpoint.pth", resume: bool = False):
        self.path, self.fname, self.resume = path, fname, resume
        self.start_epoch = 0

    @property
    def file(self) -> Path:
        return Path(self.learn.path if self.path is None else self.path) / self.fname

    # ------------------------------------------------------------------ save
    def state(self) -> dict:
        "Everything the next epoch depends on."
        rec = self.learn.recorder
        return {
            "epoch": self.epoch + 1, "n_epoch": self.n_epoch,
            "model": get_model(self.model).state_dict(),
            "opt": self.opt.state_dict(),
            "rng": _all_ranks(_rng_state()),
            "loaders": [_loader_state(dl) for dl in self.dls.loaders],
            "smooth_loss": (rec.smooth_loss.count, rec.smooth_loss.val),
            "values": [list(v) for v in rec.values], "iters": list(rec.iters),
            "vocab": _vocab(self.dls), "context_encoder": _encoder(self.dls),
            "callbacks": {_cb_key(cb): cb.state_dict() for cb in self.learn.cbs if _has(cb, "state_dict")},
        }

    def after_epoch(self):
        if self.epoch < self.start_epoch:         # a skipped epoch: restore its recorded values
            self.learn.recorder.values[-1] = self._saved["values"][self.epoch]
            self.learn.recorder.iters[-1] = self._saved["iters"][self.epoch]
            self.learn.final_record = self.learn.recorder.values[-1]
            return
        state = self.state()                      # every rank takes part in gathering random states
        if rank_distrib() == 0:
            with atomic_path(self.file) as tmp:
                torch.save(state, tmp)

    # ---------------------------------------------------------------- resume
    def before_fit(self):
        self.start_epoch = 0
        if not self.resume or not self.file.exists():
            return
        ckpt = load_checkpoint(self.file)
        check_compatible(ckpt, self.dls, self.file)
        if ckpt["n_epoch"] != self.n_epoch:
            raise ValueError(f"checkpoint {str(self.file)!r} belongs to a {ckpt['n_epoch']}-epoch run but fit was called "
                             f"with {self.n_epoch} epochs; resume with the original number so the schedule matches")
        get_model(self.model).load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["opt"])
        rng = ckpt["rng"]
        _set_rng_state(rng[rank_distrib()] if rank_distrib() < len(rng) else rng[0])
        for dl, st in zip(self.dls.loaders, ckpt["loaders"]):
            _set_loader_state(dl, st)
        rec = self.learn.recorder
        rec.smooth_loss.count, rec.smooth_loss.val = ckpt["smooth_loss"]
        for cb in self.learn.cbs:
            if _has(cb, "load_state_dict") and _cb_key(cb) in ckpt["callbacks"]:
                cb.load_state_dict(ckpt["callbacks"][_cb_key(cb)])
        self._saved, self.start_epoch = ckpt, ckpt["epoch"]
        self._trim_csv_logs()
        self._log, self.learn.logger = self.learn.logger, self._log_unless_skipped

    def before_epoch(self):
        if self.epoch < self.start_epoch:
            raise CancelEpochException

    def _log_unless_skipped(self, log):
        if self.epoch >= self.start_epoch:
            self._log(log)

    def after_fit(self):
        if self.learn.logger == self._log_unless_skipped:
            self.learn.logger = self._log

    def _trim_csv_logs(self):
        "Keep the header and the rows of completed epochs in every appending `CSVLogger` file."
        for cb in self.learn.cbs:
            f = getattr(cb, "file", None)
            if not isinstance(cb, CSVLogger) or f is None or f.closed:
                continue
            f.flush()
            lines = Path(f.name).read_text().splitlines(keepends=True)
            rows = [ln for ln in lines[1:] if _row_epoch(ln) is not None and _row_epoch(ln) < self.start_epoch]
            f.truncate(0)
            f.write("".join(lines[:1] + rows))
            f.flush()
