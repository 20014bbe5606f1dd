"""Sweeps on real Spotify track names: a grid as parallel processes and an optuna search, each run
in its own folder, the summary sorted by the validation metric."""

import pandas as pd
import pytest

from fastai_context.cli import COMMANDS, main
from fastai_context.workflow.runs import ConfigError
from fastai_context.workflow.sweep import parse_grid

pytestmark = pytest.mark.slow

TINY_LM = "tiny-lm"     # a packaged config, by name
FAST = ["epochs=1", "n_docs=200", "perplexity=false", "sample_words=0"]


def test_grid_sweep_runs_every_combination_and_sorts(tmp_path, capsys):
    root = tmp_path / "sweep"
    main(["sweep", TINY_LM, *FAST, "--grid", "lr=1e-4,3e-2", "--grid", "n_docs=200,1", "--jobs", "2",
          "--run-dir", str(root)])
    table = pd.read_csv(root / "summary.csv")
    assert len(table) == 4 and set(zip(table.lr, table.n_docs)) == {(1e-4, 200), (3e-2, 200), (1e-4, 1), (3e-2, 1)}
    ok, failed = table.iloc[:2], table.iloc[2:]          # failed runs (one document cannot be split) come last
    assert list(ok.status) == ["ok", "ok"] and list(ok.epochs) == [1, 1] and list(ok.n_docs) == [200, 200]
    assert ok.valid_loss.is_monotonic_increasing
    assert ok.lr.iloc[0] == 3e-2            # one epoch at lr 1e-4 barely moves from the uniform guess
    assert failed.status.str.startswith("failed").all() and failed.valid_loss.isna().all()
    for name in table.run:
        assert (root / f"{name}.log").exists()
    for name in ok.run:
        assert (root / name / "config.yaml").exists() and (root / name / "history.csv").exists()
    assert "the split left" in (root / f"{failed.run.iloc[0]}.log").read_text()
    out = capsys.readouterr().out
    assert "sweep of 4 runs, sorted by valid_loss" in out and ok.run.iloc[0] in out


def test_optuna_random_search(tmp_path):
    root = tmp_path / "search"
    main(["sweep", TINY_LM, *FAST, "--trials", "2", "--search", "random", "--param", "lr=1e-3:3e-2:log",
          "--param", "bs=8,16", "--jobs", "2", "--metric", "accuracy", "--maximize", "--run-dir", str(root)])
    table = pd.read_csv(root / "summary.csv")
    assert len(table) == 2 and table.accuracy.is_monotonic_decreasing
    assert table.lr.between(1e-3, 3e-2).all() and set(table.bs) <= {8, 16}


def test_bad_sweep_specs():
    d = COMMANDS["train-lm"].defaults
    assert parse_grid(["lr=1e-3,1e-2", "context_cols=[energy],[energy,valence]"], d) == \
        {"lr": [1e-3, 1e-2], "context_cols": [["energy"], ["energy", "valence"]]}
    assert parse_grid(["lr=1e-4:1e-2:log", "bs=8,16"], d, ranges=True) == {"lr": (1e-4, 1e-2, True), "bs": [8, 16]}
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        parse_grid(["learning_rate=1,2"], d)
    with pytest.raises(ConfigError, match="config key 'bs': expected an integer"):
        parse_grid(["bs=8,big"], d)
    with pytest.raises(ConfigError, match="low=0.1 must be below high=0.01"):
        parse_grid(["lr=0.1:0.01"], d, ranges=True)
    with pytest.raises(SystemExit, match="--jobs 0: run at least one job"):
        main(["sweep", TINY_LM, "--grid", "lr=0.1,0.2", "--jobs", "0"])
    with pytest.raises(SystemExit, match="sweep needs --grid"):
        main(["sweep", TINY_LM])
    with pytest.raises(SystemExit, match="config key 'data'"):
        main(["sweep", TINY_LM, "data=/no/such.csv", "--grid", "lr=0.1,0.2"])
