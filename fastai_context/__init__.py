"""fastai_context: fastai v2 language models conditioned on per-document context."""
__version__ = "0.1.0"

# --- foundation (issue 2) ---
from .context import ContextEncoder
from .data import ContextLanguageModelLoader, ContextTextDataLoaders
from .text import SPECIAL_TOKENS
from . import datasets

# --- learner (issue 3) ---
from .models import ContextAWD_LSTM, ContextSequentialRNN, context_lm_config, get_context_language_model
from .generation import ContextLSTMSampler
from .learner import ContextDropout, ContextGainReport, ContextLMLearner, context_language_model_learner

# --- audio features (issue 5) ---
from .sources import (FileFeatures, MatchReport, ReccoBeatsError, ReccoBeatsFeatures, ReccoBeatsRateLimitError,
                      SpotifyFeatures, SpotifyFeaturesError, SpotifyForbiddenError, SpotifyRateLimitError, TrackMatch,
                      add_audio_features, parse_review_title)

# --- analysis (issue 4) ---
from .analysis import (BLOG_COLORS, ControllabilityReport, controllability, distinct_n, distinctive_words, plot_word_clouds,
                       word_cloud, word_counts)

# --- workflow (issue 7) ---
from .runs import ConfigError, load_config, make_run_dir
from .checkpoint import Checkpoint
from .distributed import ContextDistributedTrainer, distrib_ctx

# --- sentence VAE (issue 6) ---
from .vae import (Homotopy, KLAnnealing, SentenceDataLoaders, SentenceVAE, VAELearner, kl_beta, split_sentences,
                  vae_learner, vae_metrics)
