"""Conditioned generation speed: ContextLMLearner.generate against fastai's LMLearner.predict.

Usage: python bench/generate.py [--predict-words 500] [--config cpu|fastai]
Models: nbs/01's model (the CPU-sized default config on the real Spotify track names, vocab
as in the notebook) and fastai's AWD_LSTM of the same size and vocabulary; speed does not
depend on the weights, so neither is trained. Timed in one run:
  * the blog's draw: 10,000 words as 100 samples of 100 words, generated as one batch;
  * fastai's `LMLearner.predict` for `--predict-words` words (it re-runs the growing text per word);
  * a naive loop feeding one token at a time through fastai's model, carrying its hidden state;
  * one stream of 250..2000 words, to show the cost per word stays flat (linear in n_words);
  * classifier-free guidance (`guidance=3`, the mean context as negative): the blog's draw guided
    against unguided, taking turns `--rounds` times so that noise from a shared machine hits both
    alike; the cost ratio per word is the median of the per-round ratios (goal <= 2.2x).
"""
import argparse
import statistics
import time

import torch
from fastai.text.data import TextDataLoaders
from fastai.text.learner import language_model_learner
from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config

from fastai_context import ContextTextDataLoaders, context_language_model_learner, context_lm_config, datasets


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@torch.no_grad()
def naive_loop(learn, n_words: int) -> None:
    "Sample by feeding fastai's model one token at a time (hidden state carried), no re-running."
    model = learn.model.eval()
    model.reset()
    tok = torch.tensor([[learn.dls.vocab.index("xxbos")]])
    for _ in range(n_words):
        probs = model(tok)[0][0, -1].softmax(-1)
        tok = torch.multinomial(probs, 1)[None]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--predict-words", type=int, default=500)
    p.add_argument("--config", choices=["cpu", "fastai"], default="cpu")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    df = datasets.spotify_tracks(dedupe=True).dropna(subset=["track_name"])
    dls = ContextTextDataLoaders.from_df(df, "track_name", "energy", seed=0)
    config = context_lm_config if args.config == "cpu" else awd_lstm_lm_config
    ours = context_language_model_learner(dls, config=config)
    plain_cfg = {k: v for k, v in config.items() if not k.startswith("context_")}
    plain_dls = TextDataLoaders.from_df(df, text_col="track_name", is_lm=True, valid_pct=0.1, seed=0,
                                        text_vocab=dls.vocab)
    plain = language_model_learner(plain_dls, AWD_LSTM, config=plain_cfg, pretrained=False)
    print(f"model: emb {plain_cfg['emb_sz']}, hidden {plain_cfg['n_hid']}, {plain_cfg['n_layers']} layers, "
          f"vocab {len(dls.vocab)} (fastai's vocab {len(plain_dls.vocab)})")

    t_gen, texts = timed(lambda: ours.generate({"energy": 1.0}, 100, n_samples=100, seed=0, no_bar=True))
    t_gen0, _ = timed(lambda: ours.generate({"energy": 0.0}, 100, n_samples=100, seed=1, no_bar=True))
    assert len(texts) == 100
    per_word = t_gen / 10_000
    print(f"generate: 100 samples x 100 words at energy 1.0 in {t_gen:.2f} s, at energy 0.0 in {t_gen0:.2f} s "
          f"({per_word * 1e3:.3f} ms/word)")

    t_pred, _ = timed(lambda: plain.predict("", n_words=args.predict_words, no_bar=True))
    pred_word = t_pred / args.predict_words
    print(f"fastai LMLearner.predict: {args.predict_words} words in {t_pred:.1f} s ({pred_word * 1e3:.2f} ms/word)")
    n_naive = 1000
    t_naive, _ = timed(lambda: naive_loop(plain, n_naive))
    naive_word = t_naive / n_naive
    print(f"naive one-token loop through fastai's model: {n_naive} words in {t_naive:.2f} s "
          f"({naive_word * 1e3:.3f} ms/word)")
    print(f"speed-up per word: generate vs predict {pred_word / per_word:.0f}x (goal >= 100x), "
          f"vs naive loop {naive_word / per_word:.1f}x; 10,000 words in {t_gen:.2f} s (goal < 10 s)")

    print("single stream, cost per word as n_words grows (linear cost = flat ms/word):")
    for n in (250, 500, 1000, 2000):
        t, _ = timed(lambda: ours.generate({"energy": 0.5}, n, seed=0, no_bar=True))
        print(f"  n_words={n:5d}: {t:6.3f} s, {t / n * 1e3:.3f} ms/word")
    print("classifier-free guidance, 100 samples x 100 words:")
    guidance_cost(ours, args.rounds)


def guidance_cost(learn, rounds: int) -> None:
    "Guided (two contexts as one batch of 2 x 100 streams) vs unguided generation of 10,000 words."
    ratios = []
    for r in range(rounds):
        t1, _ = timed(lambda: learn.generate({"energy": 1.0}, 100, n_samples=100, seed=r, no_bar=True))
        tg, _ = timed(lambda: learn.generate({"energy": 1.0}, 100, n_samples=100, seed=r, no_bar=True, guidance=3.))
        ratios.append(tg / t1)
        print(f"  round {r}: unguided {t1:.2f} s, guided {tg:.2f} s ({t1 / 10:.3f} vs {tg / 10:.3f} ms/word): {tg / t1:.2f}x")
    print(f"guidance cost per word vs unguided: median {statistics.median(ratios):.2f}x over {rounds} rounds "
          "(goal <= 2.2x)")


if __name__ == "__main__":
    main()
