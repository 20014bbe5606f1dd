"""ReccoBeatsFeatures against a local fake of the ReccoBeats API on 127.0.0.1 that serves real
tracks' features, and its join to real blog reviews with ids from the real tracks file."""
import gzip
import json
import time
import urllib.parse
import uuid

import numpy as np
import pandas as pd
import pytest

from tests.helpers import JSONHandler, local_server
from fastai_context import FileFeatures, ReccoBeatsError, ReccoBeatsFeatures, ReccoBeatsRateLimitError, datasets
from fastai_context import add_audio_features, parse_review_title
from fastai_context.sources.reccobeats import RECCOBEATS_FEATURES

TRICKLE = "trickle"      # a script entry: send headers, then one byte of the body every 0.5 s
TRICKLE_HEADERS = "trickle headers"     # a script entry: the status line, then one byte of a header every 0.5 s


class FakeReccoBeats:
    """Answers GET /v1/audio-features?ids=... like ReccoBeats: `{"content": [...]}`, items in an
    order of its own (reversed), each with its own uuid and the Spotify `href`, tracks it does
    not know left out. `script` queues overrides `(status, headers, body)` or TRICKLE, one per request."""

    def __init__(self, catalog: pd.DataFrame):
        self.catalog = catalog.set_index("track_id")
        self.requests: list[list[str]] = []           # the ids of every request
        self.script: list = []

    def answer(self, ids: list[str]):
        if self.script:
            override = self.script.pop(0)
            if override is not None:
                return override
        items = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, tid)), "href": f"https://open.spotify.com/track/{tid}",
                  **{f: float(self.catalog.at[tid, f]) for f in RECCOBEATS_FEATURES}}
                 for tid in reversed(ids) if tid in self.catalog.index]
        return 200, {}, {"content": items}


def _handler(fake: FakeReccoBeats):
    class Handler(JSONHandler):
        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            ids = dict(urllib.parse.parse_qsl(url.query)).get("ids", "").split(",")
            if url.path != "/v1/audio-features":
                return self.send_json(404, {}, b'{"error": "not found"}')
            fake.requests.append(ids)
            answer = fake.answer(ids)
            if answer == TRICKLE:
                return self.trickle_body(b'{"content": []}' + b" " * 20)
            if answer == TRICKLE_HEADERS:
                return self.trickle_headers()
            status, headers, body = answer
            self.send_json(status, headers, body if isinstance(body, bytes) else json.dumps(body).encode())
    return Handler


@pytest.fixture(scope="module")
def catalog(tracks):
    "200 real tracks (with their real features) that the fake ReccoBeats knows."
    return tracks.sample(200, random_state=2).reset_index(drop=True)


@pytest.fixture
def fake(catalog, monkeypatch):
    "The fake on 127.0.0.1 in a thread; its bounded loop stops at teardown or after 2 minutes."
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    fake = FakeReccoBeats(catalog)
    with local_server(_handler(fake)) as url:
        fake.url = url + "/v1"
        yield fake


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def recco(fake, sleeps):
    "A factory for ReccoBeatsFeatures pointed at the fake, recording its sleeps instead of sleeping."
    opened = []

    def make(**kwargs):
        opened.append(ReccoBeatsFeatures(**{"api_url": fake.url, "sleep": sleeps.append, "timeout": 2, **kwargs}))
        return opened[-1]
    yield make
    for source in opened:
        source.close()


def test_95_ids_in_3_requests_then_all_from_the_cache(recco, fake, catalog, tmp_path):
    ids = catalog.track_id[:95].tolist()
    first = recco(cache_path=tmp_path / "c.sqlite").features(ids + ids[:3])      # duplicates asked once
    assert [len(r) for r in fake.requests] == [40, 40, 15]
    assert sum(fake.requests, []) == ids
    assert first.index.tolist() == ids
    for f in ("energy", "valence", "tempo", "key"):      # mapped back by href although the fake reverses the order
        np.testing.assert_allclose(first[f].to_numpy(), catalog[f][:95].to_numpy())
    assert first[["duration_ms", "time_signature"]].isna().all(axis=None)        # ReccoBeats has no such fields
    fake.requests.clear()
    second = recco(cache_path=tmp_path / "c.sqlite")
    pd.testing.assert_frame_equal(second.features(ids), first)
    assert fake.requests == [] and second.n_requests == 0


def test_missing_tracks_give_nan_rows_in_order(recco, fake, catalog):
    unknown = ["0000000000000000000000", "1111111111111111111111"]
    ids = [catalog.track_id[0], unknown[0], catalog.track_id[1], unknown[1]]
    got = recco().features(ids)
    assert got.index.tolist() == ids
    assert got.loc[unknown].isna().all(axis=None)
    np.testing.assert_allclose(got.loc[ids[::2], "energy"].to_numpy(), catalog.energy[:2].to_numpy())
    with pytest.raises(ValueError, match="not track ids"):
        recco().features(["not an id!"])


