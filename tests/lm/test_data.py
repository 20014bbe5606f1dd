"""ContextLanguageModelLoader and ContextTextDataLoaders: fastai's LMDataLoader behaviours hold,
every token carries its document's context, bad input gets a clear error."""
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.text.data import LMDataLoader
from fastai.torch_core import set_seed

from fastai_context import ContextLanguageModelLoader, ContextTextDataLoaders


def tensors(*docs):
    return [torch.tensor(d) for d in docs]


def unique_docs(n_docs=60, seed=0, max_len=40):
    "Documents whose tokens are unique ids, so every token names its document."
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, max_len, n_docs)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    docs = [torch.arange(s, s + n) for s, n in zip(starts, lens)]
    owner = torch.cat([torch.full((n,), i) for i, n in enumerate(lens)])
    return docs, owner


# ------------------------------------------------------------- LMDataLoader behaviours
def test_fastai_notebook_example_layout():
    "The 23-token, bs=4, seq_len=3 example of fastai's 31_text.data notebook."
    ints = tensors([0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16, 17, 18], [19, 20], [21, 22])
    dl = ContextLanguageModelLoader(ints, torch.zeros(5, 1), bs=4, seq_len=3)
    batches = list(dl)
    expected = [([[0, 1, 2], [5, 6, 7], [10, 11, 12], [15, 16, 17]], [[1, 2, 3], [6, 7, 8], [11, 12, 13], [16, 17, 18]]),
                ([[3, 4], [8, 9], [13, 14], [18, 19]], [[4, 5], [9, 10], [14, 15], [19, 20]])]
    assert len(batches) == 2 and dl.n_inp == 2
    for (x, ctx, y), (ex, ey) in zip(batches, expected):
        assert x.tolist() == ex and y.tolist() == ey
        assert ctx.shape == (*x.shape, 1)
    for (x, y), (x2, _, y2) in zip(LMDataLoader(ints, bs=4, seq_len=3), batches):
        assert torch.equal(x, x2) and torch.equal(y, y2)


@pytest.mark.parametrize("shuffle", [False, True])
def test_rows_continue_and_y_is_shifted_x(shuffle):
    docs, _ = unique_docs(80)
    dl = ContextLanguageModelLoader(docs, torch.zeros(len(docs), 1), bs=5, seq_len=7, shuffle=shuffle)
    batches = list(dl)
    for (x, _, y) in batches:
        assert torch.equal(x[:, 1:], y[:, :-1])                     # y is x shifted by one
    for (x0, _, y0), (x1, _, _) in zip(batches, batches[1:]):
        assert torch.equal(x1[:, 0], y0[:, -1])                     # row i continues row i
    assert batches[-1][0].shape[1] == dl.last_len                   # the short last batch


def test_each_token_once_per_shuffled_epoch():
    docs, _ = unique_docs(120, seed=1)
    dl = ContextLanguageModelLoader(docs, torch.zeros(len(docs), 1), bs=6, seq_len=9, shuffle=True)
    orders = []
    for _ in range(3):
        toks = torch.cat([x.flatten() for x, _, _ in dl])
        assert len(toks) == len(set(toks.tolist())) == dl.bs * dl.bl
        orders.append(list(dl.items.idxs))
    assert orders[0] != orders[1]                                   # documents really were shuffled


