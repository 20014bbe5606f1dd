"""The command line refuses bad input in one line naming the culprit, before it makes a run folder,
and a refused command leaves every file of a run byte-identical (issue 10, items 1-4, 11, 15-17).
One tiny trained run is shared; the few real subprocesses cover what only a process shows (exit
status, stderr, a lock held by another process)."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fastai_context.cli import main
from fastai_context.workflow.checkpoint import load_checkpoint
from fastai_context.workflow.runs import RunLock
from tests.helpers import ROOT

TINY_LM = ROOT / "fastai_context" / "configs" / "tiny-lm.yaml"
QUICK = ["perplexity=false", "sample_words=0"]


def error_of(*args) -> str:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    assert isinstance(e.value.code, str), e.value.code
    return e.value.code


def snapshot(folder: Path) -> dict:
    "Every file under `folder` (hidden ones too) and its bytes."
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastai_context.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    "A finished 2-epoch train-lm run on 300 real track names."
    run = tmp_path_factory.mktemp("cli_errors") / "lm"
    main(["train-lm", str(TINY_LM), *QUICK, "--run-dir", str(run)])
    return run


@pytest.fixture
def run_copy(lm_run, tmp_path):
    run = tmp_path / "lm"
    shutil.copytree(lm_run, run)
    return run


# ------------------------------------------------------------------------------- items 4 and 11
@pytest.mark.parametrize("override", ["epochs=0", "epochs=-1", "lr=nan", "lr=-1", "bs=0", "seq_len=0", "n_docs=-5",
                                      "emb_sz=0", "valid_pct=0", "valid_pct=1.5", "wd=inf", "seed=-1", "context_bins=1"])
def test_nonsense_numbers_are_refused_before_a_run_folder(override, tmp_path):
    key = override.split("=")[0]
    msg = error_of("train-lm", TINY_LM, override, "--run-dir", tmp_path / "r")
    assert msg.startswith("fastai-context train-lm: error: ") and f"config key {key!r}: must be" in msg
    assert not (tmp_path / "r").exists()


def test_other_commands_check_their_ranges(lm_run, tmp_path):
    assert "config key 'temperature'" in error_of("generate", f"model={lm_run}", "temperature=nan", "--run-dir", tmp_path / "g")
    assert "config key 'top_p'" in error_of("generate", f"model={lm_run}", "top_p=0", "--run-dir", tmp_path / "g")
    assert "config key 'cell'" in error_of("train-vae", "cell=rnn", "--run-dir", tmp_path / "v")
    assert not list(tmp_path.iterdir())


def test_wrong_column_leaves_no_folder(tmp_path):
    msg = error_of("train-lm", TINY_LM, "context_cols=energy,loudness_db", "--run-dir", tmp_path / "r")
    assert "config key 'context_cols'" in msg and "['loudness_db'] not found" in msg
    assert not (tmp_path / "r").exists()


def test_a_run_failing_on_its_data_leaves_no_folder(tmp_path):
    msg = error_of("train-lm", TINY_LM, "n_docs=1", "--run-dir", tmp_path / "r")   # one document cannot be split
    assert "the split left" in msg and not (tmp_path / "r").exists()
    (tmp_path / "given").mkdir()                                               # a given empty folder stays, empty
    error_of("train-lm", TINY_LM, "n_docs=1", "--run-dir", tmp_path / "given")
    assert list((tmp_path / "given").iterdir()) == []


def test_config_file_not_utf8_or_with_a_duplicate_key(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("text_col: caf\u00e9\n".encode("latin-1"))
    msg = error_of("train-lm", bad, "--run-dir", tmp_path / "r")
    assert "latin1.yaml' is not UTF-8 text (byte 0xe9" in msg
    dup = tmp_path / "dup.yaml"
    dup.write_text("lr: 0.1\nepochs: 1\nlr: 0.2\n")
    assert "dup.yaml': key 'lr' appears twice (lines 1 and 3)" in error_of("train-lm", dup, "--run-dir", tmp_path / "r")
    dup_json = tmp_path / "dup.json"
    dup_json.write_text('{"lr": 0.1, "lr": 0.2}')
    assert "key 'lr' appears twice" in error_of("train-lm", dup_json, "--run-dir", tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_unreadable_inputs_are_named_and_leave_no_folder(tmp_path):
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "model.pkl").write_bytes(b"garbage")
    msg = error_of("generate", f"model={tmp_path / 'lm'}", "--run-dir", tmp_path / "g")
    assert "config key 'model'" in msg and "model.pkl' is not a model exported by train-lm/train-vae" in msg
    (tmp_path / "titles.txt").write_bytes("caf\u00e9\nhello there\n".encode("latin-1"))
    msg = error_of("train-vae", f"data={tmp_path / 'titles.txt'}", "--run-dir", tmp_path / "v")
    assert "titles.txt' is not UTF-8 text" in msg
    assert not (tmp_path / "g").exists() and not (tmp_path / "v").exists()


# ------------------------------------------------------------------------------ items 1, 2, 3, 17
@pytest.mark.slow
def test_resume_with_an_edited_config_is_refused_and_changes_nothing(run_copy):
    cfg = run_copy / "config.yaml"
    cfg.write_text(cfg.read_text().replace("- energy", "- valence"))
    before = snapshot(run_copy)
    res = cli("train-lm", "--resume", run_copy)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("fastai-context train-lm: error: checkpoint") and "different context encoder" in last
    assert "Traceback" not in res.stderr
    assert snapshot(run_copy) == before


@pytest.mark.slow
def test_damaged_checkpoints_are_refused_and_change_nothing(run_copy):
    (run_copy / "checkpoint.pth").write_bytes((run_copy / "checkpoint.pth").read_bytes()[:1000])
    (run_copy / "checkpoint.prev.pth").write_bytes(b"")
    before = snapshot(run_copy)
    res = cli("train-lm", "--resume", run_copy)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert f"{run_copy / 'checkpoint.pth'}' is damaged or truncated" in last and "checkpoint.prev.pth' is empty" in last
    assert snapshot(run_copy) == before


def test_damaged_latest_falls_back_and_stale_temporaries_go(run_copy, capsys):
    data = bytearray((run_copy / "checkpoint.pth").read_bytes())
    data[-2000:] = bytes(2000)                                  # the archive's directory is gone
    (run_copy / "checkpoint.pth").write_bytes(bytes(data))
    (run_copy / ".checkpoint.pth.k1ll3d.tmp").write_bytes(b"half")   # a kill during a write
    (run_copy / ".model.pkl.k1ll3d.tmp").write_bytes(b"half")
    history = (run_copy / "history.csv").read_text()
    main(["train-lm", "--resume", str(run_copy)])
    out = capsys.readouterr().out
    assert "checkpoint.pth' is damaged" in out and "resuming from the previous checkpoint" in out
    assert not list(run_copy.glob(".*.tmp"))
    got = pd.read_csv(run_copy / "history.csv")
    assert list(got.epoch) == [0, 1] and len((run_copy / "history.csv").read_text().splitlines()) == 3
    assert got.iloc[0].drop("time").equals(pd.read_csv(pd.io.common.StringIO(history)).iloc[0].drop("time"))
    assert load_checkpoint(run_copy / "checkpoint.pth")["epoch"] == 2


def test_finished_run_without_checkpoint_is_refused(run_copy):
    for f in ("checkpoint.pth", "checkpoint.prev.pth"):
        (run_copy / f).unlink()
    before = snapshot(run_copy)
    msg = error_of("train-lm", "--resume", run_copy)
    assert f"no checkpoint in {str(run_copy)!r}" in msg and "start a new run" in msg
    assert snapshot(run_copy) == before


# ----------------------------------------------------------------------------------------- item 16
@pytest.mark.slow
def test_a_second_process_on_a_run_folder_is_refused(run_copy):
    before = snapshot(run_copy)
    with RunLock(run_copy):                                       # this test's process holds the run
        res = cli("train-lm", "--resume", run_copy)
    assert res.returncode == 1
    assert f"is in use by process {os.getpid()}" in res.stderr.strip().splitlines()[-1]
    assert snapshot(run_copy) == before


def test_a_stale_lock_is_taken_over(run_copy):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_copy / ".lock").write_text(f"{dead.pid}\n")
    msg = error_of("train-lm", "--resume", run_copy, "epochs=3")    # refused for its arguments, not for the lock
    assert "give no config, overrides" in msg
    (run_copy / "checkpoint.pth").unlink()
    (run_copy / "checkpoint.prev.pth").unlink()
    assert "no checkpoint in" in error_of("train-lm", "--resume", run_copy)   # past the lock: it was taken over
    assert not (run_copy / ".lock").exists()


# ----------------------------------------------------------------------------------------- item 15
def test_sweep_without_optuna_says_how_to_install_it(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    msg = error_of("sweep", TINY_LM, "--trials", "2", "--param", "lr=1e-3:1e-2", "--run-dir", tmp_path / "s")
    assert "pip install 'fastai_context[sweep]'" in msg
    assert "config key 'epochs': must be at least 1" in error_of("sweep", TINY_LM, "--grid", "epochs=0,1",
                                                                 "--run-dir", tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_optuna_sweep_without_optuna_says_how_to_install_it(tmp_path, monkeypatch):
    from fastai_context.workflow.sweep import optuna_sweep
    monkeypatch.setitem(sys.modules, "optuna", None)              # `import optuna` now fails
    with pytest.raises(ImportError, match=r"pip install 'fastai_context\[sweep\]'"):
        optuna_sweep({"lr": (1e-3, 1e-2, True)}, 2, "train-lm", str(TINY_LM), [], tmp_path)
    assert not list(tmp_path.iterdir())
