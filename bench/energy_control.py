"""Controllability of the energy models that `bench/energy_ablation.py` trained, at several guidances.

Usage: python bench/energy_control.py [--runs DIR] [--variants base,dropout] [--guidance 1,2,3,4]
           [--n-words 8000] [--n-samples 40] [--share 1.0]

For each variant's exported learner (DIR/<variant>.pkl) and each guidance: `controllability(learn,
'energy', values=(0.1, 0.5, 0.9), guidance=g)` against the training-mean context, the regressor
fitted on the real validation songs of the same 90/10 split (the exported learner carries no
data). Prints each report and writes DIR/control_<variant>.json.
"""
import argparse
import json
from pathlib import Path

from fastai.data.transforms import RandomSplitter
from fastai.learner import load_learner

from fastai_context import controllability

from energy_ablation import lyrics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="/tmp/energy_ablation")
    ap.add_argument("--variants", default="base,dropout")
    ap.add_argument("--guidance", default="1,2,3,4")
    ap.add_argument("--n-words", type=int, default=8000)
    ap.add_argument("--n-samples", type=int, default=40)
    ap.add_argument("--share", type=float, default=1.0, help="as given to energy_ablation.py")
    args = ap.parse_args()
    df = lyrics()
    if args.share < 1:      # the songs energy_ablation.py used
        df = df.sample(frac=args.share, random_state=0).reset_index(drop=True)
    valid = df.iloc[RandomSplitter(0.1, seed=0)(df)[1]]      # the split ContextTextDataLoaders.from_df made
    for name in args.variants.split(","):
        learn = load_learner(Path(args.runs) / f"{name}.pkl")
        results = []
        for g in (float(x) for x in args.guidance.split(",")):
            r = controllability(learn, "energy", values=(0.1, 0.5, 0.9), n_words=args.n_words,
                                n_samples=args.n_samples, real_texts=valid.lyrics, real_values=valid.energy,
                                guidance=g, no_bar=True)
            print(f"=== {name}\n{r}", flush=True)
            results.append(dict(r.summary(), table=r.table.reset_index().to_dict("records")))
        (Path(args.runs) / f"control_{name}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
