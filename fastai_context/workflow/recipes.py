"""The experiments as Python functions: each checks its config, makes (or continues) a run
folder, writes its results there and returns it as a `RunFolder`.

    from fastai_context import recipes
    lm = recipes.train_lm("tiny-lm", epochs=1)                       # a packaged config, one override
    gen = recipes.generate(model=lm, values=[0.9, 0.1], n_words=200, controllability_words=0)
    clouds = recipes.wordclouds(samples=gen, top=10)
    lm = recipes.train_lm(run_dir=lm, resume=True)                   # continue from its checkpoint

The `fastai-context` command line (`cli.py`) is a thin parser over these: the same options
(`COMMANDS[name].options`, key -> (default, help)), checks and run folders. A bad config,
path, range or data column raises `ConfigError` naming it before any run folder is made; a
new run that fails before producing anything leaves no folder behind; a run folder is locked
(`.lock`, with the PID) while a recipe writes to it. Commands read each other's results only
through `RunFolder` (`generate` reads the model's text column and held-out documents from it;
`wordclouds` reads the context of each samples file from generate's manifest).
"""
from __future__ import annotations

import json
import math
import random
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from fastai.callback.progress import CSVLogger
from fastai.data.transforms import RandomSplitter
from fastai.learner import Learner, load_learner
from fastai.torch_core import rank_distrib, set_seed

from .. import datasets
from ..analysis import controllability, distinctive_words, plot_word_clouds, word_counts
from ..context import ContextEncoder, check_columns
from ..lm.data import ContextTextDataLoaders
from ..lm.learner import ContextLMLearner, context_language_model_learner
from ..lm.model import context_lm_config
from ..vae import SentenceDataLoaders, VAELearner, vae_learner
from .checkpoint import Checkpoint, RaiseOnNaNCallback
from .commands import (COMMON, FRACTION, NON_NEGATIVE, POSITIVE, PROBABILITY, SEED, Command, at_least, echo,
                       existing_path, finite, one_of, run_new, run_resumed)
from .distributed import distrib_ctx
from .runs import ConfigError, RunFolder, atomic_path, read_config

__all__ = ["train_lm", "generate", "wordclouds", "train_vae", "homotopy", "start", "resume", "COMMANDS", "Command",
           "RunFolder"]


LM_DATA = {
    "data": ("spotify", "'spotify' (the TidyTuesday Spotify tracks, from $FASTAI_CONTEXT_DATA or the checksummed "
                        "download), 'lyrics' (the Billboard lyrics with Spotify features) or the path of a CSV file"),
    "text_col": ("track_name", "text column"),
    "context_cols": (["energy"], "context columns (numeric or categorical), comma separated"),
    "n_docs": (0, "use a random sample of this many documents (0: all)"),
    "valid_pct": (0.1, "fraction of documents held out for validation"),
    "min_freq": (2, "minimum count of a token to enter the vocabulary"),
    "fill": ("", "missing numeric context: '' refuses it, 'mean', 'zero' or 'drop' (the rows)"),
}


