"""Sentence VAE vs. an LSTM/GRU language model with the same decoder, on Mikolov's Penn Treebank.

Trains `vae_learner` and its baseline (`z_dim=0`: the same decoder, no latent code) for the
same number of epochs, then reports on the test split: negative ELBO, importance-weighted
NLL, perplexity (tokens include xxeos), KL, mutual information, active units, and training
tokens/s. Defaults follow timbmg/Sentence-VAE (GRU 256, embedding 300, batch 32), whose
reference speed on the project's 2-core CPU is about 1,400 tokens/s.

    python bench/ptb_vae.py --epochs 1            # budget run on CPU
    python bench/ptb_vae.py --models vae --json vae.json & python bench/ptb_vae.py --models lm --json lm.json
    python bench/ptb_vae.py --report vae.json lm.json
    python bench/ptb_vae.py --epochs 30 --z 32    # full-length run (GPU)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter

import torch
from fastai.text.core import BaseTokenizer
from fastai.text.data import make_vocab
from fastai.torch_core import default_device, set_seed

from fastai_context import datasets
from fastai_context.text import UNK
from fastai_context.vae import SentenceDataLoaders, active_units, mutual_information, vae_learner
from fastai_context.vae.model import append_eos, gaussian_kl

REFERENCE_TOKENS_PER_S = 1400     # timbmg/Sentence-VAE defaults on the project's 2-core CPU (issue 6)


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


def train(dls, args, z_dim: int) -> tuple:
    "Train one model; return the learner and its training tokens/s."
    set_seed(args.seed)
    learn = vae_learner(dls, z_dim=z_dim, emb_sz=args.emb, hidden_sz=args.hidden, cell=args.cell,
                        kl_schedule=args.kl_schedule, kl_warmup=args.kl_warmup, word_dropout=args.word_dropout,
                        free_bits=args.free_bits, dropout=args.dropout)
    n_tokens = sum(len(s) + 1 for s in dls.train.sentences) * args.epochs
    start = time.perf_counter()
    learn.fit_one_cycle(args.epochs, args.lr) if args.one_cycle else learn.fit(args.epochs, args.lr)
    return learn, n_tokens / (time.perf_counter() - start)


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--emb", type=int, default=300)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--z", type=int, default=32)
    p.add_argument("--cell", default="gru", choices=["gru", "lstm"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--one-cycle", action="store_true", help="fit_one_cycle instead of a constant learning rate")
    p.add_argument("--kl-schedule", default="linear")
    p.add_argument("--kl-warmup", type=float, default=0.5, help="batches, or a fraction of all batches if < 1")
    p.add_argument("--word-dropout", type=float, default=0.0)
    p.add_argument("--free-bits", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--iw-samples", type=int, default=500)
    p.add_argument("--train-sentences", type=int, default=None, help="train on the first N training sentences only")
    p.add_argument("--test-sentences", type=int, default=None, help="evaluate on the first N test sentences only")
    p.add_argument("--peer-batches", type=int, default=100, help="batches timed for the speed comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default="vae,lm", help="which to train: vae, lm (z_dim=0), both, or '' (speed comparison only)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--report", nargs="+", default=None, help="print the table from the --json files of earlier runs")
    args = p.parse_args(argv)
    if args.kl_warmup >= 1:
        args.kl_warmup = int(args.kl_warmup)

    if args.report:
        results = {}
        for f in args.report:
            with open(f) as fh:
                results.update(json.load(fh)["results"])
        return report(results)
    train_sents = ptb_sentences("train")
    vocab = make_vocab(Counter(w for s in train_sents for w in s.split()), min_freq=1)      # PTB's 10k words
    dls = SentenceDataLoaders.from_texts(train_sents[:args.train_sentences], valid_texts=ptb_sentences("valid"),
                                         bs=args.bs, tok=BaseTokenizer(), rules=[], vocab=vocab)
    test = ptb_sentences("test")[:args.test_sentences]
    test_dl = dls.sentence_dl(test, bs=256, allow_unknown=True)      # PTB's test split has all-<unk> sentences
    print(f"PTB: vocab {len(dls.vocab)}, train {len(dls.train.sentences)} sentences in {len(dls.train)} batches, "
          f"test {len(test)} sentences; device {default_device()}, torch threads {torch.get_num_threads()}", flush=True)
    if args.peer_batches:
        peer, mine = peer_tokens_per_s(dls, args, args.peer_batches)
        print(f"speed, same run, {args.peer_batches} training batches each: padded/unbucketed (timbmg-style) "
              f"{peer:.0f} tokens/s, this package {mine:.0f} tokens/s: {mine / peer:.2f}x "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)
    results = {}
    for name in filter(None, args.models.split(",")):
        learn, tok_s = train(dls, args, args.z if name == "vae" else 0)
        results[name] = dict(evaluate(learn, test_dl, args.iw_samples), tokens_per_s=tok_s, epochs=args.epochs,
                             train_sentences=len(dls.train.sentences),
                             test_sentences=len(test), iw_samples=args.iw_samples if name == "vae" else 1)
        print(name, json.dumps(results[name]), flush=True)
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(args=vars(args), results=results), f, indent=1)
        os.replace(tmp, args.json)
    if results:
        report(results)


def report(results: dict) -> None:
    "The comparison table, and the goals of issue 6 when both models are there."
    print(f"\n{'':4} {'IW-NLL':>8} {'IW-PPL':>8} {'-ELBO':>8} {'ELBO-PPL':>8} {'KL':>6} {'MI':>6} {'AU':>4} {'tok/s':>7}")
    for name, r in results.items():
        print(f"{name:4} {r['iw_nll']:8.2f} {r['iw_ppl']:8.2f} {r['elbo']:8.2f} {r['elbo_ppl']:8.2f} {r['kl']:6.2f} "
              f"{r['mi']:6.2f} {r['active_units']:4d} {r['tokens_per_s']:7.0f}")
    if "vae" in results and "lm" in results:
        vae, lm = results["vae"], results["lm"]
        print(f"VAE IW-NLL - LM NLL = {vae['iw_nll'] - lm['iw_nll']:+.2f} nats (goal <= +1); KL {vae['kl']:.2f} "
              f"(goal >= 3); active units {vae['active_units']} (goal >= 5)")
    for name, r in results.items():
        print(f"training speed {name}: {r['tokens_per_s'] / REFERENCE_TOKENS_PER_S:.2f}x the reference "
              f"{REFERENCE_TOKENS_PER_S} tokens/s")
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    sys.exit(main())
