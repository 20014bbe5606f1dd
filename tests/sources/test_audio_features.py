"""Audio features from Spotify (through the real spotipy client, against a local fake of the
Web API on 127.0.0.1) and from the real TidyTuesday tracks file, joined to real blog reviews."""
import base64
import json
import logging
import sqlite3
import time
import urllib.parse
import warnings

import numpy as np
import pandas as pd
import pytest

from tests.helpers import JSONHandler, local_server
from fastai_context import datasets
from fastai_context.audio_features import (AUDIO_FEATURES, FileFeatures, SpotifyFeatures, SpotifyFeaturesError,
                                           SpotifyForbiddenError, SpotifyRateLimitError, add_audio_features,
                                           normalize_artist, normalize_title, parse_review_title)

CLIENT_ID, CLIENT_SECRET, TOKEN = "test-client-id", "s3cr3t-client-secret", "fake-access-token"


# ------------------------------------------------------------------ a fake Spotify Web API
class FakeSpotify:
    """Answers the three calls spotipy makes here (POST /api/token, GET /v1/search,
    GET /v1/audio-features/) from a catalog of real tracks. `script[endpoint]` queues
    overrides `(status, headers, body)` consumed one per request (None: answer normally;
    a float: sleep that long first, to cause a client timeout)."""

    def __init__(self, catalog: pd.DataFrame):
        self.catalog = catalog.set_index("track_id")
        self.requests: list[tuple[str, dict]] = []      # (endpoint, query) of every API request
        self.token_requests = 0
        self.script: dict[str, list] = {"search": [], "audio-features": [], "token": []}

    def features_requests(self) -> list[list[str]]:
        return [q["ids"].split(",") for e, q in self.requests if e == "audio-features"]

    def answer(self, endpoint: str, query: dict, headers) -> tuple[int, dict, bytes]:
        if self.script[endpoint]:
            override = self.script[endpoint].pop(0)
            if isinstance(override, float):
                time.sleep(override)
            elif override == "trickle":
                return override
            elif override is not None:
                status, hdrs, body = override
                return status, hdrs, body if isinstance(body, bytes) else json.dumps(body).encode()
        if endpoint == "token":
            basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if headers.get("Authorization") != f"Basic {basic}":
                return 400, {}, json.dumps({"error": "invalid_client"}).encode()
            return 200, {}, json.dumps({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}).encode()
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {}, json.dumps({"error": {"status": 401, "message": "Invalid access token"}}).encode()
        if endpoint == "search":
            title = query["q"].split("track:")[1].split(" artist:")[0].casefold()
            hits = self.catalog[self.catalog.track_name.str.casefold().str.startswith(title)]
            items = [{"id": tid, "name": r.track_name, "popularity": int(r.track_popularity),
                      "artists": [{"name": a} for a in r.track_artist.split(", ")]}
                     for tid, r in hits.head(int(query.get("limit", 10))).iterrows()]
            return 200, {}, json.dumps({"tracks": {"items": items, "total": len(items)}}).encode()
        feats = [None if tid not in self.catalog.index else
                 {"id": tid, "type": "audio_features", **{f: float(self.catalog.at[tid, f]) for f in AUDIO_FEATURES
                                                          if f in self.catalog.columns}}
                 for tid in query["ids"].split(",")]
        return 200, {}, json.dumps({"audio_features": feats}).encode()


def _handler(fake: FakeSpotify):
    class Handler(JSONHandler):
        def _reply(self, endpoint, query):
            answer = fake.answer(endpoint, query, self.headers)
            if answer == "trickle":
                return self.trickle_body(b'{"audio_features": []}' + b" " * 20)
            self.send_json(*answer)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            fake.token_requests += 1
            self._reply("token", {})

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            endpoint = "search" if url.path == "/v1/search" else "audio-features"
            fake.requests.append((endpoint, query))
            self._reply(endpoint, query)
    return Handler


