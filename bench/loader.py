"""Batches per second of ContextLanguageModelLoader against fastai's LMDataLoader, same data, same run.

Usage: python bench/loader.py [--rows N] [--epochs 3]
The corpus is the real Spotify tracks table (track, album and playlist names as one text per
track, energy + genre as context). Both loaders shuffle documents every epoch; timings alternate
between the two loaders so that machine noise hits both alike.
"""
import argparse
import time

import torch
from fastai.text.data import LMDataLoader

from fastai_context import ContextLanguageModelLoader, ContextTextDataLoaders, datasets


def epoch_time(dl) -> tuple[float, int]:
    start = time.perf_counter()
    n = sum(1 for _ in dl)
    return time.perf_counter() - start, n


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=None, help="tracks to use (default: all)")
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    df = datasets.spotify_tracks(dedupe=True)
    if args.rows:
        df = df.sample(args.rows, random_state=0)
    df = df.assign(text=df.track_name.astype(str) + " . " + df.track_album_name.astype(str) + " . " + df.playlist_name)
    df = df[df.track_name.notna() & df.track_album_name.notna()]
    dls = ContextTextDataLoaders.from_df(df, "text", ["energy", "playlist_genre"], seed=0)
    ds, ctx = dls.train.dataset, dls.train.context
    n_tokens = int(dls.train._doc_lens.sum())
    print(f"corpus: {len(ds)} documents, {n_tokens} tokens, {ctx.shape[1]} context features")
    for bs, seq_len in [(64, 72), (16, 20)]:
        start = time.perf_counter()
        ref = LMDataLoader(ds, bs=bs, seq_len=seq_len, shuffle=True)
        build_ref = time.perf_counter() - start
        start = time.perf_counter()
        ours = dls.train.new(bs=bs, seq_len=seq_len, shuffle=True)      # reuses the numericalized documents
        assert isinstance(ours, ContextLanguageModelLoader)
        build_ours = time.perf_counter() - start
        t_ref = t_ours = 0.0
        for _ in range(args.epochs):
            t, n_ref = epoch_time(ref)
            t_ref += t
            t, n_ours = epoch_time(ours)
            t_ours += t
        assert n_ref == n_ours
        bps_ref, bps_ours = n_ref * args.epochs / t_ref, n_ours * args.epochs / t_ours
        print(f"bs={bs:3d} seq_len={seq_len:3d}: LMDataLoader {bps_ref:9.1f} batches/s | "
              f"ContextLanguageModelLoader (x, ctx, y) {bps_ours:9.1f} batches/s | ratio {bps_ours / bps_ref:6.2f}x")
        print(f"    construction: LMDataLoader {build_ref:.2f} s, ContextLanguageModelLoader.new {build_ours:.2f} s")
    start = time.perf_counter()
    ContextLanguageModelLoader(ds, ctx, shuffle=True)
    print(f"ContextLanguageModelLoader built from a bare fastai dataset (numericalizes each document once through "
          f"fastai's pipeline, as LMDataLoader does every epoch): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
