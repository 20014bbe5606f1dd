"""Join audio features to a DataFrame of songs: find each row's track id, fetch its features."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from fastprogress.fastprogress import progress_bar

from ..context import check_columns
from .base import AudioFeatureSource
from .titles import TrackMatch

__all__ = ["MatchReport", "add_audio_features"]


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


def add_audio_features(df: pd.DataFrame, source: AudioFeatureSource, artist_col: str, title_col: str,
                       features: str | Sequence[str] = ("energy",), id_col: str | None = "track_id",
                       progress: bool = True, id_source: AudioFeatureSource | None = None
                       ) -> tuple[pd.DataFrame, MatchReport]:
    """Find each row's song and join its audio `features` from `source` to a copy of `df`.

    Track ids come from `id_source.find_track(artist, title)` (default: `source` itself), so a
    source that only looks features up by id (`ReccoBeatsFeatures`) pairs with one that can
    find ids (`FileFeatures` on a dataset export, or `SpotifyFeatures`' search).
    Returns `(df_with_features, report)`: the new columns hold NaN where no track matched
    (or the source has no features for it), and `report.unmatched` says why, row by row.
    `id_col` names the column for the matched track id (None: don't add it).
    """
    features = [features] if isinstance(features, str) else list(features)
    check_columns(df, [artist_col, title_col])
    finder = source if id_source is None else id_source
    if not callable(getattr(finder, "find_track", None)) or \
            (isinstance(finder, AudioFeatureSource) and not finder.can_find_tracks()):
        raise TypeError(f"{type(finder).__name__} cannot find a track id by artist and title; pass "
                        "id_source= a source that can, e.g. FileFeatures('spotify_songs.csv.gz') (a dataset export "
                        "with track ids) or SpotifyFeatures (a Spotify app's search)")
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
            matches[key] = finder.find_track(*key)
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
