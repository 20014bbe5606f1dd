"""Audio features by Spotify track id from ReccoBeats, a free service with no key.

`GET https://api.reccobeats.com/v1/audio-features?ids=<up to 40 ids>` answers
`{"content": [{"id": <ReccoBeats uuid>, "href": "https://open.spotify.com/track/<Spotify id>",
"energy": ..., ...}, ...]}`; tracks it has not analysed are left out, so the answer is mapped
back to the asked ids through each item's `href`, never through its order. The rate limit is
not published: a 429 comes with `Retry-After` (https://reccobeats.com/docs/documentation/rate-limiting).
ReccoBeats looks tracks up by id: the ids come from elsewhere (a dataset export via
`FileFeatures`, or a Spotify app's search), hence `add_audio_features(..., id_source=...)`.
"""
from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path


from .base import WebFeatureSource
from .cache import FeatureCache
from .http import DeadlineSession, HTTPStatusError, MalformedResponse, RateLimitError, RetryingClient, WebServiceError

__all__ = ["ReccoBeatsFeatures", "ReccoBeatsError", "ReccoBeatsRateLimitError", "RECCOBEATS_API_URL",
           "RECCOBEATS_MAX_IDS", "RECCOBEATS_FEATURES"]

RECCOBEATS_API_URL = "https://api.reccobeats.com/v1/"
RECCOBEATS_MAX_IDS = 40          # ids per GET /audio-features request
#: The Spotify features ReccoBeats computes (it has no duration_ms or time_signature).
RECCOBEATS_FEATURES: tuple[str, ...] = ("danceability", "energy", "key", "loudness", "mode", "speechiness",
                                        "acousticness", "instrumentalness", "liveness", "valence", "tempo")
_SPOTIFY_TRACK = re.compile(r"(?:open\.spotify\.com/(?:[\w-]+/)?track/|spotify:track:)([0-9A-Za-z]+)")


class ReccoBeatsError(WebServiceError):
    "ReccoBeats could not give what was asked, for the reason in the message."


class ReccoBeatsRateLimitError(ReccoBeatsError, RateLimitError):
    "ReccoBeats kept answering 429 for longer than `max_wait` seconds in total."


def _spotify_id(item: dict) -> str | None:
    "The Spotify track id in an item's `href` (e.g. https://open.spotify.com/track/<id>), else None."
    m = _SPOTIFY_TRACK.search(str(item.get("href") or ""))
    return m.group(1) if m else None


def _number(item: dict, name: str) -> float | None:
    v = item.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isinf(v):
        raise MalformedResponse(f"audio-features item {item.get('href')!r} has {name}={v!r}, not a number")
    return float(v)


class ReccoBeatsFeatures(WebFeatureSource):
    """Audio features by Spotify track id from the ReccoBeats API (free, no key).

    Same interface and behaviour as `SpotifyFeatures` (whose HTTP and cache code it shares):
    `features(track_ids)` gives one row per id, in order, NaN where ReccoBeats has none;
    uncached ids are asked `batch_size` (at most 40) per request, each batch cached in the
    sqlite file `cache_path` as soon as it arrives (a second run asks nothing); a 429 waits
    its Retry-After within `max_wait` seconds in total; 5xx, timeouts and malformed JSON are
    retried `retries` times with backoff from `backoff` seconds; each request ends within
    `timeout` seconds, headers and body. `api_url` points it at another host (a mirror or a test
    server). It cannot search by artist and title: give `add_audio_features` an `id_source`.
    """
    available_features = RECCOBEATS_FEATURES

    def __init__(self, cache_path: str | Path | None = None, max_wait: float = 60, retries: int = 3,
                 backoff: float = 1.0, timeout: float = 10, api_url: str = RECCOBEATS_API_URL,
                 batch_size: int = RECCOBEATS_MAX_IDS, sleep: Callable[[float], None] = time.sleep):
        if not isinstance(batch_size, int) or not 1 <= batch_size <= RECCOBEATS_MAX_IDS:
            raise ValueError(f"batch_size={batch_size!r}: ReccoBeats takes 1 to {RECCOBEATS_MAX_IDS} ids per request")
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.batch_size, self.max_wait = batch_size, max_wait
        self.cache_path = None if cache_path is None else Path(cache_path)
        self._cache = FeatureCache(self.cache_path, prefix="reccobeats_")
        self._session = DeadlineSession(timeout)
        self._session.headers["Accept"] = "application/json"
        self._client = RetryingClient("ReccoBeats", max_wait=max_wait, retries=retries, backoff=backoff, sleep=sleep,
                                      error=ReccoBeatsError, rate_limit_error=ReccoBeatsRateLimitError,
                                      resume_hint=f" in {self.cache_path}" if self.cache_path else "")

    def _audio_features(self, track_ids: list[str]) -> dict[str, dict | None]:
        "One request: the features of `track_ids`, None for those ReccoBeats left out."
        resp = self._session.get(self.api_url + "audio-features", params={"ids": ",".join(track_ids)})
        if resp.status_code >= 400:
            raise HTTPStatusError(resp.status_code, resp.headers, resp.text[:200])
        try:
            body = resp.json()
        except ValueError:
            raise MalformedResponse("audio-features body is not JSON") from None
        items = body.get("content") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise MalformedResponse("expected {'content': [audio-features objects]}")
        found: dict[str, dict | None] = dict.fromkeys(track_ids)
        for item in items:
            sid = _spotify_id(item)
            if sid in found:                       # an id we did not ask for is ignored, never misassigned
                found[sid] = {f: _number(item, f) for f in RECCOBEATS_FEATURES}
        return found

    def _fetch(self, batch: list[str]) -> dict[str, dict | None]:
        return self._client.request("audio-features", lambda: self._audio_features(batch))

    def close(self) -> None:
        "Close the cache file and the HTTP session."
        super().close()
        self._session.close()

    def __repr__(self) -> str:
        return (f"ReccoBeatsFeatures(api_url={self.api_url!r}, cache_path="
                f"{None if self.cache_path is None else str(self.cache_path)!r}, max_wait={self.max_wait:g})")
