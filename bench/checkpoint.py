"""Cost of a resumable checkpoint against fastai's `learn.save(with_opt=True)`, same model, same run.

Usage: python bench/checkpoint.py [--repeats 10]
The learner is `make demo`'s energy-conditioned LM (fastai_context/configs/demo-lm.yaml sizes) on the real
Spotify track titles, after a few training batches so the optimizer holds its state. `Checkpoint`
adds random states, the document order, the vocabulary and the context encoder, writes
through a temporary file and `os.replace`, verifies the written file (the CRC-32 of every zip
member) and keeps the previous checkpoint; the ratio is what that costs per epoch. Timings
alternate between the two so that machine noise hits both alike.
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml
from fastai.callback.training import ShortEpochCallback

from fastai_context import Checkpoint, ContextTextDataLoaders, context_language_model_learner, context_lm_config, datasets
from fastai_context.workflow.checkpoint import verify_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = yaml.safe_load((ROOT / "fastai_context" / "configs" / "demo-lm.yaml").read_text())
    df = datasets.spotify_tracks(dedupe=True).dropna(subset=["track_name"])
    dls = ContextTextDataLoaders.from_df(df, "track_name", ["energy"], bs=cfg["bs"], seq_len=cfg["seq_len"], seed=0,
                                         min_freq=cfg["min_freq"], shuffle_seed=0)
    arch = dict(context_lm_config, emb_sz=cfg["emb_sz"], n_hid=cfg["n_hid"], n_layers=cfg["n_layers"])
    with tempfile.TemporaryDirectory() as d:
        learn = context_language_model_learner(dls, config=arch, path=d, model_dir=".")
        ckpt = Checkpoint(d)
        learn.add_cb(ckpt)                                # stays attached: `state()` is called again below
        with learn.no_bar():                              # a few batches: optimizer state, one real checkpoint
            learn.fit(1, 1e-3, cbs=ShortEpochCallback(pct=0.05))
        n_params = sum(p.numel() for p in learn.model.parameters())
        t_ours = t_fastai = t_verify = 0.0
        for _ in range(args.repeats):
            start = time.perf_counter()
            learn.save("fastai")                          # model + optimizer, fastai's format
            t_fastai += time.perf_counter() - start
            start = time.perf_counter()
            ckpt.save()                                   # what `after_epoch` does
            t_ours += time.perf_counter() - start
            start = time.perf_counter()
            verify_checkpoint(ckpt.file)                  # the part of it that reads the file back
            t_verify += time.perf_counter() - start
        size_ours = (Path(d) / "checkpoint.pth").stat().st_size
        size_fastai = (Path(d) / "fastai.pth").stat().st_size
    print(f"model: {n_params:,} parameters, vocabulary {len(dls.vocab)}; {args.repeats} saves each")
    print(f"learn.save(with_opt=True): {t_fastai / args.repeats * 1000:.1f} ms, {size_fastai / 2**20:.1f} MiB")
    print(f"Checkpoint (atomic, full state, verified, previous kept): {t_ours / args.repeats * 1000:.1f} ms, "
          f"{size_ours / 2**20:.1f} MiB; of which verifying: {t_verify / args.repeats * 1000:.1f} ms")
    print(f"ratio Checkpoint / learn.save: time {t_ours / t_fastai:.2f}x, size {size_ours / size_fastai:.2f}x")


if __name__ == "__main__":
    main()
