"""Sentence data: punkt splitting that keeps each sentence's review, and padded, bucketed batches."""
import pandas as pd
import pytest
import torch

from fastai_context import datasets
from fastai_context.vae import SentenceDataLoaders, split_sentences


@pytest.fixture(scope="module")
def reviews(data_dir):
    return datasets.blog_reviews().head(30)


def test_split_sentences_keeps_review_columns(reviews):
    sents = split_sentences(reviews, "content", keep=["url", "title"])
    assert list(sents.columns) == ["sentence", "doc", "sent_idx", "url", "title"]
    assert len(sents) > 3 * len(reviews)
    first = reviews.index[0]
    mine = sents[sents.doc == first]
    assert (mine.url == reviews.loc[first, "url"]).all() and (mine.title == reviews.loc[first, "title"]).all()
    assert mine.sent_idx.tolist() == list(range(len(mine)))
    assert all(s.strip() == s and s for s in sents.sentence)
    # punkt knows abbreviations: "Mr. Smith" stays in one sentence
    two = split_sentences(pd.DataFrame({"text": ["I met Mr. Smith today. It was my turn."], "song": ["x"]}), "text")
    assert two.sentence.tolist() == ["I met Mr. Smith today.", "It was my turn."]
    assert two.song.tolist() == ["x", "x"]


def test_split_sentences_errors(reviews):
    with pytest.raises(KeyError, match="'body'"):
        split_sentences(reviews, "body")
    with pytest.raises(KeyError, match="'song'"):
        split_sentences(reviews, "content", keep=["song"])
    bad = pd.DataFrame({"text": ["fine.", None]})
    with pytest.raises(ValueError, match="rows \\[1\\]"):
        split_sentences(bad, "text")


def test_batches_are_padded_bucketed_and_end_with_eos(data_dir):
    titles = datasets.song_titles()[:2000]
    dls = SentenceDataLoaders.from_texts(titles, bs=32, seed=0, bucket=20)
    vocab = dls.vocab
    pad, eos = vocab.index("xxpad"), vocab.index("xxeos")
    x, y = dls.one_batch()
    assert x.shape[0] == 32 and y.shape == (32, x.shape[1] + 1)
    lengths = (x != pad).sum(1)
    assert (y[torch.arange(32), lengths] == eos).all()
    assert torch.equal(y[:, :-1][x != pad], x[x != pad])
    assert "xxbos" not in [vocab[i] for i in x.flatten().tolist()]
    # bucketing: batches hold sentences of similar length, so far less padding than random batches
    def padding(dl):
        return sum(int((x == pad).sum()) for x, y in dl)
    assert padding(dls.train) < 0.5 * padding(dls.train.new(bucket=1))
    df = dls.train.show_batch(max_n=3, show=False)
    assert len(df) == 3 and "sentence" in df and not df.sentence.str.contains("xxmaj").any()


def test_min_len_max_len_and_context(tracks):
    df = tracks.head(600)[["track_name", "energy"]].dropna()
    with pytest.warns(UserWarning, match="longer than max_len=4"):
        dls = SentenceDataLoaders.from_df(df, "track_name", context_cols="energy", min_len=2, max_len=4, seed=1)
    assert max(len(s) for s in dls.train.sentences + dls.valid.sentences) == 4
    assert min(len(s) for s in dls.train.sentences) >= 2
    assert dls.context_encoder.columns == ["energy"] and dls.n_inp == 2
    x, ctx, y = dls.one_batch()
    assert ctx.shape == (len(x), 1) and ctx.dtype == torch.float32
    assert abs(float(dls.train.context.mean())) < 0.1                 # standardized on the training split
    df_ = dls.train.show_batch(max_n=2, show=False)
    assert "energy" in df_ and df_.energy.between(0, 1).all()


def test_from_texts_with_fixed_validation_and_vocab():
    train = ["it was my turn", "he was silent for a long moment", "it was all lies"] * 5
    dls = SentenceDataLoaders.from_texts(train, valid_texts=["it was silent"], bs=4, min_freq=1)
    assert len(dls.valid.sentences) == 1 and len(dls.train.sentences) == 15
    again = SentenceDataLoaders.from_texts(train, valid_texts=["it was"], vocab=dls.vocab, bs=4)
    assert again.vocab == dls.vocab


def test_bad_inputs_are_named():
    ok = ["it was my turn", "he was silent"] * 3
    with pytest.raises(KeyError, match="'energy'"):
        SentenceDataLoaders.from_df(pd.DataFrame({"text": ok}), "text", context_cols="energy")
    with pytest.raises(ValueError, match="non-string values in rows \\[1\\]"):
        SentenceDataLoaders.from_df(pd.DataFrame({"text": ["a b", 3, "c d"]}), "text")
    with pytest.raises(ValueError, match="min_len=0"):
        SentenceDataLoaders.from_texts(ok, min_len=0)
    dls = SentenceDataLoaders.from_texts(ok, bs=2, min_freq=1, seed=0)
    with pytest.raises(ValueError, match="empty"):
        dls.encode_texts(["it was my turn", "  "])
    with pytest.raises(ValueError, match="only unknown words"):
        dls.encode_texts(["zebra quokka"])
    assert dls.sentence_dl(["zebra quokka"], allow_unknown=True).sentences[0].tolist() == [dls.vocab.index("xxunk")] * 2
    with pytest.warns(UserWarning, match="longer than max_len=2"):
        assert [len(s) for s in dls.encode_texts(["it was my turn"], max_len=2)] == [2]
    with pytest.raises(TypeError, match="list of sentences"):
        dls.encode_texts("it was my turn")


def test_new_sentences_of_a_conditional_loader_need_their_context(tracks):
    df = tracks.head(300)[["track_name", "energy"]].dropna()
    dls = SentenceDataLoaders.from_df(df, "track_name", context_cols="energy", seed=0)
    with pytest.raises(ValueError, match="matching context="):
        dls.valid.new(dls.valid.sentences[:3])
    assert len(dls.new_empty().train.sentences) == 0


def test_fill_drop_is_one_policy_for_both_loaders(tracks):
    "fill='drop' drops the rows with missing context in the VAE's from_df as in the LM's (ContextEncoder.drop_missing)."
    df = tracks.head(300)[["track_name", "energy"]].dropna().reset_index(drop=True)
    df.loc[[3, 10, 50], "energy"] = float("nan")
    with pytest.raises(ValueError, match="energy"):
        SentenceDataLoaders.from_df(df, "track_name", context_cols="energy", seed=0)
    dls = SentenceDataLoaders.from_df(df, "track_name", context_cols="energy", seed=0, fill="drop")
    assert len(dls.train.sentences) + len(dls.valid.sentences) == len(df) - 3      # every title has a word
    assert bool(torch.isfinite(dls.train.context).all())
