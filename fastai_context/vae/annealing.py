"""KL annealing: the weight beta of the KL term as training proceeds.

Starting with beta near 0 lets the decoder learn to use z before the KL term pushes the
posterior onto the prior (Bowman et al. 2016); the cyclical schedule repeats that warm-up
several times (Fu et al. 2019), which keeps more information in z.
"""
from __future__ import annotations

import math

from fastai.callback.core import Callback

__all__ = ["SCHEDULES", "kl_beta", "KLAnnealing"]

SCHEDULES = ("constant", "linear", "logistic", "cyclical")


def _sigmoid(x: float) -> float:
    "1 / (1 + e^-x) without overflow for a steep schedule far from its midpoint."
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def kl_beta(schedule: str, step: int, warmup: int, ratio: float = 0.5, beta_max: float = 1.0,
            k: float | None = None, x0: float | None = None) -> float:
    """beta after `step` training batches.

    - `'constant'`: `beta_max` throughout.
    - `'linear'`: from 0 to `beta_max` over `warmup` steps, then flat.
    - `'logistic'`: `beta_max / (1 + exp(-k (step - x0)))`: steepness `k` and midpoint `x0` (in
      steps) as in Bowman et al. and timbmg/Sentence-VAE (its defaults: `k=0.0025, x0=2500`).
      Left at None they follow `warmup`: `k = 10 / warmup`, `x0 = warmup / 2`, so beta is 0.7%
      of `beta_max` at step 0, half at `warmup/2`, 99.3% at `warmup`.
    - `'cyclical'`: cycles of `warmup` steps; in each, beta rises linearly from 0 to `beta_max`
      over the first `ratio` of the cycle, then stays at `beta_max` (Fu et al. 2019)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"kl_schedule={schedule!r}: use one of {SCHEDULES}")
    if schedule == "constant":
        return beta_max
    if k is not None and k <= 0:
        raise ValueError(f"kl_k={k} must be > 0 (the logistic schedule's steepness per step)")
    if (k is not None or x0 is not None) and schedule != "logistic":
        raise ValueError(f"kl_k and kl_x0 shape the 'logistic' schedule, not {schedule!r}")
    if schedule == "logistic" and k is not None and x0 is not None:
        return beta_max * _sigmoid(k * (step - x0))
    if warmup <= 0:
        raise ValueError(f"kl_warmup={warmup} must be a positive number of steps for schedule {schedule!r}")
    if schedule == "linear":
        return beta_max * min(1.0, step / warmup)
    if schedule == "logistic":
        k = 10.0 / warmup if k is None else k
        x0 = warmup / 2 if x0 is None else x0
        return beta_max * _sigmoid(k * (step - x0))
    if not 0 < ratio <= 1:
        raise ValueError(f"kl_ratio={ratio} must be in (0, 1]")
    tau = (step % warmup) / warmup
    return beta_max * min(1.0, tau / ratio)


class KLAnnealing(Callback):
    """Set `learn.loss_func.beta` before every batch from the schedule.

    The step count `kl_step` lives on the callback and goes on across `fit` calls. `warmup` is a number
    of training batches, or a float in (0, 1): that fraction of the first `fit`'s batches. `k` and `x0`
    set the logistic schedule's steepness and midpoint (steps) independently of `warmup`."""
    order = -5

    def __init__(self, schedule: str = "linear", warmup: int | float = 0.3, ratio: float = 0.5, beta_max: float = 1.0,
                 k: float | None = None, x0: float | None = None):
        kl_beta(schedule, 0, 1, ratio, beta_max, k, x0)      # validate the arguments now, not at the first batch
        self.schedule, self.warmup, self.ratio, self.beta_max, self.kl_step = schedule, warmup, ratio, beta_max, 0
        self.k, self.x0 = k, x0

    def before_fit(self):
        if isinstance(self.warmup, float) and 0 < self.warmup < 1:
            self.warmup = max(1, round(self.warmup * self.n_epoch * len(self.dls.train)))

    @property
    def beta(self) -> float:
        return kl_beta(self.schedule, self.kl_step, self.warmup, self.ratio, self.beta_max, self.k, self.x0)

    def before_batch(self):
        self.learn.loss_func.beta = self.beta

    def after_batch(self):
        if self.training:
            self.kl_step += 1

    def state_dict(self) -> dict:
        "What a resumed run needs to continue the schedule where it stopped (saved by `Checkpoint`)."
        return {"kl_step": self.kl_step, "warmup": self.warmup}

    def load_state_dict(self, state: dict) -> None:
        self.kl_step, self.warmup = state["kl_step"], state["warmup"]

    def before_validate(self):
        "Validation losses are reported at the current beta."
        self.learn.loss_func.beta = self.beta
