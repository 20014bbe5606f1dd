"""nbs/02_energy_word_clouds.ipynb runs top to bottom on a reduced setting."""
import nbformat
from PIL import Image

from conftest import run_notebook


def test_nb02_runs_on_reduced_settings(tmp_path, data_dir):
    out = run_notebook("02_energy_word_clouds.ipynb", tmp_path, n_tracks=800, bs=16, seq_len=24, emb_sz=32, n_hid=64,
                       n_layers=1, epochs=2, lr=1e-2, n_samples=10, n_words=60, top=5, controllability_words=300)
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "800 tracks" in text
    assert "perplexity: true" in text and "shuffled" in text
    assert "high energy:" in text and "most common:" in text
    assert "favours" in text and "log_odds" in text                  # the distinctive-words table
    assert "controllability of 'energy'" in text and "ratio" in text
    png = tmp_path / "energy_word_clouds.png"
    assert png.stat().st_size > 1000
    w, h = Image.open(png).size
    assert w > 1.8 * h                                               # two clouds side by side
