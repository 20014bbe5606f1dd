"""Real data readers and the checksummed download helper."""
import hashlib
import urllib.error

import pytest

from fastai_context import datasets


def test_spotify_tracks_real_file(tracks):
    raw = datasets.spotify_tracks()
    assert len(raw) == 32833 and len(tracks) == 28356 == raw.track_id.nunique()
    assert {"energy", "valence", "track_name", "playlist_genre"} <= set(raw.columns)
    assert raw.energy.between(0, 1).all()


def test_ptb_reviews_titles():
    train = datasets.ptb("train")
    assert len(train) == 42068 and sum(len(s.split()) for s in train) == 887521
    assert len(datasets.ptb("valid")) == 3370 and len(datasets.ptb("test")) == 3761
    reviews = datasets.blog_reviews()
    assert len(reviews) == 1584 and {"content", "title", "url"} <= set(reviews.columns)
    titles = datasets.song_titles()
    assert len(titles) == 9850 and titles[0] == "Silver Lining"
    with pytest.raises(ValueError, match="split"):
        datasets.ptb("dev")


def test_data_env_must_hold_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="spotify/spotify_songs.csv.gz"):
        datasets.spotify_tracks()
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        datasets.get_path("ptb.train")


def _remote_for(monkeypatch, tmp_path, payload: bytes, sha: str):
    src = tmp_path / "src.txt"
    src.write_bytes(payload)
    monkeypatch.setitem(datasets.REMOTES, "toy", datasets.Remote(src.as_uri(), sha, "toy/toy.txt", "toy.txt"))


def test_download_verifies_checksum_and_writes_atomically(tmp_path, monkeypatch):
    payload = b"energy\n0.5\n"
    _remote_for(monkeypatch, tmp_path, payload, hashlib.sha256(payload).hexdigest())
    path = datasets.download("toy", dest=tmp_path / "data")
    assert path.read_bytes() == payload
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["toy.txt"]       # no partial file left
    _remote_for(monkeypatch, tmp_path, b"tampered", hashlib.sha256(payload).hexdigest())
    with pytest.raises(ValueError, match="checksum mismatch"):
        datasets.download("toy", dest=tmp_path / "other")
    assert not list((tmp_path / "other").iterdir())


def test_failed_download_says_how_to_use_a_local_copy(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError, match="FASTAI_CONTEXT_DATA"):
        datasets.download("spotify_songs", dest=tmp_path)


def test_default_download_folder_is_fastais_data_folder():
    from fastai.data.external import fastai_cfg
    folder = datasets._fastai_data_folder()
    assert folder.name == "fastai_context" and folder.parent == fastai_cfg().path("data")
