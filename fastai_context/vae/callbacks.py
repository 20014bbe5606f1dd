"""What a VAE run shows while it trains: the loss's parts per batch, and a readable epoch table.

`VAEBatchLogger` records reconstruction, KL, beta and the negative ELBO of every training batch
(the KL annealing schedule is only visible at this grain: per epoch, beta is one number) in a
CSV file, and in TensorBoard too when the learner has fastai's `TensorBoardCallback`.
`VAEProgress` is fastai's `ProgressCallback` with values printed so that columns never touch.
"""
from __future__ import annotations

from pathlib import Path

import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import AMPMode, MixedPrecision
from fastai.callback.progress import ProgressCallback
from fastai.torch_core import rank_distrib

from ..compat import in_lr_find
from ..workflow.runs import atomic_path

__all__ = ["VAEBatchLogger", "VAEProgress", "CPUMixedPrecision", "LatentMeans", "BATCH_COLUMNS"]

#: The columns of `VAEBatchLogger`'s file: training iteration, epoch, then nats per sentence.
BATCH_COLUMNS = ("iter", "epoch", "rec", "kl", "beta", "elbo", "loss")


def _epoch_of(line: str) -> int | None:
    "The epoch of a whole `batches.csv` row; None for a row a kill cut short."
    parts = line.split(",")
    return int(parts[1]) if len(parts) == len(BATCH_COLUMNS) and parts[1].isdigit() else None


class VAEBatchLogger(Callback):
    """After every training batch, append `iter, epoch, rec, kl, beta, elbo, loss` to `fname`
    (relative to `learn.path`) and, if the learner has a `TensorBoardCallback`, write them as
    scalars `batch/rec`, ... at step `iter`. `elbo` is the negative ELBO (rec + KL) and `loss` the
    objective (rec + beta x KL, with free bits). Rows go to the file every `flush_every` batches.

    On a resumed run (`Checkpoint(resume=True)`) the rows of epochs the checkpoint did not complete
    are dropped first, so the file holds each batch once. `fname=None` logs to TensorBoard only."""
    order = 62     # after Checkpoint (61) has restored the epoch to resume from

    def __init__(self, fname: str | Path | None = "batches.csv", flush_every: int = 50):
        self.fname, self.flush_every, self.rows = fname, flush_every, []

    @property
    def file(self) -> Path | None:
        return None if self.fname is None else Path(self.learn.path) / self.fname

    def before_fit(self):
        self.rows, self.run = [], rank_distrib() == 0 and not in_lr_find(self.learn)
        if not self.run or self.file is None:
            return
        start = getattr(getattr(self.learn, "checkpoint", None), "start_epoch", 0)
        lines = self.file.read_text().splitlines() if self.file.exists() else []
        if lines and lines[0] == ",".join(BATCH_COLUMNS):     # keep the completed epochs' whole rows
            lines = lines[:1] + [ln for ln in lines[1:] if _epoch_of(ln) is not None and _epoch_of(ln) < start]
        else:
            lines = [",".join(BATCH_COLUMNS)]
        with atomic_path(self.file) as tmp:       # a kill while trimming keeps the old rows, never half of them
            tmp.write_text("\n".join(lines) + "\n")

    def after_batch(self):
        last = getattr(self.loss_func, "last", None)
        if not (self.run and self.training) or last is None:
            return
        row = (self.train_iter, self.epoch, last["rec"], last["kl"], last["beta"], last["rec"] + last["kl"],
               float(self.loss.detach()))
        tb = getattr(self.learn, "tensor_board", None)
        if tb is not None and getattr(tb, "writer", None) is not None:
            for name, v in zip(BATCH_COLUMNS[2:], row[2:]):
                tb.writer.add_scalar(f"batch/{name}", v, row[0])
        if self.file is not None:
            self.rows.append(row)
            if len(self.rows) >= self.flush_every:
                self._flush()

    def after_epoch(self):
        if self.run:
            self._flush()

    def after_fit(self):
        if self.run:
            self._flush()

    def _flush(self):
        if self.file is None or not self.rows:
            return
        with open(self.file, "a") as f:
            f.writelines(f"{i},{e},{r:.4f},{k:.4f},{b:.6g},{el:.4f},{lo:.4f}\n" for i, e, r, k, b, el, lo in self.rows)
        self.rows = []


class LatentMeans(Callback):
    """After every validation, save the posterior means `mu (n_valid, z_dim)` of the validation
    sentences, in loader order, to `learn.path / folder / f"epoch_{epoch}.pt"` (for plots of how the
    latent space forms: `torch.load` gives the tensor)."""
    order = 62

    def __init__(self, folder: str | Path = "latents"):
        self.folder = folder

    def before_validate(self):
        self.mus = []

    def after_batch(self):
        last = getattr(self.loss_func, "last", None)
        if not self.training and last is not None:
            self.mus.append(last["mu"].float().cpu())

    def after_validate(self):
        if rank_distrib() or not self.mus or in_lr_find(self.learn):
            return
        out = Path(self.learn.path) / self.folder
        out.mkdir(parents=True, exist_ok=True)
        torch.save(torch.cat(self.mus), out / f"epoch_{self.epoch}.pt")


def _fmt(v) -> str:
    "4 decimals: wide enough for nats per sentence, narrow enough that 8-character columns stay apart."
    return f"{v:.4f}" if isinstance(v, float) else str(v)


class VAEProgress(ProgressCallback):
    """fastai's progress bar and epoch table, with values to 4 decimals: fastai's 6 decimals make
    `rec` and `kl` in nats per sentence wider than their columns (`118.6356162.195051`)."""

    @property
    def name(self):          # still `learn.progress`, so `learn.no_bar()` and friends find it
        return "progress"

    def _write_stats(self, log):
        if getattr(self, "mbar", False):
            self.mbar.write([_fmt(v) for v in log], table=True)


class CPUMixedPrecision(MixedPrecision):
    """fastai's `MixedPrecision` (bfloat16 by default) with autocast on the learner's own device type:
    fastai's autocasts CUDA only, so on a CPU it changes nothing. On a CPU with AVX-512 BF16 the
    output layer's matmuls (most of a sentence VAE's training time) run about 3x faster in bfloat16;
    weights, the loss and the optimizer stay float32, and bfloat16 needs no gradient scaling."""

    def __init__(self, amp_mode: str | AMPMode = AMPMode.BF16, **kwargs):
        super().__init__(amp_mode, **kwargs)

    def before_fit(self):
        super().before_fit()            # fastai's checks (precision, bf16 support) and its scaler settings
        device_type = next(self.model.parameters()).device.type           # where the model computes
        dtype = torch.bfloat16 if self.amp_mode == AMPMode.BF16 else torch.float16
        self.autocast = torch.autocast(device_type, dtype=dtype)
        self.learn.scaler = torch.amp.GradScaler(device_type, **self.kwargs)