@pytest.fixture(scope="module")
def catalog(tracks):
    "300 real tracks (with their real features) that the fake Spotify knows."
    return tracks.sample(300, random_state=0).reset_index(drop=True)


@pytest.fixture
def fake(catalog):
    "A fake Spotify on 127.0.0.1 in a thread; its bounded loop stops at teardown or after 2 minutes."
    fake = FakeSpotify(catalog)
    with local_server(_handler(fake)) as url:
        fake.url = url
        yield fake


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def spotify(fake, sleeps, monkeypatch):
    "A factory for SpotifyFeatures pointed at the fake server, recording its sleeps instead of sleeping."
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    opened = []

    def make(**kwargs):
        kwargs = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "api_url": fake.url + "/v1/",
                  "token_url": fake.url + "/api/token", "sleep": sleeps.append, "timeout": 2, **kwargs}
        opened.append(SpotifyFeatures(**kwargs))
        return opened[-1]
    yield make
    for sf in opened:
        sf.close()


# ------------------------------------------------------------------ SpotifyFeatures
def test_spotify_success_and_credentials_stay_secret(spotify, fake, catalog, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.chdir(tmp_path)                 # spotipy's default token cache would write ./.cache here
    sf = spotify(cache_path=tmp_path / "cache.sqlite")
    row = catalog.iloc[3]
    match = sf.find_track(row.track_artist.upper(), row.track_name)
    assert match.track_id == row.track_id, match.reason
    got = sf.features([row.track_id])
    assert got.index.tolist() == [row.track_id]
    np.testing.assert_allclose(got.loc[row.track_id, ["energy", "valence", "tempo"]].to_numpy(dtype=float),
                               row[["energy", "valence", "tempo"]].to_numpy(dtype=float))
    assert fake.token_requests == 1 and [e for e, _ in fake.requests] == ["search", "audio-features"]
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    on_disk = (tmp_path / "cache.sqlite").read_bytes()
    for secret in (CLIENT_SECRET, basic, TOKEN):
        assert secret not in repr(sf) and secret not in caplog.text
        assert secret.encode() not in on_disk
    assert "<redacted>" in caplog.text          # spotipy did log the headers, without the secret
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.sqlite"]


def test_spotify_credentials_from_environment_or_clear_error(spotify, fake, catalog, monkeypatch):
    monkeypatch.delenv("SPOTIPY_CLIENT_ID", raising=False)
    monkeypatch.delenv("SPOTIPY_CLIENT_SECRET", raising=False)
    with pytest.raises(ValueError, match="SPOTIPY_CLIENT_ID"):
        SpotifyFeatures()
    monkeypatch.setenv("SPOTIPY_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SPOTIPY_CLIENT_SECRET", CLIENT_SECRET)
    assert spotify(client_id=None, client_secret=None).features([catalog.track_id[0]])[["energy", "valence"]].notna().all(axis=None)
    with pytest.raises(SpotifyFeaturesError, match="client credentials"):
        spotify(client_secret="wrong").features([catalog.track_id[1]])
    fake.script["token"] = [(502, {}, b"Bad Gateway")]                   # a token-endpoint 5xx is retried
    assert spotify(backoff=0.1).features([catalog.track_id[2]]).energy.notna().all()


def test_spotify_batches_of_100_and_second_run_from_cache(spotify, fake, catalog, tmp_path):
    ids = catalog.track_id[:250].tolist()
    first = spotify(cache_path=tmp_path / "c.sqlite").features(ids + ids[:5])    # duplicates asked once
    assert [len(b) for b in fake.features_requests()] == [100, 100, 50]
    assert first.index.tolist() == ids
    np.testing.assert_allclose(first["energy"].to_numpy(), catalog.energy[:250].to_numpy())
    fake.requests.clear()
    fake.token_requests = 0
    second = spotify(cache_path=tmp_path / "c.sqlite")
    pd.testing.assert_frame_equal(second.features(ids), first)
    assert fake.requests == [] and fake.token_requests == 0 and second.n_requests == 0


def test_spotify_cache_survives_failure_mid_run(spotify, fake, catalog, tmp_path, sleeps):
    ids = catalog.track_id[:250].tolist()
    fake.script["audio-features"] = [None, None] + [(500, {}, {"error": {"status": 500, "message": "boom"}})] * 4
    with pytest.raises(SpotifyFeaturesError, match="failed 4 times.*HTTP 500"):
        spotify(cache_path=tmp_path / "c.sqlite", retries=3, backoff=0.5).features(ids)
    assert sleeps == [0.5, 1.0, 2.0]
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM features").fetchone()[0] == 200
    fake.requests.clear()
    resumed = spotify(cache_path=tmp_path / "c.sqlite").features(ids)
    assert fake.features_requests() == [ids[200:]]
    np.testing.assert_allclose(resumed["energy"].to_numpy(), catalog.energy[:250].to_numpy())


def test_spotify_429_waits_retry_after_within_max_wait(spotify, fake, catalog, sleeps):
    limited = (429, {"Retry-After": "2"}, {"error": {"status": 429, "message": "API rate limit exceeded"}})
    fake.script["audio-features"] = [limited, limited]
    assert spotify(max_wait=10).features(catalog.track_id[:3])[["energy", "valence"]].notna().all(axis=None)
    assert sleeps == [2.0, 2.0] and len(fake.features_requests()) == 3


def test_spotify_429_beyond_max_wait_is_a_clear_error(spotify, fake, catalog, sleeps):
    limited = (429, {"Retry-After": "40"}, {"error": {"status": 429}})
    fake.script["audio-features"] = [limited] * 5
    with pytest.raises(SpotifyRateLimitError, match="max_wait=60"):
        spotify(max_wait=60).features(catalog.track_id[:3])
    assert sleeps == [40.0] and len(fake.features_requests()) == 2
    sf = spotify(max_wait=60)                                   # max_wait bounds the total over calls
    fake.script["audio-features"] = [limited, None, limited]
    sf.features(catalog.track_id[:3])
    with pytest.raises(SpotifyRateLimitError, match="after 40s already waited"):
        sf.features(catalog.track_id[3:6])
    assert sleeps == [40.0, 40.0]
    fake.script["audio-features"] = [(429, {"Retry-After": "0"}, {"error": {"status": 429}})] * 200
    with pytest.raises(SpotifyRateLimitError):                 # Retry-After: 0 still ends
        spotify(max_wait=1).features(catalog.track_id[:3])


def test_spotify_403_recommends_a_file_source(spotify, fake, catalog):
    fake.script["audio-features"] = [(403, {}, {"error": {"status": 403, "message": "Forbidden"}})]
    with pytest.raises(SpotifyForbiddenError, match="2024-11-27.*2026-02-11.*ReccoBeatsFeatures.*FileFeatures"):
        spotify().features(catalog.track_id[:3])
    assert len(fake.features_requests()) == 1          # a 403 is not retried


def test_spotify_500_then_success(spotify, fake, catalog, sleeps):
    fake.script["search"] = [(500, {}, {"error": {"status": 500}}), (503, {}, b"")]
    row = catalog.iloc[7]
    assert spotify(backoff=0.25).find_track(row.track_artist, row.track_name).track_id == row.track_id
    assert sleeps == [0.25, 0.5] and len(fake.requests) == 3


def test_spotify_timeout_is_retried(spotify, fake, catalog, sleeps):
    fake.script["audio-features"] = [0.6]
    got = spotify(timeout=0.2).features(catalog.track_id[:2])
    assert got[["energy", "valence"]].notna().all(axis=None) and len(sleeps) == 1


def test_spotify_trickling_server_is_bounded_by_the_total_timeout(spotify, fake, catalog):
    "#10 item 14: one byte every 0.5 s kept a timeout=1 request alive for 30 s; the whole request is bounded now."
    fake.script["audio-features"] = ["trickle"]
    sf = spotify(timeout=1, retries=0)
    sf.find_track("Nobody", "Nothing")                     # the token is fetched before the clock starts
    start = time.monotonic()
    with pytest.raises(SpotifyFeaturesError, match="audio-features failed 1 times.*total timeout of 1s"):
        sf.features(catalog.track_id[:2])
    assert time.monotonic() - start < 5


def test_spotify_malformed_json(spotify, fake, catalog, sleeps):
    fake.script["audio-features"] = [(200, {}, b'{"audio_features": [')]
    assert spotify().features(catalog.track_id[:2])[["energy", "valence"]].notna().all(axis=None)    # retried once, then fine
    fake.script["search"] = [(200, {}, {"unexpected": 1})] * 3
    with pytest.raises(SpotifyFeaturesError, match="search failed 3 times.*malformed"):
        spotify(retries=2).find_track("Anyone", "Anything")


def test_spotify_unknown_track(spotify, fake, catalog, tmp_path):
    sf = spotify(cache_path=tmp_path / "c.sqlite")
    match = sf.find_track("Nobody", "Zzyzx Qwertyuiop")
    assert match.track_id is None and "found nothing" in match.reason
    row = catalog.iloc[0]
    wrong_artist = sf.find_track("Not " + row.track_artist, row.track_name)
    assert wrong_artist.track_id is None and "closest" in wrong_artist.reason
    got = sf.features(["0000000000000000000000", row.track_id])
    assert got.loc["0000000000000000000000"].isna().all() and got.loc[row.track_id, "energy"] == row.energy
    n = len(fake.requests)
    assert sf.find_track("Nobody", "Zzyzx Qwertyuiop") == match                 # misses are cached too
    assert sf.features(["0000000000000000000000"]).isna().all(axis=None) and len(fake.requests) == n
    with pytest.raises(ValueError, match="not track ids: \\['spotify:track:abc', None\\]"):
        sf.features(["spotify:track:abc", None])


def test_add_audio_features_from_spotify(spotify, fake, catalog, tmp_path):
    rows = catalog.iloc[:4]
    reviews = pd.DataFrame({"title": [f'{a} - "{t}"' for a, t in zip(rows.track_artist, rows.track_name)]
                            + ['Nobody – “Zzyzx Qwertyuiop”', "RITUAL"]})
    reviews[["artist", "song"]] = [parse_review_title(t) for t in reviews.title]
    out, report = add_audio_features(reviews, spotify(cache_path=tmp_path / "c.sqlite"), "artist", "song",
                                     features=["energy", "valence"], progress=False)
    np.testing.assert_allclose(out.energy[:4], rows.energy)
    assert out.track_id[:4].tolist() == rows.track_id.tolist() and out.energy[4:].isna().all()
    assert (report.total, report.matched) == (6, 4)
    assert report.unmatched.index.tolist() == [4, 5]
    assert "found nothing" in report.unmatched.reason[4] and report.unmatched.reason[5] == "missing artist"
    fake.requests.clear()
    again, report_again = add_audio_features(reviews, spotify(cache_path=tmp_path / "c.sqlite"), "artist", "song",
                                             features=["energy", "valence"], progress=False)
    assert fake.requests == [] and fake.token_requests == 1                # all from the cache
    pd.testing.assert_frame_equal(again, out)
    pd.testing.assert_frame_equal(report_again.unmatched, report.unmatched)


# ------------------------------------------------------------------ FileFeatures on the real tracks file
@pytest.fixture(scope="module")
def file_features(data_dir):
    return FileFeatures(data_dir / "spotify" / "spotify_songs.csv.gz")


def test_file_features_real_tracks(file_features, tracks, data_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # the real file lists tracks once per playlist, always alike
        FileFeatures(data_dir / "spotify" / "spotify_songs.csv.gz")
    assert len(file_features) == tracks.track_id.nunique() == 28356
    assert "energy" in file_features.available_features
    sample = tracks.sample(50, random_state=1)
    got = file_features.features(sample.track_id)
    np.testing.assert_allclose(got["energy"].to_numpy(), sample.energy.to_numpy())
    assert file_features.features(["0000000000000000000000"]).isna().all(axis=None)
    assert "28356 tracks" in repr(file_features)


@pytest.mark.parametrize("artist,title,track_id", [
    ("Ed Sheeran", "I Don't Care (with Justin Bieber) - Loud Luxury Remix", "6f807x0ima9a1j3VPbc7VN"),   # exact
    ("beyonce", "HOLD UP", "0rzNMzZsubFcXSEh7dnem7"),                                     # case and accents
    ("Childish Gambino feat. Nobody", "This Is America (Radio Edit)", "0b9oOr2ZgvyQu88wzixux9"),   # feat., edit
])
def test_file_features_find_track_normalizes(file_features, artist, title, track_id):
    match = file_features.find_track(artist, title)
    assert match.track_id == track_id, match.reason


def test_file_features_find_track_prefers_popular_and_explains_misses(file_features, tracks):
    versions = tracks[(tracks.track_name == "(Don't Fear) The Reaper") & (tracks.track_artist == "Blue Öyster Cult")]
    assert len(versions) == 3
    match = file_features.find_track("Blue Oyster Cult", "(Don't Fear) The Reaper")
    assert match.track_id == versions.loc[versions.track_popularity.idxmax(), "track_id"]
    assert file_features.find_track("Mt. Joy", "Zzyzx Qwertyuiop") == (
        None, "no track titled 'Zzyzx Qwertyuiop' in spotify_songs.csv.gz")
    assert "closest" in file_features.find_track("Mt. Joy", "This Is America").reason


def test_file_features_case_insensitive_csv_and_json(tmp_path):
    rows = {"Track_ID": ["a1", "b2"], "TRACK_NAME": ["Silver Lining", "Dirty Love"],
            "Track_Artist": ["Mt. Joy", "Mt. Joy"], "Energy": [0.5, 0.75], "VALENCE": [0.1, 0.2]}
    pd.DataFrame(rows).to_csv(tmp_path / "f.csv", index=False)
    kaggle = [{"id": "a1", "name": "Silver Lining", "artists": "Mt. Joy;Other", "energy": 0.5, "valence": 0.1}]
    (tmp_path / "f.json").write_text(json.dumps(kaggle))
    for path in (tmp_path / "f.csv", tmp_path / "f.json"):
        ff = FileFeatures(path)
        assert ff.available_features == ("energy", "valence")
        assert ff.find_track("MT JOY", 'Silver Lining (feat. X)').track_id == "a1"
        assert ff.features(["a1"]).loc["a1", "energy"] == 0.5
    with pytest.raises(KeyError, match="track_artist"):
        pd.DataFrame({"track_id": ["a"], "track_name": ["b"], "energy": [1.]}).to_csv(tmp_path / "g.csv", index=False)
        FileFeatures(tmp_path / "g.csv")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        FileFeatures(tmp_path / "nope.csv")


def test_file_features_refuses_non_numeric_values_naming_file_column_row(tmp_path):
    rows = {"track_id": ["a1", "b2", "c3"], "track_name": ["x", "y", "z"], "track_artist": ["p", "q", "r"],
            "energy": ["0.5", "high", "0.7"], "valence": [0.1, 0.2, 0.3]}
    pd.DataFrame(rows).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="bad.csv: column 'energy'.*row 2.*'high'"):
        FileFeatures(tmp_path / "bad.csv")
    (tmp_path / "bad.json").write_text(json.dumps([{"id": "a1", "name": "x", "artists": "p", "valence": "sad"}]))
    with pytest.raises(ValueError, match="bad.json: column 'valence'.*row 1.*'sad'"):
        FileFeatures(tmp_path / "bad.json")


def test_file_features_reads_numeric_ids_as_strings(tmp_path):
    "#10 item 7: numeric ids in a column with a gap used to come back as '123.0'."
    (tmp_path / "ids.csv").write_text("track_id,track_name,track_artist,energy\n123,x,p,0.5\n,y,q,0.6\n"
                                      "0456,z,r,0.7\n")
    ff = FileFeatures(tmp_path / "ids.csv")
    assert ff.features(["123", "0456"])["energy"].tolist() == [0.5, 0.7] and len(ff) == 2
    (tmp_path / "ids.json").write_text(json.dumps([{"id": 123, "name": "x", "artists": "p", "energy": 0.5},
                                                   {"id": None, "name": "y", "artists": "q", "energy": 0.6}]))
    assert FileFeatures(tmp_path / "ids.json").features(["123"]).loc["123", "energy"] == 0.5


def test_file_features_unreadable_files_are_named(tmp_path, data_dir):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.csv' is empty"):
        FileFeatures(tmp_path / "empty.csv")
    (tmp_path / "latin.csv").write_bytes("track_id,track_name,track_artist,energy\na,Beyonc\xe9,B,0.5\n"
                                         .encode("latin-1"))
    with pytest.raises(ValueError, match="latin.csv' is not UTF-8 text.*encoding="):
        FileFeatures(tmp_path / "latin.csv")
    assert FileFeatures(tmp_path / "latin.csv", encoding="latin-1").find_track("B", "Beyoncé").track_id == "a"
    whole = (data_dir / "spotify" / "spotify_songs.csv.gz").read_bytes()
    (tmp_path / "cut.csv.gz").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ValueError, match="cut.csv.gz' is a damaged or truncated gzip file"):
        FileFeatures(tmp_path / "cut.csv.gz")
    (tmp_path / "notgz.csv.gz").write_bytes(b"track_id,energy\n")
    with pytest.raises(ValueError, match="notgz.csv.gz' is a damaged or truncated gzip file"):
        FileFeatures(tmp_path / "notgz.csv.gz")


