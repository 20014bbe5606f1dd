"""`TextCodec`: the one text pipeline both model families use (tokenize, numericalize, decode, never_drawn)."""
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.learner import load_learner

from fastai_context import ContextTextDataLoaders, context_language_model_learner
from fastai_context.compat import text_pipeline
from fastai_context.text import SPECIAL_TOKENS, TextCodec, blank_docs, never_drawn, vocab_of
from fastai_context.vae.data import SentenceDataLoaders, SentenceTokenizer

VOCAB = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj",
         "hello", "world", "a", "3", "love", "xxfake"]
TINY = dict(emb_sz=16, n_hid=32, n_layers=1)


@pytest.fixture(scope="module")
def real_dls(tracks):
    df = tracks.dropna(subset=["track_name"]).sample(600, random_state=3)
    return df, ContextTextDataLoaders.from_df(df, "track_name", "energy", bs=8, seq_len=16, seed=0)


def ids(text: str) -> list[int]:
    return [VOCAB.index(t) for t in text.split()]


def test_lm_codec_is_the_training_pipeline(real_dls):
    "Re-tokenizing the real training texts with the codec gives exactly the ids fastai's pipeline gave."
    df, dls = real_dls
    codec = dls.codec
    assert dls.train.codec is dls.valid.codec is codec and codec.text_col == "track_name"
    assert codec.vocab == list(dls.vocab) == vocab_of(dls)
    tokens = list(text_pipeline(dls.train.dataset)[2])
    raw = df.loc[dls.train.dataset.items.index, "track_name"]        # fastai replaced the column by its tokens
    assert codec.tokenize(raw) == [list(t) for t in tokens]
    flat, lens = codec.numericalize(tokens)
    assert flat.dtype == np.int32 and lens.sum() == len(flat) == dls.train.docs.n_tokens
    assert np.array_equal(flat, dls.train.docs.tokens)
    assert codec.encode("Hello World")[:1] == [codec.token_id("xxbos")]


def test_decode_applies_fastai_rules_and_never_leaves_a_marker_dangling():
    codec = TextCodec(VOCAB)
    assert codec.decode(ids("xxbos xxmaj hello xxup world")) == "Hello WORLD"
    # a case marker before a special token or at the end is dropped, never capitalising `xxbos`
    two = ids("xxbos xxmaj hello xxmaj xxbos love xxpad xxup")
    assert codec.decode(two) == "Hello love"
    assert codec.decode(two, doc_sep=" / ") == "Hello / love"
    assert codec.decode(ids("xxbos xxrep 3 a")) == "aaa"
    assert not [w for w in codec.decode(two).split() if w.lower().startswith("xx")]


def test_sentence_codec_strips_boundaries_and_stops_at_its_end_token():
    codec = SentenceTokenizer(vocab=VOCAB)
    assert codec.tokenize(["Hello world"]) == [["xxmaj", "hello", "world"]]
    assert codec.decode(ids("xxbos xxmaj hello xxeos world")) == "Hello"
    assert codec.decode(torch.tensor(ids("xxup love xxpad xxpad"))) == "LOVE"
    # one definition of the tokens never drawn: the LM may start a new document, the VAE may end a sentence
    lm, vae = TextCodec(VOCAB), codec
    assert lm.never_drawn() == never_drawn(VOCAB, end="xxbos") and vae.never_drawn() == never_drawn(VOCAB, end="xxeos")
    assert VOCAB.index("xxbos") not in lm.never_drawn() and VOCAB.index("xxeos") in lm.never_drawn()
    assert VOCAB.index("xxeos") not in vae.never_drawn() and VOCAB.index("xxbos") in vae.never_drawn()
    assert VOCAB.index("xxunk") not in vae.never_drawn(no_unk=False)
    ids_ = codec.numericalize_tokens([["hello", "zebra"], ["love"]])
    assert [t.tolist() for t in ids_] == [[VOCAB.index("hello"), VOCAB.index("xxunk")], [VOCAB.index("love")]]


