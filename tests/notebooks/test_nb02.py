"""nbs/02_energy_word_clouds.ipynb runs top to bottom on a reduced setting."""
import nbformat
import pytest
from PIL import Image

from tests.helpers import run_notebook

pytestmark = pytest.mark.slow


def test_nb02_runs_on_reduced_settings(tmp_path, data_dir):
    out = run_notebook("02_energy_word_clouds.ipynb", tmp_path, n_songs=200, bs=8, seq_len=24, emb_sz=16, n_hid=32,
                       n_layers=1, epochs=1, n_boot=50, n_samples=6, n_words=60, top=5, guidance=2.0, guidances=[1.0, 2.0],
                       controllability_words=400, controllability_samples=8)
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "200 songs" in text
    assert "perplexity: true" in text and "within decade" in text
    assert "high energy (guidance 2.0):" in text and "most common:" in text
    assert "favours" in text and "log_odds" in text                  # the distinctive-words table
    assert "controllability of 'energy' at guidance 2" in text and "distinct-2" in text
    png = tmp_path / "energy_word_clouds.png"
    assert png.stat().st_size > 1000
    w, h = Image.open(png).size
    assert w > 1.8 * h                                               # two clouds side by side