# --------------------------------------------------------------------------------------- helpers
def _read_documents(cfg: Mapping) -> pd.DataFrame:
    "The documents of `cfg['data']` with a text, checked to hold the text and context columns."
    readers = {"spotify": lambda: datasets.spotify_tracks(dedupe=True), "lyrics": lambda: datasets.billboard_lyrics()}
    if cfg["data"] in readers:
        df = readers[cfg["data"]]()
    else:
        try:
            df = pd.read_csv(cfg["data"])
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise ConfigError(f"config key 'data': {cfg['data']!r} is not a readable CSV file "
                              f"({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
    for key, cols in (("text_col", [cfg["text_col"]]), ("context_cols", cfg["context_cols"])):
        try:
            check_columns(df, cols, f"config key {key!r}: column")
        except KeyError as e:
            raise ConfigError(e.args[0]) from None
    df = df.dropna(subset=[cfg["text_col"]])
    if cfg["n_docs"]:
        df = df.sample(min(cfg["n_docs"], len(df)), random_state=cfg["seed"])
    return df.reset_index(drop=True)


def _load_model(cfg: Mapping, key: str = "model", kind: type = Learner, made_by: str = "train-lm/train-vae"):
    "A learner of class `kind` exported by `made_by`: `model` is its run folder or the `.pkl` itself."
    p = existing_path(cfg, key, "trained model (a run folder or its model.pkl)")
    if p.is_dir():
        p = RunFolder(p).model_file
        if not p.exists():
            raise ConfigError(f"config key {key!r}: {str(p.parent)!r} holds no model.pkl (did its training finish?)")
    with warnings.catch_warnings():       # the user named this file: fastai's pickle warning adds nothing
        warnings.simplefilter("ignore", UserWarning)
        try:
            learn = load_learner(p)
        except Exception as e:            # unpickling errors of a damaged or foreign file come in many types
            raise ConfigError(f"config key {key!r}: {str(p)!r} is not a model exported by train-lm/train-vae, or it "
                              f"is damaged ({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
    if not isinstance(learn, kind):
        raise ConfigError(f"config key {key!r}: {str(p)!r} holds a {type(learn).__name__}; this command needs a "
                          f"model exported by {made_by}")
    return learn


def _read_text(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config key {key!r}: {str(path)!r} is not UTF-8 text (byte {e.object[e.start]:#04x} at "
                          f"position {e.start}); save it as UTF-8") from None


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2) + "\n")


def _fit(learn, cfg: Mapping, run: RunFolder, resume: bool) -> None:
    """`fit_one_cycle` with per-epoch metrics (CSVLogger) and checkpoints in `run_dir`,
    data-parallel when launched with several processes. A resume is checked (checkpoint intact,
    same vocabulary, context and epochs) before anything is written."""
    ckpt = Checkpoint(run.path, resume=resume)
    if resume:
        ckpt.load(learn.dls, cfg["epochs"])
    cbs = [ckpt]
    if not any(isinstance(cb, RaiseOnNaNCallback) for cb in learn.cbs):
        cbs.append(RaiseOnNaNCallback())
    if rank_distrib() == 0:
        cbs.append(CSVLogger(run.history_file, append=True))
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
    "context_layers": ("first", "LSTM layers that read the context: first (the blog's design) or all"),
    "context_out": (True, "also feed the context straight to the next-word logits (one learned slope per word "
                          "and context column; false: the blog's design alone)"),
    "context_bins": (0, "also give the model which of this many equally likely bins each context feature falls in "
                        "(a one-hot; 0: none)"),
    "epochs": (4, "epochs of fit_one_cycle"),
    "lr": (3e-3, "maximum learning rate of the one-cycle schedule"),
    "wd": (0.1, "weight decay"),
    "context_dropout": (0.0, "probability that a training document's context is replaced by the training mean in an "
                             "epoch (ContextDropout: trains the model for guided generation)"),
    "perplexity": (True, "after training, write validation perplexity with true, shuffled and mean context"),
    "within": ("", "data column whose groups also get a within-group shuffle in perplexity.json, with a paired "
                   "bootstrap over documents (e.g. decade; '': none)"),
    "sample_words": (40, "after training, write a sample of this many words at the 5th and 95th percentile of "
                         "the first context column (its first two categories if categorical; 0: none)"),
    "sample_values": ([], "values of the first context column for the samples (default: its 5th and 95th percentile)"),
    "n_sample_texts": (1, "samples per value"),
    **COMMON,
}


VALID_COL = "is_valid"

LM_LIMITS = {"n_docs": at_least(0), "valid_pct": FRACTION, "min_freq": at_least(1), "seed": SEED,
             "fill": one_of("", "mean", "zero", "drop")}
TRAIN_LM_LIMITS = {**LM_LIMITS, "bs": at_least(1), "seq_len": at_least(1), "emb_sz": at_least(1),
                   "n_hid": at_least(1), "n_layers": at_least(1), "drop_mult": NON_NEGATIVE, "epochs": at_least(1),
                   "lr": POSITIVE, "wd": NON_NEGATIVE, "sample_words": at_least(0),
                   "context_layers": one_of("first", "all"),
                   "context_bins": ((lambda v: isinstance(v, int) and not isinstance(v, bool) and (v == 0 or v >= 2)),
                                    "0 or a whole number >= 2")}


def check_lm_data(cfg: Mapping) -> None:
    "The documents hold the text and context columns, and the context encodes (numbers are numbers...)."
    df = _read_documents(cfg)
    try:
        enc = ContextEncoder.fit(df, cfg["context_cols"], fill=cfg["fill"] or None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config key 'context_cols': {e}") from None
    if cfg["within"] and cfg["within"] not in df.columns:
        raise ConfigError(f"config key 'within': {cfg['within']!r} is not a column of the data; it has {list(df.columns)}")
    col = cfg["context_cols"][0]
    for v in cfg["sample_values"]:         # what the samples after training will be drawn at
        try:
            enc.encode({**enc.decode(enc.mean_context()), col: float(v) if col in enc.numeric else v})
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"config key 'sample_values': {v!r} is not a value of {col!r} ({e})") from None


def _train_lm(cfg: dict, run: RunFolder, resume: bool = False) -> None:
    df = _read_documents(cfg)
    df[VALID_COL] = False           # split here, so that the held-out documents can be saved with the run
    df.loc[RandomSplitter(cfg["valid_pct"], seed=cfg["seed"])(df)[1], VALID_COL] = True
    set_seed(cfg["seed"])
    dls = ContextTextDataLoaders.from_df(df, cfg["text_col"], cfg["context_cols"], valid_col=VALID_COL,
                                         bs=cfg["bs"], seq_len=cfg["seq_len"], seed=cfg["seed"],
                                         min_freq=cfg["min_freq"], shuffle_seed=cfg["seed"], path=run.path,
                                         fill=cfg["fill"] or None)
    arch = dict(context_lm_config, emb_sz=cfg["emb_sz"], n_hid=cfg["n_hid"], n_layers=cfg["n_layers"],
                context_layers=cfg["context_layers"], context_out=cfg["context_out"], context_bins=cfg["context_bins"])
    learn = context_language_model_learner(dls, config=arch, drop_mult=cfg["drop_mult"], path=run.path, model_dir=".",
                                           context_dropout=cfg["context_dropout"])
    echo(f"{len(df)} documents, vocabulary of {len(dls.vocab)}, context {dls.context_encoder.feature_names}")
    _fit(learn, cfg, run, resume)
    if rank_distrib():
        return
    learn.export(run.model_file)
    with atomic_path(run.valid_file) as tmp:
        df.loc[df[VALID_COL], [cfg["text_col"], *cfg["context_cols"]]].to_csv(tmp, index=False)
    if cfg["perplexity"]:
        gain = learn.context_gain(within=cfg["within"] or None, seed=cfg["seed"], n_boot=1000)
        ppl = {"true": float(gain.table.ppl_true.iloc[0]), **gain.table.ppl_other.to_dict()}
        _write_json(run.perplexity_file, ppl)
        with atomic_path(run.context_gain_file) as tmp:      # gains, bootstrap CIs and p-values
            gain.table.to_csv(tmp)
        keys = [k for k in ("true", "shuffled", "shuffled_within", "mean") if k in ppl]
        echo(f"validation perplexity with {' / '.join(keys)} context: " + " / ".join(f"{ppl[k]:.2f}" for k in keys))
        echo(str(gain))
    if cfg["sample_words"]:
        enc, col = dls.context_encoder, cfg["context_cols"][0]
        base = enc.decode(enc.mean_context())
        values = cfg["sample_values"] or (df[col].quantile([0.05, 0.95]).round(3).tolist() if col in enc.numeric
                                          else enc.categories[col][:2])
        values = [float(v) for v in values] if col in enc.numeric else values
        lines = [f"{col}={v}: " + text.replace("\n", " / ") for v in values
                 for text in learn.generate({**base, col: v}, cfg["sample_words"], n_samples=cfg["n_sample_texts"],
                                            seed=cfg["seed"], no_bar=True)]
        _write_text(run.samples_file, "\n\n".join(lines) + "\n")
        echo("\n".join(lines))


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
    "guidance": (1.0, "classifier-free guidance against the training-mean context (1: the model alone); the "
                      "controllability report is then made at guidance 1 and at this guidance"),
    "controllability_words": (2000, "words per value for the controllability report (0: skip it)"),
    **COMMON,
}


