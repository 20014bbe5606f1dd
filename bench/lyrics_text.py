"""What cleaning and line breaks do to the Billboard lyrics as a language model reads them.

Usage: python bench/lyrics_text.py
Tokenizes the 3,927 songs of `datasets.billboard_lyrics` with fastai's default tokenizer (spaCy
words plus fastai's rules, as `ContextTextDataLoaders.from_df` does) in three variants: the lyrics
as scraped, cleaned with one lyric line per `\\n` (the default), and cleaned with lines joined by
spaces. Prints tokens per song, the share of line-break tokens, the vocabulary (all tokens, and
those seen at least 3 times: `from_df`'s `min_freq`), and how many token occurrences would become
`xxunk` at that threshold. Numbers and the decision are in docs/lyrics.md.
"""
import time
from collections import Counter

import pandas as pd
from fastai.text.core import tokenize_df

from fastai_context import datasets
from fastai_context.sources.lyrics import clean_lyrics


def stats(texts: pd.Series, name: str, min_freq: int = 3) -> dict:
    t0 = time.perf_counter()
    tok, _ = tokenize_df(pd.DataFrame({"text": texts}), "text", n_workers=1)
    secs = time.perf_counter() - t0
    docs = tok["text"].tolist()
    counts = Counter(t for d in docs for t in d)
    lens = pd.Series([len(d) for d in docs])
    n = sum(counts.values())
    kept = {t for t, c in counts.items() if c >= min_freq}
    return {"variant": name, "tokens/song (mean)": round(lens.mean(), 1), "tokens/song (median)": lens.median(),
            "line-break share": round(sum(c for t, c in counts.items() if t.strip() == "") / n, 3),
            "vocab (all)": len(counts), f"vocab (min_freq={min_freq})": len(kept),
            "xxunk share": round(sum(c for t, c in counts.items() if t not in kept) / n, 4),
            "tokenize s": round(secs, 1)}


def main():
    raw = datasets.billboard_lyrics(clean=False)
    t0 = time.perf_counter()
    lines = raw["lyrics"].map(clean_lyrics)
    clean_s = time.perf_counter() - t0
    spaces = raw["lyrics"].map(lambda t: clean_lyrics(t, line_breaks=False))
    rows = [stats(raw["lyrics"], "as scraped"), stats(lines, "clean, lines by \\n (default)"),
            stats(spaces, "clean, lines by spaces")]
    print(f"{len(raw)} songs; clean_lyrics on all of them: {clean_s:.1f} s")
    print(pd.DataFrame(rows).set_index("variant").astype(object).T.to_string())


if __name__ == "__main__":
    main()