def test_constant_context_matches_lmdataloader_under_shuffle(tracks):
    "With one constant context column the (x, y) batches are LMDataLoader's, shuffle after shuffle."
    df = tracks.sample(600, random_state=0)
    dls = ContextTextDataLoaders.from_df(df, "track_name", "energy", bs=8, seq_len=10, seed=0)
    ds = dls.train.dataset
    ref = LMDataLoader(ds, bs=8, seq_len=10, shuffle=True)
    ours = ContextLanguageModelLoader(ds, torch.ones(len(ds), 1), bs=8, seq_len=10, shuffle=True)
    for epoch in range(2):
        set_seed(epoch)
        a = list(ref)
        set_seed(epoch)
        b = list(ours)
        assert len(a) == len(b) > 1
        for (x, y), (x2, c2, y2) in zip(a, b):
            assert torch.equal(x, x2) and torch.equal(y, y2) and bool((c2 == 1).all())


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("bs", [1, 7, 64])
@pytest.mark.parametrize("seq_len", [1, 5, 72])
def test_every_token_carries_its_documents_context(bs, seq_len, num_workers):
    docs, owner = unique_docs(40 if bs * seq_len <= 7 else 600, seed=bs + seq_len, max_len=30)
    context = torch.randn(len(docs), 3)
    dl = ContextLanguageModelLoader(docs, context, bs=bs, seq_len=seq_len, shuffle=True, num_workers=num_workers)
    for _ in range(3):
        n = 0
        for x, ctx, y in dl:
            assert x.shape == y.shape == ctx.shape[:2] and ctx.shape[2] == 3 and x.shape[0] == bs
            assert torch.equal(ctx, context[owner[x]])
            n += x.numel()
        assert n == bs * dl.bl


# ----------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def spotify_dls(tracks):
    df = tracks.sample(1500, random_state=1)
    return df, ContextTextDataLoaders.from_df(df, "track_name", ["energy", "playlist_genre"], bs=16, seq_len=20, seed=0)


def test_real_tracks_context_follows_documents(spotify_dls):
    "Rebuild each stream row from the batches, cut it at xxbos, and look each document up."
    df, dls = spotify_dls
    dl = dls.train
    docs = {}
    for i in range(len(dl.dataset)):
        docs.setdefault(tuple(dl.dataset[i][0].tolist()), []).append(dl.context[i])
    bos = dls.vocab.index("xxbos")
    for _ in range(2):                                               # two shuffled epochs
        batches = list(dl)
        rows_x = torch.cat([b[0] for b in batches], 1)
        rows_c = torch.cat([b[1] for b in batches], 1)
        checked = 0
        for x, c in zip(rows_x, rows_c):
            starts = (x == bos).nonzero().flatten().tolist()
            for a, b in zip(starts, starts[1:]):                     # whole documents inside the row
                assert (c[a:b] == c[a]).all()
                assert any(torch.equal(c[a], ctx) for ctx in docs[tuple(x[a:b].tolist())])
                checked += 1
        assert checked > 100


def test_loaders_show_batch_new_and_export(spotify_dls):
    df, dls = spotify_dls
    shown = dls.train.show_batch(max_n=3, show=False)
    assert list(shown.columns) == ["text", "energy", "playlist_genre", "text_"]
    assert shown["text"].str.contains("xx").any()
    assert set(" | ".join(shown["playlist_genre"]).split(" | ")) <= set(df["playlist_genre"])
    x, ctx, y = dls.valid.one_batch()
    assert ctx.shape == (16, 20, dls.context_encoder.n_features) and dls.valid.n_inp == 2
    test = dls.test_dl(df.head(200))                                 # new(): a test loader
    assert isinstance(test, ContextLanguageModelLoader) and not test.shuffle and len(test) > 0
    expected = dls.context_encoder.encode(df.head(200))
    xs, cs, _ = test.one_batch()
    assert all(any(torch.equal(r, e) for e in expected) for r in cs.reshape(-1, cs.shape[-1]))
    empty = pickle.loads(pickle.dumps(dls.new_empty()))             # what learn.export() pickles
    assert empty.context_encoder.same_as(dls.context_encoder)
    assert torch.equal(empty.context_encoder.encode({"energy": 1.0, "playlist_genre": "rock"}),
                       dls.context_encoder.encode({"energy": 1.0, "playlist_genre": "rock"}))


def test_encoder_standardizes_on_train_split_and_one_hots(spotify_dls):
    df, dls = spotify_dls
    enc = dls.context_encoder
    assert enc.columns == ["energy", "playlist_genre"]
    assert enc.feature_names == ["energy"] + [f"playlist_genre={g}" for g in sorted(df.playlist_genre.unique())]
    train_energy = dls.train.context[:, 0]
    assert train_energy.mean().item() == pytest.approx(0, abs=1e-5)          # statistics of the train split
    assert train_energy.std(unbiased=False).item() == pytest.approx(1, abs=1e-4)
    assert dls.valid.context[:, 0].mean().item() != pytest.approx(0, abs=1e-5)
    assert torch.all(dls.train.context[:, 1:].sum(1) == 1)                  # one-hot genre
    back = enc.decode(enc.encode({"energy": 0.25, "playlist_genre": "latin"}))
    assert back["energy"] == pytest.approx(0.25) and back["playlist_genre"] == "latin"
    assert torch.allclose(enc.mean_context(), dls.train.context.mean(0), atol=1e-5)


