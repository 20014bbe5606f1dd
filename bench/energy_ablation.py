"""Energy ablation on the Billboard lyrics: which way of feeding a song's energy to the LM helps?

Usage: python bench/energy_ablation.py [--out DIR] [--epochs 1] [--variants base,all,emb,dropout,year]
           [--share 1.0] [--emb-sz 100] [--n-hid 256] [--lr 1e-2] [--n-boot 2000]

Every variant trains the same model size on the same 90/10 song split (seed 0) of the same songs
(`--share` of them, drawn with seed 0) for the same number of epochs (`fit_one_cycle`), so they
get the same training budget (about the same compute per batch); the measured wall time
is printed too (the machine is shared, so compare times only within one run). Then, on the
validation songs, `learn.context_gain(within='decade')`: perplexity with the true energy vs
energies shuffled across all songs, shuffled within the song's decade, and the training mean,
with a paired bootstrap over songs (CI and one-sided p-value). Results go to DIR/<variant>.json and
each trained learner to DIR/<variant>.pkl (for `bench/energy_control.py`).

Variants (see `context_lm_config` for the options; all but the `out` ones set `context_out=False`):
  base     the blog's design: energy concatenated to the first layer's input
  all      energy concatenated to every LSTM layer's input (`context_layers='all'`)
  emb      a learned nonlinear context embedding (`context_proj=16, context_act='tanh'`)
  dropout  base + `ContextDropout(p=0.2)` (one model both conditional and unconditional)
  year     base conditioned on energy and year (the gain is measured shuffling energy only)
  all_dropout  all + ContextDropout(p=0.2)
  out      base + the context straight to the logits (`context_out=True`, Mikolov & Zweig 2012)
  out_dropout, all_out_dropout  out (or all + out) with ContextDropout(p=0.2)
  out_emb_dropout  out_dropout reading the tanh embedding (layers and logits: one nonlinear curve per word)
  out_bins out, the context also holding energy's quintile as a category (a step function per word on top of
           the slope); the gain shuffles energy and its quintile together
  out_bins5, out_bins5_dropout  the same inside the model: `context_bins=5` (without, with ContextDropout(0.2))
"""
import argparse
import json
import time
from pathlib import Path

import pandas as pd
from fastai.torch_core import set_seed

from fastai_context import ContextTextDataLoaders, context_language_model_learner, context_lm_config, datasets

BLOG = dict(context_out=False)      # the blog's design: no direct context-to-logits path (now on by default)
VARIANTS = {
    "base": dict(config=BLOG, context_dropout=0., cols=["energy"]),
    "all": dict(config=dict(BLOG, context_layers="all"), context_dropout=0., cols=["energy"]),
    "emb": dict(config=dict(BLOG, context_proj=16, context_act="tanh"), context_dropout=0., cols=["energy"]),
    "dropout": dict(config=BLOG, context_dropout=0.2, cols=["energy"]),
    "year": dict(config=BLOG, context_dropout=0., cols=["energy", "year"]),
    "all_dropout": dict(config=dict(BLOG, context_layers="all"), context_dropout=0.2, cols=["energy"]),
    "out": dict(config=dict(context_out=True), context_dropout=0., cols=["energy"]),
    "out_dropout": dict(config=dict(context_out=True), context_dropout=0.2, cols=["energy"]),
    "all_out_dropout": dict(config=dict(context_layers="all", context_out=True), context_dropout=0.2, cols=["energy"]),
    "out_emb_dropout": dict(config=dict(context_out=True, context_proj=16, context_act="tanh"), context_dropout=0.2,
                            cols=["energy"]),
    "out_bins": dict(config=dict(context_out=True), context_dropout=0., cols=["energy", "energy_bin"],
                     features=["energy", "energy_bin"]),
    "out_bins5": dict(config=dict(context_out=True, context_bins=5), context_dropout=0., cols=["energy"]),
    "out_bins5_dropout": dict(config=dict(context_out=True, context_bins=5), context_dropout=0.2, cols=["energy"]),
}


def lyrics() -> pd.DataFrame:
    "The Billboard lyrics, cleaned for a language model, with their `decade` and `energy_bin` (energy's quintile, a category)."
    df = datasets.billboard_lyrics().dropna(subset=["lyrics", "energy"]).reset_index(drop=True)
    df["energy_bin"] = pd.qcut(df["energy"], 5, labels=[f"q{i}" for i in range(1, 6)]).astype(str)
    return df


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/energy_ablation")
    ap.add_argument("--variants", default="base,all,emb,dropout,year")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--share", type=float, default=1.0, help="share of the songs to use (a random sample)")
    ap.add_argument("--emb-sz", type=int, default=100)
    ap.add_argument("--n-hid", type=int, default=256)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=72)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df = lyrics()
    if args.share < 1:
        df = df.sample(frac=args.share, random_state=0).reset_index(drop=True)
    print(f"{len(df)} songs; args {vars(args)}", flush=True)
    for name in args.variants.split(","):
        v = VARIANTS[name]
        set_seed(0)
        dls = ContextTextDataLoaders.from_df(df, "lyrics", v["cols"], bs=args.bs, seq_len=args.seq_len, seed=0)
        config = dict(context_lm_config, emb_sz=args.emb_sz, n_hid=args.n_hid, **v["config"])
        learn = context_language_model_learner(dls, config=config, context_dropout=v["context_dropout"])
        start = time.perf_counter()
        with learn.no_bar():
            learn.fit_one_cycle(args.epochs, args.lr)
        train_s = time.perf_counter() - start
        gain = learn.context_gain(within="decade", n_boot=args.n_boot, features=v.get("features", "energy"))
        print(f"=== {name}: {train_s:.0f} s training\n{gain}", flush=True)
        res = dict(variant=name, train_s=train_s, epochs=args.epochs, config={k: str(c) for k, c in config.items()},
                   context_dropout=v["context_dropout"], cols=v["cols"], valid_loss=float(learn.recorder.values[-1][1]),
                   gain=gain.table.reset_index().to_dict("records"))
        (out / f"{name}.json").write_text(json.dumps(res, indent=1))
        learn.export((out / f"{name}.pkl").absolute())


if __name__ == "__main__":
    main()
