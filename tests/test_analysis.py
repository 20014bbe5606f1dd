"""Word counts, distinctive words, word clouds and the controllability score (issue 4)."""
import math
import string
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fastai_context import datasets
from fastai_context.analysis import (BLOG_COLORS, ControllabilityReport, controllability, distinctive_words,
                                     plot_word_clouds, word_cloud, word_counts)
from fastai_context.text import SPECIAL_TOKENS


@pytest.fixture(scope="module")
def english_stopwords():
    from nltk.corpus import stopwords
    return stopwords.words("english")


# ------------------------------------------------------------------------------------ word_counts
def test_word_counts_drops_every_nltk_stopword(english_stopwords):
    text = " ".join(english_stopwords) + " guitar Guitar drums"
    counts = word_counts([text, text.upper()])
    assert counts == Counter({"guitar": 4, "drums": 2})
    assert len(english_stopwords) == 179


def test_word_counts_drops_punctuation_numbers_and_special_tokens():
    punctuation = " ".join(string.punctuation) + " ... … -- !!! ?!"
    numbers = "0 7 42 3.5 1,000 3:45 1990s 2nd 10k"
    specials = " ".join(SPECIAL_TOKENS)
    assert set(SPECIAL_TOKENS) >= {"xxbos", "xxmaj", "xxup", "xxunk", "xxrep", "xxwrep", "xxpad", "xxfld", "xxeos"}
    counts = word_counts([f"{punctuation} summer {numbers} {specials} night"])
    assert counts == Counter({"summer": 1, "night": 1})
    # each drop can be turned off
    assert "!" in word_counts([punctuation + " summer"], drop_punctuation=False)
    kept = word_counts([numbers], drop_numbers=False)
    assert {"42", "3.5", "1,000", "3:45", "1990s", "2nd"} <= set(kept)
    assert set(word_counts([specials], drop_special_tokens=False)) == set(SPECIAL_TOKENS)
    # words that hold digits but are not numbers stay
    assert set(word_counts(["mp3 b2b"])) == {"mp3", "b2b"}


def test_word_counts_raw_and_fastai_tokenized_text_count_alike():
    from fastai.text.core import Tokenizer, WordTokenizer
    raw = ["I don't know, it's the Summer's night... Won't you DANCE?", "She can't stop rock'n'roll, lo-fi love",
           "gonna wanna"]
    tok = Tokenizer(WordTokenizer())
    tokenized = [" ".join(tok(t)) for t in raw]
    assert "n't" in tokenized[0] and "xxmaj" in tokenized[0]
    expected = Counter({"know": 1, "summer": 1, "night": 1, "dance": 1, "stop": 1, "rock'n'roll": 1, "lo": 1,
                        "fi": 1, "love": 1, "gonna": 1, "wanna": 1})
    assert word_counts(raw) == expected
    assert word_counts(tokenized) == expected


def test_word_counts_contraction_pieces_and_extra_stopwords():
    # contraction pieces go with the stopwords; the blog's extra words too
    counts = word_counts(["it 's like that , I do n't care ... we 're fine"], stopwords=["i", "we"])
    assert counts == Counter({"care": 1, "fine": 1, "it": 1, "that": 1, "do": 1})
    assert "like" in word_counts(["like summer"], extra_stopwords=())
    everything = word_counts(["it 's like that"], stopwords=None, extra_stopwords=())
    assert everything == Counter({"it": 1, "'s": 1, "like": 1, "that": 1})


def test_word_counts_on_real_song_titles(english_stopwords):
    titles = datasets.song_titles()
    counts = word_counts(titles)
    assert sum(counts.values()) > 10_000
    assert counts["love"] > 300 and "love" in dict(counts.most_common(3))
    assert not set(counts) & set(english_stopwords)
    assert not any(w in counts for w in SPECIAL_TOKENS)
    assert all(any(c.isalpha() for c in w) for w in counts)
    # a pandas Series is fine; a missing title is named
    s = pd.Series(titles[:5] + [None], index=[f"song{i}" for i in range(6)])
    with pytest.raises(TypeError, match="song5"):
        word_counts(s)