def test_file_features_duplicate_ids_with_different_values_warn(tmp_path, recwarn):
    rows = {"track_id": ["a", "a", "b", "b"], "track_name": ["x"] * 4, "track_artist": ["p"] * 4,
            "energy": [0.5, 0.9, 0.3, 0.3]}
    pd.DataFrame(rows).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.warns(UserWarning, match="dup.csv: track id\\(s\\) 'a' appear more than once") as caught:
        ff = FileFeatures(tmp_path / "dup.csv")
    assert len(caught) == 1 and "'b'" not in str(caught[0].message)        # same values twice: no warning
    assert ff.features(["a", "b"])["energy"].tolist() == [0.5, 0.3]             # the first row is kept


def test_add_audio_features_joins_real_reviews(file_features, tracks):
    reviews = datasets.blog_reviews()
    reviews[["artist", "song"]] = [parse_review_title(t) for t in reviews.title]
    out, report = add_audio_features(reviews, file_features, "artist", "song", features=("energy", "valence"),
                                     progress=False)
    assert len(out) == len(reviews) and report.total == len(reviews)
    assert report.matched == out.energy.notna().sum() >= 40
    assert report.matched + len(report.unmatched) == len(reviews)
    assert out.energy.isna()[report.unmatched.index].all()
    gambino = out[out.song == "This Is America"]
    assert len(gambino) and (gambino.energy == 0.463).all()
    assert (report.unmatched.reason == "missing artist").sum() == reviews.artist.isna().sum()
    assert f"matched {report.matched} of {len(reviews)} rows" in repr(report)
    assert "energy" not in reviews.columns                          # the input is not modified


