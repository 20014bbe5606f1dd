"""Song titles: parse a music-blog review title into (artist, title), normalize names for
matching, and pick the best of a source's candidate tracks."""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..context import first_rows

__all__ = ["parse_review_title", "normalize_title", "normalize_artist", "clean_title", "strip_feat", "TrackMatch",
           "Candidate", "pick_match", "check_track_ids"]


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


def strip_feat(s: str) -> str:
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


def clean_title(title: str) -> str:
    return _strip_version(strip_feat(title))


def normalize_title(title: str) -> str:
    """Matching key for a song title: case, accents, punctuation, 'feat.'/'ft.' parts and
    remix/edit/version suffixes (in brackets or after ' - ') are ignored."""
    return _fold(clean_title(title))


def normalize_artist(artist: str) -> str:
    "Matching key for an artist name: case, accents, punctuation and 'feat.' parts are ignored."
    return _fold(strip_feat(artist))


def _artist_keys(artists: str | Iterable[str]) -> set[str]:
    "Keys an artist credit can match on: each credited artist, and the whole credit."
    names = [artists] if isinstance(artists, str) else list(artists)
    keys = {normalize_artist(", ".join(names))}
    for name in names:
        keys.add(normalize_artist(name))
        keys.update(_fold(part) for part in _ARTIST_SEPARATORS.split(strip_feat(name).casefold()))
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
class Candidate:
    track_id: str
    name: str
    artists: tuple[str, ...]
    popularity: float = 0.0


def pick_match(artist: str, title: str, candidates: Sequence[Candidate], nothing_found: str) -> TrackMatch:
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


def check_track_ids(track_ids: Iterable[str], pattern: str = r".+") -> list[str]:
    "Deduplicated track ids in order; a clear error for anything that is not a string matching `pattern`."
    if isinstance(track_ids, str):
        track_ids = [track_ids]
    ids = list(dict.fromkeys(track_ids))
    bad = [i for i in ids if not isinstance(i, str) or not re.fullmatch(pattern, i)]
    if bad:
        raise ValueError(f"not track ids: {first_rows(bad)}; pass bare Spotify ids like '4uLU6hMCjMI75M1A2tKUQC'")
    return ids
