"""Notebook 03 (sentence VAE on song titles, review sentences and track names with energy) runs end to end."""
import json

import pytest

from tests.helpers import run_notebook

pytestmark = pytest.mark.slow


def test_nb03_runs_on_reduced_settings(tmp_path, data_dir):
    out = run_notebook("03_seq2seq_vae_homotopy.ipynb", tmp_path, n_titles=600, n_reviews=25, n_tracks=500,
                       titles_epochs=1, reviews_epochs=1, tracks_epochs=1, z_dim=4, emb_sz=16, hidden_sz=32,
                       bs=32, iw_samples=4, steps=3)
    nb = json.loads(out.read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert "> it had taken years to believe" in text and "> but it was all lies at the end" in text
    assert "> he was silent for a long moment" in text and "> it was my turn" in text
    assert "energy 0.95:" in text
