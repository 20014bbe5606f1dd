"""What a recipe is, and how one runs in a run folder.

A `Command` holds a recipe's options (key -> (default, help)), the ranges its values must be in,
the input paths it needs and its data check. `run_new` and `run_resumed` run one: every check
first, then the run folder (made, or continued from its checkpoint), locked while the recipe
writes to it; a new run that fails before producing anything leaves no folder behind. The
recipes themselves (`recipes.py`) and the command line (`cli.py`) both go through these.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fastai.torch_core import num_distrib, rank_distrib

from .checkpoint import Checkpoint
from .runs import (CONFIG_NAME, LOCK_NAME, ConfigError, RunFolder, RunLock, clean_stale_temporaries, load_config,
                   make_run_dir, read_config, save_config)

__all__ = ["Command", "COMMON", "POSITIVE", "NON_NEGATIVE", "FRACTION", "PROBABILITY", "SEED", "finite", "at_least",
           "one_of", "echo", "existing_path", "new_or_empty_run_dir", "run_new", "run_resumed"]


@dataclass
class Command:
    "A recipe: its options (key -> (default, help)), its checks, and the function that runs it in a run folder."
    name: str
    help: str
    options: dict[str, tuple[Any, str]]
    run: Callable[..., None]                               # (cfg, RunFolder[, resume]) -> None
    resumable: bool = False
    inputs: dict[str, str] = field(default_factory=dict)   # path keys -> what they name, checked before running
    builtin_data: tuple[str, ...] = ()                     # `data` values naming a built-in data set, not a path
    limits: dict[str, tuple[Callable[[Any], bool], str]] = field(default_factory=dict)  # key -> (test, what it needs)
    check_data: Callable[[dict], None] | None = None       # reads the data and checks its columns

    def check_inputs(self, cfg: Mapping) -> None:
        "Fail before creating a run folder if an input path is missing."
        for key, what in self.inputs.items():
            if not (key == "data" and cfg[key] in self.builtin_data):
                existing_path(cfg, key, what)

    def check_value(self, key: str, value: Any) -> None:
        "Refuse a value outside the range `limits` gives for `key` (`epochs=0`, `lr=nan`, `valid_pct=1.5`)."
        if key in self.limits:
            ok, what = self.limits[key]
            values = value if isinstance(value, (list, tuple)) else [value]
            if not values or not all(ok(v) for v in values):
                raise ConfigError(f"config key {key!r}: must be {what}, got {value!r}")

    def check(self, cfg: Mapping, skip: Sequence[str] = ()) -> None:
        """Every check that needs no run folder: ranges, then input paths, then the data's columns
        (a sweep `skip`s the keys it varies: their values are checked one by one)."""
        for key in self.limits:
            if key in cfg and key not in skip:
                self.check_value(key, cfg[key])
        if not set(self.inputs) & set(skip):
            self.check_inputs(cfg)
        if self.check_data is not None and not {"data", "text_col", "context_cols"} & set(skip):
            self.check_data(cfg)

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: d for k, (d, _) in self.options.items()}


COMMON = {"seed": (42, "random seed: data split, shuffling, initial weights, sampling")}


# ------------------------------------------------------------------------------------ limits
def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def at_least(n: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: finite(v) and v >= n), f"at least {n}"


def one_of(*names: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in names), f"one of {list(names)}"


POSITIVE = ((lambda v: finite(v) and v > 0), "a finite number above 0")
NON_NEGATIVE = ((lambda v: finite(v) and v >= 0), "a finite number, 0 or more")
FRACTION = ((lambda v: finite(v) and 0 < v < 1), "a fraction strictly between 0 and 1")
PROBABILITY = ((lambda v: finite(v) and 0 <= v <= 1), "between 0 and 1")
SEED = ((lambda v: isinstance(v, int) and 0 <= v < 2 ** 32), "an integer from 0 to 2**32 - 1")


# ------------------------------------------------------------------------------------ helpers
def echo(*args) -> None:
    "Print on rank 0 only (all ranks run the same command under torchrun)."
    if rank_distrib() == 0:
        print(*args, flush=True)


def existing_path(cfg: Mapping, key: str, what: str) -> Path:
    value = cfg[key]
    if not value:
        raise ConfigError(f"config key {key!r} is required: the path of {what}")
    p = Path(value).expanduser()
    if not p.exists():
        raise ConfigError(f"config key {key!r}: {what} {value!r} not found")
    return p


# ------------------------------------------------------------------------------ the run folder
def shared_run_dir(command: str, run_dir: str | None) -> tuple[Path, bool]:
    """Create the run folder on rank 0 and tell the other ranks its name; also whether this
    command made it (a given empty folder is used, not made)."""
    def make() -> tuple[Path, bool]:
        return (make_run_dir(command), True) if run_dir is None else new_or_empty_run_dir(Path(run_dir))
    if num_distrib() <= 1:
        return make()
    from accelerate import PartialState      # fastai.distributed's dependency
    PartialState(cpu=not torch.cuda.is_available())                 # starts the process group
    made = [None]
    if rank_distrib() == 0:
        try:
            made = [make()]
        except ConfigError as e:          # sent to every rank: all refuse with rank 0's message, none waits
            made = [e]
    torch.distributed.broadcast_object_list(made, src=0)
    if isinstance(made[0], ConfigError):
        raise made[0]
    return made[0]


def new_or_empty_run_dir(path: Path) -> tuple[Path, bool]:
    "`path` as a run folder: made if missing, refused if a file or not empty; also whether it was made."
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--run-dir {str(path)!r} is a file, not a folder")
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"--run-dir {str(path)!r} is not empty: choose a new folder, or continue it with --resume")
    made = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    return path, made


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    "Hold the run folder's lock file (rank 0: it alone writes the shared files) while the block runs."
    with RunLock(run_dir) if rank_distrib() == 0 else contextlib.nullcontext():
        yield


def produced_nothing(run_dir: Path) -> bool:
    "Nothing in the folder but the config, the lock and a history without any epoch row."
    for p in run_dir.rglob("*"):
        if p.is_dir() or p.name in (CONFIG_NAME, LOCK_NAME):
            continue
        if p.name == "history.csv" and not any(ln.split(",", 1)[0].isdigit() for ln in p.read_text().splitlines()):
            continue
        return False
    return True


@contextlib.contextmanager
def removed_if_failed(run_dir: Path, made: bool) -> Iterator[None]:
    "A new run that fails before it produced anything leaves no folder behind (so --run-dir can be reused)."
    try:
        yield
    except BaseException:
        if rank_distrib() == 0 and run_dir.is_dir() and produced_nothing(run_dir):
            for p in sorted(run_dir.iterdir()):
                if p.name != LOCK_NAME:          # the lock goes when the block holding it ends
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            if made:                             # a given empty folder stays, empty
                shutil.rmtree(run_dir, ignore_errors=True)
        raise


def run_new(cmd: Command, config: str | Path | Mapping | None = None, overrides: Sequence[str] = (),
            run_dir: str | Path | None = None, values: Mapping[str, Any] = {}) -> RunFolder:
    """A new run of `cmd`: every check first, then the run folder (`run_dir`,
    new or empty; default `runs/<command>-<date>-<time>`), locked while the recipe writes to it.
    `config` is a YAML/JSON file, a packaged config's name or a mapping; `overrides` are `key=value`
    strings (the command line's), `values` Python values; later ones win."""
    cfg = load_config(config, overrides, cmd.defaults, command=cmd.name, values=dict(values))
    cmd.check(cfg)
    path, made = shared_run_dir(cmd.name, None if run_dir is None else os.fspath(run_dir))
    run = RunFolder(path.resolve())
    with locked(run.path), removed_if_failed(run.path, made):
        if rank_distrib() == 0:
            save_config(run.path, cfg, cmd.name)
        echo(f"{cmd.name}: writing to {run.path}")
        cmd.run(cfg, run)
    return run


def run_resumed(cmd: Command, run_dir: str | Path, name: str = "run_dir") -> RunFolder:
    """Continue a `cmd` run from its last checkpoint: with its folder locked, check its command,
    config and checkpoint (the training code then checks the checkpoint against the data) before
    anything is written. `name` is what the errors call `run_dir` (the CLI's `--resume`)."""
    if not cmd.resumable:
        raise ConfigError(f"{cmd.name} runs cannot be resumed: only train-lm and train-vae train")
    given = os.fspath(run_dir)
    run = RunFolder(Path(given).resolve())
    if not run.path.is_dir():
        raise ConfigError(f"{name} {given!r}: no such run folder")
    with locked(run.path):
        saved = read_config(run.path)[0]
        if saved != cmd.name:
            raise ConfigError(f"{given!r} is a {saved} run, not {cmd.name}")
        cfg = load_config(run.config_file, [], cmd.defaults, command=cmd.name)
        cmd.check(cfg)
        ckpt = Checkpoint(run.path)
        if not (ckpt.file.exists() or ckpt.prev_file.exists()):
            raise ConfigError(f"no checkpoint in {str(run.path)!r} (it was deleted, or the run stopped before its "
                              "first epoch ended): start a new run")
        if rank_distrib() == 0:
            clean_stale_temporaries(run.path)       # left by a kill during a write
        echo(f"resuming {run.path}")
        cmd.run(cfg, run, resume=True)
    return run