def test_word_counts_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        word_counts([])
    with pytest.raises(ValueError, match="no words left.*stopwords"):
        word_counts(["I am in it, and it's 42!", "xxbos xxmaj the"])
    with pytest.raises(ValueError, match="'nltk', a list of words, or None"):
        word_counts(["summer"], stopwords="english")


def test_word_counts_missing_stopwords_corpus_says_how_to_get_it(tmp_path, monkeypatch):
    import nltk
    from nltk.corpus.reader import WordListCorpusReader
    from nltk.corpus.util import LazyCorpusLoader
    # a fresh, not yet loaded corpus that can only look in an empty folder
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    fresh = LazyCorpusLoader("stopwords", WordListCorpusReader, r"(?!README|\.).*")
    monkeypatch.setattr(nltk.corpus, "stopwords", fresh)
    with pytest.raises(LookupError, match=r"nltk\.download\('stopwords'\).*NLTK_DATA"):
        word_counts(["summer night"])
    # a user list needs no corpus at all
    assert word_counts(["summer night"], stopwords=["night"]) == Counter({"summer": 1})


# ------------------------------------------------------------------------------ distinctive_words
def test_distinctive_words_matches_the_formula_by_hand():
    a, b = {"loud": 3, "calm": 1}, {"loud": 1, "calm": 3}
    df = distinctive_words(a, b, prior=1.0, top=None)
    # flat prior alpha_w = 1, alpha_0 = 2, n_a = n_b = 4
    d = math.log(4 / 2) - math.log(2 / 4)
    assert df.loc["loud", "log_odds"] == pytest.approx(d)
    assert df.loc["loud", "z"] == pytest.approx(d / math.sqrt(1 / 4 + 1 / 2))
    assert df.loc["calm", "z"] == pytest.approx(-df.loc["loud", "z"])
    assert list(df.index) == ["loud", "calm"]
    assert list(df.favours) == ["a", "b"]
    assert df.loc["loud", ["count_a", "count_b"]].tolist() == [3, 1]
    assert df.loc["loud", ["freq_a", "freq_b"]].tolist() == [0.75, 0.25]


def test_distinctive_words_prior_keeps_rare_words_from_the_top():
    # 'encore' appears twice, only on side a; 'guitar' is 3x as frequent on side a, hundreds of times.
    a = Counter({"guitar": 300, "the": 1000, "encore": 2, "song": 500})
    b = Counter({"guitar": 100, "the": 1000, "piano": 202, "song": 500})     # both sides 1802 words
    df = distinctive_words(a, b, top=None, names=("rock", "jazz"))
    assert df.index[0] == "guitar" and df.index[-1] == "piano"
    assert df.index.get_loc("encore") > df.index.get_loc("guitar")
    assert abs(df.loc["the", "z"]) < 1 and abs(df.loc["song", "z"]) < 1
    assert df.loc["guitar", "favours"] == "rock" and df.loc["piano", "favours"] == "jazz"
    # the raw frequency ratio would have crowned 'encore' (infinite); so does a tiny flat prior
    tiny = distinctive_words(a, b, top=None, prior=0.001)
    assert tiny.loc["encore", "log_odds"] > tiny.loc["guitar", "log_odds"]
    # swapping the sides flips every sign
    swapped = distinctive_words(b, a, top=None)
    assert np.allclose(swapped.loc[df.index, "z"], -df.z)
    # top keeps the `top` most distinctive words of each side, most a-like first
    top1 = distinctive_words(a, b, top=1)
    assert list(top1.index) == ["guitar", "piano"]


def test_distinctive_words_background_prior_and_errors():
    a, b = Counter({"fire": 10, "rain": 2}), Counter({"fire": 2, "rain": 10})
    background = Counter({"fire": 50, "rain": 50, "other": 900})
    df = distinctive_words(a, b, prior=background, top=None)
    assert df.index[0] == "fire" and df.index[-1] == "rain"
    with pytest.raises(ValueError, match=r"prior has no positive count.*\['rain'\]"):
        distinctive_words(a, b, prior={"fire": 3})
    with pytest.raises(ValueError, match="counts_b is empty"):
        distinctive_words(a, Counter())
    with pytest.raises(ValueError, match="non-negative"):
        distinctive_words(a, {"fire": -1})
    with pytest.raises(ValueError, match="prior=-1"):
        distinctive_words(a, b, prior=-1)


