"""Sentence VAE vs. an LSTM/GRU language model with the same decoder, on Mikolov's Penn Treebank.

Trains `vae_learner` and its baseline (`z_dim=0`: the same decoder, no latent code) for the
same number of epochs, then reports on the test split: negative ELBO, importance-weighted
NLL, perplexity (tokens include xxeos), KL, mutual information, active units, and training
tokens/s. Defaults follow timbmg/Sentence-VAE (GRU 256, embedding 300, batch 32), whose
reference speed on the project's 2-core CPU is about 1,400 tokens/s.

    python bench/ptb_vae.py --epochs 1            # budget run on CPU
    python bench/ptb_vae.py --models vae --json vae.json & python bench/ptb_vae.py --models lm --json lm.json
    python bench/ptb_vae.py --report vae.json lm.json

Speed against the real timbmg/Sentence-VAE (its own model.py and training step, from a checkout
outside this repository), alternating rounds in this process; without `--peer`, an in-process
emulation of its step (`--peer-batches`), which flatters us by about 20%:

    python bench/ptb_vae.py --models "" --peer /work/peers/Sentence-VAE --cpu-time [--ours-opt fastai] [--peer-bf16 [--peer-autocast]]

Ours steps the peer's optimizer (torch's Adam) unless `--ours-opt fastai` (vae_learner's default).

Full-length run (`--full`: the recipe below, resumable; one folder per model under `--run-dir`,
with `args.json`, `checkpoint.pth` after every tenth of a pass (`--chunks`), `history.csv` per
checkpoint, `batches.csv` per training batch, `results.json` at the end):

    nice -n 15 python bench/ptb_vae.py --full --models vae --run-dir /work/ptb-runs &
    nice -n 15 python bench/ptb_vae.py --full --models lm --run-dir /work/ptb-runs &
    python bench/ptb_vae.py --full --models vae --run-dir /work/ptb-runs --resume     # after a stop
    python bench/ptb_vae.py --evaluate --models vae,lm --run-dir /work/ptb-runs --iw-samples 500
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import CSVLogger
from fastai.optimizer import OptimWrapper
from fastai.text.core import BaseTokenizer
from fastai.text.data import make_vocab
from fastai.torch_core import default_device, set_seed
from fastcore.basics import noop

from fastai_context import datasets
from fastai_context.workflow.checkpoint import Checkpoint, load_checkpoint
from fastai_context.text import UNK
from fastai_context.vae import SentenceDataLoaders, SentenceLoader, active_units, mutual_information, vae_learner
from fastai_context.vae.callbacks import CPUMixedPrecision, VAEBatchLogger
from fastai_context.vae.model import append_eos, gaussian_kl

REFERENCE_TOKENS_PER_S = 1400     # timbmg/Sentence-VAE defaults on the project's 2-core CPU (issue 6)

# The full-length recipe. The decoder is what sets the NLL (a VAE's IW-NLL sits within about a
# nat of its decoder's LM), so it is a medium-size regularized LSTM LM: 2 layers of 650 (Zaremba
# et al. 2014's medium model) with tied input/output embeddings (Press & Wolf 2017), dropout 0.5
# on the decoder's input embeddings (as timbmg/Sentence-VAE) and on its outputs and between
# layers, Adam with a one-cycle schedule for 30 epochs. The latent code is kept in use by
# cyclical KL annealing (Fu et al. 2019: 4 cycles, beta rising over the first half of each) with
# free bits (Kingma et al. 2016; Li et al. 2019 show the two together avoid posterior collapse):
# a latent dimension's batch-average KL below 0.15 nats is not penalized, so 32 dimensions keep
# about 5 nats of KL. The LM baseline is the same decoder (z_dim=0) trained the same way.
FULL = dict(cell="lstm", emb=650, hidden=650, layers=2, z=32, tie=True, emb_dropout=0.5, dropout=0.5,
            word_dropout=0.0, kl_schedule="cyclical", kl_warmup=0.25, kl_ratio=0.5, free_bits=0.15,
            epochs=30, lr=2e-3, wd=0.01, one_cycle=True, bs=32, peer_batches=0, iw_samples=100,
            chunks=10, valid_sentences=500)


def ptb_sentences(split: str) -> list[str]:
    "PTB sentences with its `<unk>` mapped to fastai's unknown token."
    return [s.replace("<unk>", UNK) for s in datasets.ptb(split)]


def peer_tokens_per_s(dls, args, n_batches: int) -> tuple[float, float]:
    """Training tokens/s of the same VAE computed the way timbmg/Sentence-VAE does it (random,
    unbucketed batches; output layer and loss over every padded position), and of ours on the
    same number of batches, measured back to back in this process."""
    from torch.nn import functional as F
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence
    set_seed(args.seed)
    learn = vae_learner(dls, z_dim=args.z, emb_sz=args.emb, hidden_sz=args.hidden, cell=args.cell, free_bits=args.free_bits)
    m, pad, eos = learn.model, dls.vocab.index("xxpad"), dls.vocab.index("xxeos")
    opt = torch.optim.Adam(m.parameters(), lr=args.lr)
    m.train()

    def padded_step(x):
        mu, logvar = m.encode(x)
        cond = m.reparameterize(mu, logvar)
        lengths = (x != pad).sum(1) + 1
        tokens = torch.cat([x.new_full((len(x), 1), m.bos_idx), x], 1)
        packed = pack_padded_sequence(m.decoder_inputs(tokens, cond), lengths, batch_first=True, enforce_sorted=False)
        out, _ = m.decoder(packed, m.initial_state(cond))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        logits = m.out(out)                                            # every padded position
        y = append_eos(x, pad, eos)
        rec = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), ignore_index=pad, reduction="sum") / len(x)
        return rec + gaussian_kl(mu, logvar).sum(1).mean()

    def timed(batches, step):
        n, start = 0, time.perf_counter()
        for x, y in batches:
            loss = step(x, y)
            loss.backward(); opt.step(); opt.zero_grad()
            n += int((y != pad).sum())
        return n / (time.perf_counter() - start)

    sents = dls.train.sentences
    order = torch.randperm(len(sents))[:n_batches * args.bs].view(n_batches, args.bs)
    peer_batches = []
    for idx in order:
        x = pad_sequence([sents[i] for i in idx], batch_first=True, padding_value=pad)
        peer_batches.append((x, append_eos(x, pad, eos)))
    it = iter(dls.train)
    ours = [next(it) for _ in range(n_batches)]
    peer = timed(peer_batches, lambda x, y: padded_step(x))
    mine = timed(ours, lambda x, y: learn.loss_func(m(x), y))
    return peer, mine


PEER_SIZES = dict(cell="gru", emb=300, hidden=256, z=16, bs=32)    # timbmg/Sentence-VAE's defaults
PEER_MAX_LEN = 60                                                   # its max_sequence_length: inputs are padded to it


def peer_vs_ours(dls, peer_dir: str, rounds: int = 5, n_batches: int = 40, seed: int = 0,
                 bf16: bool = False, cpu_time: bool = False, peer_autocast: bool = False,
                 ours_opt: str = "torch") -> list[tuple[float, float]]:
    """Training tokens/s of the real timbmg/Sentence-VAE (its own `model.py` from a checkout in
    `peer_dir`, its training step: NLL summed over the target, KL, logistic KL weight with k=0.0025,
    x0=2500, loss / batch size, `torch.optim.Adam(lr=1e-3)`) and of this package's `vae_learner`
    at the same sizes (GRU 256, embedding 300, latent 16, batch 32, embedding dropout 0.5, the
    same logistic schedule, no gradient clipping, as the peer), trained with fastai's `fit`. Ours
    steps the peer's optimizer too (`ours_opt='torch'`: `torch.optim.Adam`, lr 1e-3, no weight
    decay, through fastai's `OptimWrapper`, with torch's fused kernel: the same arithmetic in one pass
    over the parameters) or, with `ours_opt='fastai'`, this package's default, fastai's `Adam` (weight
    decay 0.01, squared-gradient momentum 0.99), which does a little more work than the peer's.

    Both train on the same random PTB sentences in each round, in this one process, alternating
    peer and ours for `rounds` rounds of `n_batches` batches; tokens are real tokens (words +
    xxeos, its <eos>), never padding. The peer's batches are built beforehand in its format (xxbos +
    words padded to 60, random order), so its data loading, which it does in worker processes, is
    not timed; ours goes through our loader. `bf16`: ours trains with `CPUMixedPrecision` (the peer
    stays float32 unless `peer_autocast`: then its unchanged step runs its forward and loss under
    `torch.autocast("cpu", torch.bfloat16)`, as a user of it would add mixed precision, so that both
    sides use the same arithmetic). `cpu_time`: time by this process's CPU time instead of wall time (on a shared,
    overloaded machine wall time mostly measures the other processes). Returns [(peer, ours)]
    tokens/s per round."""
    import importlib.util
    from fastai.callback.core import CancelValidException
    clock = time.process_time if cpu_time else time.perf_counter
    peer_dir = Path(peer_dir)
    if not (peer_dir / "model.py").exists():
        raise SystemExit(f"--peer {peer_dir}: no model.py there; check out github.com/timbmg/Sentence-VAE into it")
    sys.path.insert(0, str(peer_dir))            # its model.py imports its utils.py
    spec = importlib.util.spec_from_file_location("timbmg_sentence_vae_model", peer_dir / "model.py")
    peer_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer_model)
    vocab = dls.vocab
    pad, bos, eos, unk = (vocab.index(t) for t in ("xxpad", "xxbos", "xxeos", "xxunk"))
    set_seed(seed)
    peer = peer_model.SentenceVAE(vocab_size=len(vocab), embedding_size=300, rnn_type="gru", hidden_size=256,
                                  word_dropout=0.0, embedding_dropout=0.5, latent_size=16, sos_idx=bos, eos_idx=eos,
                                  pad_idx=pad, unk_idx=unk, max_sequence_length=PEER_MAX_LEN)
    peer_opt = torch.optim.Adam(peer.parameters(), lr=1e-3)
    nll = torch.nn.NLLLoss(ignore_index=pad, reduction="sum")
    k, x0, step = 0.0025, 2500, 0

    def peer_batch(sents):
        "Its PTB format: input <sos> + words, target words + <eos>, both cut and padded to 60; lengths."
        inp = torch.full((len(sents), PEER_MAX_LEN), pad, dtype=torch.long)
        tgt = inp.clone()
        length = torch.tensor([min(len(s) + 1, PEER_MAX_LEN) for s in sents])
        for i, s in enumerate(sents):
            w = s[:PEER_MAX_LEN - 1]
            inp[i, 0], inp[i, 1:len(w) + 1] = bos, w
            tgt[i, :len(w)], tgt[i, len(w)] = w, eos
        return inp, tgt, length

    def peer_round(batches) -> int:
        nonlocal step
        peer.train()
        n = 0
        for inp, tgt, length in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=peer_autocast):
                logp, mean, logv, _ = peer(inp, length)
                target = tgt[:, :int(length.max())].contiguous().view(-1)
                nll_loss = nll(logp.view(-1, logp.size(2)), target)
                kl_loss = -0.5 * torch.sum(1 + logv - mean.pow(2) - logv.exp())
                kl_weight = float(1 / (1 + math.exp(-k * (step - x0))))
                loss = (nll_loss + kl_weight * kl_loss) / len(inp)
            peer_opt.zero_grad()
            loss.backward()
            peer_opt.step()
            step += 1
            n += int(length.sum())
        return n

    class NoValidation(Callback):
        def before_validate(self): raise CancelValidException

    set_seed(seed)
    same = dict(z_dim=16, emb_sz=300, hidden_sz=256, cell="gru", word_dropout=0.0, free_bits=0.0, clip=None,
                cbs=NoValidation())
    if ours_opt == "torch":
        same.update(opt_func=partial(OptimWrapper, opt=partial(torch.optim.Adam, fused=True)), wd=0.0)
    elif ours_opt != "fastai":
        raise SystemExit(f"--ours-opt {ours_opt!r}: choose 'torch' (the peer's Adam) or 'fastai' (fastai's Adam)")
    try:
        learn = vae_learner(dls, emb_dropout=0.5, kl_schedule="logistic", kl_k=k, kl_x0=x0, **same)
    except TypeError:      # the package before emb_dropout and kl_k/kl_x0 (to measure it): k = 10 / warmup
        learn = vae_learner(dls, kl_schedule="logistic", kl_warmup=round(10 / k), **same)
    if bf16:
        learn.add_cb(CPUMixedPrecision())
    sents = dls.train.sentences
    rng = np.random.default_rng(seed)
    out = []
    for r in range(rounds):
        idx = rng.choice(len(sents), n_batches * 32, replace=False)
        chosen = [sents[i] for i in idx]
        batches = [peer_batch(chosen[i:i + 32]) for i in range(0, len(chosen), 32)]
        start = clock()
        n_peer = peer_round(batches)
        t_peer = clock() - start
        learn.dls.train = dls.train.new(chosen, shuffle=True)
        start = clock()
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 1e-3)
        t_ours = clock() - start
        n_ours = sum(len(s) + 1 for s in chosen)
        out.append((n_peer / t_peer, n_ours / t_ours))
        print(f"round {r}: peer {out[-1][0]:.0f} tokens/s, ours {out[-1][1]:.0f} tokens/s: {out[-1][1] / out[-1][0]:.2f}x "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    return out


class ChunkedSentenceLoader(SentenceLoader):
    """A training loader whose fastai "epoch" is one of `chunks` parts of a pass over the data, so
    that `Checkpoint` saves every 1/`chunks` of a pass: on a CPU shared with other jobs a whole PTB
    pass can outlast a working session, and a checkpoint per pass would then never be written.

    Pass `p` visits every sentence once in length-bucketed batches (as `SentenceLoader`) in an
    order drawn from `seed + p`, so a resumed run sees the batches of an uninterrupted one; fastai
    epoch `e` (set by `ChunkEpoch`) is part `e % chunks` of pass `e // chunks`."""

    def __init__(self, *args, chunks: int = 1, seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunks, self.seed, self.epoch = chunks, seed, 0

    def _batches(self) -> list:
        p, c = divmod(self.epoch, self.chunks)
        rng = np.random.default_rng(self.seed + p)
        idxs = rng.permutation(len(self.sentences))
        step = self.bs * self.bucket
        batches = []
        for start in range(0, len(idxs), step):
            part = idxs[start:start + step]
            part = part[np.argsort(-self.lengths[part], kind="stable")]
            batches += [part[i:i + self.bs] for i in range(0, len(part), self.bs)]
        batches = [batches[i] for i in rng.permutation(len(batches))]
        return [batches[i] for i in np.array_split(np.arange(len(batches)), self.chunks)[c]]

    def __len__(self):
        return len(self._batches())

    def create_batches(self, samps):
        "One bucketed batch at a time (fastai would re-cut a flat index list into `bs`-sized pieces)."
        for b in self._batches():
            yield self.create_batch([int(i) for i in b])


class ChunkEpoch(Callback):
    "Tell a `ChunkedSentenceLoader` which fastai epoch it serves."
    order = -20

    def before_train(self):
        self.dls.train.epoch = self.epoch


def make_learner(dls, args, z_dim: int, **kwargs):
    "The learner of one model with the settings of `args` (`z_dim=0`: the LM baseline)."
    return vae_learner(dls, z_dim=z_dim, emb_sz=args.emb, hidden_sz=args.hidden, n_layers=args.layers, cell=args.cell,
                       kl_schedule=args.kl_schedule, kl_warmup=args.kl_warmup, kl_ratio=args.kl_ratio,
                       word_dropout=args.word_dropout, free_bits=args.free_bits, dropout=args.dropout,
                       emb_dropout=args.emb_dropout, tie_weights=args.tie, wd=args.wd, **kwargs)


class EpochPrinter(Callback):
    "One flushed line per epoch (and progress every 100 batches) for a background run's log file."
    order = 63

    def before_fit(self):
        self.start = time.perf_counter()

    def after_batch(self):
        if self.training and self.iter % 100 == 0:
            print(f"  epoch {self.epoch} batch {self.iter}/{self.n_iter} loss {float(self.smooth_loss):.2f} "
                  f"{time.perf_counter() - self.start:.0f}s", flush=True)

    def after_epoch(self):
        names, vals = self.recorder.metric_names[1:-1], self.recorder.log[1:-1]
        row = " ".join(f"{n} {v:.4f}" if isinstance(v, float) else f"{n} {v}" for n, v in zip(names, vals))
        chunks = getattr(self.dls.train, "chunks", 1)
        where = f" (pass {self.epoch // chunks}, part {self.epoch % chunks + 1}/{chunks})" if chunks > 1 else ""
        print(f"epoch {self.epoch}{where}: {row} ({time.perf_counter() - self.start:.0f}s, {time.strftime('%H:%M:%S')})",
              flush=True)


def train(dls, args, z_dim: int, run_dir: Path | None = None, resume: bool = False) -> tuple:
    """Train one model; return the learner and its training tokens/s. With `run_dir`: a checkpoint
    after every epoch (resumed from with `resume`), per-epoch `history.csv`, per-batch `batches.csv`."""
    set_seed(args.seed)
    cbs, n_epoch = [], args.epochs * getattr(args, "chunks", 1)
    if isinstance(dls.train, ChunkedSentenceLoader):
        cbs.append(ChunkEpoch())
    if run_dir is not None:
        cbs += [Checkpoint(run_dir, resume=resume), CSVLogger(run_dir / "history.csv", append=True),
                VAEBatchLogger(run_dir / "batches.csv"), EpochPrinter()]
    learn = make_learner(dls, args, z_dim, path=run_dir or ".", cbs=cbs)
    n_tokens = sum(len(s) + 1 for s in dls.train.sentences) * args.epochs
    start = time.perf_counter()
    ctx = learn.no_bar() if run_dir is not None else contextlib.nullcontext()
    with ctx:
        if run_dir is not None:
            learn.logger = noop           # EpochPrinter prints the epoch's row with its column names
        learn.fit_one_cycle(n_epoch, args.lr) if args.one_cycle else learn.fit(n_epoch, args.lr)
    done = n_epoch - (learn.checkpoint.start_epoch if run_dir is not None else 0)
    return learn, n_tokens * done / n_epoch / (time.perf_counter() - start)


def load_run(dls, args, z_dim: int, run_dir: Path):
    "A learner with the weights of `run_dir`'s last checkpoint (for `--evaluate`)."
    ckpt = load_checkpoint(run_dir / "checkpoint.pth")
    learn = make_learner(dls, args, z_dim, path=run_dir)
    learn.model.load_state_dict(ckpt["model"])
    return learn, ckpt["epoch"] / getattr(args, "chunks", 1)          # passes over the training data


@torch.no_grad()
def evaluate(learn, dl, n_samples: int) -> dict:
    "Test-split numbers: IW-NLL and ELBO (nats/sentence), their perplexities, KL, MI, active units."
    res = learn.iw_nll(dl, n_samples=n_samples)
    learn.model.eval()
    mus, logvars = [], []
    for b in dl:
        mu, logvar = learn.model.encode(*b[:-1])
        mus.append(mu), logvars.append(logvar)
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    kl = float(gaussian_kl(mu, logvar).sum(1).mean()) if mu.shape[1] else 0.0
    mi = sum(mutual_information(m, l) * len(m) for m, l in zip(mus, logvars)) / len(mu)
    return dict(iw_nll=res["nll"], iw_ppl=res["ppl"], elbo=res["elbo"],
                elbo_ppl=math.exp(res["elbo"] * res["n_sentences"] / res["n_tokens"]),
                kl=kl, mi=mi, active_units=active_units(mu))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="the full-length recipe (FULL in this file) as defaults")
    p.add_argument("--run-dir", default=None, help="train resumably in RUN_DIR/vae and RUN_DIR/lm (checkpoint per epoch)")
    p.add_argument("--resume", action="store_true", help="continue the runs in --run-dir with their saved args.json")
    p.add_argument("--evaluate", action="store_true", help="evaluate the last checkpoints in --run-dir on the test split")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--chunks", type=int, default=1,
                   help="with --run-dir: split every pass over the training data into this many fastai epochs, "
                        "each checkpointed (a pass is 'epochs' in this script's arguments and reports)")
    p.add_argument("--valid-sentences", type=int, default=None,
                   help="validate each fastai epoch on this many validation sentences (a fixed random sample)")
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--emb", type=int, default=300)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--z", type=int, default=32)
    p.add_argument("--cell", default="gru", choices=["gru", "lstm"])
    p.add_argument("--tie", action=argparse.BooleanOptionalAction, default=False, help="tie embedding and output weights")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=None, help="weight decay (default: fastai's)")
    p.add_argument("--one-cycle", action=argparse.BooleanOptionalAction, default=False,
                   help="fit_one_cycle instead of a constant learning rate")
    p.add_argument("--kl-schedule", default="linear")
    p.add_argument("--kl-warmup", type=float, default=0.5, help="batches, or a fraction of all batches if < 1")
    p.add_argument("--kl-ratio", type=float, default=0.5, help="rising part of each cycle ('cyclical')")
    p.add_argument("--word-dropout", type=float, default=0.0)
    p.add_argument("--emb-dropout", type=float, default=0.0, help="dropout on the decoder's input embeddings")
    p.add_argument("--free-bits", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--iw-samples", type=int, default=500)
    p.add_argument("--train-sentences", type=int, default=None, help="train on the first N training sentences only")
    p.add_argument("--test-sentences", type=int, default=None, help="evaluate on the first N test sentences only")
    p.add_argument("--peer-batches", type=int, default=100,
                   help="batches timed for the in-process emulation of the peer (used when --peer is not given)")
    p.add_argument("--peer", default=None, metavar="PATH",
                   help="a checkout of github.com/timbmg/Sentence-VAE: time its real model and training step against ours")
    p.add_argument("--peer-rounds", type=int, default=5, help="alternating rounds of the --peer comparison")
    p.add_argument("--peer-round-batches", type=int, default=40, help="batches of 32 per round and model")
    p.add_argument("--peer-bf16", action="store_true", help="ours with CPUMixedPrecision (bfloat16) in the --peer comparison")
    p.add_argument("--ours-opt", default="torch", choices=("torch", "fastai"),
                   help="our optimizer in the --peer comparison: the peer's (torch.optim.Adam, fused kernel) or "
                        "vae_learner's default (fastai's Adam, weight decay 0.01)")
    p.add_argument("--peer-autocast", action="store_true",
                   help="with --peer-bf16: the peer's step under bfloat16 autocast too (same arithmetic on both sides)")
    p.add_argument("--cpu-time", action="store_true", help="time the --peer comparison by process CPU time, not wall time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default="vae,lm", help="which to train: vae, lm (z_dim=0), both, or '' (speed comparison only)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--report", nargs="+", default=None, help="print the table from the --json files of earlier runs")
    return p


# What a run folder's args.json fixes; the rest (--iw-samples, --test-sentences, ...) may change on resume.
TRAINING_ARGS = ("epochs", "chunks", "valid_sentences", "bs", "emb", "hidden", "layers", "z", "cell", "tie", "lr", "wd", "one_cycle", "kl_schedule",
                 "kl_warmup", "kl_ratio", "word_dropout", "emb_dropout", "free_bits", "dropout", "train_sentences", "seed")


def parse(argv=None) -> argparse.Namespace:
    p = parser()
    if p.parse_known_args(argv)[0].full:
        p.set_defaults(**FULL)
    args = p.parse_args(argv)
    if args.kl_warmup >= 1:
        args.kl_warmup = int(args.kl_warmup)
    if (args.resume or args.evaluate) and not args.run_dir:
        raise SystemExit("--resume and --evaluate need --run-dir")
    return args


def saved_args(args, run_dir: Path) -> argparse.Namespace:
    "`args` with the training settings of `run_dir/args.json` (a resumed or evaluated run keeps its own)."
    f = run_dir / "args.json"
    if not f.exists():
        raise SystemExit(f"{f} does not exist: is {run_dir} a run folder of this script?")
    saved = json.loads(f.read_text())
    return argparse.Namespace(**{**vars(args), **{k: saved[k] for k in TRAINING_ARGS if k in saved}})


def main(argv=None):
    args = parse(argv)
    if args.report:
        results = {}
        for f in args.report:
            with open(f) as fh:
                results.update(json.load(fh)["results"])
        return report(results)
    root = Path(args.run_dir) if args.run_dir else None
    names = list(filter(None, args.models.split(",")))
    if root is not None and (args.resume or args.evaluate):     # the runs' own training settings
        run_args = {name: saved_args(args, root / name) for name in names}
        args = next(iter(run_args.values()), args)
    dls, test_dl, test = ptb_data(args)
    print(f"PTB: vocab {len(dls.vocab)}, train {len(dls.train.sentences)} sentences in {len(dls.train)} batches, "
          f"test {len(test)} sentences; device {default_device()}, torch threads {torch.get_num_threads()}", flush=True)
    if args.peer and not args.evaluate:
        if args.peer_autocast and not args.peer_bf16:
            raise SystemExit("--peer-autocast runs both sides in bfloat16: pass it with --peer-bf16")
        rounds = peer_vs_ours(dls, args.peer, args.peer_rounds, args.peer_round_batches, args.seed, args.peer_bf16,
                              args.cpu_time, args.peer_autocast, args.ours_opt)
        ratios = sorted(o / p for p, o in rounds)
        total = sum(1 / p for p, _ in rounds) / sum(1 / o for _, o in rounds)      # equal tokens per round
        arithmetic = (", both in bfloat16" if args.peer_autocast else ", ours in bfloat16") if args.peer_bf16 else ""
        print(f"speed vs the real timbmg/Sentence-VAE ({args.peer}), {args.peer_rounds} alternating rounds of "
              f"{args.peer_round_batches} batches, {'CPU' if args.cpu_time else 'wall'} time"
              f"{arithmetic}, ours with {args.ours_opt}'s Adam: ours {total:.2f}x its tokens/s overall, per round "
              f"{ratios[0]:.2f}-{ratios[-1]:.2f}x (median {ratios[len(ratios) // 2]:.2f}x); "
              f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
              flush=True)
    elif args.peer_batches and not args.evaluate:
        peer, mine = peer_tokens_per_s(dls, args, args.peer_batches)
        print(f"speed, same run, {args.peer_batches} training batches each: padded/unbucketed (timbmg-style) "
              f"{peer:.0f} tokens/s, this package {mine:.0f} tokens/s: {mine / peer:.2f}x "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)
    results = {}
    for name in names:
        z_dim = args.z if name == "vae" else 0
        run_dir = None if root is None else root / name
        run = args if root is None or not (args.resume or args.evaluate) else run_args[name]
        if run_dir is not None and not args.evaluate:
            run_dir.mkdir(parents=True, exist_ok=True)
            if not args.resume:
                if (run_dir / "checkpoint.pth").exists():
                    raise SystemExit(f"{run_dir} already holds a run: continue it with --resume, or choose another --run-dir")
                write_json(run_dir / "args.json", vars(args))
        if args.evaluate:
            learn, epochs = load_run(dls, run, z_dim, run_dir)
            tok_s = float("nan")
        else:
            learn, tok_s = train(dls, run, z_dim, run_dir, args.resume)
            epochs = run.epochs
        results[name] = dict(evaluate(learn, test_dl, args.iw_samples), tokens_per_s=tok_s, epochs=epochs,
                             train_sentences=len(dls.train.sentences),
                             test_sentences=len(test), iw_samples=args.iw_samples if name == "vae" else 1)
        print(name, json.dumps(results[name]), flush=True)
        if run_dir is not None:
            suffix = f"-{len(test)}x{args.iw_samples}" if args.evaluate else ""
            write_json(run_dir / f"results{suffix}.json", dict(args=vars(run), results={name: results[name]}))
    if args.json:
        write_json(Path(args.json), dict(args=vars(args), results=results))
    if results:
        report(results)


def ptb_data(args):
    "PTB's training/validation loaders (PTB's own 10k vocabulary) and the test loader."
    train_sents = ptb_sentences("train")
    vocab = make_vocab(Counter(w for s in train_sents for w in s.split()), min_freq=1)      # PTB's 10k words
    valid = ptb_sentences("valid")
    if getattr(args, "valid_sentences", None):
        valid = [valid[i] for i in sorted(np.random.default_rng(0).permutation(len(valid))[:args.valid_sentences])]
    dls = SentenceDataLoaders.from_texts(train_sents[:args.train_sentences], valid_texts=valid,
                                         bs=args.bs, tok=BaseTokenizer(), rules=[], vocab=vocab)
    if getattr(args, "chunks", 1) > 1:
        t = dls.train
        dls.train = ChunkedSentenceLoader(t.sentences, context=t.context, tokenizer=t.tokenizer,
                                          context_encoder=t.context_encoder, bucket=t.bucket, bs=t.bs, shuffle=True,
                                          device=t.device, chunks=args.chunks, seed=args.seed)
    test = ptb_sentences("test")[:args.test_sentences]
    test_dl = dls.sentence_dl(test, bs=256, allow_unknown=True)      # PTB's test split has all-<unk> sentences
    return dls, test_dl, test


def write_json(path: Path, obj) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def report(results: dict) -> None:
    "The comparison table, and the quality goals of issue 12 for the models that are there."
    print(f"\n{'':4} {'IW-NLL':>8} {'IW-PPL':>8} {'-ELBO':>8} {'ELBO-PPL':>8} {'KL':>6} {'MI':>6} {'AU':>4} {'tok/s':>7}")
    for name, r in results.items():
        print(f"{name:4} {r['iw_nll']:8.2f} {r['iw_ppl']:8.2f} {r['elbo']:8.2f} {r['elbo_ppl']:8.2f} {r['kl']:6.2f} "
              f"{r['mi']:6.2f} {r['active_units']:4d} {r['tokens_per_s']:7.0f}")
    if "vae" in results:
        vae = results["vae"]
        goals = [("IW-NLL", vae["iw_nll"], vae["iw_nll"] <= 100, "<= 100"), ("KL", vae["kl"], vae["kl"] >= 3, ">= 3"),
                 ("MI", vae["mi"], vae["mi"] >= 1, ">= 1"),
                 ("active units", vae["active_units"], vae["active_units"] >= 5, ">= 5")]
        if "lm" in results:
            gap = vae["iw_nll"] - results["lm"]["iw_nll"]
            goals.append(("IW-NLL - LM NLL", gap, gap <= 0, "<= 0"))
        shown = [f"{n} {v:.2f}" if isinstance(v, float) else f"{n} {v}" for n, v, _, _ in goals]
        print("VAE goals (issue 12): " + "; ".join(f"{s} ({'met' if ok else 'MISSED'}: {g})"
                                                    for s, (_, _, ok, g) in zip(shown, goals)))
    for name, r in results.items():
        if math.isnan(r["tokens_per_s"]):      # --evaluate: nothing was trained
            continue
        print(f"training speed {name}: {r['tokens_per_s'] / REFERENCE_TOKENS_PER_S:.2f}x the reference "
              f"{REFERENCE_TOKENS_PER_S} tokens/s")
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    sys.exit(main())
