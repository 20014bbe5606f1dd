"""Sentence VAE (Bowman et al. 2016) as a fastai learner: data, model, KL annealing, metrics, learner."""
from .annealing import SCHEDULES, KLAnnealing, kl_beta
from .callbacks import CPUMixedPrecision, LatentMeans, VAEBatchLogger, VAEProgress
from .data import SentenceDataLoaders, SentenceLoader, SentenceTokenizer, split_sentences
from .learner import Homotopy, VAELearner, vae_learner
from .metrics import (KL, ELBO, ActiveUnits, Beta, MutualInformation, ELBOPerplexity, Reconstruction, VAELoss,
                      active_units, mutual_information, vae_metrics)
from .model import SentenceVAE

__all__ = ["split_sentences", "SentenceDataLoaders", "SentenceLoader", "SentenceTokenizer", "SentenceVAE",
           "vae_learner", "VAELearner", "Homotopy", "VAEBatchLogger", "VAEProgress", "CPUMixedPrecision",
           "LatentMeans", "VAELoss", "KLAnnealing",
           "kl_beta", "SCHEDULES", "vae_metrics",
           "Reconstruction", "KL", "Beta", "ELBO", "ELBOPerplexity", "ActiveUnits", "MutualInformation",
           "active_units", "mutual_information"]
