"""Resumable, guarded training: an atomic checkpoint after every epoch, exact resumption from it,
and a clear error when training diverges.

A checkpoint holds everything the next epoch depends on: weights, optimizer state, the
number of completed epochs, the python/numpy/torch random states (per rank), the loaders'
document order, random generators and epoch counters, the recorder's smoothed loss and
history, the state of callbacks that have a `state_dict()`, plus the vocabulary and context
encoder so that a checkpoint is never loaded into a model whose token ids or context
features mean something else.

Resuming replays the completed epochs as no-ops (like fastai's `start_epoch`, but without
logging empty rows), so the one-cycle schedule, the shuffling and the dropout masks of the
remaining epochs are those of an uninterrupted run with the same seed.

A checkpoint is verified before it is used: `torch.save` writes a zip archive with a CRC-32
of every member (the pickle and each tensor's bytes), so a truncated, emptied or bit-flipped
file is refused by name instead of "resuming" with damaged weights. The checkpoint before
the latest one is kept as `<name>.prev.pth`, and resuming falls back to it (saying so) when
the latest one is damaged or missing.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.core import Callback, CancelEpochException, CancelFitException
from fastai.callback.progress import CSVLogger
from fastai.torch_core import get_model, rank_distrib

from ..compat import close_csv_logger, in_lr_find, load_smooth_loss_state, smooth_loss_state
from ..context import ContextEncoder
from .runs import atomic_path, clean_stale_temporaries
from ..text import vocab_of

__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "verify_checkpoint", "check_compatible",
           "RaiseOnNaNCallback", "NonFiniteLossError"]


class CheckpointError(ValueError):
    """A checkpoint is damaged, or belongs to another run (other vocabulary, context encoder or
    number of epochs). `message` is the one-line explanation (fastai prefixes `str(e)` with the
    callback that raised it)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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


def _encoder(dls) -> ContextEncoder | None:
    return getattr(dls.train, "context_encoder", None) if getattr(dls, "loaders", None) else None


def check_compatible(ckpt: dict, dls, fname: str | Path = "checkpoint") -> None:
    "Refuse (`CheckpointError`) a checkpoint whose vocabulary or context encoder differs from the one of `dls`."
    vocab, saved = vocab_of(dls), ckpt.get("vocab")
    if saved is not None and vocab is not None and saved != vocab:
        diff = next((i for i, (a, b) in enumerate(zip(saved, vocab)) if a != b), min(len(saved), len(vocab)))
        at = (f"; first difference at id {diff}: {saved[diff]!r} in the checkpoint vs {vocab[diff]!r} now"
              if diff < min(len(saved), len(vocab)) else "")
        raise CheckpointError(f"checkpoint {str(fname)!r} was trained with a different vocabulary "
                         f"({len(saved)} tokens in the checkpoint, {len(vocab)} now{at}); "
                         "rebuild the DataLoaders with the checkpoint's vocabulary (text_vocab=...) or start a new run")
    enc, saved_enc = _encoder(dls), ckpt.get("context_encoder")
    if saved_enc is not None and enc is not None and not saved_enc.same_as(enc):
        raise CheckpointError(f"checkpoint {str(fname)!r} was trained with a different context encoder: "
                         f"{saved_enc!r} with statistics {saved_enc.numeric} and categories {saved_enc.categories}, "
                         f"but the DataLoaders have {enc!r} with {enc.numeric} and {enc.categories}; "
                         "build them from the same training data and context columns, or start a new run")


