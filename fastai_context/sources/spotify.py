"""Audio features from the Spotify Web API through spotipy, for the apps that still have them.

Spotify closed `audio-features` (with recommendations, related artists and 30-second
previews) to apps created after 2024-11-27; from 2026-02-11 development-mode apps also need
a Premium account, have at most five users and a reduced endpoint set. `SpotifyFeatures`
therefore serves old extended-quota apps; everyone else gets the same numbers by Spotify id
from `ReccoBeatsFeatures`, or from a dataset export with `FileFeatures`.
"""
from __future__ import annotations

import logging
import os
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import spotipy
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.exceptions import SpotifyException
from spotipy.oauth2 import SpotifyOauthError

from .base import AUDIO_FEATURES, WebFeatureSource
from .cache import FeatureCache
from .http import DeadlineSession, HTTPStatusError, MalformedResponse, RateLimitError, RetryingClient, WebServiceError
from .titles import Candidate, TrackMatch, clean_title, normalize_artist, normalize_title, \
    pick_match, strip_feat

__all__ = ["SpotifyFeatures", "SpotifyFeaturesError", "SpotifyRateLimitError", "SpotifyForbiddenError",
           "SPOTIFY_API_URL", "SPOTIFY_TOKEN_URL", "MAX_IDS_PER_REQUEST"]

SPOTIFY_API_URL = "https://api.spotify.com/v1/"
SPOTIFY_TOKEN_URL = "https://accounts.spotify.com/api/token"
MAX_IDS_PER_REQUEST = 100        # Spotify's limit for GET /audio-features?ids=...


class SpotifyFeaturesError(WebServiceError):
    "The Spotify Web API could not give what was asked, for the reason in the message."


class SpotifyRateLimitError(SpotifyFeaturesError, RateLimitError):
    "Spotify kept answering 429 for longer than `max_wait` seconds in total."


class SpotifyForbiddenError(SpotifyFeaturesError):
    """Spotify answered 403 to audio-features: closed to apps created after 2024-11-27, and cut
    back further for development-mode apps from 2026-02-11. Use `ReccoBeatsFeatures` or `FileFeatures`."""


FORBIDDEN_MESSAGE = (
    "Spotify refused audio-features (HTTP 403). Spotify closed audio-features to Web API apps created after "
    "2024-11-27, and from 2026-02-11 development-mode apps also need a Premium account, have at most five users "
    "and a reduced set of endpoints; only older apps with extended quota still get audio features. Without such an "
    "app, get the same features by Spotify track id from ReccoBeatsFeatures() (free, no key), or from a dataset "
    "export with FileFeatures('spotify_songs.csv.gz') (fastai_context.datasets.get_path('spotify_songs')); "
    "add_audio_features(df, ReccoBeatsFeatures(), ..., id_source=FileFeatures(...)) combines the two.")


class _RedactAuthorization(logging.Filter):
    "spotipy logs request headers at DEBUG; the Basic header carries the client secret."
    _HEADER = re.compile(r"('Authorization':\s*')[^']*(')")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "Authorization" in msg:
            record.msg, record.args = self._HEADER.sub(r"\1<redacted>\2", msg), None
        return True


def _redact_spotipy_logs() -> None:
    for name in ("spotipy.oauth2", "spotipy.client"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactAuthorization) for f in logger.filters):
            logger.addFilter(_RedactAuthorization())


