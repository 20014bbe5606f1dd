"""The training loss: fastai's `CrossEntropyLossFlat` against `fastai_context.losses`' subclass.

Usage: python bench/loss.py [--rounds 4] [--batches 20]

1. The loss alone, forward + backward, at a language-model batch (32 x 72 tokens, 12k words) and at
   timbmg/Sentence-VAE's (1,100 tokens, 10k words): torch's `F.cross_entropy` against
   `summed_cross_entropy`, in turns.
2. Training batches of `nbs/01`'s model (emb 100, hidden 256, 2 layers, `context_out`, context
   dropout 0.2) on all the Billboard lyrics, `bs=32, seq_len=72`: the same learner, its loss
   swapped between fastai's and ours every `--batches` batches; CPU time per batch, median over
   `--rounds` rounds (the first 3 batches of each turn are not timed).
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from fastai.losses import CrossEntropyLossFlat as FastaiCrossEntropyLossFlat
from fastai.torch_core import set_seed

from fastai_context import ContextTextDataLoaders, context_language_model_learner, context_lm_config, datasets
from fastai_context.losses import CrossEntropyLossFlat, summed_cross_entropy

from train import TrainTimer


def loss_ms(f, n_tokens: int, vocab: int, reps: int = 10) -> float:
    "CPU milliseconds of forward + backward of `f(logits, target)` summed, a fresh gradient each time."
    x = torch.randn(n_tokens, vocab, requires_grad=True)
    t = torch.randint(0, vocab, (n_tokens,))
    out = []
    for _ in range(reps + 1):
        x.grad = None
        start = time.process_time()
        f(x, t).backward()
        out.append(time.process_time() - start)
    return 1000 * statistics.median(out[1:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}")
    torch_ce = lambda x, t: F.cross_entropy(x, t, reduction="sum")    # noqa: E731
    for name, n, v in (("language model", 32 * 72, 12_000), ("timbmg VAE", 1_100, 10_008)):
        ms = {"torch": [], "ours": []}
        for _ in range(args.rounds):
            ms["torch"].append(loss_ms(torch_ce, n, v))
            ms["ours"].append(loss_ms(summed_cross_entropy, n, v))
        t, o = statistics.median(ms["torch"]), statistics.median(ms["ours"])
        print(f"loss alone, {name} ({n} tokens x {v} words): torch {t:.1f} ms, ours {o:.1f} ms: {t / o:.2f}x")

    set_seed(42)
    songs = datasets.billboard_lyrics()
    dls = ContextTextDataLoaders.from_df(songs, "lyrics", ["energy", "valence"], bs=32, seq_len=72, seed=42)
    config = dict(context_lm_config, emb_sz=100, n_hid=256, n_layers=2, context_out=True)
    learn = context_language_model_learner(dls, config=config, context_dropout=0.2)
    sec = {"fastai": [], "ours": []}
    for r in range(args.rounds):
        for name, loss in (("fastai", FastaiCrossEntropyLossFlat()), ("ours", CrossEntropyLossFlat())):
            learn.loss_func = loss
            timer = TrainTimer(args.batches, skip=3, clock=time.process_time)
            with learn.no_bar(), learn.no_logging():
                learn.fit(1, 1e-3, cbs=timer)
            sec[name].append(timer.seconds / args.batches)
        print(f"round {r}: fastai's loss {1000 * sec['fastai'][-1]:.0f} ms a batch, ours {1000 * sec['ours'][-1]:.0f} ms",
              flush=True)
    f, o = statistics.median(sec["fastai"]), statistics.median(sec["ours"])
    print(f"nbs/01's model on the lyrics (vocab {len(dls.vocab)}, 32x72 tokens): a training batch takes "
          f"{1000 * f:.0f} ms with fastai's CrossEntropyLossFlat, {1000 * o:.0f} ms with ours: {f / o:.2f}x")


if __name__ == "__main__":
    main()