def _value_name(feature: str, value: Any) -> str:
    "The name of a samples file (and of its word cloud before `_panel_title`): `energy=1.0`."
    return f"{feature}={value}"


def _plain(ctx: Mapping) -> dict:
    "Context values as JSON has them (numpy floats and ints become Python's)."
    return {k: v.item() if hasattr(v, "item") else v for k, v in ctx.items()}


GENERATE_LIMITS = {"values": (finite, "finite numbers"), "n_words": at_least(1), "n_samples": at_least(1),
                   "temperature": POSITIVE, "top_k": at_least(0),
                   "top_p": ((lambda v: finite(v) and 0 < v <= 1), "above 0 and at most 1"),
                   "controllability_words": at_least(0), "seed": SEED}


def _generate(cfg: dict, run: RunFolder) -> None:
    learn = _load_model(cfg, kind=ContextLMLearner, made_by="train-lm")
    enc = learn.dls.context_encoder
    if cfg["feature"] not in enc.columns:
        raise ConfigError(f"config key 'feature': {cfg['feature']!r} is not a context column of this model; "
                          f"it was trained with {enc.columns}")
    base = enc.decode(enc.mean_context())
    unknown = [k for k in cfg["context"] if k not in enc.columns]
    if unknown:
        raise ConfigError(f"config key 'context': {unknown} are not context columns of this model ({enc.columns})")
    # checked before any sample is drawn: the report needs the held-out texts train-lm saved beside model.pkl
    report = cfg["controllability_words"] and cfg["feature"] in enc.numeric and len(cfg["values"]) > 1
    model = RunFolder(Path(cfg["model"]) if Path(cfg["model"]).is_dir() else Path(cfg["model"]).parent)
    if report and not model.valid_file.exists():
        raise ConfigError(f"config key 'controllability_words': the report needs the held-out texts that train-lm "
                          f"saves as {RunFolder.VALID} beside model.pkl, and {str(model.path)!r} has none; "
                          "set controllability_words=0")
    sample_kw = dict(temperature=cfg["temperature"], top_k=cfg["top_k"] or None,
                     top_p=cfg["top_p"] if cfg["top_p"] < 1 else None)
    run.samples_dir.mkdir(exist_ok=True)
    per_sample = math.ceil(cfg["n_words"] / cfg["n_samples"])
    manifest = {"feature": cfg["feature"], "samples": []}
    for v in cfg["values"]:
        ctx = {**base, **cfg["context"], cfg["feature"]: v}
        texts = learn.generate(ctx, per_sample, n_samples=cfg["n_samples"], seed=cfg["seed"], doc_sep=" / ",
                               guidance=cfg["guidance"], **sample_kw)
        path = run.sample_file(_value_name(cfg["feature"], v))
        _write_text(path, "\n\n".join(texts) + "\n")
        manifest["samples"].append({"value": v, "context": _plain(ctx), "file": path.name})
        echo(f"{cfg['feature']}={v}: {len(texts)} samples of {per_sample} words -> {path}\n  {texts[0][:300]}")
    _write_json(run.manifest_file, manifest)       # wordclouds reads the context of each file from here
    if report:
        real, text_col = model.valid(), model.text_col
        reports = [controllability(learn, cfg["feature"], values=sorted(cfg["values"]), seed=cfg["seed"],
                                   n_words=cfg["controllability_words"], context=cfg["context"] or None,
                                   real_texts=real[text_col].astype(str), real_values=real[cfg["feature"]],
                                   guidance=g, no_bar=True, **sample_kw)
                   for g in sorted({1.0, float(cfg["guidance"])})]
        _write_text(run.controllability_file, "\n\n".join(map(str, reports)) + "\n")
        echo("\n\n".join(map(str, reports)))