def verify_checkpoint(path: str | Path) -> None:
    """Raise `CheckpointError` naming `path` unless it is a complete `torch.save` archive whose
    every member (the pickle and each tensor's bytes) matches the CRC-32 stored beside it."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes): it was damaged, e.g. by a full disk")
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()                 # reads every member and compares its CRC-32
    except Exception as e:                    # BadZipFile, EOFError, struct or zlib errors of a damaged archive
        raise CheckpointError(f"checkpoint {str(path)!r} is damaged or truncated ({size} bytes, not a readable "
                              f"archive: {' '.join(str(e).split()) or type(e).__name__})") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {str(path)!r} is damaged: its member {bad!r} fails its CRC-32 check")


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by `Checkpoint` (it pickles the encoder and random states: load only
    your own), after `verify_checkpoint`; a damaged or foreign file raises `CheckpointError` naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    verify_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"checkpoint {str(path)!r} could not be read ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]})") from None
    if not isinstance(ckpt, dict) or not {"epoch", "n_epoch", "model", "opt"} <= set(ckpt):
        raise CheckpointError(f"{str(path)!r} is not a checkpoint written by fastai_context's Checkpoint")
    return ckpt


class Checkpoint(Callback):
    """After every epoch, atomically write `fname` (in `path`, default `learn.path`) with
    model, optimizer, completed epochs, random states, vocab and context encoder.

    With `resume=True` and an existing checkpoint, `before_fit` restores it and the epochs it
    completed are skipped. Call `fit`/`fit_one_cycle` with the same arguments as the original
    run; a `CSVLogger(append=True)` keeps one row per epoch (and one header: a resume without
    any checkpoint starts over with a fresh history). The previous checkpoint is kept as
    `<fname stem>.prev.pth`; a damaged (or missing) latest one falls back to it, said on the
    console. A refused resume (damaged, other vocabulary, context or epoch count) raises
    `CheckpointError` and leaves the appended CSV logs as they were. A callback with state of its own
    (e.g. a schedule's step count) is saved and restored too if it has `state_dict()` and
    `load_state_dict(state)`, as torch modules and optimizers do."""
    order = 61   # after Recorder (50) has logged the epoch and CSVLogger/ProgressCallback (60) set up

    def __init__(self, path: str | Path | None = None, fname: str = "checkpoint.pth", resume: bool = False):
        self.path, self.fname, self.resume = path, fname, resume
        self.start_epoch = 0
        self._quiet = contextlib.ExitStack()

    @property
    def file(self) -> Path:
        return Path(self.learn.path if self.path is None else self.path) / self.fname

    @property
    def prev_file(self) -> Path:
        "The checkpoint before the latest one."
        f = self.file
        return f.with_name(f"{f.stem}.prev{f.suffix or '.pth'}")

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
            "smooth_loss": smooth_loss_state(rec.smooth_loss),
            "values": [list(v) for v in rec.values], "iters": list(rec.iters),
            "vocab": vocab_of(self.dls), "context_encoder": _encoder(self.dls),
            "callbacks": {_cb_key(cb): cb.state_dict() for cb in self.learn.cbs if _has(cb, "state_dict")},
        }

    def after_epoch(self):
        if self.epoch < self.start_epoch:         # a skipped epoch: restore its recorded values
            self.learn.recorder.values[-1] = self._saved["values"][self.epoch]
            self.learn.recorder.iters[-1] = self._saved["iters"][self.epoch]
            self.learn.final_record = self.learn.recorder.values[-1]
            self._quiet.close()                   # the Recorder (order 50) has not logged it
            return
        state = self.state()                      # every rank takes part in gathering random states
        if rank_distrib() == 0:
            self.save(state)

    def save(self, state: dict | None = None) -> Path:
        """Write `state` (default: `self.state()`) to `file` through a temporary file, verify it,
        and keep the checkpoint it replaces as `prev_file`."""
        state = self.state() if state is None else state
        with atomic_path(self.file) as tmp:
            torch.save(state, tmp)
            verify_checkpoint(tmp)                # a full disk or a broken writer fails now, not at resume
            if self.file.exists():                # keep one fallback; a kill between the two moves leaves it
                os.replace(self.file, self.prev_file)
        return self.file

    # ---------------------------------------------------------------- resume
    def load(self, dls=None, n_epoch: int | None = None, verbose: bool = True) -> dict | None:
        """The checkpoint to resume from (None if there is none), checked against `dls` and `n_epoch`:
        the latest one, or the previous one when the latest is damaged or missing (said on the
        console). Raises `CheckpointError` naming the file when none can be used. Call it before
        `fit` to check a resume without writing anything; `before_fit` then uses its result."""
        errors = []
        for f in (self.file, self.prev_file):
            if not f.exists():
                continue
            try:
                ckpt = load_checkpoint(f)
            except CheckpointError as e:
                errors.append(e.message)
                continue
            if dls is not None:
                check_compatible(ckpt, dls, f)
            if n_epoch is not None and ckpt["n_epoch"] != n_epoch:
                raise CheckpointError(f"checkpoint {str(f)!r} belongs to a {ckpt['n_epoch']}-epoch run but fit was "
                                      f"called with {n_epoch} epochs; resume with the original number so the "
                                      "schedule matches")
            if f != self.file and verbose and rank_distrib() == 0:
                why = errors[0] if errors else f"{str(self.file)!r} is missing"
                print(f"{why}; resuming from the previous checkpoint {str(f)!r} (epoch {ckpt['epoch']})", flush=True)
            self._loaded = (ckpt, f, id(dls), n_epoch)
            return ckpt
        if errors:
            raise CheckpointError(" and ".join(errors) + ("" if len(errors) > 1 else
                                  f"; there is no previous checkpoint {str(self.prev_file)!r} to fall back to")
                                  + ": start a new run")
        return None

    def before_fit(self):
        self.start_epoch, self._saved = 0, None
        if not self.resume:
            self._clean_temporaries()
            return
        try:
            loaded = getattr(self, "_loaded", None)
            if loaded is not None and loaded[2:] == (id(self.dls), self.n_epoch):
                ckpt = loaded[0]                  # loaded and checked by `load` before `fit`
            else:
                ckpt = self.load(self.dls, self.n_epoch)
        except Exception:
            self._undo_csv_headers()              # a refused resume leaves the logs as they were
            raise
        finally:
            self._loaded = None
        self._clean_temporaries()
        if ckpt is None:                          # nothing to resume: start over, with one header
            self._trim_csv_logs()
            return
        get_model(self.model).load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["opt"])
        rng = ckpt["rng"]
        _set_rng_state(rng[rank_distrib()] if rank_distrib() < len(rng) else rng[0])
        for dl, st in zip(self.dls.loaders, ckpt["loaders"]):
            _set_loader_state(dl, st)
        rec = self.learn.recorder
        smooth = ckpt["smooth_loss"]
        if isinstance(smooth, tuple):             # checkpoints written before it had a state dict
            smooth = {"count": smooth[0], "val": smooth[1]}
        load_smooth_loss_state(rec.smooth_loss, smooth)
        for cb in self.learn.cbs:
            if _has(cb, "load_state_dict") and _cb_key(cb) in ckpt["callbacks"]:
                cb.load_state_dict(ckpt["callbacks"][_cb_key(cb)])
        # keep only what the skipped epochs need: holding the whole checkpoint would keep a second copy of
        # the weights and optimizer state in memory for the rest of the run
        self._saved, self.start_epoch = {"values": ckpt["values"], "iters": ckpt["iters"]}, ckpt["epoch"]
        self._trim_csv_logs()

    def _clean_temporaries(self):
        "Remove the temporary files a kill during a checkpoint write left behind."
        if rank_distrib() == 0:
            for f in (self.file, self.prev_file):
                clean_stale_temporaries(f.parent, f.name)

    def before_epoch(self):
        if self.epoch < self.start_epoch:
            # fastai's own `no_logging` switch, until `after_epoch`: a skipped epoch logs no row
            self._quiet.enter_context(self.learn.no_logging())
            raise CancelEpochException

    def after_fit(self):
        self._quiet.close()

    def _csv_loggers(self):
        for cb in self.learn.cbs:
            f = getattr(cb, "file", None)
            if isinstance(cb, CSVLogger) and f is not None and not f.closed:
                yield cb, f

    def _undo_csv_headers(self):
        "Remove the header each appending `CSVLogger` wrote in this `before_fit` (fit stops before `after_fit`)."
        header = ",".join(self.learn.recorder.metric_names) + "\n"
        for cb, f in list(self._csv_loggers()):
            f.flush()
            path = Path(f.name)
            size = path.stat().st_size
            with open(path, "rb") as r:
                r.seek(max(0, size - len(header.encode())))
                tail = r.read()
            close_csv_logger(cb)                  # its file, and the learner's logger as before the fit
            if tail == header.encode():
                with open(path, "r+b") as w:
                    w.truncate(size - len(tail))
                if size == len(tail):             # the file was made by this fit
                    path.unlink()

    def _trim_csv_logs(self):
        "Keep the header and the rows of completed epochs in every appending `CSVLogger` file."
        for cb, f in self._csv_loggers():
            f.flush()
            lines = Path(f.name).read_text().splitlines(keepends=True)
            rows = [ln for ln in lines[1:] if _row_epoch(ln) is not None and _row_epoch(ln) < self.start_epoch]
            f.truncate(0)
            f.write("".join(lines[:1] + rows))
            f.flush()


# ----------------------------------------------------------------------- a guard against divergence
class NonFiniteLossError(FloatingPointError):
    "The training loss became NaN or infinite, or the learning rate is not a finite, non-negative number."


class RaiseOnNaNCallback(Callback):
    """Stop `fit` with `NonFiniteLossError` naming the epoch and batch when the training loss is
    NaN or infinite (fastai's `TerminateOnNaNCallback` stops silently, and the run then exports a
    NaN model), or when the learning rate about to be used is NaN, infinite or negative (and
    refuse `fit` with no epoch at all, which would "train" nothing without a word). The
    check comes before the optimizer step, so the weights stay those of the last good batch.
    Under `lr_find`, where divergence is the point, it just ends the search like fastai's."""
    order = 62        # after ParamScheduler (60) has set this batch's learning rate

    def _where(self) -> str:
        return f"epoch {self.epoch}, batch {self.iter} (of {self.n_iter})"

    def before_fit(self):
        if self.n_epoch < 1:
            raise ValueError(f"fit was called with n_epoch={self.n_epoch}: train at least one epoch")

    def before_batch(self):
        if not self.training or in_lr_find(self.learn):
            return
        lrs = [h["lr"] for h in self.opt.hypers if "lr" in h]
        bad = next((lr for lr in lrs if not (math.isfinite(float(lr)) and float(lr) >= 0)), None)
        if bad is not None:
            raise NonFiniteLossError(f"the learning rate is {bad} at {self._where()}: use a finite, positive "
                                     "learning rate")

    def after_loss(self):
        if not self.training:
            return
        loss = self.loss.detach()
        if bool(torch.isfinite(loss).all()):
            return
        if in_lr_find(self.learn):
            raise CancelFitException
        lr = self.opt.hypers[-1].get("lr", math.nan)
        raise NonFiniteLossError(f"the training loss is {float(loss.float().mean())} at {self._where()}: "
                                 f"training diverged; lower the learning rate (this batch's is {float(lr):.3g}) "
                                 "or check the inputs for NaN or inf")
