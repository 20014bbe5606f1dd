"""fastai_context: fastai v2 language models conditioned on per-document context."""
__version__ = "0.1.0"

# --- data: context encoding, the language-model loader, the data sets ---
from .context import ContextEncoder
from .data import ContextLanguageModelLoader, ContextTextDataLoaders
from .text import SPECIAL_TOKENS
from . import datasets

# --- model and learner: the context-conditioned AWD-LSTM ---
from .models import ContextAWD_LSTM, ContextSequentialRNN, context_lm_config, get_context_language_model
from .learner import ContextDropout, ContextGainReport, ContextLMLearner, context_language_model_learner

# --- generation ---
from .generation import ContextLSTMSampler

# --- analysis: controllability, distinctive words, word clouds ---
from .analysis import (BLOG_COLORS, ControllabilityReport, controllability, distinct_n, distinctive_words, plot_word_clouds,
                       word_cloud, word_counts)

# --- audio sources: features of songs from files, Spotify or ReccoBeats, joined by title ---
from .sources import (FileFeatures, MatchReport, ReccoBeatsError, ReccoBeatsFeatures, ReccoBeatsRateLimitError,
                      SpotifyFeatures, SpotifyFeaturesError, SpotifyForbiddenError, SpotifyRateLimitError, TrackMatch,
                      add_audio_features, parse_review_title)

# --- workflow: configs, run folders, checkpoints, data-parallel training, the recipes ---
from .runs import ConfigError, RunFolder, load_config, make_run_dir
from .checkpoint import Checkpoint
from .distributed import ContextDistributedTrainer, distrib_ctx
from . import recipes

# --- sentence VAE ---
from .vae import (Homotopy, KLAnnealing, SentenceDataLoaders, SentenceVAE, VAELearner, kl_beta, split_sentences,
                  vae_learner, vae_metrics)
