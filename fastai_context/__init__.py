"""fastai_context: fastai v2 language models conditioned on per-document context."""
__version__ = "0.1.0"

# --- data: context encoding, the language-model loader, the data sets ---
from .context import ContextEncoder
from .lm.data import ContextLanguageModelLoader, ContextTextDataLoaders
from .text import SPECIAL_TOKENS
from . import datasets

# --- model and learner: the context-conditioned AWD-LSTM ---
from .lm.model import ContextAWD_LSTM, ContextLinearDecoder, ContextSequentialRNN, context_lm_config, get_context_language_model
from .lm.learner import ContextDropout, ContextGainReport, ContextLMLearner, context_language_model_learner

# --- generation ---
from .lm.sampling import ContextLSTMSampler

# --- analysis: controllability, distinctive words, word clouds ---
from .analysis import (BLOG_COLORS, ControllabilityReport, controllability, distinct_n, distinctive_words, plot_word_clouds,
                       word_cloud, word_counts)

# --- audio sources: features of songs from files, Spotify or ReccoBeats, joined by title ---
from .sources import (FileFeatures, MatchReport, ReccoBeatsError, ReccoBeatsFeatures, ReccoBeatsRateLimitError,
                      SpotifyFeatures, SpotifyFeaturesError, SpotifyForbiddenError, SpotifyRateLimitError, TrackMatch,
                      add_audio_features, parse_review_title)

# --- workflow: configs, run folders, checkpoints, flat memory, data-parallel training, the recipes ---
from .workflow.runs import ConfigError, RunFolder, load_config, make_run_dir
from .workflow.checkpoint import Checkpoint
from .workflow.memory import TrimMemory
from .workflow.distributed import ContextDistributedTrainer, distrib_ctx
from .workflow import recipes

# --- sentence VAE ---
from .vae import (Homotopy, KLAnnealing, SentenceDataLoaders, SentenceVAE, VAELearner, kl_beta, split_sentences,
                  vae_learner, vae_metrics)


# --- old module paths ---
# v0.1 kept the language model and the workflow at the package root. Those paths stay importable
# (`import fastai_context.checkpoint`, `python -m`-free code, README examples of 0.1) and, above all,
# learners exported with 0.1 (`load_learner` unpickles `fastai_context.data.ContextLanguageModelLoader`,
# `fastai_context.models.ContextAWD_LSTM`, ...) still load: each old name is the new module itself.
import sys as _sys
from .lm import data as _lm_data, learner as _lm_learner, model as _lm_model, sampling as _lm_sampling
from .workflow import (checkpoint as _wf_checkpoint, distributed as _wf_distributed, runs as _wf_runs,
                       sweep as _wf_sweep)
from .sources import lyrics as _src_lyrics

for _old, _module in {"data": _lm_data, "models": _lm_model, "generation": _lm_sampling, "learner": _lm_learner,
                      "runs": _wf_runs, "checkpoint": _wf_checkpoint, "distributed": _wf_distributed,
                      "sweep": _wf_sweep, "recipes": recipes, "lyrics": _src_lyrics}.items():
    _sys.modules.setdefault(f"{__name__}.{_old}", _module)
    globals().setdefault(_old, _module)      # `import fastai_context.data` then `fastai_context.data.X`
del _sys, _old, _module