# ------------------------------------------------------------------------------------ wordclouds
WORDCLOUDS = {
    "samples": ("", "a generate run folder: one word cloud per file in its samples/"),
    "top": (30, "distinctive words to list for each side"),
    "width": (800, "pixels per cloud"),
    "height": (400, "pixels per cloud"),
}


WORDCLOUDS_LIMITS = {"top": at_least(1), "width": at_least(1), "height": at_least(1)}


def _samples_of(folder: Path) -> tuple[str, list[tuple[Any, Path]]]:
    """The varied context column of a generate run and its (value, samples file) pairs in the order
    generated: from the run's manifest, or, for a folder written before manifests, from its config's
    values and the file names."""
    gen = RunFolder(folder)
    manifest = gen.manifest if folder.is_dir() else None
    if manifest is not None:
        return manifest["feature"], [(s["value"], gen.sample_file(Path(s["file"]).stem)) for s in manifest["samples"]]
    files = sorted(gen.samples_dir.glob("*.txt")) if folder.is_dir() else []
    if len(files) < 2:
        return "", [(None, f) for f in files]
    gen_cfg = read_config(folder)[1]
    feature, values = gen_cfg.get("feature", ""), gen_cfg.get("values", [])
    by_name = {_value_name(feature, v): v for v in values}
    order = {name: i for i, name in enumerate(by_name)}
    files.sort(key=lambda f: order.get(f.stem, len(order)))
    return feature, [(by_name.get(f.stem), f) for f in files]


