"""Training tokens/s of ContextAWD_LSTM against fastai's AWD_LSTM of the same size, same data, same run.

Usage: python bench/train.py [--rows N] [--rounds 15] [--batches 4] [--config cpu|fastai] [--bs 64] [--seq-len 72]
The corpus is the real Spotify track names with their energy (what nbs/01 trains on). Both
models train inside fastai's LMLearner with the same ContextLanguageModelLoader batches, the
same callbacks (ModelResetter, RNNRegularizer) and the same optimizer; fastai's model simply
ignores the context. The two models take turns, `--batches` training batches at a time, so
that noise from a shared machine hits both alike; the ratio is the median of the per-round ratios.
"""
import argparse
import statistics
import time

import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.losses import CrossEntropyLossFlat
from fastai.text.learner import LMLearner
from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config, awd_lstm_lm_split
from fastai.text.models.core import SequentialRNN, get_language_model

from fastai_context import ContextTextDataLoaders, context_language_model_learner, context_lm_config, datasets


class PlainOnContextBatches(SequentialRNN):
    "fastai's AWD_LSTM language model, fed the `(x, ctx)` batches: it ignores `ctx`."

    def forward(self, inp, context):
        return super().forward(inp)


class TrainTimer(Callback):
    """Seconds (by `clock`) and tokens of `n_batches` training batches after the first `skip`
    (untimed warm-up); then stop fitting."""
    order = 100

    def __init__(self, n_batches: int, skip: int = 0, clock=time.perf_counter):
        self.n_batches, self.skip, self.clock = n_batches, skip, clock

    def before_train(self):
        self.tokens, self.batches, self.start = 0, -self.skip, self.clock()

    def after_batch(self):
        self.batches += 1
        if self.batches == 0:                         # the warm-up is over
            self.start = self.clock()
        elif self.batches > 0:
            self.tokens += self.xb[0].numel()
        if self.batches == self.n_batches:
            self.seconds = self.clock() - self.start
            raise CancelFitException()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=None, help="tracks to use (default: all)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--batches", type=int, default=4, help="training batches per model and round")
    p.add_argument("--config", choices=["cpu", "fastai"], default="cpu")
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=72)
    args = p.parse_args()
    torch.set_num_threads(1)
    df = datasets.spotify_tracks(dedupe=True).dropna(subset=["track_name"])
    if args.rows:
        df = df.sample(args.rows, random_state=0)
    dls = ContextTextDataLoaders.from_df(df, "track_name", "energy", bs=args.bs, seq_len=args.seq_len, seed=0)
    config = context_lm_config if args.config == "cpu" else awd_lstm_lm_config
    ours = context_language_model_learner(dls, config=config)
    plain_cfg = {k: v for k, v in config.items() if not k.startswith("context_")}   # fastai's AWD_LSTM keys only
    plain = LMLearner(dls, PlainOnContextBatches(*get_language_model(AWD_LSTM, len(dls.vocab), config=plain_cfg)),
                      loss_func=CrossEntropyLossFlat(), splitter=awd_lstm_lm_split)
    n_params = lambda learn: sum(p.numel() for p in learn.model.parameters())
    print(f"corpus: {len(df)} track names, {dls.train.n_batches} training batches of {args.bs}x{args.seq_len} tokens, "
          f"vocab {len(dls.vocab)}")
    print(f"models: ContextAWD_LSTM {n_params(ours) / 1e6:.2f}M parameters, AWD_LSTM {n_params(plain) / 1e6:.2f}M "
          f"(config {args.config}: emb {plain_cfg['emb_sz']}, hidden {plain_cfg['n_hid']}, {plain_cfg['n_layers']} layers)")
    for learn in (plain, ours):                       # warm-up: optimizer creation, first allocations
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 1e-3, cbs=TrainTimer(1))
    rates = {"AWD_LSTM": [], "ContextAWD_LSTM": []}
    for r in range(args.rounds):
        for name, learn in (("AWD_LSTM", plain), ("ContextAWD_LSTM", ours)):
            timer = TrainTimer(args.batches)
            with learn.no_bar(), learn.no_logging():
                learn.fit(1, 1e-3, cbs=timer)
            rates[name].append(timer.tokens / timer.seconds)
        print(f"round {r + 1}: AWD_LSTM {rates['AWD_LSTM'][-1]:8.0f} tokens/s | "
              f"ContextAWD_LSTM {rates['ContextAWD_LSTM'][-1]:8.0f} tokens/s | "
              f"ratio {rates['ContextAWD_LSTM'][-1] / rates['AWD_LSTM'][-1]:.3f}x")
    ratio = statistics.median(c / p for c, p in zip(rates["ContextAWD_LSTM"], rates["AWD_LSTM"]))
    print(f"median: AWD_LSTM {statistics.median(rates['AWD_LSTM']):.0f} tokens/s, ContextAWD_LSTM "
          f"{statistics.median(rates['ContextAWD_LSTM']):.0f} tokens/s, ratio {ratio:.3f}x (goal >= 0.95x)")


if __name__ == "__main__":
    main()
