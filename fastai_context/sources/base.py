"""What every audio-feature source offers: the feature names and the two-method interface."""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from .titles import TrackMatch

__all__ = ["AUDIO_FEATURES", "AudioFeatureSource"]

#: The numeric fields of Spotify's audio-features object (also the columns of its dataset exports).
AUDIO_FEATURES: tuple[str, ...] = ("danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness",
                                   "instrumentalness", "liveness", "valence", "tempo", "duration_ms", "time_signature")


class AudioFeatureSource:
    """What `add_audio_features` needs from a source: `features(track_ids)`, and `find_track(artist, title)`
    from the source that finds the ids (a source that cannot search leaves it as is)."""
    available_features: tuple[str, ...] = AUDIO_FEATURES

    def find_track(self, artist: str, title: str) -> TrackMatch:
        raise NotImplementedError(f"{type(self).__name__} cannot find a track by artist and title")

    def features(self, track_ids: Iterable[str]) -> pd.DataFrame:
        raise NotImplementedError

    @classmethod
    def can_find_tracks(cls) -> bool:
        "Whether this source implements `find_track`."
        return cls.find_track is not AudioFeatureSource.find_track
