"""Hyperparameter sweeps: many `fastai-context` training runs as parallel processes.

A grid runs every combination, at most `jobs` processes at a time; a random or Bayesian
(TPE) search asks optuna for each trial's values and runs `jobs` trials at once. Every run
gets its own run folder under the sweep's folder, and its log next to it; the summary
table (one row per run, last epoch's metrics) is written as `summary.csv`, best first.
"""
from __future__ import annotations

import itertools
import math
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from .runs import ConfigError, RunFolder, atomic_path, parse_value

__all__ = ["parse_grid", "run_job", "grid_sweep", "optuna_sweep", "summarize"]

_LIST_SPLIT = re.compile(r",(?![^\[]*\])")      # commas outside [...]


def parse_grid(specs: Sequence[str], defaults: Mapping[str, Any], ranges: bool = False) -> dict[str, Any]:
    """`['lr=1e-3,1e-2', 'bs=16,32']` -> `{'lr': [0.001, 0.01], 'bs': [16, 32]}`, each value checked
    against the type of its default. With `ranges=True`, `key=low:high` or `key=low:high:log` gives
    an optuna range `(low, high, log)` for a numeric key."""
    space: dict[str, Any] = {}
    for spec in specs:
        if "=" not in spec:
            raise ConfigError(f"{spec!r} is not of the form key=v1,v2 (or key=low:high)")
        key, values = (s.strip() for s in spec.split("=", 1))
        if key not in defaults:
            raise ConfigError(f"unknown config key {key!r} in the sweep; known keys: {sorted(defaults)}")
        default = defaults[key]
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if ranges and numeric and ":" in values:
            parts = values.split(":")
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
                raise ConfigError(f"range for {key!r} must be low:high or low:high:log, got {values!r}")
            low, high = (parse_value(key, p, default) for p in parts[:2])
            if not low < high:
                raise ConfigError(f"range for {key!r}: low={low} must be below high={high}")
            space[key] = (low, high, len(parts) == 3)
        else:
            vals = [parse_value(key, v, default) for v in _LIST_SPLIT.split(values) if v.strip()]
            if not vals:
                raise ConfigError(f"no values given for {key!r}")
            space[key] = vals
    return space


def _override(key: str, value: Any) -> str:
    return f"{key}={','.join(map(str, value)) if isinstance(value, list) else value}"


def _run_name(i: int, params: Mapping[str, Any]) -> str:
    body = "_".join(_override(k, f"{v:.4g}" if isinstance(v, float) else v) for k, v in params.items())
    return f"{i:03d}_" + re.sub(r"[^\w.=,+-]", "-", body)[:80]


def run_job(command: str, config: str | None, overrides: Sequence[str], params: Mapping[str, Any],
            run_dir: Path, threads: int | None = None) -> int:
    """Run `fastai-context COMMAND` in a subprocess writing to `run_dir` (its output goes to
    `<run_dir>.log` beside it); return its exit status."""
    cmd = [sys.executable, "-m", "fastai_context.cli", command, *([config] if config else []), *overrides,
           *(_override(k, v) for k, v in params.items()), "--run-dir", str(run_dir)]
    env = dict(os.environ)
    if threads is not None and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode


def _last_epoch(run_dir: Path) -> dict:
    hist = RunFolder(run_dir).history
    return {"epochs": len(hist), **(hist.drop(columns=["epoch", "time"], errors="ignore").iloc[-1].to_dict()
                                    if len(hist) else {})}


def summarize(runs: Sequence[dict], metric: str, maximize: bool = False) -> pd.DataFrame:
    "One row per run (its parameters, status and last epoch's metrics), best `metric` first."
    rows = [{"run": r["run_dir"].name, **r["params"], "status": "ok" if r["returncode"] == 0 else
             f"failed ({r['returncode']})", **_last_epoch(r["run_dir"])} for r in runs]
    table = pd.DataFrame(rows)
    if metric not in table.columns:
        raise ConfigError(f"--metric {metric!r} is not a column of the runs' history.csv; "
                          f"they have {[c for c in table.columns if c not in ('run', 'status', 'epochs')]}")
    return table.sort_values(metric, ascending=not maximize, na_position="last", kind="stable").reset_index(drop=True)


def _write_summary(table: pd.DataFrame, root: Path) -> None:
    with atomic_path(root / "summary.csv") as tmp:
        table.to_csv(tmp, index=False)


def _threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def grid_sweep(grid: Mapping[str, Sequence], command: str, config: str | None, overrides: Sequence[str],
               root: Path, jobs: int = 1, metric: str = "valid_loss", maximize: bool = False) -> pd.DataFrame:
    "Every combination of `grid`, at most `jobs` processes at a time; returns the sorted summary."
    combos = [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())]
    runs = [{"params": p, "run_dir": root / _run_name(i, p)} for i, p in enumerate(combos)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        codes = pool.map(lambda r: run_job(command, config, overrides, r["params"], r["run_dir"], _threads(jobs)), runs)
        for r, code in zip(runs, codes):
            r["returncode"] = code
    table = summarize(runs, metric, maximize)
    _write_summary(table, root)
    return table


def optuna_sweep(space: Mapping[str, Any], n_trials: int, command: str, config: str | None, overrides: Sequence[str],
                 root: Path, jobs: int = 1, search: str = "tpe", seed: int = 0, metric: str = "valid_loss",
                 maximize: bool = False) -> pd.DataFrame:
    """`n_trials` optuna trials (`search='random'` or `'tpe'`, Bayesian) over `space` (key -> list of
    choices, or `(low, high, log)`), `jobs` at a time; returns the sorted summary. Needs optuna
    (`pip install 'fastai_context[sweep]'`)."""
    try:
        import optuna
    except ImportError:
        raise ImportError("optuna_sweep needs optuna, which is not installed: "
                          "pip install 'fastai_context[sweep]' (or use grid_sweep)") from None
    if not space:
        raise ConfigError("an optuna sweep needs a search space: --param key=low:high[:log] or key=a,b")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.RandomSampler(seed=seed) if search == "random" else optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
    runs: list[dict] = []

    def objective(trial: optuna.Trial) -> float:
        params = {}
        for k, spec in space.items():
            if isinstance(spec, tuple):
                low, high, log = spec
                suggest = trial.suggest_int if isinstance(low, int) else trial.suggest_float
                params[k] = suggest(k, low, high, log=log)
            else:
                # optuna's choices are scalars: a list value travels as its key=a,b override text
                params[k] = trial.suggest_categorical(k, [",".join(map(str, v)) if isinstance(v, list) else v
                                                          for v in spec])
        run = {"params": params, "run_dir": root / _run_name(trial.number, params)}
        run["returncode"] = run_job(command, config, overrides, params, run["run_dir"], _threads(jobs))
        runs.append(run)
        value = _last_epoch(run["run_dir"]).get(metric, math.nan)
        if run["returncode"] != 0 or not math.isfinite(value):
            raise optuna.TrialPruned(f"run {run['run_dir'].name} failed or has no {metric}")
        return value

    study.optimize(objective, n_trials=n_trials, n_jobs=jobs)
    table = summarize(runs, metric, maximize)
    _write_summary(table, root)
    return table
