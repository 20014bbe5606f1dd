"""The VAE's loss and the numbers that tell whether the latent code is used.

`VAELoss` is reconstruction NLL summed over tokens (with xxeos) + beta * KL, per sentence,
averaged over the batch. It keeps the batch's parts in `.last`, which the metrics below
average over the validation set: reconstruction, KL, beta, ELBO, perplexity, active units
and mutual information.
"""
from __future__ import annotations

import math

import torch
from fastai.metrics import Metric

from ..losses import summed_cross_entropy
from .model import gaussian_kl, packed_tokens

__all__ = ["VAELoss", "mutual_information", "active_units", "Reconstruction", "KL", "Beta", "ELBO",
           "ELBOPerplexity", "ActiveUnits", "MutualInformation", "vae_metrics"]


class VAELoss:
    """`rec + beta * KL` in nats per sentence. `free_bits` (Kingma et al. 2016) is a floor on the
    batch-average KL of each latent dimension in the objective: below it a dimension's KL is not
    penalized, so the optimizer has no reason to collapse it."""

    def __init__(self, pad_idx: int = 1, free_bits: float = 0.0, beta: float = 1.0):
        if free_bits < 0:
            raise ValueError(f"free_bits={free_bits} must be >= 0 (nats per latent dimension)")
        self.pad_idx, self.free_bits, self.beta, self.last = pad_idx, free_bits, beta, None

    def __call__(self, pred, y: torch.Tensor) -> torch.Tensor:
        logits, mu, logvar = pred
        bs = len(y)
        target = packed_tokens(y, (y != self.pad_idx).sum(1))
        rec = summed_cross_entropy(logits, target) / bs
        kl_dims = gaussian_kl(mu, logvar)
        kl = kl_dims.sum(1).mean()
        kl_objective = kl_dims.mean(0).clamp_min(self.free_bits).sum() if self.free_bits else kl
        self.last = dict(rec=rec.item(), kl=kl.item(), bs=bs, n_tokens=len(target), beta=self.beta,
                         mu=mu.detach(), logvar=logvar.detach())
        return rec + self.beta * kl_objective

    def __getstate__(self):     # `export` saves the loss; the last batch's tensors need not go with it
        return {**self.__dict__, "last": None}


def mutual_information(mu: torch.Tensor, logvar: torch.Tensor) -> float:
    """I(x; z) under q, by the minibatch estimator of He et al. (2019): E[log q(z|x)] - E[log q(z)],
    with q(z) approximated by the mixture of the batch's posteriors."""
    bs, nz = mu.shape
    if nz == 0 or bs < 2:
        return 0.0
    neg_entropy = (-0.5 * nz * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()                     # one z per x
    var = logvar.exp()
    dev = z[:, None] - mu[None]                                              # (bs_z, bs_x, nz)
    log_density = -0.5 * (dev.pow(2) / var[None]).sum(-1) - 0.5 * (nz * math.log(2 * math.pi) + logvar.sum(-1))[None]
    log_qz = torch.logsumexp(log_density, dim=1) - math.log(bs)
    return float(neg_entropy - log_qz.mean())


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    "Latent dimensions whose posterior mean varies across sentences: Cov_x(E_q[z]) > `threshold`."
    if mu.shape[1] == 0 or len(mu) < 2:
        return 0
    return int((mu.var(0, unbiased=False) > threshold).sum())


class _LossPart(Metric):
    "Sentence-weighted average over the validation set of a value of `VAELoss.last`."
    def __init__(self, name: str):
        self._name = name

    def reset(self):
        self.total, self.count = 0.0, 0

    def part(self, last: dict) -> float:
        return last[self._name]

    def accumulate(self, learn):
        last = learn.loss_func.last
        self.total += self.part(last) * last["bs"]
        self.count += last["bs"]

    @property
    def value(self):
        return self.total / self.count if self.count else None

    @property
    def name(self):
        return self._name


class Reconstruction(_LossPart):
    "-E_q[log p(x|z)], nats per sentence."
    def __init__(self): super().__init__("rec")


class KL(_LossPart):
    "KL(q(z|x) || p(z)), nats per sentence."
    def __init__(self): super().__init__("kl")


class Beta(_LossPart):
    "The KL weight during validation (the annealing schedule's current value)."
    def __init__(self): super().__init__("beta")


class ELBO(_LossPart):
    "The negative ELBO, rec + KL in nats per sentence: an upper bound on the NLL (lower is better)."
    def __init__(self): super().__init__("elbo")
    def part(self, last): return last["rec"] + last["kl"]


class ELBOPerplexity(Metric):
    """exp(negative ELBO / tokens), tokens counting xxeos: the perplexity bound from the ELBO, logged as
    `ppl`. (Not fastai's `Perplexity`, the exponential of the loss, which here includes beta x KL.)"""
    def reset(self):
        self.nats, self.tokens = 0.0, 0

    def accumulate(self, learn):
        last = learn.loss_func.last
        self.nats += (last["rec"] + last["kl"]) * last["bs"]
        self.tokens += last["n_tokens"]

    @property
    def value(self):
        return math.exp(self.nats / self.tokens) if self.tokens else None

    @property
    def name(self):
        return "ppl"


class ActiveUnits(Metric):
    "Number of active latent units over the whole validation set (Burda et al. 2016)."
    def __init__(self, threshold: float = 0.01):
        self.threshold = threshold

    def reset(self):
        self.mus = []

    def accumulate(self, learn):
        self.mus.append(learn.loss_func.last["mu"].float().cpu())

    @property
    def value(self):
        return active_units(torch.cat(self.mus), self.threshold) if self.mus else None

    @property
    def name(self):
        return "au"


class MutualInformation(_LossPart):
    "He et al.'s minibatch estimate of I(x; z) in nats, averaged over validation batches."
    def __init__(self): super().__init__("mi")
    def part(self, last): return mutual_information(last["mu"], last["logvar"])


def vae_metrics() -> list[Metric]:
    "Everything logged per epoch: reconstruction, KL, beta, ELBO, perplexity, active units, mutual information."
    return [Reconstruction(), KL(), Beta(), ELBO(), ELBOPerplexity(), ActiveUnits(), MutualInformation()]