def test_valid_col_split(tracks):
    df = tracks.sample(400, random_state=2).assign(is_valid=lambda d: np.arange(len(d)) % 4 == 0)
    dls = ContextTextDataLoaders.from_df(df, "track_name", "energy", valid_col="is_valid", bs=4, seq_len=8)
    assert len(dls.train.dataset) == 300 and len(dls.valid.dataset) == 100


# ------------------------------------------------------------------ sharding
def test_world_size_shards_disjoint_streams_of_one_order():
    docs, owner = unique_docs(200, seed=3)
    ctx = owner.new_tensor(range(len(docs))).float()[:, None]
    full = ContextLanguageModelLoader(docs, ctx, bs=6, seq_len=5, shuffle=True, shuffle_seed=7)
    ranks = [ContextLanguageModelLoader(docs, ctx, bs=3, seq_len=5, shuffle=True, shuffle_seed=7, rank=r, world_size=2)
             for r in range(2)]
    for _ in range(2):
        want = list(full)
        got = [list(dl) for dl in ranks]
        assert len(got[0]) == len(got[1]) == len(want)
        for k, (x, c, y) in enumerate(want):
            assert torch.equal(torch.cat([got[0][k][0], got[1][k][0]]), x)
            assert torch.equal(torch.cat([got[0][k][1], got[1][k][1]]), c)
    with pytest.raises(ValueError, match="shuffle_seed"):
        ContextLanguageModelLoader(docs, ctx, bs=3, shuffle=True, rank=0, world_size=2)


# ------------------------------------------------------------------ bad input
def small_df():
    return pd.DataFrame({"text": ["a loud song", "a quiet song", "another loud one", "soft and slow", "fast beat"] * 4,
                         "energy": [0.9, 0.1, 0.8, 0.2, 0.95] * 4,
                         "genre": ["rock", "folk", "rock", "folk", "edm"] * 4})


def build(df, **kw):
    return ContextTextDataLoaders.from_df(df, "text", kw.pop("cols", ["energy"]), bs=2, seq_len=4, seed=0, min_freq=1, **kw)


