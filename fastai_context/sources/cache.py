"""One sqlite file for what the web sources fetched: search results and audio features."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from .titles import TrackMatch

__all__ = ["FeatureCache"]


class FeatureCache:
    """Search results and audio features in one sqlite file (in memory when `path` is None).
    Every batch is written in one transaction, so an interrupted run keeps what it finished
    and resumes from there. `prefix` keeps each service's tables apart in a shared file:
    Spotify's are `search`/`features` (as before), ReccoBeats' `reccobeats_features`."""

    def __init__(self, path: str | Path | None, prefix: str = ""):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if not prefix.replace("_", "").isalnum() and prefix:
            raise ValueError(f"cache table prefix {prefix!r}: letters, digits and '_' only")
        self.search_table, self.features_table = f"{prefix}search", f"{prefix}features"
        self.db = sqlite3.connect(":memory:" if path is None else str(path))
        with self.db:
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {self.search_table} "
                            "(key TEXT PRIMARY KEY, track_id TEXT, reason TEXT)")
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {self.features_table} "
                            "(track_id TEXT PRIMARY KEY, features TEXT)")

    def get_match(self, key: str) -> TrackMatch | None:
        row = self.db.execute(f"SELECT track_id, reason FROM {self.search_table} WHERE key = ?", (key,)).fetchone()
        return None if row is None else TrackMatch(*row)

    def put_match(self, key: str, match: TrackMatch) -> None:
        with self.db:
            self.db.execute(f"INSERT OR REPLACE INTO {self.search_table} VALUES (?, ?, ?)", (key, *match))

    def get_features(self, track_ids: Sequence[str]) -> dict[str, dict | None]:
        "Cached features of `track_ids` (None: the service has none for that id); uncached ids are left out."
        found = {}
        for i in range(0, len(track_ids), 500):        # sqlite's limit on bound parameters
            chunk = list(track_ids[i:i + 500])
            rows = self.db.execute(f"SELECT track_id, features FROM {self.features_table} WHERE track_id IN "
                                   f"({','.join('?' * len(chunk))})", chunk)
            found.update((tid, json.loads(f)) for tid, f in rows)
        return found

    def put_features(self, batch: dict[str, dict | None]) -> None:
        with self.db:
            self.db.executemany(f"INSERT OR REPLACE INTO {self.features_table} VALUES (?, ?)",
                                [(tid, json.dumps(f)) for tid, f in batch.items()])

    def close(self) -> None:
        self.db.close()
