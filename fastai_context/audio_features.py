"""Compatibility module: the audio-feature sources now live in `fastai_context.sources`
(titles, files, http, cache, spotify, reccobeats, join). Everything this module offered is
still importable from here."""
from .sources import (AUDIO_FEATURES, AudioFeatureSource, FileFeatures, MatchReport, RateLimitError,
                      ReccoBeatsError, ReccoBeatsFeatures, ReccoBeatsRateLimitError, SpotifyFeatures,
                      SpotifyFeaturesError, SpotifyForbiddenError, SpotifyRateLimitError, TrackMatch, WebServiceError,
                      add_audio_features, normalize_artist, normalize_title, parse_review_title)
from .sources.spotify import MAX_IDS_PER_REQUEST, SPOTIFY_API_URL, SPOTIFY_TOKEN_URL

__all__ = ["AUDIO_FEATURES", "TrackMatch", "MatchReport", "SpotifyFeatures", "FileFeatures", "add_audio_features",
           "parse_review_title", "normalize_title", "normalize_artist", "SpotifyFeaturesError",
           "SpotifyRateLimitError", "SpotifyForbiddenError", "ReccoBeatsFeatures", "ReccoBeatsError",
           "ReccoBeatsRateLimitError", "AudioFeatureSource", "RateLimitError", "WebServiceError",
           "MAX_IDS_PER_REQUEST", "SPOTIFY_API_URL", "SPOTIFY_TOKEN_URL"]
