"""Cross-entropy over a large vocabulary with less memory traffic in training, for the language
model's loss (`CrossEntropyLossFlat`) and the sentence VAE's (`VAELoss`).

torch's `F.cross_entropy` backward allocates two `(n_tokens, vocab)` tensors per batch besides the
log-probabilities it saved: the NLL's gradient (zero-filled) and the log-softmax's. On a CPU, glibc
serves each block over 32 MB with a fresh `mmap`, so every one of them is page-faulted in anew: at
a language-model batch (32 x 72 tokens, 12k words) forward + backward of the loss take 147 ms with
torch's and 68 ms here; at timbmg/Sentence-VAE's sizes (1,100 tokens, 10k words) 60 ms and 28 ms
(one thread, `bench/loss.py`). Here the backward writes `softmax - one_hot` into the saved
log-probabilities' buffer.
Values and gradients are torch's (tested); on a GPU (whose caching allocator has no such cost) and
for weights, label smoothing or ignored targets, torch's own function runs.
"""
from __future__ import annotations

import torch
from fastai.losses import BaseLoss
from fastai.losses import CrossEntropyLossFlat as _FastaiCrossEntropyLossFlat
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

__all__ = ["summed_cross_entropy", "CrossEntropyLossFlat"]


class _SummedCrossEntropy(torch.autograd.Function):
    "`F.cross_entropy(logits, target, reduction='sum')` whose backward reuses the saved buffer."

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits.float(), -1)                   # (n_tokens, vocab), float32 under autocast too
        ctx.save_for_backward(logp, target)
        ctx.dtype, ctx.used = logits.dtype, False
        return -logp.gather(1, target[:, None]).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        if ctx.used:       # the buffer now holds the gradient, not log-probabilities
            raise RuntimeError("summed_cross_entropy's backward can run only once per forward "
                               "(backward(retain_graph=True) twice is not supported)")
        ctx.used = True
        logp, target = ctx.saved_tensors
        g = logp.exp_()                                                  # softmax, in the saved buffer
        g[torch.arange(len(target), device=g.device), target] -= 1       # - one_hot(target)
        return g.mul_(grad).to(ctx.dtype), None


def summed_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of `logits` `(n_tokens, vocab)` against `target` `(n_tokens,)`, summed over the
    tokens: the value and gradient of `F.cross_entropy(logits, target, reduction='sum')`, with the
    lighter backward (see the module docstring) when a gradient will be taken on a CPU."""
    if torch.is_grad_enabled() and logits.requires_grad and logits.device.type == "cpu":
        return _SummedCrossEntropy.apply(logits, target)
    return F.cross_entropy(logits, target, reduction="sum")


class _CrossEntropyLoss(nn.CrossEntropyLoss):
    "`nn.CrossEntropyLoss`; a plain mean or sum (no weights, smoothing or ignored targets) by `summed_cross_entropy`."

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        plain = (self.reduction in ("mean", "sum") and self.weight is None and self.label_smoothing == 0
                 and input.dim() == 2 and input.device.type == "cpu" and torch.is_grad_enabled()
                 and input.requires_grad and len(target) > 0 and bool((target >= 0).all())
                 and (self.ignore_index < 0 or not bool((target == self.ignore_index).any())))
        if not plain:
            return super().forward(input, target)
        loss = summed_cross_entropy(input, target)
        return loss / len(target) if self.reduction == "mean" else loss


class CrossEntropyLossFlat(_FastaiCrossEntropyLossFlat):
    """fastai's `CrossEntropyLossFlat` (same arguments, activation, decodes and `reduction`
    switch for `get_preds`), whose training loss on a CPU takes the lighter backward of
    `summed_cross_entropy`."""

    def __init__(self, *args, axis: int = -1, **kwargs):
        BaseLoss.__init__(self, _CrossEntropyLoss, *args, axis=axis, **kwargs)
