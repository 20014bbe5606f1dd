"""Audio features per song, from the Spotify Web API (through spotipy) or from a file export.

The blog this package reproduces conditioned its language model on each reviewed song's
Spotify energy. Getting there takes three steps: find the song on Spotify, fetch its
features, join them to the reviews. `SpotifyFeatures` and `FileFeatures` share one
interface (`find_track(artist, title)`, `features(track_ids)`), so `add_audio_features`
works with either. Spotify closed `audio-features` to apps created after 2024-11-27, which
is why a file source (e.g. the TidyTuesday `spotify_songs.csv`) is a first-class citizen.
"""
from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import re
import sqlite3
import time
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import requests
import spotipy
from fastprogress.fastprogress import progress_bar
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.exceptions import SpotifyException
from spotipy.oauth2 import SpotifyOauthError

from .context import check_columns, first_rows

__all__ = ["AUDIO_FEATURES", "TrackMatch", "MatchReport", "SpotifyFeatures", "FileFeatures", "add_audio_features",
           "parse_review_title", "normalize_title", "normalize_artist", "SpotifyFeaturesError",
           "SpotifyRateLimitError", "SpotifyForbiddenError"]

#: The numeric fields of Spotify's audio-features object (also the columns of its dataset exports).
AUDIO_FEATURES: tuple[str, ...] = ("danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness",
                                   "instrumentalness", "liveness", "valence", "tempo", "duration_ms", "time_signature")

SPOTIFY_API_URL = "https://api.spotify.com/v1/"
SPOTIFY_TOKEN_URL = "https://accounts.spotify.com/api/token"
MAX_IDS_PER_REQUEST = 100        # Spotify's limit for GET /audio-features?ids=...


# ------------------------------------------------------------------ normalization
_VERSION_WORDS = (r"remix|rmx|edit|version|mix|remaster|remastered|live|radio|acoustic|mono|stereo|extended|"
                  r"instrumental|demo|rework|bootleg|vip|dub")
_FEAT = r"feat\.?|ft\.?|featuring"
_BRACKETED = re.compile(r"\s*[(\[{]([^)\]}]*)[)\]}]")
_VERSION = re.compile(rf"\b({_VERSION_WORDS})\b", re.I)
_FEAT_START = re.compile(rf"^\s*({_FEAT})\s", re.I)
_FEAT_TAIL = re.compile(rf"\s+({_FEAT})\s.*$", re.I)
_DASH_SUFFIX = re.compile(r"\s+[-\u2013\u2014]\s+(.*)$")
_ARTIST_SEPARATORS = re.compile(r",|&|\band\b|\bx\b|\bwith\b|/|;|\+")


def _fold(s: str) -> str:
    "Casefold, drop accents and punctuation, collapse spaces: 'Beyoncé & JAY-Z' -> 'beyonce and jay z'."
    s = unicodedata.normalize("NFKD", s)
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).casefold()
    s = s.replace("&", " and ")
    s = re.sub(r"['\u2019`]", "", s)             # don't -> dont, not don t
    s = re.sub(r"[^\w\s]|_", " ", s)
    return " ".join(s.split())


def _strip_feat(s: str) -> str:
    "Drop '(feat. X)', '[ft. X]' and a trailing ' feat. X'."
    s = _BRACKETED.sub(lambda m: "" if _FEAT_START.match(m.group(1)) else m.group(0), s)
    return _FEAT_TAIL.sub("", s).strip()


def _strip_version(title: str) -> str:
    "Drop '(Radio Edit)', '[X Remix]', ' - 2011 Remaster' and the like."
    title = _BRACKETED.sub(lambda m: "" if _VERSION.search(m.group(1)) else m.group(0), title)
    m = _DASH_SUFFIX.search(title)
    if m and _VERSION.search(m.group(1)):
        title = title[:m.start()]
    return title.strip()


def _clean_title(title: str) -> str:
    return _strip_version(_strip_feat(title))