# ------------------------------------------------------------------------------------ word clouds
def test_word_cloud_png_has_the_asked_size_and_colour(tmp_path):
    counts = word_counts(datasets.song_titles()[:2000])
    wc = word_cloud(counts, color=BLOG_COLORS["high"], width=640, height=320)
    path = tmp_path / "high.png"
    wc.to_file(str(path))
    assert path.stat().st_size > 1000
    img = Image.open(path).convert("RGB")
    assert img.size == (640, 320)
    pixels = Counter(map(tuple, np.asarray(img).reshape(-1, 3).tolist()))
    assert pixels.most_common(1)[0][0] == (255, 255, 255)       # white background
    assert pixels[(0x3B, 0xBB, 0x75)] > 1000                     # words in the asked colour
    with pytest.raises(ValueError, match="counts is empty"):
        word_cloud(Counter())
    with pytest.raises(ValueError, match="not a matplotlib colour"):
        word_cloud(counts, color="not-a-colour")


def test_plot_word_clouds_side_by_side(tmp_path):
    import matplotlib.pyplot as plt
    titles = datasets.song_titles()
    high, low = word_counts(titles[:1000]), word_counts(titles[1000:2000])
    fig = plot_word_clouds({"high energy": high, "low energy": low}, width=400, height=200)
    try:
        assert [ax.get_title() for ax in fig.axes] == ["high energy", "low energy"]
        path = tmp_path / "clouds.png"
        fig.savefig(path, dpi=50)
        img = Image.open(path).convert("RGB")
        assert path.stat().st_size > 1000 and img.size[0] > 1.8 * img.size[1]
        colours = Counter(map(tuple, np.asarray(img).reshape(-1, 3).tolist()))
        assert colours[(0x3B, 0xBB, 0x75)] > 0 and colours[(0x47, 0x11, 0x64)] > 0   # the blog's colours
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="'low energy' is empty"):
        plot_word_clouds({"high energy": high, "low energy": Counter()})
    with pytest.raises(KeyError, match="low energy"):
        plot_word_clouds({"high energy": high, "low energy": low}, colors={"high energy": "red"})


# ------------------------------------------------------------------------------ controllability
_BINS = [["calm", "sleep", "quiet", "soft", "slow", "gentle", "lullaby", "rain"],
         ["walk", "coffee", "morning", "sunday", "easy", "road", "river", "home"],
         ["fire", "loud", "rage", "scream", "metal", "thunder", "riot", "fury"]]


def _context_decides_words(n: int, seed: int = 0) -> pd.DataFrame:
    "Documents whose words come from one of three lists, picked by the energy third the document is in."
    rng = np.random.default_rng(seed)
    energy = rng.uniform(0, 1, n)
    texts = [" ".join(rng.choice(_BINS[min(int(e * 3), 2)], rng.integers(3, 7))) for e in energy]
    return pd.DataFrame({"text": texts, "energy": energy})


class _StandIn:
    """A learner stand-in: streams of 3-6 word documents from the energy's third (or, with `ignore`,
    always the middle one), `n_words` tokens per stream, `doc_sep` between documents."""
    def __init__(self, encoder, ignore=False):
        self.dls = type("Dls", (), {"context_encoder": encoder})()
        self.ignore, self.calls = ignore, []

    def generate(self, context, n_words, n_samples=1, seed=None, doc_sep=" ", **kwargs):
        self.calls.append(dict(context=context, n_words=n_words, n_samples=n_samples, seed=seed, doc_sep=doc_sep,
                               **kwargs))
        rng = np.random.default_rng(seed)
        words = _BINS[1] if self.ignore else _BINS[min(int(context["energy"] * 3), 2)]
        streams = []
        for _ in range(n_samples):
            docs, n = [], 0
            while n < n_words:
                docs.append(list(rng.choice(words, rng.integers(3, 7))))
                n += len(docs[-1]) + 1
            docs[-1] = docs[-1][:len(docs[-1]) - (n - n_words)]      # the stream ends mid-document
            streams.append(doc_sep.join(" ".join(d) for d in docs))
        return streams

    def text_perplexity(self, texts, context=None):
        self.scored = list(texts)
        return 10.0


