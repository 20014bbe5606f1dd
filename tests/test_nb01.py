"""nbs/01_energy_conditioned_lm.ipynb runs top to bottom on a reduced setting."""
import nbformat

from conftest import run_notebook


def test_nb01_runs_on_reduced_settings(tmp_path, data_dir):
    out = run_notebook("01_energy_conditioned_lm.ipynb", tmp_path, n_tracks=800, bs=16, seq_len=24, emb_sz=32,
                       n_hid=64, epochs=1, lr=1e-2, lr_find_iters=10, n_samples=4, n_words=30, genre_epochs=1)
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "800 tracks" in text
    assert "240 words in" in text                          # 2 energies x 4 samples x 30 words
    assert "'true'" in text and "'shuffled'" in text and "'mean'" in text
    assert "playlist_genre=rock" in text
