"""nbs/01_energy_conditioned_lm.ipynb runs top to bottom on a reduced setting."""
import nbformat
import pytest

from tests.helpers import run_notebook

pytestmark = pytest.mark.slow


def test_nb01_runs_on_reduced_settings(tmp_path, data_dir):
    out = run_notebook("01_energy_conditioned_lm.ipynb", tmp_path, n_songs=200, bs=8, seq_len=24, emb_sz=16,
                       n_hid=32, epochs=1, n_boot=50, n_samples=4, n_words=30, grid_words=10)
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "200 songs" in text
    assert "480 words in" in text                          # 2 energies x 2 guidances x 4 samples x 30 words
    assert "shuffled_within" in text and "bootstrap CI" in text
    assert "guidance 2.0: energy 1.0:" in text and "log_odds" in text
    assert "valence 0.9" in text and "energy 0.1" in text  # the grid
    assert (tmp_path / "energy_lm.pkl").stat().st_size > 1000