@pytest.fixture(scope="module")
def corpus():
    return _context_decides_words(1200)


def test_controllability_with_a_stand_in(corpus):
    from fastai_context import ContextEncoder
    real = _context_decides_words(300, seed=1)
    enc = ContextEncoder.fit(corpus, ["energy"])
    learn = _StandIn(enc)
    r = controllability(learn, "energy", n_words=500, real_texts=real.text, real_values=real.energy)
    assert isinstance(r, ControllabilityReport)
    assert list(r.table.index) == [0.1, 0.5, 0.9]
    assert r.table.mean_prediction.is_monotonic_increasing
    assert r.spearman > 0.8 and r.real_spearman > 0.8 and 0.85 < r.ratio < 1.2
    # 20 streams of 25 tokens at each value, the same seed at every value, documents split where they begin
    calls = [(c["n_words"], c["n_samples"], c["seed"], c["doc_sep"]) for c in learn.calls]
    assert calls == [(25, 20, 0, " xxbos ")] * 3
    docs = r.samples[0.9]
    assert 40 < len(docs) == r.table.n_docs[0.9] < 100
    assert all(3 <= len(d.split()) <= 6 and set(d.split()) <= set(_BINS[2]) for d in docs)   # whole documents
    assert "ratio" in repr(r) and "Spearman" in repr(r) and "0.9" in repr(r)
    flat = controllability(_StandIn(enc, ignore=True), "energy", n_words=500, real_texts=real.text,
                           real_values=real.energy)
    assert abs(flat.ratio) < 0.05 and (math.isnan(flat.spearman) or abs(flat.spearman) < 0.1)
    # what the samples cost: diversity, fluency (scored by the learner on all samples), document length
    assert 0 < r.distinct_1 < r.distinct_2 <= 1 and r.fluency_perplexity == 10.0
    assert learn.scored == [d for v in (0.1, 0.5, 0.9) for d in r.samples[v]]
    assert 4 < r.mean_length < 5.2 and 4 < r.real_mean_length < 5.2       # 3-6 words each
    assert "distinct-2" in repr(r) and "fluency perplexity 10" in repr(r) and r.summary()["guidance"] == 1.
    guided = controllability(learn, "energy", n_words=500, real_texts=real.text, real_values=real.energy,
                             guidance=2.5, negative={"energy": 0.5})
    assert learn.calls[-1]["guidance"] == 2.5 and learn.calls[-1]["negative"] == {"energy": 0.5}
    assert guided.guidance == 2.5 and "at guidance 2.5" in repr(guided)


def test_distinct_n_counts_distinct_ngrams_within_texts():
    from fastai_context import distinct_n
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b a b"], 2) == 2 / 3
    assert distinct_n(["a b", "b a"], 2) == 1.0              # n-grams do not cross texts
    assert distinct_n(["xxbos xxmaj a a"], 1) == 0.5         # special tokens are not words
    assert math.isnan(distinct_n(["a"], 2))


def test_controllability_regressor_ceiling_on_real_spotify_names(tracks):
    "The default regressor finds real energy in real playlist names (about 0.56 on all tracks)."
    from fastai_context import ContextEncoder
    real = tracks.dropna(subset=["playlist_name"]).sample(6000, random_state=0)
    learn = _StandIn(ContextEncoder.fit(real, ["energy"]))
    r = controllability(learn, "energy", n_words=50, real_texts=real.playlist_name, real_values=real.energy)
    assert 0.4 < r.real_spearman < 0.7 and r.real_separation > 0.1


def test_controllability_takes_a_fitted_regressor(corpus):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from fastai_context import ContextEncoder
    real = _context_decides_words(300, seed=1)
    reg = make_pipeline(CountVectorizer(), LinearRegression()).fit(corpus.text, corpus.energy)

    class NoBoundaries(_StandIn):   # a learner that does not mark new documents: one document per stream
        def generate(self, context, n_words, n_samples=1, seed=None, doc_sep=" ", **kwargs):
            return super().generate(context, n_words, n_samples, seed, doc_sep=" ")
    learn = NoBoundaries(ContextEncoder.fit(corpus, ["energy"]))
    r = controllability(learn, "energy", values=(0.2, 0.8), n_words=300, n_samples=30, real_texts=real.text,
                        real_values=real.energy, regressor=reg)
    assert r.regressor is reg
    assert r.table.n_docs.tolist() == [30, 30]
    assert r.ratio > 0.8


