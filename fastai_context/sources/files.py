"""Audio features from a file export (CSV/TSV/JSON, optionally gzipped), e.g. TidyTuesday's
`spotify_songs.csv`: the source that works for everyone, with no account and no network."""
from __future__ import annotations

import gzip
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..context import check_columns
from .base import AUDIO_FEATURES, AudioFeatureSource
from .titles import Candidate, TrackMatch, check_track_ids, normalize_title, pick_match

__all__ = ["FileFeatures"]

_COLUMN_ALIASES = {"track_id": ("track_id", "id"), "track_name": ("track_name", "name", "title"),
                   "track_artist": ("track_artist", "artists", "artist", "artist_name"),
                   "popularity": ("track_popularity", "popularity")}


def _id_string(v) -> str | None:
    "A track id as text: 123 and 123.0 (a numeric id column with a gap reads as floats) both give '123'."
    if v is None or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    s = str(v).strip()
    return s or None


class FileFeatures(AudioFeatureSource):
    """Audio features from a CSV (optionally .gz) or JSON export such as TidyTuesday's
    `spotify_songs.csv` or the Kaggle Spotify datasets: `track_id`, `track_name`,
    `track_artist`, `energy`, `valence`, ... (column names are matched case-insensitively;
    `id`, `name`, `artists` are accepted too). Same interface as `SpotifyFeatures`.

    Track ids are read as text. A feature value that is not a number (`energy=high`) is an
    error naming the file, column and row; a track id listed twice with different features
    keeps the first and warns, naming the id.
    """

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
        df = df.reset_index(drop=True)                        # row n of the file's data is label n
        df["track_id"] = df["track_id"].map(_id_string)
        feats = pd.DataFrame({f: self._numeric(df[f], f) for f in self.available_features})
        df = pd.concat([df.drop(columns=list(self.available_features)), feats], axis=1).dropna(subset=["track_id"])
        self._warn_conflicting_duplicates(df)
        df = df.drop_duplicates("track_id")
        self._features = df.set_index("track_id")[list(self.available_features)]
        popularity = pd.to_numeric(df["popularity"], errors="coerce") if "popularity" in df.columns \
            else pd.Series(0.0, index=df.index)
        self._by_title: dict[str, list[Candidate]] = {}
        for tid, name, artist, pop in zip(df["track_id"], df["track_name"], df["track_artist"], popularity.fillna(0)):
            if isinstance(name, str) and isinstance(artist, str):
                cand = Candidate(tid, name, tuple(a.strip() for a in artist.split(";")), float(pop))
                self._by_title.setdefault(normalize_title(name), []).append(cand)

    @staticmethod
    def _read(path: Path, encoding: str | None) -> pd.DataFrame:
        "The file as text columns (ids stay as written); a clear error naming the file when it cannot be read."
        suffixes = [s.lower() for s in path.suffixes]
        try:
            if ".json" in suffixes or ".jsonl" in suffixes or ".ndjson" in suffixes:
                return pd.read_json(path, lines=".json" not in suffixes, encoding=encoding, dtype=False)
            if ".csv" in suffixes or ".tsv" in suffixes:
                return pd.read_csv(path, sep="\t" if ".tsv" in suffixes else ",", encoding=encoding, dtype=str)
        except pd.errors.EmptyDataError:
            raise ValueError(f"audio-features file {str(path)!r} is empty") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"audio-features file {str(path)!r} is not {encoding or 'UTF-8'} text ({e.reason} at "
                             f"byte {e.start}); pass encoding=, e.g. FileFeatures(path, encoding='latin-1')") from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise ValueError(f"audio-features file {str(path)!r} is a damaged or truncated gzip file ({e})") from None
        except (pd.errors.ParserError, ValueError) as e:
            raise ValueError(f"cannot read audio-features file {str(path)!r}: {e}") from None
        raise ValueError(f"{path.name}: expected a .csv, .tsv, .json or .jsonl file (optionally .gz)")

    def _numeric(self, column: pd.Series, name: str) -> pd.Series:
        "A feature column as floats; a value that is not a number is an error naming the file, column and row."
        values = pd.to_numeric(column, errors="coerce")
        bad = values.isna() & column.notna()
        if bad.any():
            rows = bad[bad].index
            raise ValueError(f"{self.path.name}: column {name!r} has {len(rows)} value(s) that are not numbers, "
                             f"e.g. row {rows[0] + 1} (of the data, after the header): {column[rows[0]]!r}")
        return values.astype(float)

    def _warn_conflicting_duplicates(self, df: pd.DataFrame) -> None:
        "Warn, naming the ids, when one track id is listed with different features (the first is kept)."
        dup = df[df.duplicated("track_id", keep=False)]
        if dup.empty:
            return
        n_values = dup.groupby("track_id")[list(self.available_features)].nunique(dropna=False)
        conflicting = n_values.index[(n_values > 1).any(axis=1)].tolist()
        if conflicting:
            shown = ", ".join(repr(i) for i in conflicting[:5]) + (f" and {len(conflicting) - 5} more"
                                                                  if len(conflicting) > 5 else "")
            warnings.warn(f"{self.path.name}: track id(s) {shown} appear more than once with different audio "
                          "features; keeping each id's first row", stacklevel=3)

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
        return pick_match(artist, title, self._by_title.get(normalize_title(title), []),
                          f"no track titled {title!r} in {self.path.name}")

    def features(self, track_ids: Iterable[str]) -> pd.DataFrame:
        "One row per (deduplicated) id, in order; NaN for ids the file does not have."
        return self._features.reindex(pd.Index(check_track_ids(track_ids), name="track_id"))

    def __len__(self) -> int:
        return len(self._features)

    def __repr__(self) -> str:
        return f"FileFeatures({str(self.path)!r}, {len(self)} tracks, features={list(self.available_features)})"
