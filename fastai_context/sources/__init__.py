"""Where audio features come from and how they join to songs.

- `titles`: parse review titles into (artist, title); normalize names; pick a source's best match
- `files`: `FileFeatures`, a dataset export (no account, no network)
- `http`: a session with a total timeout and the bounded retry loop shared by the web sources
- `cache`: the sqlite cache of the web sources
- `spotify`: `SpotifyFeatures` (old extended-quota Spotify apps only, see `SpotifyForbiddenError`)
- `reccobeats`: `ReccoBeatsFeatures`, the same features by Spotify id, free and keyless
- `join`: `add_audio_features`, with separate id and feature sources
"""
from .base import AUDIO_FEATURES, AudioFeatureSource
from .files import FileFeatures
from .http import RateLimitError, WebServiceError
from .join import MatchReport, add_audio_features
from .reccobeats import ReccoBeatsError, ReccoBeatsFeatures, ReccoBeatsRateLimitError
from .spotify import SpotifyFeatures, SpotifyFeaturesError, SpotifyForbiddenError, SpotifyRateLimitError
from .titles import TrackMatch, normalize_artist, normalize_title, parse_review_title

__all__ = ["AUDIO_FEATURES", "AudioFeatureSource", "FileFeatures", "MatchReport", "add_audio_features",
           "ReccoBeatsFeatures", "ReccoBeatsError", "ReccoBeatsRateLimitError", "SpotifyFeatures",
           "SpotifyFeaturesError", "SpotifyForbiddenError", "SpotifyRateLimitError", "RateLimitError",
           "WebServiceError", "TrackMatch", "normalize_artist", "normalize_title", "parse_review_title"]