def test_add_audio_features_bad_input(file_features):
    df = pd.DataFrame({"artist": ["Childish Gambino", "Childish Gambino"], "song": ["This Is America"] * 2},
                      index=[7, 7])
    out, report = add_audio_features(df, file_features, "artist", "song", progress=False)
    assert out.energy.tolist() == [0.463, 0.463] and report.matched == 2          # duplicate labels are fine
    with pytest.raises(KeyError, match="'singer'"):
        add_audio_features(df, file_features, "singer", "song")
    with pytest.raises(KeyError, match="'loudnes'.*choose from"):
        add_audio_features(df, file_features, "artist", "song", features="loudnes")
    with pytest.raises(ValueError, match="already has columns \\['energy'\\]"):
        add_audio_features(out.drop(columns="track_id"), file_features, "artist", "song")


def test_audio_features_module_still_offers_the_same_names():
    "fastai_context.audio_features is now a thin module over fastai_context.sources."
    import fastai_context
    from fastai_context import audio_features, sources
    for name in ("FileFeatures", "SpotifyFeatures", "add_audio_features", "parse_review_title", "MatchReport",
                 "TrackMatch", "SpotifyForbiddenError", "ReccoBeatsFeatures"):
        assert getattr(audio_features, name) is getattr(sources, name) is getattr(fastai_context, name)