def test_an_item_for_an_id_not_asked_is_never_misassigned(recco, fake, catalog):
    stray = {"id": "x", "href": "https://open.spotify.com/track/2222222222222222222222", "energy": 0.99}
    fake.script = [(200, {}, {"content": [stray]})]
    got = recco().features(catalog.track_id[:2])
    assert got["energy"].isna().all()


def test_429_waits_retry_after_within_max_wait(recco, fake, catalog, sleeps):
    limited = (429, {"Retry-After": "2"}, {"error": "Too Many Requests"})
    fake.script = [limited, limited]
    source = recco(max_wait=10)
    assert source.features(catalog.track_id[:3])["energy"].notna().all()
    assert sleeps == [2.0, 2.0] and len(fake.requests) == 3 and source.rate_limit_waited == 4.0
    fake.script = [(429, {"Retry-After": "9"}, b"")] * 3
    with pytest.raises(ReccoBeatsRateLimitError, match="after 4s already waited, over max_wait=10"):
        source.features(catalog.track_id[3:6])
    assert sleeps == [2.0, 2.0]


def test_5xx_then_success(recco, fake, catalog, sleeps):
    fake.script = [(500, {}, b"oops"), (503, {}, b"")]
    got = recco(backoff=0.25).features(catalog.track_id[:2])
    assert got["energy"].notna().all() and sleeps == [0.25, 0.5] and len(fake.requests) == 3
    fake.script = [(502, {}, b"")] * 3
    with pytest.raises(ReccoBeatsError, match="failed 3 times in a row; last: HTTP 502"):
        recco(retries=2).features(catalog.track_id[2:4])
    fake.script = [(400, {}, b'{"error": "bad ids"}')]
    with pytest.raises(ReccoBeatsError, match="HTTP 400"):         # a 4xx is not retried
        recco().features(catalog.track_id[4:6])


def test_malformed_json(recco, fake, catalog, sleeps):
    fake.script = [(200, {}, b'{"content": [')]
    assert recco().features(catalog.track_id[:2])["energy"].notna().all()       # retried once, then fine
    assert len(sleeps) == 1
    bad_value = {"content": [{"href": f"https://open.spotify.com/track/{catalog.track_id[0]}", "energy": "high"}]}
    fake.script = [(200, {}, {"unexpected": 1}), (200, {}, [1, 2]), (200, {}, bad_value)]
    with pytest.raises(ReccoBeatsError, match="failed 3 times.*malformed.*energy='high'"):
        recco(retries=2).features(catalog.track_id[:2])


@pytest.mark.parametrize("trickle", [TRICKLE, TRICKLE_HEADERS])
def test_slow_server_is_bounded_by_the_total_timeout(recco, fake, catalog, trickle):
    fake.script = [trickle]
    start = time.monotonic()
    with pytest.raises(ReccoBeatsError, match="total timeout of 1s"):
        recco(timeout=1, retries=0).features(catalog.track_id[:2])
    assert time.monotonic() - start < 5          # a per-read timeout would let the trickle last 18 s
    fake.script = []
    assert recco(timeout=1).features(catalog.track_id[:2])["energy"].notna().all()     # and the next one is fine


def test_gzip_answers_are_decoded(recco, fake, catalog):
    "The body is read piece by piece against the deadline, and still decoded as requests would."
    ids = catalog.track_id[:3].tolist()
    _, _, plain = fake.answer(ids)
    fake.script = [(200, {"Content-Encoding": "gzip"}, gzip.compress(json.dumps(plain).encode()))]
    np.testing.assert_allclose(recco().features(ids)["energy"].to_numpy(), catalog.energy[:3].to_numpy())


def test_bad_arguments():
    with pytest.raises(ValueError, match="1 to 40 ids"):
        ReccoBeatsFeatures(batch_size=41)


def test_join_real_reviews_with_ids_from_a_file(recco, fake, data_dir):
    "The 2026 path: ids from a dataset export, features from ReccoBeats, no Spotify credentials."
    ids_from = FileFeatures(data_dir / "spotify" / "spotify_songs.csv.gz")
    reviews = datasets.blog_reviews()
    reviews[["artist", "song"]] = [parse_review_title(t) for t in reviews.title]
    with pytest.raises(TypeError, match="ReccoBeatsFeatures cannot find a track id.*id_source="):
        add_audio_features(reviews, recco(), "artist", "song")
    fake.catalog = datasets.spotify_tracks(dedupe=True).set_index("track_id")      # it knows every real track
    out, report = add_audio_features(reviews, recco(), "artist", "song", features=["energy", "valence"],
                                     id_source=ids_from, progress=False)
    expected, _ = add_audio_features(reviews, ids_from, "artist", "song", features=["energy", "valence"],
                                     progress=False)
    pd.testing.assert_frame_equal(out, expected)
    assert report.matched >= 40 and sum(len(r) for r in fake.requests) == out.track_id.nunique()
    with pytest.raises(KeyError, match="'duration_ms'.*not available from ReccoBeatsFeatures"):
        add_audio_features(reviews, recco(), "artist", "song", features="duration_ms", id_source=ids_from)