def test_codec_pickles_and_reads_a_sentence_tokenizer_pickled_before_it_existed():
    codec = SentenceTokenizer(vocab=VOCAB)
    again = pickle.loads(pickle.dumps(codec))
    assert again.vocab == VOCAB and again.o2i == codec.o2i and again.decode(ids("xxmaj love")) == "Love"
    old = SentenceTokenizer.__new__(SentenceTokenizer)
    old.__setstate__({"tokenizer": codec.tokenizer, "vocab": VOCAB})      # the attributes it had before
    assert old.numericalize([["love"]])[0].tolist() == [VOCAB.index("love")] and old.end == "xxeos"
    with pytest.raises(ValueError, match="no vocabulary yet"):
        TextCodec(None).decode([0])
    with pytest.raises(KeyError, match="'xxeos' is not in the vocabulary"):
        TextCodec(["xxunk", "xxpad", "xxbos"]).token_id("xxeos")


def test_a_loader_pickled_before_codecs_rebuilds_it_from_fastais_pipeline(real_dls, tmp_path):
    "A learner exported before `TextCodec` existed still loads, generates and makes test loaders."
    df, dls = real_dls
    learn = context_language_model_learner(dls, config=TINY)
    learn.export(tmp_path / "model.pkl")
    learn2 = load_learner(tmp_path / "model.pkl")
    for dl in learn2.dls.loaders:                       # what a loader pickled before this change holds
        dl.__dict__.pop("_codec")
    codec = learn2.dls.codec
    assert codec.vocab == dls.codec.vocab and codec.text_col == "track_name"
    text = learn2.generate({"energy": 0.5}, n_words=12, seed=0, no_bar=True)[0]
    assert text == learn.generate({"energy": 0.5}, n_words=12, seed=0, no_bar=True)[0]
    assert not [w for w in text.split() if w in SPECIAL_TOKENS]
    test = learn2.dls.test_dl(df.head(20))
    assert np.array_equal(test.docs.tokens, dls.test_dl(df.head(20)).docs.tokens)


def test_vae_loaders_carry_the_codec(tracks):
    dls = SentenceDataLoaders.from_texts(tracks.track_name.dropna().head(200).tolist(), bs=16, seed=0)
    assert dls.codec is dls.tokenizer is dls.train.codec and isinstance(dls.codec, TextCodec)
    x = dls.valid.one_batch()[0]
    shown = list(dls.valid.show_batch(show=False, max_n=len(x)).sentence)
    assert [dls.codec.decode(r) for r in x] == shown and not [s for s in shown if "xxbos" in s or "xxpad" in s]


def test_decode_spec_tokens_repeats_one_word_and_drops_dangling_markers():
    from fastai_context.text import decode_spec_tokens
    toks = "xxwrep 4 oh , i xxrep 3 ! xxmaj baby xxup come back xxwrep 3 xxmaj hey now xxmaj".split()
    assert decode_spec_tokens(toks) == ["oh"] * 4 + [",", "i", "!!!", "Baby", "COME", "back"] + ["Hey"] * 3 + ["now"]
    assert decode_spec_tokens(["xxmaj", "xxbos", "love", "xxup"]) == ["xxbos", "love"]


def test_codec_round_trip_of_repeated_words(tracks):
    "What fastai's tokenizer writes, the codec reads back: each word once, repeats as sung (fastai lowercases a lone I)."
    from fastai_context import ContextTextDataLoaders
    df = tracks.dropna(subset=["track_name"]).sample(300, random_state=0)[["track_name", "energy"]]
    df = pd.concat([df, pd.DataFrame({"track_name": ["Oh oh oh oh, I love you so much!!! Baby come back"],
                                      "energy": [0.5]})], ignore_index=True)
    dls = ContextTextDataLoaders.from_df(df, "track_name", "energy", bs=4, seq_len=8, seed=0, min_freq=1)
    text = dls.codec.decode(dls.codec.encode("Oh oh oh oh, I love you so much!!! Baby come back"))
    assert text.split() == ["Oh", "oh", "oh", "oh", ",", "i", "love", "you", "so", "much", "!!!", "Baby", "come",
                            "back"]


def test_blank_docs_on_ids_counts_unknown_words_as_text():
    "Documents of special tokens only are blank; a document of out-of-vocabulary words (all `xxunk`) is not."
    # ids: 0 xxunk, 1 xxpad, 2 xxbos, 5 a word; documents: [bos], [], [bos unk], [bos pad], [bos 5], []
    ids = np.array([2, 2, 0, 2, 1, 2, 5], dtype=np.int32)
    lens = np.array([1, 0, 2, 2, 2, 0])
    assert blank_docs(ids, lens, [1, 2]).tolist() == [0, 1, 3, 5]
    assert blank_docs(ids[:0], np.array([0, 0]), [1, 2]).tolist() == [0, 1]