class SpotifyFeatures(WebFeatureSource):
    """Audio features from the Spotify Web API through spotipy's client-credentials flow.

    Credentials come from `client_id`/`client_secret` or `SPOTIPY_CLIENT_ID`/`SPOTIPY_CLIENT_SECRET`;
    they stay in memory (the access token too) and never appear in reprs or logs. With
    `cache_path`, search results and features go to a sqlite file, so a second run makes no
    requests and an interrupted one resumes. spotipy's own retries are switched off: a 429
    waits its Retry-After, at most `max_wait` seconds over the object's life, then raises
    `SpotifyRateLimitError`; 5xx, timeouts and malformed JSON are retried `retries` times
    with exponential backoff from `backoff` seconds. Each request, headers and body, ends
    within `timeout` seconds. `api_url`/`token_url` point the client elsewhere (a proxy, or
    a local test server); `sleep` is how it waits. A 403 on audio-features raises
    `SpotifyForbiddenError`: see its message for the 2024/2026 closures and what to use instead.
    """

    def __init__(self, client_id: str | None = None, client_secret: str | None = None,
                 cache_path: str | Path | None = None, max_wait: float = 60, retries: int = 3, backoff: float = 1.0,
                 timeout: float = 10, search_limit: int = 10, market: str | None = None,
                 api_url: str = SPOTIFY_API_URL, token_url: str = SPOTIFY_TOKEN_URL,
                 sleep: Callable[[float], None] = time.sleep):
        client_id = client_id or os.environ.get("SPOTIPY_CLIENT_ID")
        client_secret = client_secret or os.environ.get("SPOTIPY_CLIENT_SECRET")
        missing = [n for n, v in (("client_id", client_id), ("client_secret", client_secret)) if not v]
        if missing:
            raise ValueError(f"no Spotify {' or '.join(missing)}: pass client_id and client_secret or set "
                             "SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET (or, with no Spotify app, use "
                             "ReccoBeatsFeatures or FileFeatures with a dataset export)")
        _redact_spotipy_logs()
        auth = spotipy.SpotifyClientCredentials(client_id, client_secret, cache_handler=MemoryCacheHandler(),
                                                requests_session=DeadlineSession(timeout), requests_timeout=timeout)
        auth.OAUTH_TOKEN_URL = token_url
        self._spotify = spotipy.Spotify(auth_manager=auth, requests_session=DeadlineSession(timeout),
                                        requests_timeout=timeout)
        self._spotify.prefix = api_url if api_url.endswith("/") else api_url + "/"
        self.cache_path = None if cache_path is None else Path(cache_path)
        self._cache = FeatureCache(self.cache_path)
        self._client = RetryingClient("Spotify", max_wait=max_wait, retries=retries, backoff=backoff, sleep=sleep,
                                      error=SpotifyFeaturesError, rate_limit_error=SpotifyRateLimitError,
                                      resume_hint=f" in {self.cache_path}" if self.cache_path else "")
        self.max_wait, self.retries, self.backoff = max_wait, retries, backoff
        self.search_limit, self.market = search_limit, market

    batch_size = MAX_IDS_PER_REQUEST

    # --------------------------------------------------------------- requests
    def _request(self, what: str, call: Callable[[], Any]) -> Any:
        "Run a spotipy `call` in the shared retry loop, spotipy's errors translated for it."
        def translated():
            try:
                return call()
            except SpotifyException as e:
                if e.http_status == 403 and what == "audio-features":
                    raise SpotifyForbiddenError(FORBIDDEN_MESSAGE) from None
                if e.http_status is None:
                    raise SpotifyFeaturesError(f"Spotify {what} failed: {e.msg}") from None
                raise HTTPStatusError(e.http_status, e.headers, e.msg) from None
            except SpotifyOauthError as e:
                # spotipy raises this while handling the token endpoint's HTTPError, which holds the status.
                status = getattr(getattr(e.__context__, "response", None), "status_code", None)
                if status is None or status < 500:
                    raise SpotifyFeaturesError(f"Spotify refused the client credentials ({e.error}: "
                                               f"{e.error_description}); check SPOTIPY_CLIENT_ID and "
                                               "SPOTIPY_CLIENT_SECRET") from None
                raise HTTPStatusError(status, None, "from the token endpoint") from None
        return self._client.request(what, translated)

    def _search(self, artist: str, title: str) -> list[Candidate]:
        query = f"track:{clean_title(title)} artist:{strip_feat(artist)}"
        result = self._spotify.search(query, limit=self.search_limit, type="track", market=self.market)
        try:
            items = result["tracks"]["items"]
            return [Candidate(t["id"], t["name"], tuple(a["name"] for a in t["artists"]), t.get("popularity") or 0)
                    for t in items if t]
        except (TypeError, KeyError) as e:
            raise MalformedResponse(f"search result without tracks.items[].id/name/artists: {e!r}") from None

    def _audio_features(self, track_ids: list[str]) -> dict[str, dict | None]:
        with warnings.catch_warnings():   # spotipy marks the endpoint deprecated; old apps still have it
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                result = self._spotify.audio_features(track_ids)
            except TypeError:             # spotipy returns None for a body that is not JSON, then fails on it
                raise MalformedResponse("audio-features body is not JSON") from None
        if not isinstance(result, list) or len(result) != len(track_ids) or \
                not all(f is None or isinstance(f, dict) for f in result):
            raise MalformedResponse(f"expected a list of {len(track_ids)} audio-features objects or nulls")
        return {tid: None if f is None else {k: f.get(k) for k in AUDIO_FEATURES} for tid, f in zip(track_ids, result)}

    def _fetch(self, batch: list[str]) -> dict[str, dict | None]:
        return self._request("audio-features", lambda: self._audio_features(batch))

    # --------------------------------------------------------------- interface
    def find_track(self, artist: str, title: str) -> TrackMatch:
        """Search Spotify for `title` by `artist` and return the best normalized match
        (its id, or None with the reason). Results, misses included, are cached."""
        key = f"{normalize_artist(artist)}\t{normalize_title(title)}"
        match = self._cache.get_match(key)
        if match is None:
            candidates = self._request("search", lambda: self._search(artist, title))
            match = pick_match(artist, title, candidates, f"Spotify search found nothing for {artist!r} - {title!r}")
            self._cache.put_match(key, match)
        return match

    def __repr__(self) -> str:
        return (f"SpotifyFeatures(api_url={self._spotify.prefix!r}, cache_path="
                f"{None if self.cache_path is None else str(self.cache_path)!r}, max_wait={self.max_wait:g})")