def _wordclouds(cfg: dict, run: RunFolder) -> None:
    folder = existing_path(cfg, "samples", "generate run folder")
    feature, samples = _samples_of(folder)
    if len(samples) < 2:
        raise ConfigError(f"config key 'samples': {str(folder)!r} needs at least two files in samples/ "
                          f"(a generate run with two values or more), found {len(samples)}")
    values = [v for v, _ in samples]
    counts = {_panel_title(v, f.stem, feature, values): word_counts(f.read_text(encoding="utf-8")) for v, f in samples}
    fig = plot_word_clouds(counts, width=cfg["width"], height=cfg["height"])
    with atomic_path(run.wordclouds_file) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    names = list(counts)[:2]
    table = distinctive_words(counts[names[0]], counts[names[1]], top=cfg["top"], names=tuple(names))
    with atomic_path(run.distinctive_words_file) as tmp:
        table.to_csv(tmp)
    echo(f"word clouds -> {run.wordclouds_file}\n"
          f"distinctive words, {names[0]} vs {names[1]}:\n{table.to_string(float_format=lambda v: f'{v:.3g}')}")


def _panel_title(value: Any, name: str, feature: str, values: Sequence) -> str:
    "'high energy (1)' / 'low energy (0)' for the extremes, so the blog's colours apply; else the file's `name`."
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if nums and isinstance(value, (int, float)) and not isinstance(value, bool):
        v = float(value)
        if v == max(nums):
            return f"high {feature} ({v:g})"
        if v == min(nums):
            return f"low {feature} ({v:g})"
    return name


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


TRAIN_VAE_LIMITS = {"n_docs": at_least(0), "valid_pct": FRACTION, "min_freq": at_least(1), "max_len": at_least(1),
                    "bs": at_least(1), "z_dim": at_least(1), "emb_sz": at_least(1), "hidden_sz": at_least(1),
                    "cell": one_of("lstm", "gru"), "word_dropout": PROBABILITY, "free_bits": NON_NEGATIVE,
                    "kl_schedule": one_of("constant", "linear", "logistic", "cyclical"), "kl_warmup": NON_NEGATIVE,
                    "epochs": at_least(1), "lr": POSITIVE, "wd": NON_NEGATIVE, "n_samples": at_least(0),
                    "seed": SEED}


