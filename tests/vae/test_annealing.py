"""KL annealing schedules: values at chosen steps, and the callback driving the loss's beta."""
import math

import pytest

from fastai_context.vae import KLAnnealing, kl_beta


def test_constant():
    assert [kl_beta("constant", s, 100) for s in (0, 50, 10_000)] == [1.0, 1.0, 1.0]
    assert kl_beta("constant", 3, 0, beta_max=0.5) == 0.5          # no warm-up needed


def test_linear():
    assert kl_beta("linear", 0, 100) == 0.0
    assert kl_beta("linear", 25, 100) == 0.25
    assert kl_beta("linear", 100, 100) == 1.0
    assert kl_beta("linear", 500, 100) == 1.0
    assert kl_beta("linear", 50, 100, beta_max=0.5) == 0.25


def test_logistic():
    assert kl_beta("logistic", 50, 100) == pytest.approx(0.5)
    assert kl_beta("logistic", 0, 100) == pytest.approx(1 / (1 + math.exp(5)))      # 0.0067
    assert kl_beta("logistic", 100, 100) == pytest.approx(1 / (1 + math.exp(-5)))   # 0.9933
    vals = [kl_beta("logistic", s, 100) for s in range(0, 200, 10)]
    assert vals == sorted(vals)


def test_cyclical():
    # cycles of 100 steps, rising over the first half (Fu et al. 2019, R = 0.5)
    assert kl_beta("cyclical", 0, 100) == 0.0
    assert kl_beta("cyclical", 25, 100) == 0.5
    assert kl_beta("cyclical", 50, 100) == 1.0
    assert kl_beta("cyclical", 99, 100) == 1.0
    assert kl_beta("cyclical", 100, 100) == 0.0                    # the next cycle starts again
    assert kl_beta("cyclical", 125, 100) == 0.5
    assert kl_beta("cyclical", 20, 100, ratio=0.8) == pytest.approx(0.25)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kl_schedule='cosine'"):
        kl_beta("cosine", 0, 10)
    with pytest.raises(ValueError, match="kl_warmup=0"):
        kl_beta("linear", 0, 0)
    with pytest.raises(ValueError, match="kl_schedule"):
        KLAnnealing("sigmoid")


def test_callback_counts_training_batches_only():
    cb = KLAnnealing("linear", warmup=10)

    class Loss:
        beta = None

    class Learn:
        loss_func = Loss()
        training = True
    cb.learn = Learn()
    for _ in range(4):
        cb.before_batch(), cb.after_batch()
    assert cb.kl_step == 4 and cb.beta == 0.4
    Learn.training = False
    cb.before_batch(), cb.after_batch()
    assert cb.kl_step == 4 and Learn.loss_func.beta == 0.4


def test_logistic_with_independent_steepness_and_midpoint():
    "timbmg/Sentence-VAE's schedule: 1 / (1 + exp(-k (step - x0))), k=0.0025, x0=2500."
    assert kl_beta("logistic", 2500, 100, k=0.0025, x0=2500) == pytest.approx(0.5)
    assert kl_beta("logistic", 0, 100, k=0.0025, x0=2500) == pytest.approx(1 / (1 + math.exp(6.25)))
    assert kl_beta("logistic", 30, 100, x0=30) == pytest.approx(0.5)            # k from warmup: 10 / 100
    assert kl_beta("logistic", 60, 100, k=0.1) == pytest.approx(1 / (1 + math.exp(-1)))   # x0 = warmup / 2
    cb = KLAnnealing("logistic", warmup=10, k=0.0025, x0=2500)
    cb.kl_step = 2500
    assert cb.beta == pytest.approx(0.5)
    with pytest.raises(ValueError, match="kl_k=0"):
        kl_beta("logistic", 0, 100, k=0)
    with pytest.raises(ValueError, match="not 'linear'"):
        KLAnnealing("linear", 100, k=0.1)