def normalize_title(title: str) -> str:
    """Matching key for a song title: case, accents, punctuation, 'feat.'/'ft.' parts and
    remix/edit/version suffixes (in brackets or after ' - ') are ignored."""
    return _fold(_clean_title(title))


def normalize_artist(artist: str) -> str:
    "Matching key for an artist name: case, accents, punctuation and 'feat.' parts are ignored."
    return _fold(_strip_feat(artist))


def _artist_keys(artists: str | Iterable[str]) -> set[str]:
    "Keys an artist credit can match on: each credited artist, and the whole credit."
    names = [artists] if isinstance(artists, str) else list(artists)
    keys = {normalize_artist(", ".join(names))}
    for name in names:
        keys.add(normalize_artist(name))
        keys.update(_fold(part) for part in _ARTIST_SEPARATORS.split(_strip_feat(name).casefold()))
    return keys - {""}


# ------------------------------------------------------------------ review titles
_QUOTED = re.compile(r"\u201c([^\u201d]+)\u201d|\"([^\"]+)\"|\u2018((?:[^\u2019]|\u2019(?=\w))+)\u2019(?!\w)|(?<!\w)'([^']+)'(?!\w)")
_BY_ARTIST = re.compile(r"\s+by\s+(.+?)(\s+[-\u2013\u2014|:]\s+.*)?$", re.I)
_SEPARATORS = (" - ", " \u2013 ", " \u2014 ", ": ", " | ", " // ")
_PREFIX = re.compile(r"^\s*(\[[^\]]*\]\s*:?|(new|new music|new song|new track|now playing|premiere|listen|stream|"
                     r"streaming|video|watch|tunes)\s*(:|//|\u2013|-)|(track|song|video) of the (day|week)\s*(:|//|\u2013|-)?)\s*",
                     re.I)
_SITE_SUFFIX = re.compile(r"\s+(\||::)\s+[^|:]*$|\s*:\s*$")


def parse_review_title(title: str | None, strict: bool = False) -> tuple[str | None, str | None]:
    """Split a music-blog review title into `(artist, title)`.

    Handles `Mt. Joy - "Silver Lining"`, `Tom Misch – “Water Baby” (feat. Loyle Carner)`,
    `MONOGEM: “Get You High”`, `Yellow Days - A Little While | Stereofox Music Blog` and
    tags such as `[LISTEN]` or `New Music:`. A title with no artist part (e.g. `RITUAL`)
    gives `(None, None)`, or a `ValueError` with `strict=True`.
    """
    if title is None or (isinstance(title, float) and math.isnan(title)):
        text = ""
    elif isinstance(title, str):
        text = " ".join(title.replace("\xa0", " ").split())
    else:
        raise TypeError(f"parse_review_title expects a string, got {type(title).__name__}: {title!r}")
    while (m := _PREFIX.match(text)) and m.end() < len(text):
        text = text[m.end():].strip()
    text = _SITE_SUFFIX.sub("", text).strip() if any(s in text for s in _SEPARATORS[:3]) else text.rstrip(" :")
    for m in _QUOTED.finditer(text):
        song = next(g for g in m.groups() if g).strip()
        before = text[:m.start()].rstrip()
        artist = before.rstrip("-\u2013\u2014:,| ").lstrip(":|-\u2013\u2014 ").strip()
        if artist and before != artist:  # the quote follows a separator: 'Artist - "Title"'
            return artist, song
        by = _BY_ARTIST.match(text[m.end():])
        if not before and by:            # '"Title" by Artist - A Song Review'
            return by.group(1).strip(), song
    for sep in _SEPARATORS:
        artist, found, song = text.partition(sep)
        if found and artist.strip() and song.strip():
            return artist.strip(" :|-\u2013\u2014"), song.strip().strip("\"'\u201c\u201d\u2018\u2019").strip()
    if strict:
        raise ValueError(f"cannot split review title {title!r} into artist and title: expected e.g. 'Artist - \"Title\"'")
    return None, None