def _train_vae(cfg: dict, run: RunFolder, resume: bool = False) -> None:
    if cfg["data"] == "song_titles":
        texts = datasets.song_titles()
    elif cfg["data"] == "spotify":
        texts = datasets.spotify_tracks(dedupe=True)["track_name"].dropna().tolist()
    else:
        texts = [ln.strip() for ln in _read_text(existing_path(cfg, "data", "text file"), "data").splitlines()]
        texts = [t for t in texts if t]
    if cfg["n_docs"]:
        texts = random.Random(cfg["seed"]).sample(texts, min(cfg["n_docs"], len(texts)))
    set_seed(cfg["seed"])
    dls = SentenceDataLoaders.from_texts(texts, valid_pct=cfg["valid_pct"], bs=cfg["bs"], seed=cfg["seed"],
                                         min_freq=cfg["min_freq"], max_len=cfg["max_len"], path=run.path)
    learn = vae_learner(dls, z_dim=cfg["z_dim"], emb_sz=cfg["emb_sz"], hidden_sz=cfg["hidden_sz"], cell=cfg["cell"],
                        word_dropout=cfg["word_dropout"], emb_dropout=cfg["emb_dropout"], free_bits=cfg["free_bits"],
                        kl_schedule=cfg["kl_schedule"],
                        kl_warmup=cfg["kl_warmup"], path=run.path, model_dir=".")
    echo(f"{len(texts)} sentences, vocabulary of {len(dls.vocab)}")
    _fit(learn, cfg, run, resume)
    if rank_distrib():
        return
    learn.export(run.model_file)
    if cfg["n_samples"]:
        samples = learn.sample(cfg["n_samples"], seed=cfg["seed"])
        _write_text(run.samples_file, "\n".join(samples) + "\n")
        echo("samples from the prior:\n  " + "\n  ".join(samples))


# -------------------------------------------------------------------------------------- homotopy
HOMOTOPY = {
    "model": ("", "a train-vae run folder (or its model.pkl)"),
    "s0": ("", "first sentence"),
    "s1": ("", "last sentence"),
    "steps": (5, "points between them"),
    "method": ("lerp", "'lerp' or 'slerp'"),
}


HOMOTOPY_LIMITS = {"steps": at_least(1), "method": one_of("lerp", "slerp")}


def _homotopy(cfg: dict, run: RunFolder) -> None:
    for key in ("s0", "s1"):
        if not cfg[key].strip():
            raise ConfigError(f"config key {key!r} is required: a sentence, e.g. {key}='i want to hold your hand'")
    learn = _load_model(cfg, kind=VAELearner, made_by="train-vae")
    path = learn.homotopy(cfg["s0"], cfg["s1"], steps=cfg["steps"], method=cfg["method"])
    _write_text(run.homotopy_file, str(path) + "\n")
    echo(str(path))


# ------------------------------------------------------------------------------ the commands
COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("train-lm", "train a context-conditioned language model (AWD-LSTM)", TRAIN_LM, _train_lm, resumable=True,
            inputs={"data": "data file"}, builtin_data=("spotify", "lyrics"), limits=TRAIN_LM_LIMITS, check_data=check_lm_data),
    Command("generate", "generate text at chosen context values; controllability report", GENERATE, _generate,
            inputs={"model": "trained model (a train-lm run folder or its model.pkl)"}, limits=GENERATE_LIMITS),
    Command("wordclouds", "word clouds side by side and distinctive words of a generate run", WORDCLOUDS, _wordclouds,
            inputs={"samples": "generate run folder"}, limits=WORDCLOUDS_LIMITS),
    Command("train-vae", "train a sentence VAE", TRAIN_VAE, _train_vae, resumable=True,
            inputs={"data": "text file"}, builtin_data=("song_titles", "spotify"), limits=TRAIN_VAE_LIMITS),
    Command("homotopy", "decode the path between two sentences in a trained VAE's latent space", HOMOTOPY, _homotopy,
            inputs={"model": "trained model (a train-vae run folder or its model.pkl)"}, limits=HOMOTOPY_LIMITS),
]}


