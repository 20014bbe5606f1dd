"""The `fastai-context` command line on tiny settings and real data: every command writes its run
folder; bad configs fail before any work with an error naming the key."""
import json
import os


import pandas as pd
import pytest
import torch
import yaml
from matplotlib.image import imread

from fastai_context.cli import COMMANDS, main
from fastai_context.workflow.runs import ConfigError, load_config
from tests.helpers import ROOT

TINY_LM = ROOT / "fastai_context" / "configs" / "tiny-lm.yaml"
TINY_VAE = ["n_docs=400", "epochs=2", "z_dim=4", "emb_sz=16", "hidden_sz=32", "bs=32", "n_samples=3"]


def run(*args):
    "Run the CLI in this process (each subprocess would pay seconds of imports)."
    main([str(a) for a in args])


def error_of(*args) -> str:
    with pytest.raises(SystemExit) as e:
        run(*args)
    assert isinstance(e.value.code, str), e.value.code
    return e.value.code


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root, cwd = tmp_path_factory.mktemp("runs"), os.getcwd()
    os.chdir(root)
    try:
        run("train-lm", TINY_LM, "--run-dir", "lm")        # a relative run folder
    finally:
        os.chdir(cwd)
    return root / "lm"


# ------------------------------------------------------------------------------------ help, errors
@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_lists_every_option_with_its_default(name, capsys):
    with pytest.raises(SystemExit) as e:
        run(name, "--help")
    assert e.value.code == 0
    out = capsys.readouterr().out
    for key, (default, _) in COMMANDS[name].options.items():
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(key + " ")), None)
        assert line is not None, f"--help of {name} does not list {key}"
        shown = ",".join(map(str, default)) if isinstance(default, list) else json.dumps(default) \
            if isinstance(default, dict) else str(default)
        assert f"[{shown}]" in line


def test_sweep_help(capsys):
    with pytest.raises(SystemExit):
        run("sweep", "--help")
    out = capsys.readouterr().out
    assert "--grid" in out and "--jobs" in out and "--trials" in out


def test_unknown_key_is_named(tmp_path):
    msg = error_of("train-lm", TINY_LM, "epoch=3", "--run-dir", tmp_path / "r")
    assert "unknown config key 'epoch'" in msg and "did you mean 'epochs'" in msg
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("lr: 0.01\nlearning_rate: 0.1\n")
    msg = error_of("train-lm", cfg, "--run-dir", tmp_path / "r")
    assert "'learning_rate'" in msg and str(cfg) in msg
    assert not (tmp_path / "r").exists()                       # nothing was started


@pytest.mark.parametrize("override, key", [("epochs=three", "epochs"), ("lr=fast", "lr"), ("perplexity=maybe", "perplexity"),
                                           ("n_docs=1.5", "n_docs")])
def test_wrong_type_is_named(override, key, tmp_path):
    msg = error_of("train-lm", TINY_LM, override, "--run-dir", tmp_path / "r")
    assert f"config key {key!r}" in msg and "expected" in msg


def test_wrong_type_in_json_file(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"bs": 8.5}))
    assert "config key 'bs': expected an integer" in error_of("train-lm", cfg, "--run-dir", tmp_path / "r")
    cfg.write_text(json.dumps({"context_cols": 5}))
    assert "config key 'context_cols': expected a list" in error_of("train-lm", cfg, "--run-dir", tmp_path / "r")


def test_missing_data_path_is_named(tmp_path):
    msg = error_of("train-lm", TINY_LM, f"data={tmp_path}/nope.csv", "--run-dir", tmp_path / "r")
    assert "config key 'data'" in msg and "nope.csv" in msg and "not found" in msg
    assert not (tmp_path / "r").exists()
    assert "config key 'model' is required" in error_of("generate", "--run-dir", tmp_path / "g")
    assert "config key 'model'" in error_of("homotopy", f"model={tmp_path}/none", "--run-dir", tmp_path / "h")


def test_missing_column_is_named(tmp_path):
    msg = error_of("train-lm", TINY_LM, "context_cols=energy,loudness_db", "--run-dir", tmp_path / "r")
    assert "config key 'context_cols'" in msg and "loudness_db" in msg


