"""What every audio-feature source offers: the feature names and the two-method interface."""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from .titles import TrackMatch, check_track_ids

__all__ = ["AUDIO_FEATURES", "AudioFeatureSource", "WebFeatureSource"]

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


class WebFeatureSource(AudioFeatureSource):
    """A web service that answers features by Spotify track id, `batch_size` ids a request: the
    cache-then-fetch loop, the request counters and `with` support, shared by `SpotifyFeatures`
    and `ReccoBeatsFeatures`. A subclass sets `_cache` (a `FeatureCache`), `_client` (a
    `RetryingClient`) and `batch_size`, and implements `_fetch(batch)`: one retried request,
    returning `{track_id: features or None}` for the ids of `batch`."""
    batch_size: int

    @property
    def n_requests(self) -> int:
        "Requests sent to the service so far (token requests not counted)."
        return self._client.n_requests

    @property
    def rate_limit_waited(self) -> float:
        "Seconds slept on 429s so far; never more than max_wait."
        return self._client.rate_limit_waited

    def _fetch(self, batch: list[str]) -> dict[str, dict | None]:
        raise NotImplementedError

    def features(self, track_ids: Iterable[str]) -> pd.DataFrame:
        """Audio features of `track_ids`: one row per (deduplicated) id, in order, NaN where the
        service has none. Uncached ids are fetched `batch_size` per request; each batch is cached
        as soon as it arrives, so an interrupted run resumes and a second run asks nothing."""
        ids = check_track_ids(track_ids, pattern=r"[0-9A-Za-z]+")   # base62, as Spotify's ids are
        known = self._cache.get_features(ids)
        todo = [i for i in ids if i not in known]
        for start in range(0, len(todo), self.batch_size):
            fetched = self._fetch(todo[start:start + self.batch_size])
            self._cache.put_features(fetched)
            known.update(fetched)
        rows = [known[i] or {} for i in ids]
        return pd.DataFrame(rows, index=pd.Index(ids, name="track_id"), columns=list(AUDIO_FEATURES), dtype=float)

    def close(self) -> None:
        "Close the cache file."
        self._cache.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