def start(command: str, config: str | Path | Mapping | None = None, overrides: Sequence[str] = (),
          run_dir: str | Path | None = None, **values) -> RunFolder:
    """A new run of `command` ('train-lm', ...): every check first, then the run folder (`run_dir`,
    new or empty; default `runs/<command>-<date>-<time>`), locked while the recipe writes to it.
    `config` is a YAML/JSON file, a packaged config's name or a mapping; `overrides` are `key=value`
    strings (the command line's), `values` Python values; later ones win."""
    return run_new(_command(command), config, overrides, run_dir, values)


def resume(command: str, run_dir: str | Path, name: str = "run_dir") -> RunFolder:
    """Continue a `command` run from its last checkpoint: with its folder locked, check its command,
    config and checkpoint (the training code then checks the checkpoint against the data) before
    anything is written. `name` is what the errors call `run_dir` (the CLI's `--resume`)."""
    return run_resumed(_command(command), run_dir, name)


def _command(name: str) -> Command:
    if name not in COMMANDS:
        raise ConfigError(f"unknown command {name!r}; the recipes are {list(COMMANDS)}")
    return COMMANDS[name]


# ------------------------------------------------------------------------------ the recipes
def train_lm(config: str | Path | Mapping | None = None, run_dir: str | Path | None = None, resume: bool = False,
             **values) -> RunFolder:
    """Train a context-conditioned language model (`fastai-context train-lm`): `config` (a file, a
    packaged config's name such as 'tiny-lm', or a mapping) updated by keyword `values`; writes
    history.csv, checkpoint.pth, model.pkl, valid.csv, perplexity.json, context_gain.csv and
    samples.txt into `run_dir`. With `resume=True`, continue the run in `run_dir` (no config)."""
    return _train("train-lm", config, run_dir, resume, values)


def train_vae(config: str | Path | Mapping | None = None, run_dir: str | Path | None = None, resume: bool = False,
              **values) -> RunFolder:
    """Train a sentence VAE (`fastai-context train-vae`); arguments as `train_lm`. Writes
    history.csv, checkpoint.pth, model.pkl and samples.txt (sentences from the prior)."""
    return _train("train-vae", config, run_dir, resume, values)


def _train(command: str, config, run_dir, resume_run: bool, values: dict) -> RunFolder:
    if not resume_run:
        return start(command, config, run_dir=run_dir, **values)
    if config is not None or values or run_dir is None:
        raise ConfigError("resume=True continues the run in run_dir with its saved config: give run_dir, "
                          "and no config or other keyword arguments")
    return resume(command, run_dir)


def generate(config: str | Path | Mapping | None = None, run_dir: str | Path | None = None, **values) -> RunFolder:
    """Generate text at chosen context values from a train-lm run (`model=`, a RunFolder or path),
    with a controllability report (`fastai-context generate`). Writes samples/<feature>=<value>.txt,
    samples/manifest.json (each file's context) and controllability.txt."""
    return start("generate", config, run_dir=run_dir, **values)


def wordclouds(config: str | Path | Mapping | None = None, run_dir: str | Path | None = None,
               **values) -> RunFolder:
    """Word clouds side by side and the distinctive words of a generate run (`samples=`, a RunFolder
    or path; `fastai-context wordclouds`). Writes wordclouds.png and distinctive_words.csv."""
    return start("wordclouds", config, run_dir=run_dir, **values)


def homotopy(config: str | Path | Mapping | None = None, run_dir: str | Path | None = None, **values) -> RunFolder:
    """Decode the path between sentences `s0` and `s1` in a train-vae run's latent space (`model=`;
    `fastai-context homotopy`). Writes homotopy.txt."""
    return start("homotopy", config, run_dir=run_dir, **values)
