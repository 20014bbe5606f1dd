"""`fastai-context`: the package's experiments from the command line, one run folder each.

    fastai-context train-lm configs/demo-lm.yaml epochs=2 lr=3e-3
    fastai-context generate model=runs/lm values=1.0,0.0 n_words=10000
    fastai-context sweep configs/tiny-lm.yaml --grid lr=1e-3,3e-3 --grid bs=16,32 --jobs 2

Every command takes an optional YAML/JSON config and `key=value` overrides, checked against
the command's options (`fastai-context COMMAND --help` lists them with their defaults), and
writes `config.yaml` (the resolved config) plus its results into a new run folder.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from fastai.callback.progress import CSVLogger
from fastai.data.transforms import RandomSplitter
from fastai.learner import load_learner
from fastai.torch_core import num_distrib, rank_distrib, set_seed

from . import datasets
from .analysis import controllability, distinctive_words, plot_word_clouds, word_counts
from .checkpoint import Checkpoint
from .data import ContextTextDataLoaders
from .distributed import distrib_ctx
from .learner import context_language_model_learner
from .models import context_lm_config
from .runs import CONFIG_NAME, ConfigError, atomic_path, load_config, make_run_dir, read_config, save_config
from .sweep import grid_sweep, optuna_sweep, parse_grid
from .vae import SentenceDataLoaders, vae_learner

__all__ = ["main", "COMMANDS"]


@dataclass
class Command:
    "A subcommand: its options (key -> (default, help)) and the function that runs it in a run folder."
    name: str
    help: str
    options: dict[str, tuple[Any, str]]
    run: Callable[[dict, Path], None]
    resumable: bool = False
    inputs: dict[str, str] = field(default_factory=dict)   # path keys -> what they name, checked before running
    builtin_data: tuple[str, ...] = ()                     # `data` values naming a built-in data set, not a path

    def check_inputs(self, cfg: Mapping) -> None:
        "Fail before creating a run folder if an input path is missing."
        for key, what in self.inputs.items():
            if not (key == "data" and cfg[key] in self.builtin_data):
                _existing_path(cfg, key, what)

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: d for k, (d, _) in self.options.items()}


COMMON = {"seed": (42, "random seed: data split, shuffling, initial weights, sampling")}

LM_DATA = {
    "data": ("spotify", "'spotify' (the TidyTuesday Spotify tracks, from $FASTAI_CONTEXT_DATA or the checksummed "
                        "download) or the path of a CSV file"),
    "text_col": ("track_name", "text column"),
    "context_cols": (["energy"], "context columns (numeric or categorical), comma separated"),
    "n_docs": (0, "use a random sample of this many documents (0: all)"),
    "valid_pct": (0.1, "fraction of documents held out for validation"),
    "min_freq": (2, "minimum count of a token to enter the vocabulary"),
}


# --------------------------------------------------------------------------------------- helpers
def _echo(*args) -> None:
    "Print on rank 0 only (all ranks run the same command under torchrun)."
    if rank_distrib() == 0:
        print(*args, flush=True)


def _existing_path(cfg: Mapping, key: str, what: str) -> Path:
    value = cfg[key]
    if not value:
        raise ConfigError(f"config key {key!r} is required: the path of {what}")
    p = Path(value).expanduser()
    if not p.exists():
        raise ConfigError(f"config key {key!r}: {what} {value!r} not found")
    return p


def _read_documents(cfg: Mapping) -> pd.DataFrame:
    "The documents of `cfg['data']` with a text, checked to hold the text and context columns."
    df = datasets.spotify_tracks(dedupe=True) if cfg["data"] == "spotify" else pd.read_csv(cfg["data"])
    for key, cols in (("text_col", [cfg["text_col"]]), ("context_cols", cfg["context_cols"])):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ConfigError(f"config key {key!r}: column(s) {missing} not in the data; it has {list(df.columns)}")
    df = df.dropna(subset=[cfg["text_col"]])
    if cfg["n_docs"]:
        df = df.sample(min(cfg["n_docs"], len(df)), random_state=cfg["seed"])
    return df.reset_index(drop=True)


def _load_model(cfg: Mapping, key: str = "model"):
    "A learner exported by `train-lm`/`train-vae`: `model` is its run folder or the `.pkl` itself."
    p = _existing_path(cfg, key, "trained model (a run folder or its model.pkl)")
    if p.is_dir():
        p = p / "model.pkl"
        if not p.exists():
            raise ConfigError(f"config key {key!r}: {str(p.parent)!r} holds no model.pkl (did its training finish?)")
    with warnings.catch_warnings():       # the user named this file: fastai's pickle warning adds nothing
        warnings.simplefilter("ignore", UserWarning)
        return load_learner(p)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2) + "\n")


def _fit(learn, cfg: Mapping, run_dir: Path, resume: bool) -> None:
    """`fit_one_cycle` with per-epoch metrics (CSVLogger) and checkpoints in `run_dir`,
    data-parallel when launched with several processes."""
    cbs = [Checkpoint(run_dir, resume=resume)]
    if rank_distrib() == 0:
        cbs.append(CSVLogger(run_dir / "history.csv", append=True))
    with distrib_ctx(learn, shuffle_seed=cfg["seed"]):
        learn.fit_one_cycle(cfg["epochs"], cfg["lr"], wd=cfg["wd"], cbs=cbs)


# -------------------------------------------------------------------------------------- train-lm
TRAIN_LM = {
    **LM_DATA,
    "bs": (64, "batch size (streams per batch; per process when data-parallel)"),
    "seq_len": (72, "tokens per stream per batch (backpropagation through time)"),
    "emb_sz": (200, "embedding size"),
    "n_hid": (400, "LSTM hidden size"),
    "n_layers": (2, "LSTM layers"),
    "drop_mult": (1.0, "multiplier of all AWD-LSTM dropouts"),
    "epochs": (4, "epochs of fit_one_cycle"),
    "lr": (3e-3, "maximum learning rate of the one-cycle schedule"),
    "wd": (0.1, "weight decay"),
    "perplexity": (True, "after training, write validation perplexity with true, shuffled and mean context"),
    "sample_words": (40, "after training, write a sample of this many words at the 5th and 95th percentile of "
                         "the first context column (its first two categories if categorical; 0: none)"),
    **COMMON,
}


VALID_COL, VALID_CSV = "is_valid", "valid.csv"


def train_lm(cfg: dict, run_dir: Path, resume: bool = False) -> None:
    df = _read_documents(cfg)
    df[VALID_COL] = False           # split here, so that the held-out documents can be saved with the run
    df.loc[RandomSplitter(cfg["valid_pct"], seed=cfg["seed"])(df)[1], VALID_COL] = True
    set_seed(cfg["seed"])
    dls = ContextTextDataLoaders.from_df(df, cfg["text_col"], cfg["context_cols"], valid_col=VALID_COL,
                                         bs=cfg["bs"], seq_len=cfg["seq_len"], seed=cfg["seed"],
                                         min_freq=cfg["min_freq"], shuffle_seed=cfg["seed"], path=run_dir)
    arch = dict(context_lm_config, emb_sz=cfg["emb_sz"], n_hid=cfg["n_hid"], n_layers=cfg["n_layers"])
    learn = context_language_model_learner(dls, config=arch, drop_mult=cfg["drop_mult"], path=run_dir, model_dir=".")
    _echo(f"{len(df)} documents, vocabulary of {len(dls.vocab)}, context {dls.context_encoder.feature_names}")
    _fit(learn, cfg, run_dir, resume)
    if rank_distrib():
        return
    learn.export(run_dir / "model.pkl")
    with atomic_path(run_dir / VALID_CSV) as tmp:
        df.loc[df[VALID_COL], [cfg["text_col"], *cfg["context_cols"]]].to_csv(tmp, index=False)
    if cfg["perplexity"]:
        ppl = learn.context_perplexity(seed=cfg["seed"])
        _write_json(run_dir / "perplexity.json", ppl)
        _echo("validation perplexity with true / shuffled / mean context: "
              + " / ".join(f"{ppl[k]:.2f}" for k in ("true", "shuffled", "mean")))
    if cfg["sample_words"]:
        enc, col = dls.context_encoder, cfg["context_cols"][0]
        base = enc.decode(enc.mean_context())
        values = df[col].quantile([0.05, 0.95]).round(3).tolist() if col in enc.numeric else enc.categories[col][:2]
        lines = [f"{col}={v}: " + learn.generate({**base, col: v}, cfg["sample_words"], seed=cfg["seed"], no_bar=True)[0]
                 for v in values]
        _write_text(run_dir / "samples.txt", "\n\n".join(lines) + "\n")
        _echo("\n".join(lines))


# -------------------------------------------------------------------------------------- generate
GENERATE = {
    "model": ("", "a train-lm run folder (or its model.pkl)"),
    "feature": ("energy", "context column to vary"),
    "values": ([1.0, 0.0], "values of `feature` to generate at, comma separated"),
    "context": ({}, "values of the other context columns, e.g. context='{playlist_genre: rock}' "
                    "(default: training mean)"),
    "n_words": (10000, "words to generate at each value"),
    "n_samples": (10, "independent samples per value (the words are split between them)"),
    "temperature": (1.0, "sampling temperature"),
    "top_k": (0, "sample among the k most likely words (0: all)"),
    "top_p": (1.0, "nucleus sampling: smallest set of words with this much probability (1.0: all)"),
    "controllability_words": (2000, "words per value for the controllability report (0: skip it)"),
    **COMMON,
}


def _value_name(feature: str, value: Any) -> str:
    return f"{feature}={value}"


def generate(cfg: dict, run_dir: Path) -> None:
    learn = _load_model(cfg)
    enc = learn.dls.context_encoder
    if cfg["feature"] not in enc.columns:
        raise ConfigError(f"config key 'feature': {cfg['feature']!r} is not a context column of this model; "
                          f"it was trained with {enc.columns}")
    base = enc.decode(enc.mean_context())
    unknown = [k for k in cfg["context"] if k not in enc.columns]
    if unknown:
        raise ConfigError(f"config key 'context': {unknown} are not context columns of this model ({enc.columns})")
    sample_kw = dict(temperature=cfg["temperature"], top_k=cfg["top_k"] or None,
                     top_p=cfg["top_p"] if cfg["top_p"] < 1 else None)
    (run_dir / "samples").mkdir(exist_ok=True)
    per_sample = math.ceil(cfg["n_words"] / cfg["n_samples"])
    for v in cfg["values"]:
        ctx = {**base, **cfg["context"], cfg["feature"]: v}
        texts = learn.generate(ctx, per_sample, n_samples=cfg["n_samples"], seed=cfg["seed"], doc_sep=" / ",
                               **sample_kw)
        path = run_dir / "samples" / f"{_value_name(cfg['feature'], v)}.txt"
        _write_text(path, "\n\n".join(texts) + "\n")
        _echo(f"{cfg['feature']}={v}: {len(texts)} samples of {per_sample} words -> {path}\n  {texts[0][:300]}")
    if cfg["controllability_words"] and cfg["feature"] in enc.numeric and len(cfg["values"]) > 1:
        model_dir = Path(cfg["model"]) if Path(cfg["model"]).is_dir() else Path(cfg["model"]).parent
        if not (model_dir / VALID_CSV).exists():
            raise ConfigError(f"config key 'controllability_words': the report needs the held-out texts that train-lm "
                              f"saves as {VALID_CSV} beside model.pkl, and {str(model_dir)!r} has none; "
                              "set controllability_words=0")
        real = pd.read_csv(model_dir / VALID_CSV)
        text_col = read_config(model_dir)[1]["text_col"]
        report = controllability(learn, cfg["feature"], values=sorted(cfg["values"]), seed=cfg["seed"],
                                 n_words=cfg["controllability_words"], context=cfg["context"] or None,
                                 real_texts=real[text_col].astype(str), real_values=real[cfg["feature"]], **sample_kw)
        _write_text(run_dir / "controllability.txt", str(report) + "\n")
        _echo(str(report))


# ------------------------------------------------------------------------------------ wordclouds
WORDCLOUDS = {
    "samples": ("", "a generate run folder: one word cloud per file in its samples/"),
    "top": (30, "distinctive words to list for each side"),
    "width": (800, "pixels per cloud"),
    "height": (400, "pixels per cloud"),
}


def wordclouds(cfg: dict, run_dir: Path) -> None:
    folder = _existing_path(cfg, "samples", "generate run folder")
    files = sorted((folder / "samples").glob("*.txt")) if folder.is_dir() else []
    if len(files) < 2:
        raise ConfigError(f"config key 'samples': {str(folder)!r} needs at least two files in samples/ "
                          f"(a generate run with two values or more), found {len(files)}")
    gen_cfg = read_config(folder)[1]
    feature = gen_cfg.get("feature", "")
    order = {_value_name(feature, v): i for i, v in enumerate(gen_cfg.get("values", []))}
    files.sort(key=lambda f: order.get(f.stem, len(order)))
    counts = {_panel_title(f.stem, feature, gen_cfg.get("values", [])): word_counts(f.read_text(encoding="utf-8"))
              for f in files}
    fig = plot_word_clouds(counts, width=cfg["width"], height=cfg["height"])
    with atomic_path(run_dir / "wordclouds.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    names = list(counts)[:2]
    table = distinctive_words(counts[names[0]], counts[names[1]], top=cfg["top"], names=tuple(names))
    with atomic_path(run_dir / "distinctive_words.csv") as tmp:
        table.to_csv(tmp)
    _echo(f"word clouds -> {run_dir / 'wordclouds.png'}\n"
          f"distinctive words, {names[0]} vs {names[1]}:\n{table.to_string(float_format=lambda v: f'{v:.3g}')}")


def _panel_title(stem: str, feature: str, values: Sequence) -> str:
    "'high energy (1.0)' / 'low energy (0.0)' for the extremes, so the blog's colours apply; else the stem."
    nums = [v for v in values if isinstance(v, (int, float))]
    if nums and stem.startswith(f"{feature}="):
        v = float(stem.split("=", 1)[1])
        if v == max(nums):
            return f"high {feature} ({v:g})"
        if v == min(nums):
            return f"low {feature} ({v:g})"
    return stem


# ------------------------------------------------------------------------------------- train-vae
TRAIN_VAE = {
    "data": ("song_titles", "'song_titles' (the blog data's 9,850 song titles), 'spotify' (the Spotify track names) "
                            "or a text file, one sentence a line"),
    "n_docs": (0, "use a random sample of this many sentences (0: all)"),
    "valid_pct": (0.1, "fraction of sentences held out for validation"),
    "min_freq": (2, "minimum count of a token to enter the vocabulary"),
    "max_len": (30, "truncate sentences to this many tokens"),
    "bs": (64, "batch size"),
    "z_dim": (32, "latent size"),
    "emb_sz": (256, "embedding size"),
    "hidden_sz": (256, "encoder and decoder hidden size"),
    "cell": ("lstm", "'lstm' or 'gru'"),
    "word_dropout": (0.3, "decoder word dropout (Bowman et al. 2016)"),
    "emb_dropout": (0.0, "dropout on the decoder's input embeddings (timbmg/Sentence-VAE: 0.5)"),
    "free_bits": (0.1, "nats per latent dimension below which KL is not penalized"),
    "kl_schedule": ("cyclical", "KL annealing: 'constant', 'linear', 'logistic' or 'cyclical'"),
    "kl_warmup": (0.25, "KL warm-up (or cycle) length: batches, or a fraction of all training batches"),
    "epochs": (10, "epochs of fit_one_cycle"),
    "lr": (3e-3, "maximum learning rate"),
    "wd": (0.01, "weight decay"),
    "n_samples": (5, "after training, write this many sentences sampled from the prior (0: none)"),
    **COMMON,
}


def train_vae(cfg: dict, run_dir: Path, resume: bool = False) -> None:
    if cfg["data"] == "song_titles":
        texts = datasets.song_titles()
    elif cfg["data"] == "spotify":
        texts = datasets.spotify_tracks(dedupe=True)["track_name"].dropna().tolist()
    else:
        texts = [ln.strip() for ln in _existing_path(cfg, "data", "text file").read_text(encoding="utf-8").splitlines()]
        texts = [t for t in texts if t]
    if cfg["n_docs"]:
        texts = random.Random(cfg["seed"]).sample(texts, min(cfg["n_docs"], len(texts)))
    set_seed(cfg["seed"])
    dls = SentenceDataLoaders.from_texts(texts, valid_pct=cfg["valid_pct"], bs=cfg["bs"], seed=cfg["seed"],
                                         min_freq=cfg["min_freq"], max_len=cfg["max_len"], path=run_dir)
    learn = vae_learner(dls, z_dim=cfg["z_dim"], emb_sz=cfg["emb_sz"], hidden_sz=cfg["hidden_sz"], cell=cfg["cell"],
                        word_dropout=cfg["word_dropout"], emb_dropout=cfg["emb_dropout"], free_bits=cfg["free_bits"],
                        kl_schedule=cfg["kl_schedule"],
                        kl_warmup=cfg["kl_warmup"], path=run_dir, model_dir=".")
    _echo(f"{len(texts)} sentences, vocabulary of {len(dls.vocab)}")
    _fit(learn, cfg, run_dir, resume)
    if rank_distrib():
        return
    learn.export(run_dir / "model.pkl")
    if cfg["n_samples"]:
        samples = learn.sample(cfg["n_samples"], seed=cfg["seed"])
        _write_text(run_dir / "samples.txt", "\n".join(samples) + "\n")
        _echo("samples from the prior:\n  " + "\n  ".join(samples))


# -------------------------------------------------------------------------------------- homotopy
HOMOTOPY = {
    "model": ("", "a train-vae run folder (or its model.pkl)"),
    "s0": ("", "first sentence"),
    "s1": ("", "last sentence"),
    "steps": (5, "points between them"),
    "method": ("lerp", "'lerp' or 'slerp'"),
}


def homotopy(cfg: dict, run_dir: Path) -> None:
    for key in ("s0", "s1"):
        if not cfg[key].strip():
            raise ConfigError(f"config key {key!r} is required: a sentence, e.g. {key}='i want to hold your hand'")
    learn = _load_model(cfg)
    path = learn.homotopy(cfg["s0"], cfg["s1"], steps=cfg["steps"], method=cfg["method"])
    _write_text(run_dir / "homotopy.txt", str(path) + "\n")
    _echo(str(path))


# ----------------------------------------------------------------------------------------- sweep
def _sweep(args: argparse.Namespace) -> None:
    if args.command not in COMMANDS or not COMMANDS[args.command].resumable:
        raise ConfigError(f"--command {args.command!r}: sweeps run a training command: train-lm or train-vae")
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: run at least one job at a time")
    cmd = COMMANDS[args.command]
    config, overrides = _split_config(args.config, args.overrides)
    cmd.check_inputs(load_config(config, overrides, cmd.defaults, command=cmd.name))   # fail now, not in every job
    root = Path(args.run_dir) if args.run_dir else make_run_dir("sweep")
    root.mkdir(parents=True, exist_ok=True)
    kw = dict(command=cmd.name, config=config, overrides=overrides, root=root, jobs=args.jobs,
              metric=args.metric, maximize=args.maximize)
    if args.trials:
        space = parse_grid(args.param, cmd.defaults, ranges=True)
        table = optuna_sweep(space, n_trials=args.trials, search=args.search, seed=args.seed, **kw)
    else:
        if not args.grid:
            raise ConfigError("sweep needs --grid key=v1,v2 ... (or --trials N with --param key=low:high)")
        table = grid_sweep(parse_grid(args.grid, cmd.defaults), **kw)
    print(f"sweep of {len(table)} runs, sorted by {args.metric} -> {root / 'summary.csv'}")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))


# ------------------------------------------------------------------------------------------ main
COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("train-lm", "train a context-conditioned language model (AWD-LSTM)", TRAIN_LM, train_lm, resumable=True,
            inputs={"data": "data file"}, builtin_data=("spotify",)),
    Command("generate", "generate text at chosen context values; controllability report", GENERATE, generate,
            inputs={"model": "trained model (a train-lm run folder or its model.pkl)"}),
    Command("wordclouds", "word clouds side by side and distinctive words of a generate run", WORDCLOUDS, wordclouds,
            inputs={"samples": "generate run folder"}),
    Command("train-vae", "train a sentence VAE", TRAIN_VAE, train_vae, resumable=True,
            inputs={"data": "text file"}, builtin_data=("song_titles", "spotify")),
    Command("homotopy", "decode the path between two sentences in a trained VAE's latent space", HOMOTOPY, homotopy,
            inputs={"model": "trained model (a train-vae run folder or its model.pkl)"}),
]}


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
        p.add_argument("config", nargs="?", help="YAML or JSON config file")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="override a config value")
        p.add_argument("--run-dir", help="folder to write into (default: runs/<command>-<date>-<time>)")
        if cmd.resumable:
            p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint")
    p = sub.add_parser("sweep", help="run a training command over a grid or an optuna search, in parallel",
                       description="Run train-lm/train-vae for every combination of --grid values (or --trials "
                                   "optuna trials over --param ranges), at most --jobs at a time, one run folder "
                                   "each; write and print summary.csv sorted by --metric.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  fastai-context sweep configs/tiny-lm.yaml --grid lr=1e-3,1e-2 --grid bs=8,16 --jobs 2\n"
                              "  fastai-context sweep configs/tiny-lm.yaml --trials 8 --search tpe "
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
    return parser


def _shared_run_dir(command: str, run_dir: str | None) -> Path:
    "Create the run folder on rank 0 and tell the other ranks its name."
    if num_distrib() <= 1:
        return make_run_dir(command) if run_dir is None else _new_or_empty(Path(run_dir))
    from accelerate import PartialState      # fastai.distributed's dependency
    PartialState(cpu=not torch.cuda.is_available())                 # starts the process group
    name = [str(make_run_dir(command) if run_dir is None else _new_or_empty(Path(run_dir)))
            if rank_distrib() == 0 else None]
    torch.distributed.broadcast_object_list(name, src=0)
    return Path(name[0])


def _new_or_empty(path: Path) -> Path:
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"--run-dir {str(path)!r} is not empty: choose a new folder, or continue it with --resume")
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "sweep":
            return _sweep(args)
        cmd = COMMANDS[args.cmd]
        resume = getattr(args, "resume", None)
        if resume:
            if args.config or args.overrides or args.run_dir:
                raise ConfigError("--resume continues a run with its saved config: give no config, overrides or --run-dir")
            run_dir = Path(resume).resolve()
            if read_config(run_dir)[0] != cmd.name:
                raise ConfigError(f"{resume!r} is a {read_config(run_dir)[0]} run, not {cmd.name}")
            cfg = load_config(run_dir / CONFIG_NAME, [], cmd.defaults, command=cmd.name)
            _echo(f"resuming {run_dir}")
            cmd.run(cfg, run_dir, resume=True)
        else:
            config, overrides = _split_config(args.config, args.overrides)
            cfg = load_config(config, overrides, cmd.defaults, command=cmd.name)
            cmd.check_inputs(cfg)
            run_dir = _shared_run_dir(cmd.name, args.run_dir).resolve()
            if rank_distrib() == 0:
                save_config(run_dir, cfg, cmd.name)
            _echo(f"{cmd.name}: writing to {run_dir}")
            cmd.run(cfg, run_dir)
        _echo(f"done: results in {run_dir}")
    except (ConfigError, FileNotFoundError) as e:
        sys.exit(f"fastai-context {args.cmd}: error: {e}")


if __name__ == "__main__":
    main()
