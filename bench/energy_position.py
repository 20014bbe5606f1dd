"""Where in a song does the true energy save nats? The validation gain of an exported energy model
(true energy against shuffled, shuffled within the decade and the training mean), split by the
token's position in its song.

Usage: python bench/energy_position.py MODEL.pkl [--columns energy,valence] [--seed 42]

MODEL.pkl is `learn.export()` of a model trained as `nbs/01` trains it (all songs of
`datasets.billboard_lyrics()`, `ContextTextDataLoaders.from_df(songs, 'lyrics', columns, bs=32,
seq_len=72, seed=seed)`); the loaders are rebuilt here with the same split. If the LSTM learned to
read energy from the lyrics themselves, the given energy would help most in a song's first lines and
little after; a gain that stays level along the song is a shift of the word distribution that holds
at every token.
"""
import argparse

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.learner import load_learner
from fastai.torch_core import set_seed

from fastai_context import ContextTextDataLoaders, datasets

BINS = [0, 10, 25, 50, 100, 200, 400, 1_000_000]       # token position in its song


def token_nll(learn, dl) -> tuple[np.ndarray, np.ndarray]:
    "NLL of every predicted token of `dl` (in order, not shuffled) and the token's position in its song."
    order = dl.items.idxs                                     # (n_docs,) the document at each place of the stream
    lens = dl.docs.lens[order]
    ends = np.cumsum(lens)
    starts = ends - lens                                      # first stream position of each place
    learn.model.eval()
    learn.model.reset()
    nll, where = [], []
    with torch.no_grad():
        for k, (x, ctx, y) in enumerate(dl):
            logits = learn.model(x, ctx)[0]                   # (bs, sl, vocab)
            tok = F.cross_entropy(logits.flatten(0, 1).float(), y.as_subclass(torch.Tensor).flatten(),
                                  reduction="none")         # (bs * sl,)
            pos = dl.target_positions(k, *y.shape)            # (bs, sl) stream position of each target
            place = np.searchsorted(ends, pos, side="right")
            nll.append(tok.numpy())
            where.append((pos - starts[place]).ravel())
    learn.model.reset()
    return np.concatenate(nll), np.concatenate(where)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--columns", default="energy,valence", help="the context columns the model was trained on")
    ap.add_argument("--seed", type=int, default=42, help="the split seed of from_df (nbs/01: 42)")
    args = ap.parse_args()
    set_seed(args.seed)
    songs = datasets.billboard_lyrics()
    dls = ContextTextDataLoaders.from_df(songs, "lyrics", args.columns.split(","), bs=32, seq_len=72, seed=args.seed)
    learn = load_learner(args.model)
    learn.dls = dls
    nll = {}
    for name, ctx in learn._context_variants(dls.valid, args.seed, "decade", "energy").items():
        nll[name], pos = token_nll(learn, dls.valid.new(context=ctx, shuffle=False))
    df = pd.DataFrame({"bin": pd.cut(pos, BINS, right=False), **nll})
    g = df.groupby("bin", observed=True)
    table = pd.DataFrame({"tokens": g.size(), "ppl (true)": np.exp(g["true"].mean())})
    for name in [k for k in nll if k != "true"]:
        table[f"gain vs {name} %"] = 100 * (1 - np.exp(g["true"].mean() - g[name].mean()))
        table[f"share of nats saved vs {name}"] = (g[name].sum() - g["true"].sum()) / (df[name].sum() - df["true"].sum())
    total = {f"gain vs {k} %": 100 * (1 - np.exp(df["true"].mean() - df[k].mean())) for k in nll if k != "true"}
    print(f"{args.model}: {len(df):,} validation tokens; whole songs: "
          + ", ".join(f"{k} {v:+.2f}" for k, v in total.items()))
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
