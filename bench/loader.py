"""ContextLanguageModelLoader against fastai's LMDataLoader: speed, build time and memory, same data, same run.

Usage:
  python bench/loader.py [--sizes 0.2M,2M,20M,100M] [--corpus mixed|names|lyrics] [--repeats 3]
                         [--kinds lmdl,ours,ours-fast,ours-flat,ours-mmap] [--bs 64] [--seq-len 72]
  python bench/loader.py --from-df 1M [--n-workers 2] [--skip-epoch] [--profile] [--repeats 2]   (repeats: ABBA order, fastest build each)

Pre-numericalized mode (default): a synthetic corpus of the requested size is made by repeating, in
random order, real documents: the Spotify track names (about 5 tokens each) and the Billboard
lyrics (about 330 tokens each). Documents are tokenized once with a plain regex word splitter (the
loader never sees strings; only realistic lengths and ids matter) and handed to both loaders as
what a plain PyTorch workflow holds: a list of int64 id tensors, one per document. Each loader is
built and iterated in its own child process (so peak RSS is its own): construction time, time to
the first batch, batches/s over a whole epoch including the per-epoch document shuffle, and peak
RSS (VmHWM; reset once the input exists, so the input's own building does not count, but its
resident size does). Runs alternate between the loaders. `ours-flat` / `ours-mmap` hand the loader
a `TokenDocuments` (one int32 array, or a memory-mapped file) instead of the list of tensors;
`ours-fast` is `ours` with `fastai_order=False` (a numpy shuffle instead of Python's).

from_df mode: `ContextTextDataLoaders.from_df` against fastai's `TextDataLoaders.from_df(..., is_lm=True)`
on the same DataFrame (same mixed documents, energy as context), each in a child process: end-to-end
build time, then one epoch, and the time spent in fastai's tokenizer.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORD = re.compile(r"\w+|[^\w\s]")


def parse_size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "KM" else s) * mult)


def rss_gb(field: str) -> float:
    "VmRSS (now) or VmHWM (peak) of this process, in GB."
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1e6
    return float("nan")


def reset_peak():
    "Start VmHWM afresh at the current RSS (Linux: write 5 to clear_refs)."
    Path("/proc/self/clear_refs").write_text("5")


# ------------------------------------------------------------------ corpus
def pool_texts(corpus: str) -> list[tuple[str, float]]:
    "Real documents with their energy: Spotify track names and/or Billboard lyrics."
    import pandas as pd
    from fastai_context import datasets
    out = []
    if corpus in ("mixed", "names"):
        t = datasets.spotify_tracks(dedupe=True).dropna(subset=["track_name", "energy"])
        out += list(zip(t.track_name.astype(str), t.energy.astype(float)))
    if corpus in ("mixed", "lyrics"):
        ly = pd.read_csv(Path(os.environ.get("FASTAI_CONTEXT_DATA", ROOT.parent / "shared" / "data"))
                         / "lyrics" / "billboard_lyrics_spotify_1960_2016.csv.gz")
        ly = ly.dropna(subset=["lyrics", "energy"])
        out += list(zip(ly.lyrics.astype(str), ly.energy.astype(float)))
    return out


def build_pool(corpus: str, dest: Path) -> None:
    "Numericalize the pool once (regex words, a vocabulary of the pool) into `dest` (.npz)."
    texts = pool_texts(corpus)
    toks = [["xxbos"] + WORD.findall(t.lower()) for t, _ in texts]
    vocab = {w: i for i, w in enumerate(sorted({w for d in toks for w in d}))}
    lens = np.array([len(d) for d in toks], dtype=np.int64)
    flat = np.fromiter((vocab[w] for d in toks for w in d), dtype=np.int32, count=int(lens.sum()))
    np.savez(dest, flat=flat, lens=lens, energy=np.array([e for _, e in texts], dtype=np.float32),
             n_vocab=len(vocab))


def synthetic(pool: Path, n_tokens: int, seed: int = 0):
    "Pool documents repeated in random order until `n_tokens` (the last one cut): (flat int32, lens, energy)."
    z = np.load(pool)
    flat, lens, energy = z["flat"], z["lens"], z["energy"]
    rng = np.random.default_rng(seed)
    reps = int(np.ceil(n_tokens / lens.sum())) + 1
    pick = np.concatenate([rng.permutation(len(lens)) for _ in range(reps)])
    cum = np.cumsum(lens[pick])
    n_docs = int(np.searchsorted(cum, n_tokens)) + 1
    pick = pick[:n_docs]
    out_lens = lens[pick].copy()
    out_lens[-1] -= int(cum[n_docs - 1]) - n_tokens
    starts = np.cumsum(lens) - lens
    # Token t of the corpus is token (t - its document's corpus start) of its pool document.
    out = np.empty(n_tokens, dtype=np.int32)
    ends = np.cumsum(out_lens)
    step = 1 << 24
    for a in range(0, n_tokens, step):
        t = np.arange(a, min(a + step, n_tokens))
        d = np.searchsorted(ends, t, side="right")
        out[a:a + len(t)] = flat[starts[pick[d]] + t - (ends[d] - out_lens[d])]
    return out, out_lens, energy[pick]


# ------------------------------------------------------------------ children
def child_prenum(args) -> dict:
    import torch
    torch.set_num_threads(1)
    from fastai.text.data import LMDataLoader
    from fastai_context.lm.data import ContextLanguageModelLoader, TokenDocuments
    flat, lens, energy = synthetic(Path(args.pool), args.tokens)
    context = torch.from_numpy(energy)[:, None]
    folder = None
    if args.kind in ("lmdl", "ours", "ours-fast"):   # a plain PyTorch workflow's input: one int64 tensor per document
        data = list(torch.from_numpy(flat.astype(np.int64)).split(lens.tolist()))
    elif args.kind == "ours-flat":
        data = TokenDocuments(flat, lens)
    else:                                        # ours-mmap: the tokens in a file, memory-mapped
        folder = tempfile.mkdtemp(prefix="bench-loader-")
        TokenDocuments(flat, lens).save(folder)
        data = TokenDocuments.load(folder, mmap=True)
    del flat
    import gc
    gc.collect()
    reset_peak()
    input_gb = rss_gb("VmRSS")
    start = time.perf_counter()
    if args.kind == "lmdl":
        dl = LMDataLoader(data, bs=args.bs, seq_len=args.seq_len, shuffle=True)
    else:
        dl = ContextLanguageModelLoader(data, context, bs=args.bs, seq_len=args.seq_len, shuffle=True,
                                        fastai_order=args.kind != "ours-fast")
    build = time.perf_counter() - start
    ttfb, rates = None, []
    for _ in range(args.epochs):
        start = time.perf_counter()
        n = 0
        for _b in dl:                            # the shuffle runs when the epoch starts
            if ttfb is None:
                ttfb = time.perf_counter() - start
            n += 1
        rates.append(n / (time.perf_counter() - start))
    if folder:
        for f in Path(folder).iterdir():
            f.unlink()
        os.rmdir(folder)
    return dict(kind=args.kind, tokens=args.tokens, docs=len(lens), batches=n, build_s=build, ttfb_s=ttfb,
                bps=float(np.mean(rates)), input_gb=input_gb, peak_gb=rss_gb("VmHWM"))


def child_from_df(args) -> dict:
    import pandas as pd
    import torch
    torch.set_num_threads(1)
    import fastai.text.core as core
    from fastai.text.data import TextDataLoaders
    from fastai_context import ContextTextDataLoaders
    texts = pool_texts(args.corpus)
    rng = np.random.default_rng(0)
    n_words = np.array([len(t.split()) + 1 for t, _ in texts])
    reps = int(np.ceil(args.tokens / n_words.sum())) + 1          # beyond the pool: documents repeat
    pick = np.concatenate([rng.permutation(len(texts)) for _ in range(reps)])
    pick = pick[:int(np.searchsorted(np.cumsum(n_words[pick]), args.tokens)) + 1]
    df = pd.DataFrame({"text": [texts[i][0] for i in pick], "energy": [texts[i][1] for i in pick]})
    tok_time = [0.0]
    orig = core.parallel_tokenize
    prof = None
    if args.profile:                              # cProfile the side's from_df outside the tokenizer
        import cProfile
        import pstats
        prof = cProfile.Profile()

    def timed(*a, **kw):                          # time spent in fastai's tokenizer, both sides
        if prof:
            prof.disable()
        s = time.perf_counter()
        out = list(orig(*a, **kw))
        tok_time[0] += time.perf_counter() - s
        if prof:
            prof.enable()
        return out
    core.parallel_tokenize = timed
    start = time.perf_counter()
    if prof:
        prof.enable()
    if args.kind == "fastai":                     # fastai's from_df: its tokenizer with its default workers
        dls = TextDataLoaders.from_df(df, text_col="text", is_lm=True, valid_pct=0.1, seed=0, bs=args.bs,
                                      seq_len=args.seq_len, device="cpu")
    else:
        kw = {} if args.n_workers is None else {"n_workers": args.n_workers}
        dls = ContextTextDataLoaders.from_df(df, "text", "energy", valid_pct=0.1, seed=0, bs=args.bs,
                                             seq_len=args.seq_len, device="cpu", **kw)
    if prof:
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    build = time.perf_counter() - start
    start = time.perf_counter()
    n = 0 if args.skip_epoch else sum(1 for _ in dls.train)
    epoch = time.perf_counter() - start
    n_tok = sum(int(dl.dataset.items["text_length"].sum()) for dl in (dls.train, dls.valid))
    return dict(kind=args.kind, rows=len(df), tokens=n_tok, build_s=build, tokenize_s=tok_time[0], epoch_s=epoch, batches=n, peak_gb=rss_gb("VmHWM"))


def median_run(runs: list[dict]) -> dict:
    "The median of each measurement over repeated runs (the first error, if any run failed)."
    bad = [r for r in runs if "error" in r]
    if bad:
        return bad[0]
    return {k: (float(np.median([r[k] for r in runs])) if isinstance(v, float) else v) for k, v in runs[0].items()}


def run_child(argv: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, __file__, *argv], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:], "argv": argv}
    if out.stderr.strip() and "--profile" in argv:
        print(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="0.2M,2M,20M,100M")
    p.add_argument("--corpus", default="mixed", choices=["mixed", "names", "lyrics"])
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=72)
    p.add_argument("--epochs", type=int, default=None, help="epochs timed per run (default: about 1000 batches)")
    p.add_argument("--repeats", type=int, default=1, help="runs per loader, alternating; medians are reported")
    p.add_argument("--skip-lmdl-above", default="50M", help="no LMDataLoader run above this many tokens")
    p.add_argument("--kinds", default="lmdl,ours", help="loaders to run: lmdl, ours, ours-fast, ours-flat, ours-mmap")
    p.add_argument("--from-df", default=None, help="from_df mode at this many words, e.g. 1M")
    p.add_argument("--n-workers", type=int, default=None)
    p.add_argument("--profile", action="store_true", help="cProfile both sides' from_df outside fastai's tokenizer")
    p.add_argument("--skip-epoch", action="store_true", help="from_df mode: build only, no first epoch")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--kind", default=None, help=argparse.SUPPRESS)
    p.add_argument("--pool", default=None, help=argparse.SUPPRESS)
    p.add_argument("--tokens", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child == "prenum":
        print(json.dumps(child_prenum(args)))
        return
    if args.child == "from_df":
        print(json.dumps(child_from_df(args)))
        return
    common = ["--bs", str(args.bs), "--seq-len", str(args.seq_len), "--corpus", args.corpus]
    print(f"bs={args.bs} seq_len={args.seq_len} corpus={args.corpus}; each loader in its own process"
          + (f", medians of {args.repeats} alternating runs" if args.repeats > 1 else ""))
    if args.from_df:
        n = parse_size(args.from_df)
        extra = (["--n-workers", str(args.n_workers)] if args.n_workers else []) + (["--profile"] if args.profile else []) \
            + (["--skip-epoch"] if args.skip_epoch else [])
        runs = {"fastai": [], "ours": []}
        for i in range(args.repeats):      # the same DataFrame (same seed) in every child; ABBA order against drift
            for k in (("fastai", "ours") if i % 2 == 0 else ("ours", "fastai")):
                r = run_child(["--child", "from_df", "--kind", k, "--tokens", str(n), *common, *extra])
                print(f"{k:7s} {json.dumps(r)}", flush=True)
                runs[k].append(r)
        res = {k: (min(rs, key=lambda r: r.get("build_s", float("inf"))) if len(rs) > 1 else rs[0])
               for k, rs in runs.items()}            # with repeats: each side's fastest build
        f, o = res["fastai"], res["ours"]
        if "error" not in f and "error" not in o:
            print(f"from_df build: TextDataLoaders {f['build_s']:.1f} s (tokenizing {f['tokenize_s']:.1f} s) | "
                  f"ContextTextDataLoaders {o['build_s']:.1f} s (tokenizing {o['tokenize_s']:.1f} s) | "
                  f"ratio {o['build_s'] / f['build_s']:.2f}x")
            if not args.skip_epoch:
                print(f"first epoch:   TextDataLoaders {f['epoch_s']:.1f} s | ContextTextDataLoaders {o['epoch_s']:.2f} s")
        return
    with tempfile.TemporaryDirectory() as tmp:
        pool = Path(tmp) / "pool.npz"
        build_pool(args.corpus, pool)
        z = np.load(pool)
        print(f"pool: {len(z['lens'])} real documents, {int(z['lens'].sum())} tokens, vocab {int(z['n_vocab'])}")
        for size in args.sizes.split(","):
            n = parse_size(size)
            # enough epochs for about 1000 timed batches per run
            epochs = args.epochs or max(1, int(np.ceil(1000 * args.bs * args.seq_len / n)))
            kinds = [k for k in args.kinds.split(",") if k != "lmdl" or n <= parse_size(args.skip_lmdl_above)]
            runs = {k: [] for k in kinds}
            for _ in range(args.repeats):                 # alternate the loaders, so load hits both alike
                for k in kinds:
                    runs[k].append(run_child(["--child", "prenum", "--kind", k, "--pool", str(pool), "--tokens",
                                              str(n), "--epochs", str(epochs), *common]))
            res = {k: median_run(v) for k, v in runs.items()}
            print(f"--- {size} tokens")
            for k, r in res.items():
                if "error" in r:
                    print(f"{k:10s} FAILED: {r['error']}")
                    continue
                print(f"{k:10s} docs {r['docs']:>9,d}  build {r['build_s']:7.2f} s  first batch {r['ttfb_s']:7.3f} s  "
                      f"{r['bps']:9.1f} batches/s  input RSS {r['input_gb']:.2f} GB  peak RSS {r['peak_gb']:.2f} GB")
            if "lmdl" in res and "error" not in res["lmdl"] and "error" not in res["ours"]:
                a, b = res["lmdl"], res["ours"]
                print(f"ours / LMDataLoader: batches/s {b['bps'] / a['bps']:.1f}x, build {b['build_s'] / a['build_s']:.2f}x, "
                      f"peak RSS {b['peak_gb'] / a['peak_gb']:.2f}x")


if __name__ == "__main__":
    main()
