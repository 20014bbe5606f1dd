"""Shared fixtures: real data from ../shared/data, offline NLTK, one torch thread per worker."""
import os
from pathlib import Path

import pytest
import torch

from tests.helpers import SHARED

os.environ.setdefault("FASTAI_CONTEXT_DATA", str(SHARED))
os.environ.setdefault("NLTK_DATA", str(SHARED / "nltk_data"))
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    p = Path(os.environ["FASTAI_CONTEXT_DATA"])
    if not (p / "spotify" / "spotify_songs.csv.gz").exists():
        pytest.fail(f"real data not found in {p}: set FASTAI_CONTEXT_DATA")
    return p


@pytest.fixture(scope="session")
def tracks(data_dir):
    "The real Spotify tracks table, one row per track."
    from fastai_context import datasets
    return datasets.spotify_tracks(dedupe=True)