# ------------------------------------------------------------------ matching
class TrackMatch(NamedTuple):
    "What `find_track` found: the track id (None if no match) and why."
    track_id: str | None
    reason: str


@dataclass(frozen=True)
class _Candidate:
    track_id: str
    name: str
    artists: tuple[str, ...]
    popularity: float = 0.0


def _pick(artist: str, title: str, candidates: Sequence[_Candidate], nothing_found: str) -> TrackMatch:
    "The best candidate whose normalized title and artist match the query, else None with the reason."
    if not candidates:
        return TrackMatch(None, nothing_found)
    want_title, want_artists = normalize_title(title), _artist_keys(artist)
    good = [c for c in candidates if normalize_title(c.name) == want_title and want_artists & _artist_keys(c.artists)]
    if good:
        # An exact title (same version) first, then popularity; max keeps the first of equals, the source's ranking.
        best = max(good, key=lambda c: (c.name.casefold() == title.casefold(), c.popularity))
        return TrackMatch(best.track_id, f"matched {best.name!r} by {', '.join(best.artists)}")
    c = candidates[0]
    return TrackMatch(None, f"no result matches {artist!r} - {title!r}; closest: {c.name!r} by {', '.join(c.artists)}")


def _check_track_ids(track_ids: Iterable[str], pattern: str = r".+") -> list[str]:
    "Deduplicated track ids in order; a clear error for anything that is not a string matching `pattern`."
    if isinstance(track_ids, str):
        track_ids = [track_ids]
    ids = list(dict.fromkeys(track_ids))
    bad = [i for i in ids if not isinstance(i, str) or not re.fullmatch(pattern, i)]
    if bad:
        raise ValueError(f"not track ids: {first_rows(bad)}; pass bare Spotify ids like '4uLU6hMCjMI75M1A2tKUQC'")
    return ids


class _AudioFeatureSource:
    "What `add_audio_features` needs from a source."
    available_features: tuple[str, ...] = AUDIO_FEATURES

    def find_track(self, artist: str, title: str) -> TrackMatch:
        raise NotImplementedError

    def features(self, track_ids: Iterable[str]) -> pd.DataFrame:
        raise NotImplementedError


# ------------------------------------------------------------------ files
_COLUMN_ALIASES = {"track_id": ("track_id", "id"), "track_name": ("track_name", "name", "title"),
                   "track_artist": ("track_artist", "artists", "artist", "artist_name"),
                   "popularity": ("track_popularity", "popularity")}