def test_config_file_of_another_command(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("command: train-vae\nepochs: 1\n")
    assert "for the 'train-vae' command" in error_of("train-lm", cfg, "--run-dir", tmp_path / "r")


def test_overrides_and_types():
    d = COMMANDS["train-lm"].defaults
    cfg = load_config(TINY_LM, ["lr=1e-3", "context_cols=energy,valence", "epochs=3", "perplexity=no"], d)
    assert cfg["lr"] == 0.001 and cfg["context_cols"] == ["energy", "valence"] and cfg["epochs"] == 3
    assert cfg["perplexity"] is False and cfg["n_docs"] == 300          # from the file
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(None, ["epochs"], d)
    gen = load_config(None, ["context={playlist_genre: rock}", "values=0.2,0.8"], COMMANDS["generate"].defaults)
    assert gen["context"] == {"playlist_genre": "rock"} and gen["values"] == [0.2, 0.8]


# --------------------------------------------------------------------------------- the commands
def test_train_lm_writes_its_run_folder(lm_run):
    cfg = yaml.safe_load((lm_run / "config.yaml").read_text())
    assert cfg["command"] == "train-lm" and cfg["epochs"] == 2 and cfg["emb_sz"] == 16 and cfg["lr"] == 0.01
    hist = pd.read_csv(lm_run / "history.csv")
    assert list(hist.columns) == ["epoch", "train_loss", "valid_loss", "accuracy", "perplexity", "time"]
    assert list(hist.epoch) == [0, 1] and hist.valid_loss.iloc[1] < hist.valid_loss.iloc[0]
    ck = torch.load(lm_run / "checkpoint.pth", weights_only=False)
    assert ck["epoch"] == 2 and ck["context_encoder"].columns == ["energy"]
    ppl = json.loads((lm_run / "perplexity.json").read_text())
    assert set(ppl) == {"true", "shuffled", "mean"} and all(v > 1 for v in ppl.values())
    assert (lm_run / "model.pkl").stat().st_size > 0
    assert len((lm_run / "samples.txt").read_text().split("\n\n")) == 2
    valid = pd.read_csv(lm_run / "valid.csv")
    assert list(valid.columns) == ["track_name", "energy"] and len(valid) == 60      # 20% of 300 documents


def test_resolved_config_reruns(lm_run, tmp_path):
    "A run's config.yaml is a complete config: it loads back to the same values."
    cfg = load_config(lm_run / "config.yaml", [], COMMANDS["train-lm"].defaults, command="train-lm")
    assert cfg == {k: v for k, v in yaml.safe_load((lm_run / "config.yaml").read_text()).items() if k != "command"}


@pytest.fixture(scope="module")
def gen_run(lm_run):
    d = lm_run.parent / "gen"
    run("generate", f"model={lm_run}", "n_words=200", "n_samples=2", "values=1.0,0.0", "controllability_words=200",
        "--run-dir", d)
    return d


def test_generate(gen_run):
    for v in ("1.0", "0.0"):
        texts = (gen_run / "samples" / f"energy={v}.txt").read_text().strip().split("\n\n")
        assert len(texts) == 2 and all(len(t.split()) >= 50 for t in texts)
    report = (gen_run / "controllability.txt").read_text()
    assert report.startswith("controllability of 'energy'") and "Spearman" in report


def test_wordclouds(gen_run, capsys):
    d = gen_run.parent / "clouds"
    run("wordclouds", f"samples={gen_run}", "top=5", "width=300", "height=200", "--run-dir", d)
    img = imread(d / "wordclouds.png")
    assert img.shape[1] == 600 and img.shape[0] > 200          # two 300-px clouds side by side
    table = pd.read_csv(d / "distinctive_words.csv")
    assert set(table.favours) <= {"high energy (1)", "low energy (0)"} and len(table) <= 10
    assert "distinctive words, high energy (1) vs low energy (0)" in capsys.readouterr().out


def test_generate_rejects_unknown_feature(lm_run, tmp_path):
    msg = error_of("generate", f"model={lm_run}", "feature=valence", "--run-dir", tmp_path / "g")
    assert "config key 'feature'" in msg and "['energy']" in msg


def test_train_vae_and_homotopy(tmp_path, capsys):
    vae = tmp_path / "vae"
    run("train-vae", *TINY_VAE, "--run-dir", vae)
    assert list(pd.read_csv(vae / "history.csv").epoch) == [0, 1]
    assert (vae / "model.pkl").exists() and (vae / "checkpoint.pth").exists()
    assert len((vae / "samples.txt").read_text().splitlines()) == 3
    h = tmp_path / "hom"
    run("homotopy", f"model={vae}", "s0=i want to hold your hand", "s1=love me do", "steps=3", "--run-dir", h)
    lines = (h / "homotopy.txt").read_text().strip().splitlines()
    assert len(lines) == 5 and "i want to hold your hand" in lines[0] and "love me do" in lines[-1]
    assert "homotopy: writing to" in capsys.readouterr().out
    assert "config key 's1' is required" in error_of("homotopy", f"model={vae}", "s0=hello", "--run-dir", tmp_path / "x")


def test_top_level_help_lists_every_command(capsys):
    "(The sweep and resume tests run `python -m fastai_context.cli` as a subprocess.)"
    with pytest.raises(SystemExit) as e:
        run("--help")
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in [*COMMANDS, "sweep"]:
        assert name in out


def test_atomic_files_get_a_normal_mode(tmp_path):
    import stat
    from fastai_context.workflow.runs import save_config
    umask = os.umask(0o022)
    try:
        mode = stat.S_IMODE(save_config(tmp_path, {"a": 1}, "train-lm").stat().st_mode)
    finally:
        os.umask(umask)
    assert mode == 0o644