def test_missing_context_column():
    with pytest.raises(KeyError, match="valence"):
        build(small_df(), cols=["energy", "valence"])
    with pytest.raises(KeyError, match="lyrics"):
        ContextTextDataLoaders.from_df(small_df(), "lyrics", ["energy"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_numeric_column_names_rows(bad):
    df = small_df()
    df.loc[[3, 7], "energy"] = bad
    with pytest.raises(ValueError, match=r"'energy'.*\[3, 7\]"):
        build(df)
    dls = build(df, fill="mean")                                     # explicit fill policy
    assert torch.isfinite(dls.train.context).all()
    assert len(build(df, fill="drop").train.dataset) + len(build(df, fill="drop").valid.dataset) == 18


def test_non_numeric_value_in_numeric_column():
    df = small_df()
    df["energy"] = df["energy"].astype(object)
    df.loc[5, "energy"] = "high"
    with pytest.raises(ValueError, match=r"'energy'.*non-numeric.*\[5\]"):
        build(df)


def test_context_row_count_must_match_documents():
    docs, _ = unique_docs(10)
    with pytest.raises(ValueError, match="9 rows but the dataset has 10 documents"):
        ContextLanguageModelLoader(docs, torch.zeros(9, 1), bs=2, seq_len=3)
    with pytest.raises(ValueError, match=r"NaN or inf in rows \[4\]"):
        ContextLanguageModelLoader(docs, torch.zeros(10, 1).index_fill_(0, torch.tensor([4]), float("nan")), bs=2)


def test_missing_text_names_rows():
    df = small_df()
    df["title"] = np.where(np.arange(len(df)) == 6, None, "x")
    df["text"] = df["title"].astype(str).where(df["title"].notna()) + " " + df["text"]   # pandas keeps NaN
    with pytest.raises(ValueError, match=r"text column 'text' has missing \(NaN\) values in rows \[6\]"):
        build(df)


def test_empty_document_after_tokenization():
    df = small_df()
    df.loc[[2, 11], "text"] = ["", "   "]
    with pytest.raises(ValueError, match=r"empty after tokenization in rows \[2, 11\]"):
        build(df)


def test_unknown_feature_and_unseen_category_at_encode():
    enc = build(small_df(), cols=["energy", "genre"]).context_encoder
    with pytest.raises(KeyError, match="tempo"):
        enc.encode({"energy": 0.5, "genre": "rock", "tempo": 120})
    with pytest.raises(KeyError, match="genre"):
        enc.encode({"energy": 0.5})
    with pytest.raises(ValueError, match="polka"):
        enc.encode({"energy": 0.5, "genre": "polka"})
    with pytest.raises(ValueError, match="must be a number"):
        enc.encode({"energy": "loud", "genre": "rock"})
    assert enc.encode({"energy": 0.5, "genre": "rock"}).shape == (4,)


def test_fast_numericalization_equals_fastai_pipeline(spotify_dls):
    "The codec numericalizes all documents at once, equal to fastai's per-item pipeline (the generic path)."
    from fastai_context.compat import text_pipeline
    from fastai_context.lm.data import TokenDocuments
    dls = spotify_dls[1]
    ds = dls.train.dataset
    fast = TokenDocuments.from_token_lists(text_pipeline(ds)[2], dls.codec)
    assert len(fast) == len(ds) and dls.codec is dls.train.codec is dls.valid.codec
    assert all(torch.equal(fast[i], ds[i][0]) for i in range(len(ds)))
    assert all(torch.equal(fast[i], dls.train.docs[i]) for i in range(len(ds)))


def test_counting_tokenizer_is_fastais_tokenize_df_plus_ids(tracks):
    "Same tokenized DataFrame and Counter (so the same vocabulary) as fastai's tokenize_df, and the ids in one pass."
    from fastai.text.core import tokenize_df
    from fastai.text.data import make_vocab
    from fastai_context.compat import CountingTokenizer
    df = tracks.head(400)[["track_name", "energy"]].reset_index(drop=True)
    ref, ref_count = tokenize_df(df, "track_name", n_workers=1)
    tok = CountingTokenizer.from_df("track_name", n_workers=1)
    holder = type("Items", (), {"items": df})()
    tok.setups(holder)
    pd.testing.assert_frame_equal(holder.items, ref)
    assert list(tok.counter.items()) == list(ref_count.items())      # same counts, same order of first appearance
    vocab = make_vocab(ref_count, min_freq=2)
    o2i = {t: i for i, t in enumerate(vocab) if t != "xxfake"}
    ids, lens = tok.ids(o2i)
    assert ids.dtype == np.int32 and lens.tolist() == ref.text_length.tolist()
    assert ids.tolist() == [o2i.get(t, 0) for doc in ref.text for t in doc]
    assert tok.ids(o2i) is None                                       # handed over once, not kept for export
    from fastai.text.data import TextDataLoaders
    theirs = TextDataLoaders.from_df(df, text_col="track_name", is_lm=True, valid_pct=0.1, seed=0, bs=4, seq_len=8)
    ours = ContextTextDataLoaders.from_df(df, "track_name", "energy", valid_pct=0.1, seed=0, bs=4, seq_len=8)
    assert list(ours.vocab) == list(theirs.vocab) and len(ours.vocab) > 100
    assert isinstance(ours.codec.tokenizer, CountingTokenizer) and ours.codec.tokenizer.ids(o2i) is None


def test_from_df_with_a_given_vocab_and_tokenizer(tracks):
    "`text_vocab` (e.g. a pretrained model's) and `tok_tfm` go through the counting tokenizer like fastai's own."
    from fastai.text.core import BaseTokenizer
    df = tracks.head(300)[["track_name", "energy"]].reset_index(drop=True)
    first = ContextTextDataLoaders.from_df(df.head(150), "track_name", "energy", seed=0, bs=4, seq_len=8, n_workers=1)
    dls = ContextTextDataLoaders.from_df(df, "track_name", "energy", seed=0, bs=4, seq_len=8, n_workers=1,
                                         text_vocab=first.vocab, tok_tfm=BaseTokenizer())
    assert list(dls.vocab) == list(first.vocab)
    ds = dls.train.dataset
    assert all(torch.equal(dls.train.docs[i], ds[i][0]) for i in range(len(ds)))       # fastai's per-item pipeline
    assert int((dls.train.docs.tokens == dls.vocab.index("xxunk")).sum()) > 0         # words the given vocab lacks


def test_token_documents_take_gathers_documents_in_order():
    from fastai_context.lm.data import TokenDocuments
    docs, _ = unique_docs(500, seed=6)
    flat = TokenDocuments.from_docs(docs)
    idx = np.random.default_rng(0).permutation(500)[:321]
    part = flat.take(idx, chunk_tokens=97)                           # many chunks, documents cut across them
    assert len(part) == 321 and all(torch.equal(part[j], docs[i]) for j, i in enumerate(idx))
    assert len(flat.take([])) == 0


def test_never_drawn_is_one_definition_for_lm_and_vae():
    from fastai_context.text import never_drawn
    vocab = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj", "love", "xxfake", "xxfake"]
    ban = lambda **kw: [vocab[i] for i in never_drawn(vocab, **kw)]
    assert ban() == ["xxunk", "xxpad", "xxeos", "xxfld", "xxfake", "xxfake"]
    assert ban(end="xxeos", no_unk=False) == ["xxpad", "xxbos", "xxfld", "xxfake", "xxfake"]


# ------------------------------------------------------------------ at scale
FULL_EPOCH = r"""
import sys
import numpy as np, torch
torch.set_num_threads(1)
from fastai_context.lm.data import ContextLanguageModelLoader
rng = np.random.default_rng(0)
lens = rng.integers(1, 80, 75_000)                     # ~3M tokens, every token id unique
ends = np.cumsum(lens)
docs = list(torch.arange(int(ends[-1])).split(lens.tolist()))
context = torch.from_numpy(np.stack([np.arange(len(lens)), -np.arange(len(lens))], 1).astype(np.float32))
dl = ContextLanguageModelLoader(docs, context, bs=8, seq_len=72, shuffle=True)
orders = []
for epoch in range(2):
    seen = np.zeros(int(ends[-1]), dtype=np.int64)
    for x, ctx, y in dl:
        x = x.numpy()
        owner = np.searchsorted(ends, x, side="right")   # the document each token id belongs to
        assert (ctx[..., 0].numpy() == owner).all() and (ctx[..., 1].numpy() == -owner).all()
        np.add.at(seen, x.ravel(), 1)
    assert seen.max() == 1 and seen.sum() == dl.bs * dl.bl, (seen.max(), seen.sum(), dl.bs * dl.bl)
    # the tokens left out are the stream's tail: fewer than bs + 1 of them
    assert int(ends[-1]) - seen.sum() <= dl.bs
    orders.append(dl.items.idxs.copy())
assert not np.array_equal(orders[0], orders[1])
print("ok", int(ends[-1]), dl.n_batches)
"""


@pytest.mark.slow
def test_multi_million_token_epoch_every_token_once_with_its_context():
    "A 3M-token corpus, two shuffled epochs: each token exactly once per epoch, with its document's context."
    import os
    import subprocess
    import sys
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", FULL_EPOCH], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")


def test_token_documents_flat_and_memory_mapped(tmp_path):
    "A TokenDocuments (int32, or memory-mapped from disk) gives the batches of the list of tensors."
    from fastai_context.lm.data import TokenDocuments
    docs, owner = unique_docs(300, seed=4)
    flat = TokenDocuments.from_docs(docs)
    assert flat.tokens.dtype == np.int32 and len(flat) == 300 and torch.equal(flat[7], docs[7])
    mapped = TokenDocuments.load(flat.save(tmp_path / "corpus"))
    assert isinstance(mapped.tokens, np.memmap)
    context = torch.randn(300, 2)
    runs = []
    for data in (docs, flat, mapped):
        set_seed(0)
        dl = ContextLanguageModelLoader(data, context, bs=5, seq_len=11, shuffle=True)
        runs.append([torch.cat([x.flatten(), c.flatten(), y.flatten()]) for x, c, y in dl])
    assert all(torch.equal(a, b) for run in runs[1:] for a, b in zip(runs[0], run))
    valid = dl.new(shuffle=False)
    assert valid.docs is dl.docs                                       # new() shares the token array
    with pytest.raises(FileNotFoundError, match="tokens.npy"):
        TokenDocuments.load(tmp_path / "nowhere")


def test_state_dict_resumes_the_epoch_sequence():
    docs, _ = unique_docs(200, seed=5)
    ctx = torch.zeros(200, 1)
    dl = ContextLanguageModelLoader(docs, ctx, bs=4, seq_len=6, shuffle=True, shuffle_seed=3)
    list(dl)
    state = dl.state_dict()
    want = [x for x, _, _ in dl]
    fresh = ContextLanguageModelLoader(docs, ctx, bs=4, seq_len=6, shuffle=True, shuffle_seed=3)
    fresh.load_state_dict(state)
    assert fresh._epoch == 1 and all(torch.equal(a, b) for a, b in zip(want, [x for x, _, _ in fresh]))
    other = ContextLanguageModelLoader(docs[:50], ctx[:50], bs=4, seq_len=6, shuffle=True, shuffle_seed=3)
    with pytest.raises(ValueError, match="not a permutation of this loader's 50 documents"):
        other.load_state_dict(state)


# ------------------------------------------------------------------ bad input at the loader
@pytest.mark.parametrize("kw,match", [(dict(bs=0), "bs must be a positive integer, got 0"),
                                      (dict(seq_len=0), "seq_len must be a positive integer, got 0"),
                                      (dict(seq_len=-3), "seq_len must be a positive integer, got -3"),
                                      (dict(bs=2.5), "bs must be a positive integer, got 2.5")])
def test_bs_and_seq_len_must_be_positive(kw, match):
    docs, _ = unique_docs(20)
    with pytest.raises(ValueError, match=match):
        ContextLanguageModelLoader(docs, torch.zeros(20, 1), **{"bs": 2, "seq_len": 3, **kw})
    with pytest.raises(ValueError, match=match):
        ContextTextDataLoaders.from_df(small_df(), "text", "energy", **kw)


def test_context_of_strings_is_refused():
    docs, _ = unique_docs(5)
    with pytest.raises(ValueError, match="context must hold numbers"):
        ContextLanguageModelLoader(docs, np.array(["rock", "folk", "rock", "edm", "folk"]), bs=2, seq_len=3)
    with pytest.raises(ValueError, match=r"context columns \['genre'\] are not numeric"):
        ContextLanguageModelLoader(docs, small_df().head(5)[["energy", "genre"]], bs=2, seq_len=3)


def test_documents_must_be_token_ids():
    with pytest.raises(ValueError, match="document 1 holds torch.float32"):
        ContextLanguageModelLoader([torch.arange(5), torch.rand(4), torch.arange(3)], torch.zeros(3, 1), bs=1, seq_len=2)
    with pytest.raises(ValueError, match="document 2 holds negative token ids"):
        ContextLanguageModelLoader([torch.arange(5), torch.arange(3), torch.tensor([4, -1])], torch.zeros(3, 1), bs=1)


def test_item_hooks_are_refused_not_ignored():
    docs, _ = unique_docs(20)
    for hook in ("after_item", "before_batch"):
        with pytest.raises(ValueError, match=f"never runs {hook}"):
            ContextLanguageModelLoader(docs, torch.zeros(20, 1), bs=2, seq_len=3, **{hook: lambda o: o})


@pytest.mark.parametrize("valid_pct", [0, 1, 1.5, -0.2])
def test_valid_pct_must_be_a_fraction(valid_pct):
    with pytest.raises(ValueError, match=f"valid_pct must be a fraction strictly between 0 and 1, got {valid_pct}"):
        build(small_df(), valid_pct=valid_pct)


def test_non_unique_index_errors_name_positions():
    df = small_df()
    df.index = [0] * len(df)
    df.loc[:, "energy"] = df["energy"].where(~np.isin(np.arange(len(df)), [3, 7]))
    with pytest.raises(ValueError, match=r"'energy'.*\[3, 7\]"):
        build(df)
    assert len(build(df, fill="drop").train.dataset) > 0


def test_test_dl_refuses_a_list_and_blank_texts(spotify_dls):
    df, dls = spotify_dls
    with pytest.raises(TypeError, match=r"DataFrame with the text column 'track_name' and the context columns "
                                        r"\['energy', 'playlist_genre'\], got a list"):
        dls.test_dl(["a text"])
    bad = df.head(10).copy()
    bad.loc[bad.index[[2, 5]], "track_name"] = ["", "  "]
    rows = ", ".join(str(i) for i in sorted(bad.index[[2, 5]].tolist()))
    with pytest.raises(ValueError, match=rf"empty after tokenization in rows \[{rows}\]"):
        dls.test_dl(bad)


def test_codec_says_so_when_fastais_pipeline_changes():
    """If fastai's text pipeline no longer has the shape `compat.text_pipeline` reads (ColReader -> Tokenizer
    -> Numericalize over a tokenized DataFrame), building the codec fails loudly instead of going slow."""
    from fastai.data.core import Datasets
    from fastai.data.transforms import ColReader
    from fastai_context.compat import text_pipeline
    dsets = Datasets(small_df(), [[ColReader("text")]], splits=[[0, 1], [2]])
    with pytest.raises(RuntimeError, match="fastai's TextBlock pipeline is not ColReader -> Tokenizer -> Numericalize"):
        text_pipeline(dsets.train)


def test_from_df_says_so_when_fastai_stops_calling_the_counting_tokenizer(monkeypatch):
    "If fastai no longer tokenizes through `Tokenizer.setups`, from_df fails loudly rather than numericalize wrongly."
    from fastai_context.compat import CountingTokenizer
    monkeypatch.setattr(CountingTokenizer, "ids", lambda self, o2i, unk=0: None)
    with pytest.raises(RuntimeError, match="does not support this fastai version"):
        ContextTextDataLoaders.from_df(small_df(), "text", "energy", bs=2, seq_len=4, seed=0, min_freq=1)


def test_numpy_shuffle_option_keeps_the_layout_and_is_seeded():
    "fastai_order=False: a numpy shuffle, still every token once per epoch and fixed by set_seed / shuffle_seed."
    docs, owner = unique_docs(300, seed=6)
    context = owner.new_tensor(range(300)).float()[:, None]
    runs = []
    for _ in range(2):                                              # same seed, same batches
        set_seed(1)
        dl = ContextLanguageModelLoader(docs, context, bs=4, seq_len=9, shuffle=True, fastai_order=False)
        runs.append([torch.cat([x.flatten(), c.flatten()]) for x, c, _ in dl])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    orders = []
    for _ in range(2):
        batches = list(dl)
        toks = torch.cat([x.flatten() for x, _, _ in batches])
        assert len(toks) == len(set(toks.tolist())) == dl.bs * dl.bl
        assert all(torch.equal(c[..., 0], owner[x].float()) for x, c, _ in batches)
        orders.append(dl.items.idxs.copy())
    assert not np.array_equal(*orders) and not dl.new().fastai_order
    full = ContextLanguageModelLoader(docs, context, bs=4, seq_len=9, shuffle=True, shuffle_seed=2, fastai_order=False)
    half = ContextLanguageModelLoader(docs, context, bs=2, seq_len=9, shuffle=True, shuffle_seed=2, fastai_order=False,
                                      rank=1, world_size=2)
    assert all(torch.equal(x[2:], h) for (x, _, _), (h, _, _) in zip(full, half))
