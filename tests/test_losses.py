"The cross-entropy with the lighter backward: torch's values and gradients, fastai's loss interface."
import pytest
import torch
import pandas as pd
from fastai.losses import CrossEntropyLossFlat as FastaiCrossEntropyLossFlat
from fastai.torch_core import TensorBase
from torch.nn import functional as F

from fastai_context import ContextTextDataLoaders, context_language_model_learner
from fastai_context.losses import CrossEntropyLossFlat, summed_cross_entropy
from fastai_context.vae.metrics import VAELoss
from fastai_context.vae.model import packed_tokens


def _grad(f, x):
    x = x.detach().clone().requires_grad_()
    loss = f(x)
    loss.backward()
    return loss.detach(), x.grad


def test_summed_cross_entropy_is_torchs():
    torch.manual_seed(0)
    logits, target = torch.randn(37, 50), torch.randint(0, 50, (37,))
    ours, g_ours = _grad(lambda x: summed_cross_entropy(x, target) / 4, logits)
    ref, g_ref = _grad(lambda x: F.cross_entropy(x, target, reduction="sum") / 4, logits)
    assert torch.allclose(ours, ref) and torch.allclose(g_ours, g_ref, atol=1e-6)
    with torch.no_grad():                                       # evaluation: torch's own
        assert torch.allclose(summed_cross_entropy(logits, target), ref * 4)
    x = logits.clone().requires_grad_()
    twice = summed_cross_entropy(x, target)
    twice.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):        # never a silently wrong second gradient
        twice.backward()
    low = logits.bfloat16().requires_grad_()                    # as under CPU autocast: the loss in float32
    loss = summed_cross_entropy(low, target)
    loss.backward()
    assert loss.dtype == torch.float32 and low.grad.dtype == torch.bfloat16
    assert torch.allclose(loss, F.cross_entropy(low.float(), target, reduction="sum"))


def test_vae_loss_reconstruction_is_torchs_cross_entropy():
    torch.manual_seed(0)
    y = torch.tensor([[5, 6, 7, 1], [8, 9, 1, 1]])              # pad_idx 1
    target = packed_tokens(y, (y != 1).sum(1))
    logits = torch.randn(len(target), 50)
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    ours, g_ours = _grad(lambda x: VAELoss(pad_idx=1)((x, mu, logvar), y), logits)
    ref, g_ref = _grad(lambda x: F.cross_entropy(x, target, reduction="sum") / 2, logits)
    assert torch.allclose(ours, ref) and torch.allclose(g_ours, g_ref, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"reduction": "sum"}, {"ignore_index": 3}, {"label_smoothing": 0.1},
                                    {"weight": torch.rand(50)}])
def test_flat_loss_is_fastais(kwargs):
    "The language model's loss: fastai's CrossEntropyLossFlat in value, gradient, activation, decodes and reduction."
    torch.manual_seed(0)
    logits, target = TensorBase(torch.randn(4, 9, 50)), TensorBase(torch.randint(0, 50, (4, 9)))
    ours_f, ref_f = CrossEntropyLossFlat(**kwargs), FastaiCrossEntropyLossFlat(**kwargs)
    assert isinstance(ours_f, FastaiCrossEntropyLossFlat)
    ours, g_ours = _grad(lambda x: ours_f(x, target), logits)
    ref, g_ref = _grad(lambda x: ref_f(x, target), logits)
    assert torch.allclose(ours, ref) and torch.allclose(g_ours, g_ref, atol=1e-6)
    assert torch.equal(ours_f.decodes(logits), ref_f.decodes(logits))
    assert torch.allclose(ours_f.activation(logits), ref_f.activation(logits))
    ours_f.reduction = ref_f.reduction = "none"                 # what get_preds(with_loss=True) does
    assert torch.allclose(ours_f(logits, target), ref_f(logits, target))


def test_language_model_learner_uses_it():
    df = pd.DataFrame({"text": ["la la love you baby", "run run fast tonight", "slow blue tears fall"] * 20,
                       "energy": [0.2, 0.9, 0.1] * 20})
    dls = ContextTextDataLoaders.from_df(df, "text", ["energy"], bs=4, seq_len=8, seed=0)
    learn = context_language_model_learner(dls, config=dict(emb_sz=16, n_hid=16, n_layers=1))
    assert isinstance(learn.loss_func, CrossEntropyLossFlat)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2)
    preds, targs, losses = learn.get_preds(with_loss=True, reorder=False)
    assert learn.loss_func.reduction == "mean"                  # restored after get_preds
    learn.loss_func = FastaiCrossEntropyLossFlat()
    _, _, fastai_losses = learn.get_preds(with_loss=True, reorder=False)
    assert torch.isfinite(losses).all() and torch.allclose(losses, fastai_losses)