class FileFeatures(_AudioFeatureSource):
    """Audio features from a CSV (optionally .gz) or JSON export such as TidyTuesday's
    `spotify_songs.csv` or the Kaggle Spotify datasets: `track_id`, `track_name`,
    `track_artist`, `energy`, `valence`, ... (column names are matched case-insensitively;
    `id`, `name`, `artists` are accepted too). Same interface as `SpotifyFeatures`."""

    def __init__(self, path: str | Path, encoding: str | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"audio-features file {str(self.path)!r} does not exist")
        df = self._read(self.path, encoding)
        df = df.rename(columns=self._canonical_names(df.columns))
        check_columns(df, ["track_id", "track_name", "track_artist"], f"{self.path.name}: column")
        self.available_features = tuple(f for f in AUDIO_FEATURES if f in df.columns)
        if not self.available_features:
            raise ValueError(f"{self.path.name} has none of the audio-feature columns {list(AUDIO_FEATURES)}")
        df = df.dropna(subset=["track_id"]).drop_duplicates("track_id")
        df["track_id"] = df["track_id"].astype(str)
        self._features = df.set_index("track_id")[list(self.available_features)].apply(pd.to_numeric, errors="coerce")
        popularity = df["popularity"] if "popularity" in df.columns else pd.Series(0.0, index=df.index)
        self._by_title: dict[str, list[_Candidate]] = {}
        for tid, name, artist, pop in zip(df["track_id"], df["track_name"], df["track_artist"], popularity.fillna(0)):
            if isinstance(name, str) and isinstance(artist, str):
                cand = _Candidate(tid, name, tuple(a.strip() for a in artist.split(";")), float(pop))
                self._by_title.setdefault(normalize_title(name), []).append(cand)

    @staticmethod
    def _read(path: Path, encoding: str | None) -> pd.DataFrame:
        suffixes = [s.lower() for s in path.suffixes]
        if ".json" in suffixes or ".jsonl" in suffixes or ".ndjson" in suffixes:
            return pd.read_json(path, lines=".json" not in suffixes, encoding=encoding)
        if ".csv" in suffixes or ".tsv" in suffixes:
            return pd.read_csv(path, sep="\t" if ".tsv" in suffixes else ",", encoding=encoding)
        raise ValueError(f"{path.name}: expected a .csv, .tsv, .json or .jsonl file (optionally .gz)")

    def _canonical_names(self, columns: Iterable[str]) -> dict[str, str]:
        "Map the file's column names to ours, case-insensitively, trying each alias in order."
        lower = {}
        for c in columns:
            lower.setdefault(str(c).strip().lower(), c)
        renames = {lower[f]: f for f in AUDIO_FEATURES if f in lower}
        for ours, aliases in _COLUMN_ALIASES.items():
            found = next((lower[a] for a in aliases if a in lower), None)
            if found is not None:
                renames[found] = ours
        return renames

    def find_track(self, artist: str, title: str) -> TrackMatch:
        "The id of the most popular track in the file titled `title` by `artist` (after normalization)."
        return _pick(artist, title, self._by_title.get(normalize_title(title), []),
                     f"no track titled {title!r} in {self.path.name}")

    def features(self, track_ids: Iterable[str]) -> pd.DataFrame:
        "One row per (deduplicated) id, in order; NaN for ids the file does not have."
        return self._features.reindex(pd.Index(_check_track_ids(track_ids), name="track_id"))

    def __len__(self) -> int:
        return len(self._features)

    def __repr__(self) -> str:
        return f"FileFeatures({str(self.path)!r}, {len(self)} tracks, features={list(self.available_features)})"


# ------------------------------------------------------------------ Spotify
class SpotifyFeaturesError(RuntimeError):
    "The Spotify Web API could not give what was asked, for the reason in the message."


class SpotifyRateLimitError(SpotifyFeaturesError):
    "Spotify kept answering 429 for longer than `max_wait` seconds in total."


class SpotifyForbiddenError(SpotifyFeaturesError):
    "Spotify answered 403 (audio-features is closed to apps created after 2024-11-27)."


class _Malformed(Exception):
    "A response that is not the JSON the endpoint documents."


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


def _retry_after(headers: Any) -> float:
    "Seconds from a Retry-After header (seconds or an HTTP date); 1 second when missing or unreadable."
    value = (headers or {}).get("Retry-After")
    if value is None:
        return 1.0
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return 1.0


class _Cache:
    """Search results and audio features in one sqlite file. Every batch is written in one
    transaction, so an interrupted run keeps what it finished and resumes from there."""

    def __init__(self, path: str | Path | None):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(":memory:" if path is None else str(path))
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS search (key TEXT PRIMARY KEY, track_id TEXT, reason TEXT)")
            self.db.execute("CREATE TABLE IF NOT EXISTS features (track_id TEXT PRIMARY KEY, features TEXT)")

    def get_match(self, key: str) -> TrackMatch | None:
        row = self.db.execute("SELECT track_id, reason FROM search WHERE key = ?", (key,)).fetchone()
        return None if row is None else TrackMatch(*row)

    def put_match(self, key: str, match: TrackMatch) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO search VALUES (?, ?, ?)", (key, *match))

    def get_features(self, track_ids: Sequence[str]) -> dict[str, dict | None]:
        "Cached features of `track_ids` (None: Spotify has none for that id); uncached ids are left out."
        found = {}
        for i in range(0, len(track_ids), 500):        # sqlite's limit on bound parameters
            chunk = track_ids[i:i + 500]
            rows = self.db.execute(f"SELECT track_id, features FROM features WHERE track_id IN "
                                   f"({','.join('?' * len(chunk))})", chunk)
            found.update((tid, json.loads(f)) for tid, f in rows)
        return found

    def put_features(self, batch: dict[str, dict | None]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?)",
                                [(tid, json.dumps(f)) for tid, f in batch.items()])

    def close(self) -> None:
        self.db.close()


