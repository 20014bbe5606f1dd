"""A check for when a CUDA device is lent: the context LM and the sentence VAE train on the GPU in
float32 and in mixed precision (`to_fp16()`), their losses are finite and close, generation and
the importance-weighted NLL run on the device, and training tokens/s are printed.

    python bench/gpu_check.py                  # a few hundred batches each; about two minutes on a GPU
    python bench/gpu_check.py --batches 50     # quicker

Without CUDA it says so and exits 0 (nothing to check). Exit status 1 if a check fails.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.torch_core import set_seed

from fastai_context import ContextTextDataLoaders, context_language_model_learner, datasets
from fastai_context.vae import SentenceDataLoaders, vae_learner


class StopAfter(Callback):
    "Stop training after `n` batches; count the real tokens trained on and the training losses."
    def __init__(self, n: int, count_tokens):
        self.n, self.count_tokens = n, count_tokens

    def before_fit(self):
        self.tokens, self.losses, self.start = 0, [], time.perf_counter()

    def after_batch(self):
        if not self.training:
            return
        self.tokens += self.count_tokens(self.xb[0])
        self.losses.append(float(self.loss))
        if len(self.losses) >= self.n:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.seconds = time.perf_counter() - self.start
            raise CancelFitException


def train(make_learner, n: int, fp16: bool, count_tokens, lr: float) -> tuple:
    "Train a fresh learner `n` batches (seeded); return it, its mean loss over the last tenth, tokens/s."
    set_seed(0)
    learn = make_learner()
    if fp16:
        learn.to_fp16()
    stop = StopAfter(n, count_tokens)
    with learn.no_bar(), learn.no_logging():
        learn.fit(100, lr, cbs=stop)
    tail = stop.losses[-max(1, n // 10):]
    return learn, sum(tail) / len(tail), stop.tokens / stop.seconds, stop.losses


def check(name: str, ok: bool, detail: str, failures: list) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)
    if not ok:
        failures.append(name)


def fp32_and_fp16(name, make_learner, count_tokens, args, failures):
    "Train a fresh learner in fp32 then with `to_fp16()`: finite losses, close to each other. Returns the fp16 learner."
    res = {}
    for fp16 in (False, True):
        learn, loss, tok_s, losses = train(make_learner, args.batches, fp16, count_tokens, 3e-3)
        res[fp16] = loss
        check(f"{name} {'fp16' if fp16 else 'fp32'} losses finite", all(math.isfinite(v) for v in losses),
              f"last-tenth mean loss {loss:.3f}, {tok_s:,.0f} tokens/s", failures)
    check(f"{name} fp16 close to fp32", abs(res[True] - res[False]) <= args.rel_tol * res[False],
          f"{res[True]:.3f} vs {res[False]:.3f}", failures)
    return learn


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=300, help="training batches per model and precision")
    p.add_argument("--rel-tol", type=float, default=0.05, help="largest relative difference of fp16 vs fp32 loss")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check (run this on a machine with a GPU)")
        return 0
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}", flush=True)
    failures = []
    tracks = datasets.spotify_tracks(dedupe=True).dropna(subset=["track_name", "energy"])

    # --- context language model on Spotify track names with energy
    lm_dls = ContextTextDataLoaders.from_df(tracks, "track_name", "energy", bs=64, seq_len=72, seed=0, device=dev)
    pad = lm_dls.vocab.index("xxpad") if "xxpad" in lm_dls.vocab else -1
    lm_tokens = lambda x: int((x != pad).sum())
    print("context LM (AWD-LSTM with energy):", flush=True)
    learn = fp32_and_fp16("LM", lambda: context_language_model_learner(lm_dls), lm_tokens, args, failures)
    text = learn.generate({"energy": 0.9}, n_words=20, n_samples=4, seed=0)
    check("LM generate on the device", len(text) == 4 and all(isinstance(t, str) and t for t in text),
          repr(text[0][:60]), failures)

    # --- sentence VAE on the same track names
    vae_dls = SentenceDataLoaders.from_texts(tracks["track_name"].tolist(), bs=64, seed=0, max_len=30, device=dev)
    vpad = vae_dls.vocab.index("xxpad")
    vae_tokens = lambda x: int((x != vpad).sum()) + len(x)
    print("sentence VAE (LSTM 256, z 32):", flush=True)
    learn = fp32_and_fp16("VAE", lambda: vae_learner(vae_dls, z_dim=32, kl_schedule="cyclical", kl_warmup=100,
                                                     free_bits=0.1), vae_tokens, args, failures)
    check("VAE parameters on the device", next(learn.model.parameters()).is_cuda, "cuda", failures)
    iw = learn.iw_nll(vae_dls.valid.new(vae_dls.valid.sentences[:256]), n_samples=50)
    check("VAE iw_nll on the device", math.isfinite(iw["nll"]) and iw["nll"] <= iw["elbo"] + 1e-3,
          f"IW-NLL {iw['nll']:.2f} <= -ELBO {iw['elbo']:.2f} nats/sentence", failures)
    samples = learn.sample(4, seed=0) + learn.sample(4, strategy="sample", top_p=0.9, seed=0)
    check("VAE decoding on the device", len(samples) == 8, repr(samples[0][:60]), failures)
    print("all checks passed" if not failures else f"FAILED: {', '.join(failures)}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
