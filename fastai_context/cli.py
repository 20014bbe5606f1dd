"""`fastai-context`: the package's experiments from the command line, one run folder each.

    fastai-context train-lm demo-lm epochs=2 lr=3e-3
    fastai-context generate model=runs/lm values=1.0,0.0 n_words=10000
    fastai-context sweep tiny-lm --grid lr=1e-3,3e-3 --grid bs=16,32 --jobs 2

Every command takes an optional YAML/JSON config and `key=value` overrides, checked against
the command's options (`fastai-context COMMAND --help` lists them with their defaults), and
writes `config.yaml` (the resolved config) plus its results into a new run folder.

A bad config, path, range or data column is refused with one line naming it, before any run
folder is made; a new run that fails before producing anything leaves no folder behind; a
refused `--resume` changes no file of the run. A run folder is locked (`.lock`, with the PID)
while a command writes to it, so a second process on it is refused.

This module only parses arguments and reports errors in one line; the checks, the run folders
and the experiments themselves are `fastai_context.workflow.recipes`, callable from Python.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from fastai.torch_core import rank_distrib

from .workflow.checkpoint import CheckpointError, NonFiniteLossError
from .workflow.distributed import check_launch
from .workflow.commands import Command, new_or_empty_run_dir
from .workflow.recipes import COMMANDS, resume, start
from .workflow.runs import PACKAGED_CONFIGS, ConfigError, load_config, make_run_dir, packaged_configs
from .workflow.sweep import grid_sweep, optuna_sweep, parse_grid

__all__ = ["main", "COMMANDS"]


# ----------------------------------------------------------------------------------------- sweep
def _sweep(args: argparse.Namespace) -> None:
    "Check everything (command, jobs, optuna, the grid's values, the base config), then make the sweep folder."
    if args.command not in COMMANDS or not COMMANDS[args.command].resumable:
        raise ConfigError(f"--command {args.command!r}: sweeps run a training command: train-lm or train-vae")
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: run at least one job at a time")
    if args.trials < 0:
        raise ConfigError(f"--trials {args.trials}: give a number of trials, or none for a --grid sweep")
    cmd = COMMANDS[args.command]
    config, overrides = _split_config(args.config, args.overrides)
    if args.trials:
        if importlib.util.find_spec("optuna") is None:
            raise ConfigError("--trials needs optuna, which is not installed: pip install 'fastai_context[sweep]' "
                              "(or sweep a --grid)")
        space = parse_grid(args.param, cmd.defaults, ranges=True)
        if not space:
            raise ConfigError("an optuna sweep needs a search space: --param key=low:high[:log] or key=a,b")
    else:
        if not args.grid:
            raise ConfigError("sweep needs --grid key=v1,v2 ... (or --trials N with --param key=low:high)")
        space = parse_grid(args.grid, cmd.defaults)
    for key, spec in space.items():                                   # `--grid epochs=0,1` fails now, not in a job
        cmd.check_value(key, list(spec[:2]) if isinstance(spec, tuple) else spec)
    base = load_config(config, overrides, cmd.defaults, command=cmd.name)
    cmd.check(base, skip=list(space))                                 # fail now, not in every job
    root = make_run_dir("sweep") if args.run_dir is None else new_or_empty_run_dir(Path(args.run_dir))[0]
    kw = dict(command=cmd.name, config=config, overrides=overrides, root=root, jobs=args.jobs,
              metric=args.metric, maximize=args.maximize)
    if args.trials:
        table = optuna_sweep(space, n_trials=args.trials, search=args.search, seed=args.seed, **kw)
    else:
        table = grid_sweep(space, **kw)
    print(f"sweep of {len(table)} runs, sorted by {args.metric} -> {root / 'summary.csv'}")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))



def _options_help(cmd: Command) -> str:
    lines = ["config keys (set in the config file or as key=value; default in brackets):"]
    for k, (d, h) in cmd.options.items():
        shown = ",".join(map(str, d)) if isinstance(d, list) else json.dumps(d) if isinstance(d, dict) else d
        lines.append(f"  {k:<22} [{shown}]  {h}")
    return "\n".join(lines)


def _split_config(config: str | None, overrides: Sequence[str]) -> tuple[str | None, list[str]]:
    "The optional first positional is a config file unless it is a `key=value` override."
    if config is not None and "=" in config and not Path(config).exists():
        return None, [config, *overrides]
    return config, list(overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastai-context", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help, epilog=_options_help(cmd),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("config", nargs="?", help="YAML or JSON config file, or a packaged config's name")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="override a config value")
        p.add_argument("--run-dir", help="folder to write into (default: runs/<command>-<date>-<time>)")
        if cmd.resumable:
            p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint")
    p = sub.add_parser("sweep", help="run a training command over a grid or an optuna search, in parallel",
                       description="Run train-lm/train-vae for every combination of --grid values (or --trials "
                                   "optuna trials over --param ranges), at most --jobs at a time, one run folder "
                                   "each; write and print summary.csv sorted by --metric.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  fastai-context sweep tiny-lm --grid lr=1e-3,1e-2 --grid bs=8,16 --jobs 2\n"
                              "  fastai-context sweep tiny-lm --trials 8 --search tpe "
                              "--param lr=1e-4:1e-2:log --param drop_mult=0.2:1.0 --jobs 2")
    p.add_argument("config", nargs="?", help="config of the swept command")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="fixed overrides for every run")
    p.add_argument("--command", default="train-lm", help="command to sweep [train-lm]")
    p.add_argument("--grid", action="append", default=[], metavar="key=v1,v2", help="values to try for a key")
    p.add_argument("--jobs", type=int, default=1, help="runs at the same time [1]")
    p.add_argument("--metric", default="valid_loss", help="column of history.csv to rank by [valid_loss]")
    p.add_argument("--maximize", action="store_true", help="higher --metric is better (e.g. accuracy)")
    p.add_argument("--trials", type=int, default=0, help="optuna trials instead of a grid [0]")
    p.add_argument("--search", choices=["random", "tpe"], default="tpe", help="optuna sampler [tpe]")
    p.add_argument("--param", action="append", default=[], metavar="key=low:high[:log] or key=a,b",
                   help="optuna search space")
    p.add_argument("--seed", type=int, default=0, help="seed of the optuna sampler [0]")
    p.add_argument("--run-dir", help="folder for the sweep (default: runs/sweep-<date>-<time>)")
    sub.add_parser("configs", help="list the example configs packaged with fastai_context (pass one by name)",
                   description="List the example configs that ship with the package; give one by name in place "
                               "of a file, e.g. `fastai-context train-lm tiny-lm epochs=2`.")
    return parser


def _list_configs() -> None:
    "Print each packaged config: its name, the commands that accept its keys, and what its comment says."
    for name, path in packaged_configs().items():
        text = path.read_text(encoding="utf-8")
        keys = set(yaml.safe_load(text) or {})
        commands = [c.name for c in COMMANDS.values() if keys <= set(c.defaults)]
        comment = " ".join(line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#"))
        about = comment.split(". ")[0].rstrip(".")                     # its first sentence, at most 100 chars
        about = about if len(about) <= 100 else about[:99].rsplit(" ", 1)[0] + " ..."
        print(f"{name:<16} {'/'.join(commands) or '?':<12} {about}")
    print(f"\n(in {PACKAGED_CONFIGS}; use one by name, e.g. fastai-context train-lm tiny-lm epochs=2)")


def _start(cmd: Command, args: argparse.Namespace) -> Path:
    "A new run: `recipes.start` checks everything before it makes the run folder."
    config, overrides = _split_config(args.config, args.overrides)
    return start(cmd.name, config, overrides, run_dir=args.run_dir).path


def _resume(cmd: Command, args: argparse.Namespace) -> Path:
    "Continue a run with its saved config (`recipes.resume` checks it and its checkpoint first)."
    if args.config or args.overrides or args.run_dir:
        raise ConfigError("--resume continues a run with its saved config: give no config, overrides or --run-dir")
    return resume(cmd.name, args.resume, name="--resume").path


# errors of the user's making: said in one line (FASTAI_CONTEXT_TRACEBACK=1 shows the traceback)
USER_ERRORS = (ConfigError, CheckpointError, NonFiniteLossError, ValueError, KeyError, TypeError, OSError, ImportError)


def _message(e: BaseException) -> str:
    "One line: the error's own message, without fastai's 'Exception occured in `Callback`...' prefix."
    msg = getattr(e, "message", None) or (e.args[0] if isinstance(e, KeyError) and e.args else str(e))
    msg = str(msg)
    if msg.startswith("Exception occured in") and "\n" in msg:
        msg = msg.split("\n", 1)[1]
    return " ".join(msg.split()) or type(e).__name__


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "sweep":
            return _sweep(args)
        if args.cmd == "configs":
            return _list_configs()
        check_launch()                     # `accelerate launch --num_processes N` without --multi_gpu: one process
        cmd = COMMANDS[args.cmd]
        run_dir = _resume(cmd, args) if getattr(args, "resume", None) else _start(cmd, args)
        if rank_distrib() == 0:           # every rank runs the command under torchrun
            print(f"done: results in {run_dir}", flush=True)
    except USER_ERRORS as e:
        if os.environ.get("FASTAI_CONTEXT_TRACEBACK"):
            raise
        sys.exit(f"fastai-context {args.cmd}: error: {_message(e)}")


if __name__ == "__main__":
    main()