class SpotifyFeatures(_AudioFeatureSource):
    """Audio features from the Spotify Web API through spotipy's client-credentials flow.

    Credentials come from `client_id`/`client_secret` or `SPOTIPY_CLIENT_ID`/`SPOTIPY_CLIENT_SECRET`;
    they stay in memory (the access token too) and never appear in reprs or logs. With
    `cache_path`, search results and features go to a sqlite file, so a second run makes no
    requests and an interrupted one resumes. spotipy's own retries are switched off (they
    have hung callers for up to an hour on 429, spotipy issues #766 and #1224): here a 429
    waits its Retry-After, at most `max_wait` seconds over the object's life, then raises
    `SpotifyRateLimitError`; 5xx, timeouts and malformed JSON are retried `retries` times
    with exponential backoff from `backoff` seconds. `api_url`/`token_url` point the client
    elsewhere (a proxy, or a local test server); `sleep` is how it waits.
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
                             "SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET (or use FileFeatures with a dataset export)")
        _redact_spotipy_logs()
        auth = spotipy.SpotifyClientCredentials(client_id, client_secret, cache_handler=MemoryCacheHandler(),
                                                requests_timeout=timeout)
        auth.OAUTH_TOKEN_URL = token_url
        # A plain requests.Session has no urllib3 Retry adapter: every retry is ours, and bounded.
        self._spotify = spotipy.Spotify(auth_manager=auth, requests_session=requests.Session(),
                                        requests_timeout=timeout)
        self._spotify.prefix = api_url if api_url.endswith("/") else api_url + "/"
        self.cache_path = None if cache_path is None else Path(cache_path)
        self._cache = _Cache(self.cache_path)
        self.max_wait, self.retries, self.backoff = max_wait, retries, backoff
        self.search_limit, self.market, self._sleep = search_limit, market, sleep
        self.n_requests = 0            # requests sent to the Web API (token requests not counted)
        self.rate_limit_waited = 0.0   # seconds slept on 429s so far; never more than max_wait

    # --------------------------------------------------------------- requests
    def _request(self, what: str, call: Callable[[], Any]) -> Any:
        "Run `call` with our bounded handling of 429, 403, 5xx, timeouts and malformed JSON."
        failures = 0
        while True:
            try:
                self.n_requests += 1
                return call()
            except SpotifyException as e:
                if e.http_status == 429:
                    self._wait_for_rate_limit(what, _retry_after(e.headers))
                    continue
                if e.http_status == 403 and what == "audio-features":
                    raise SpotifyForbiddenError(
                        "Spotify refused audio-features (HTTP 403): the endpoint is closed to Web API apps created "
                        "after 2024-11-27. Use a file source instead, e.g. FileFeatures('spotify_songs.csv.gz') with "
                        "a dataset export (fastai_context.datasets.get_path('spotify_songs'))") from None
                if e.http_status is None or e.http_status < 500:
                    raise SpotifyFeaturesError(f"Spotify {what} failed with HTTP {e.http_status}: {e.msg}") from None
                last = f"HTTP {e.http_status}"
            except SpotifyOauthError as e:
                # spotipy raises this while handling the token endpoint's HTTPError, which holds the status.
                status = getattr(getattr(e.__context__, "response", None), "status_code", None)
                if status is None or status < 500:
                    raise SpotifyFeaturesError(f"Spotify refused the client credentials ({e.error}: "
                                               f"{e.error_description}); check SPOTIPY_CLIENT_ID and "
                                               "SPOTIPY_CLIENT_SECRET") from None
                last = f"HTTP {status} from the token endpoint"
            except (requests.Timeout, requests.ConnectionError) as e:
                last = type(e).__name__
            except (_Malformed, requests.exceptions.JSONDecodeError) as e:
                last = f"malformed response ({e})"
            failures += 1
            if failures > self.retries:
                raise SpotifyFeaturesError(f"Spotify {what} failed {failures} times in a row; last: {last}")
            self._sleep(self.backoff * 2 ** (failures - 1))

    def _wait_for_rate_limit(self, what: str, retry_after: float) -> None:
        "Sleep `retry_after` seconds unless that takes this object's total 429 waiting over `max_wait`."
        delay = max(retry_after, 0.1)       # at least a little, so that the total grows and the loop ends
        if self.rate_limit_waited + delay > self.max_wait:
            raise SpotifyRateLimitError(
                f"Spotify rate limit on {what}: asked to wait {delay:g}s more after {self.rate_limit_waited:g}s "
                f"already waited, over max_wait={self.max_wait:g}s. Finished batches are cached"
                f"{f' in {self.cache_path}' if self.cache_path else ''}; run again later to resume") from None
        self._sleep(delay)
        self.rate_limit_waited += delay

    def _search(self, artist: str, title: str) -> list[_Candidate]:
        query = f"track:{_clean_title(title)} artist:{_strip_feat(artist)}"
        result = self._spotify.search(query, limit=self.search_limit, type="track", market=self.market)
        try:
            items = result["tracks"]["items"]
            return [_Candidate(t["id"], t["name"], tuple(a["name"] for a in t["artists"]), t.get("popularity") or 0)
                    for t in items if t]
        except (TypeError, KeyError) as e:
            raise _Malformed(f"search result without tracks.items[].id/name/artists: {e!r}") from None

    def _audio_features(self, track_ids: list[str]) -> dict[str, dict | None]:
        with warnings.catch_warnings():   # spotipy marks the endpoint deprecated; old apps still have it
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                result = self._spotify.audio_features(track_ids)
            except TypeError:             # spotipy returns None for a body that is not JSON, then fails on it
                raise _Malformed("audio-features body is not JSON") from None
        if not isinstance(result, list) or len(result) != len(track_ids) or \
                not all(f is None or isinstance(f, dict) for f in result):
            raise _Malformed(f"expected a list of {len(track_ids)} audio-features objects or nulls")
        return {tid: None if f is None else {k: f.get(k) for k in AUDIO_FEATURES} for tid, f in zip(track_ids, result)}

    # --------------------------------------------------------------- interface
    def find_track(self, artist: str, title: str) -> TrackMatch:
        """Search Spotify for `title` by `artist` and return the best normalized match
        (its id, or None with the reason). Results, misses included, are cached."""
        key = f"{normalize_artist(artist)}\t{normalize_title(title)}"
        match = self._cache.get_match(key)
        if match is None:
            candidates = self._request("search", lambda: self._search(artist, title))
            match = _pick(artist, title, candidates, f"Spotify search found nothing for {artist!r} - {title!r}")
            self._cache.put_match(key, match)
        return match

    def features(self, track_ids: Iterable[str]) -> pd.DataFrame:
        """Audio features of `track_ids`: one row per (deduplicated) id, in order, NaN where
        Spotify has none. Uncached ids are fetched at most 100 per request; each batch is
        cached as soon as it arrives."""
        ids = _check_track_ids(track_ids, pattern=r"[0-9A-Za-z]+")   # base62, as Spotify's ids are
        known = self._cache.get_features(ids)
        todo = [i for i in ids if i not in known]
        for start in range(0, len(todo), MAX_IDS_PER_REQUEST):
            batch = todo[start:start + MAX_IDS_PER_REQUEST]
            fetched = self._request("audio-features", lambda: self._audio_features(batch))
            self._cache.put_features(fetched)
            known.update(fetched)
        rows = [known[i] or {} for i in ids]
        return pd.DataFrame(rows, index=pd.Index(ids, name="track_id"), columns=list(AUDIO_FEATURES), dtype=float)

    def close(self) -> None:
        "Close the cache file."
        self._cache.close()

    def __enter__(self) -> "SpotifyFeatures":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"SpotifyFeatures(api_url={self._spotify.prefix!r}, cache_path="
                f"{None if self.cache_path is None else str(self.cache_path)!r}, max_wait={self.max_wait:g})")


# ------------------------------------------------------------------ joining
@dataclass(repr=False)
class MatchReport:
    "How many rows got features, and for each row that did not, why."
    total: int
    matched: int
    unmatched: pd.DataFrame       # index: the row labels of the input; columns: artist, title, reason

    def __repr__(self) -> str:
        lines = [f"matched {self.matched} of {self.total} rows ({self.total - self.matched} unmatched)"]
        for label, row in self.unmatched.head(10).iterrows():
            lines.append(f"  row {label!r}: {row['artist']!r} - {row['title']!r}: {row['reason']}")
        if len(self.unmatched) > 10:
            lines.append(f"  ... and {len(self.unmatched) - 10} more (see .unmatched)")
        return "\n".join(lines)


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def add_audio_features(df: pd.DataFrame, source: SpotifyFeatures | FileFeatures, artist_col: str, title_col: str,
                       features: str | Sequence[str] = ("energy",), id_col: str | None = "track_id",
                       progress: bool = True) -> tuple[pd.DataFrame, MatchReport]:
    """Find each row's song in `source` and join its audio `features` to a copy of `df`.

    Returns `(df_with_features, report)`: the new columns hold NaN where no track matched
    (or the source has no features for it), and `report.unmatched` says why, row by row.
    `id_col` names the column for the matched track id (None: don't add it).
    """
    features = [features] if isinstance(features, str) else list(features)
    check_columns(df, [artist_col, title_col])
    unknown = [f for f in features if f not in source.available_features]
    if unknown or not features:
        raise KeyError(f"features {unknown or features} are not available from {type(source).__name__}; "
                       f"choose from {list(source.available_features)}")
    new_cols = features + ([id_col] if id_col else [])
    clash = [c for c in new_cols if c in df.columns]
    if clash:
        raise ValueError(f"df already has columns {clash}; drop or rename them before adding audio features")

    matches: dict[tuple[str, str], TrackMatch] = {}
    row_ids: list[str | None] = []
    reasons: dict[int, str] = {}                    # row position -> why it has no features
    pairs = list(zip(df[artist_col], df[title_col]))
    for pos, (artist, title) in enumerate(progress_bar(pairs, leave=False) if progress else pairs):
        if _blank(artist) or _blank(title):
            row_ids.append(None)
            reasons[pos] = f"missing {artist_col if _blank(artist) else title_col}"
            continue
        key = (str(artist), str(title))
        if key not in matches:
            matches[key] = source.find_track(*key)
        row_ids.append(matches[key].track_id)
        if matches[key].track_id is None:
            reasons[pos] = matches[key].reason

    values = source.features([i for i in row_ids if i is not None])[features].reindex(pd.Index(row_ids, dtype=object))
    for pos, (tid, has) in enumerate(zip(row_ids, values.notna().any(axis=1))):
        if tid is not None and not has:
            reasons[pos] = f"track {tid} has no audio features in {type(source).__name__}"
    out = df.copy()
    for f in features:
        out[f] = values[f].to_numpy(dtype=float)
    if id_col:
        out[id_col] = row_ids
    positions = sorted(reasons)
    unmatched = pd.DataFrame({"artist": df[artist_col].iloc[positions].to_numpy(dtype=object),
                              "title": df[title_col].iloc[positions].to_numpy(dtype=object),
                              "reason": [reasons[p] for p in positions]}, index=df.index[positions])
    return out, MatchReport(total=len(df), matched=len(df) - len(reasons), unmatched=unmatched)
