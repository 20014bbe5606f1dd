"""What a notebook user sees: `show_batch` displays once (fastai's behaviour), word clouds have
no one-letter words and keep words apart."""
import pytest

from fastai_context import ContextTextDataLoaders
from fastai_context.analysis import word_cloud, word_counts
from fastai_context.vae import SentenceDataLoaders


@pytest.fixture(scope="module")
def titles(tracks):
    return tracks.dropna(subset=["track_name"]).sample(400, random_state=3)


def test_show_batch_displays_and_returns_nothing_unless_asked(titles, capsys):
    lm = ContextTextDataLoaders.from_df(titles, "track_name", ["energy"], bs=8, seq_len=16, seed=0)
    vae = SentenceDataLoaders.from_texts(titles.track_name.tolist(), bs=8, seed=0)
    for dls in (lm, vae):
        assert dls.show_batch(max_n=2) is None and dls.train.show_batch(max_n=2) is None
        assert capsys.readouterr().out            # it was displayed (as text, outside a notebook)
        df = dls.train.show_batch(max_n=2, show=False)
        assert len(df) == 2 and not capsys.readouterr().out
    assert list(lm.train.show_batch(max_n=2, show=False).columns) == ["text", "energy", "text_"]


def test_word_counts_drop_one_letter_words(titles):
    counts = word_counts(["Hold Me x Alesso", "u r my love", "I want U so bad"], stopwords=None)
    assert set(counts) == {"hold", "me", "alesso", "my", "love", "want", "so", "bad"}
    assert set(word_counts(["u r x"], stopwords=None, min_length=1)) == {"u", "r", "x"}
    real = word_counts(titles.track_name)
    assert min(map(len, real)) >= 2 and "remix" in real


def test_word_cloud_keeps_words_apart(titles):
    counts = word_counts(titles.track_name)
    cloud = word_cloud(counts, color="#3BBB75", width=400, height=200)
    assert cloud.margin == 10                      # wordcloud's 2 px let neighbours read as one word
    placed = [w for (w, _), *_ in cloud.layout_]
    assert placed[0] == max(counts, key=counts.get) and all(len(w) >= 2 for w in placed)
    assert word_cloud(counts, width=400, height=200, margin=4).margin == 4     # still the caller's choice