# ------------------------------------------------------------------ parsing and normalization
@pytest.mark.parametrize("title,expected", [
    ('Mt. Joy - "Silver Lining"', ("Mt. Joy", "Silver Lining")),
    ("Mt. Joy – ‘Dirty Love’", ("Mt. Joy", "Dirty Love")),
    ("[Streaming]: Tom Misch – “Water Baby” (feat. Loyle Carner)", ("Tom Misch", "Water Baby")),
    ("MONOGEM: “Get You High”", ("MONOGEM", "Get You High")),
    ("Yellow Days - A Little While | Stereofox Music Blog", ("Yellow Days", "A Little While")),
    ("Eckhardt And The House - If You Cannot Talk :: Indie Shuffle", ("Eckhardt And The House", "If You Cannot Talk")),
    ("Track Of The Day – Ezra Furman – Suck The Blood From My Wound", ("Ezra Furman", "Suck The Blood From My Wound")),
    ("Castelle – ‘We Don’t Need To Dance’ (ft. Nic Hanson)", ("Castelle", "We Don’t Need To Dance")),
    ("TUNES // Oddnesse –\xa0Trust", ("Oddnesse", "Trust")),
    ("oddnesse, “trust”", ("oddnesse", "trust")),
    ("Bryde | Peace", ("Bryde", "Peace")),
    ("“Silver Lining” by Mt. Joy - A Song Review", ("Mt. Joy", "Silver Lining")),
    ("RITUAL", (None, None)),
    (None, (None, None)),
])
def test_parse_review_title(title, expected):
    assert parse_review_title(title) == expected


def test_parse_review_title_strict_and_type():
    with pytest.raises(ValueError, match="'Going Solo'"):
        parse_review_title("Going Solo", strict=True)
    with pytest.raises(TypeError, match="expects a string"):
        parse_review_title(42)


def test_normalization():
    assert normalize_title("Sowa (Alex Garett & Greg Herma Edit)") == "sowa"
    assert normalize_title("Memories - Dillon Francis Remix") == normalize_title("MEMORIES") == "memories"
    assert normalize_title("Best Friend feat. NERVO, The Knocks & Alisa Ueno") == "best friend"
    assert normalize_title("'39 - 2011 Mix") == "39"
    assert normalize_title("Don’t Stop - Live at Wembley") == "dont stop"
    assert normalize_title("(I Can't Get No) Satisfaction") == "i cant get no satisfaction"   # not a version
    assert normalize_artist("Beyoncé feat. JAY-Z") == "beyonce"