def test_controllability_clear_errors(corpus):
    from fastai_context import ContextEncoder
    df = corpus.assign(genre=np.where(corpus.energy > 0.5, "rock", "folk"), tempo=120.0)
    learn = _StandIn(ContextEncoder.fit(df, ["energy", "genre", "tempo"]))
    kw = dict(real_texts=corpus.text[:100], real_values=corpus.energy[:100], n_words=50)
    with pytest.raises(KeyError, match="'valence' is not a context column.*energy"):
        controllability(learn, "valence", **kw)
    with pytest.raises(ValueError, match="numeric feature.*'genre' is categorical"):
        controllability(learn, "genre", **kw)
    with pytest.raises(ValueError, match="'genre' is categorical: pass its value"):
        controllability(learn, "energy", **kw)
    learn.dls.valid = type("Valid", (), {"dataset": []})()     # like a learner from load_learner
    with pytest.raises(ValueError, match="no validation texts.*pass real_texts= and real_values="):
        controllability(learn, "energy", context={"genre": "rock"})
    with pytest.raises(ValueError, match="both real_texts and real_values"):
        controllability(learn, "energy", context={"genre": "rock"}, real_texts=corpus.text)
    with pytest.raises(ValueError, match="at least 20 real texts"):
        controllability(learn, "energy", context={"genre": "rock"}, real_texts=corpus.text[:5],
                        real_values=corpus.energy[:5])
    with pytest.raises(ValueError, match="each once"):
        controllability(learn, "energy", values=(0.5, 0.5), context={"genre": "rock"}, **kw)
    bad = corpus.energy[:100].copy()
    bad.iloc[3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf at positions \[3\]"):
        controllability(learn, "energy", context={"genre": "rock"}, real_texts=corpus.text[:100], real_values=bad)
    # other numeric columns are held at their training mean
    controllability(learn, "energy", context={"genre": "rock"}, **kw)
    assert learn.calls[-1]["context"] == {"genre": "rock", "tempo": 120.0, "energy": 0.9}


_TINY = dict(emb_sz=32, n_hid=64, n_layers=1, pad_token=1, bidir=False, output_p=0.1, hidden_p=0.1, input_p=0.1,
             embed_p=0.0, weight_p=0.1, tie_weights=True, out_bias=True, context_proj=0)


def _trained_learner(df: pd.DataFrame, seed: int = 0):
    from fastai.torch_core import set_seed
    from fastai_context import ContextTextDataLoaders
    from fastai_context.lm.learner import context_language_model_learner
    set_seed(seed)
    dls = ContextTextDataLoaders.from_df(df, "text", "energy", bs=16, seq_len=20, seed=0, min_freq=1)
    learn = context_language_model_learner(dls, config=_TINY)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(12, 1e-2)
    return learn


def test_controllability_of_a_real_learner_where_context_decides_the_words(corpus):
    learn = _trained_learner(corpus)
    r = controllability(learn, "energy", n_words=600, no_bar=True)   # real texts: the validation split
    assert r.real_spearman > 0.8
    assert 1 < r.fluency_perplexity < 30 and r.mean_length == pytest.approx(r.real_mean_length, rel=0.3)
    assert r.spearman > 0.75 and r.ratio > 0.8, str(r)
    assert r.table.mean_prediction.is_monotonic_increasing
    high = word_counts(r.samples[0.9])
    assert sum(high[w] for w in _BINS[2]) > 0.8 * sum(high.values())


def test_controllability_of_a_real_learner_on_shuffled_contexts(corpus):
    shuffled = corpus.assign(energy=np.random.default_rng(1).permutation(corpus.energy.to_numpy()))
    learn = _trained_learner(shuffled)
    real = _context_decides_words(400, seed=2)     # the true relation, which the learner never saw
    r = controllability(learn, "energy", n_words=600, real_texts=real.text, real_values=real.energy, no_bar=True)
    assert r.real_spearman > 0.8
    assert abs(r.ratio) < 0.15 and abs(r.spearman) < 0.15, str(r)
