"""The recipes as a Python API on real Spotify track names and tiny settings: each returns the
`RunFolder` it wrote, commands read each other's results through it (generate's manifest feeds
wordclouds), a resume continues a run, and bad input is refused before any folder is made."""
import json

import pandas as pd
import pytest

from fastai_context import RunFolder, recipes
from fastai_context.workflow.runs import ConfigError

TINY_LM = dict(n_docs=200, epochs=1, sample_words=5)       # over the packaged tiny-lm config


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return recipes.train_lm("tiny-lm", run_dir=tmp_path_factory.mktemp("recipes") / "lm", **TINY_LM)


def test_train_lm_returns_its_run_folder(lm):
    assert isinstance(lm, RunFolder) and lm.path.is_absolute()
    assert lm.command == "train-lm" and lm.config["epochs"] == 1 and lm.config["n_docs"] == 200
    assert lm.text_col == "track_name" and lm.context_cols == ["energy"]
    assert list(lm.history.epoch) == [0] and lm.history.valid_loss.iloc[0] > 0
    assert set(lm.perplexity) == {"true", "shuffled", "mean"}
    valid = lm.valid()
    assert list(valid.columns) == ["track_name", "energy"] and len(valid) == 40     # 20% of 200 documents
    assert lm.model_file.exists() and lm.samples_file.exists() and not lm.lock_file.exists()


def test_generate_writes_a_manifest_that_wordclouds_reads(lm, tmp_path):
    gen = recipes.generate(model=lm, values=[0.9, 0.1], n_words=60, n_samples=1, controllability_words=0,
                           run_dir=tmp_path / "gen")
    m = gen.manifest
    assert m["feature"] == "energy" and [s["value"] for s in m["samples"]] == [0.9, 0.1]
    assert [s["context"] for s in m["samples"]] == [{"energy": 0.9}, {"energy": 0.1}]
    for s in m["samples"]:
        assert len(gen.sample_file(s["file"][:-4]).read_text().split()) >= 50
    # the context comes from the manifest, not from the file names: rename the files and it still holds
    for s in m["samples"]:
        gen.samples_dir.joinpath(s["file"]).rename(gen.samples_dir / f"x{s['value']}.txt")
        s["file"] = f"x{s['value']}.txt"
    gen.manifest_file.write_text(json.dumps(m))
    clouds = recipes.wordclouds(samples=gen, top=5, width=200, height=100, run_dir=tmp_path / "clouds")
    table = pd.read_csv(clouds.distinctive_words_file)
    assert set(table.favours) <= {"high energy (0.9)", "low energy (0.1)"} and len(table) <= 10
    assert clouds.wordclouds_file.exists()


def test_wordclouds_reads_a_folder_without_manifest(lm, tmp_path):
    "Sample folders written before manifests existed are read by their config's values and file names."
    gen = recipes.generate(model=lm, values=[0.2, 0.8], n_words=40, n_samples=1, controllability_words=0,
                           run_dir=tmp_path / "gen")
    gen.manifest_file.unlink()
    clouds = recipes.wordclouds(samples=gen, top=3, width=200, height=100, run_dir=tmp_path / "clouds")
    assert set(pd.read_csv(clouds.distinctive_words_file).favours) <= {"high energy (0.8)", "low energy (0.2)"}


def test_resume_continues_the_run(tmp_path):
    run = recipes.train_lm("tiny-lm", run_dir=tmp_path / "lm", n_docs=100, perplexity=False, sample_words=0)
    assert list(run.history.epoch) == [0, 1]
    with pytest.raises(ConfigError, match="no config or other keyword arguments"):
        recipes.train_lm(run_dir=run, resume=True, epochs=3)
    again = recipes.train_lm(run_dir=run, resume=True)     # already complete: nothing more to train
    assert again == run and list(again.history.epoch) == [0, 1]


def test_bad_input_is_refused_before_any_folder(tmp_path):
    with pytest.raises(ConfigError, match="config key 'epochs': must be at least 1"):
        recipes.train_lm("tiny-lm", run_dir=tmp_path / "a", epochs=0)
    with pytest.raises(ConfigError, match="unknown config key 'epoch' in the keyword arguments; did you mean 'epochs'"):
        recipes.train_lm("tiny-lm", run_dir=tmp_path / "b", epoch=1)
    with pytest.raises(ConfigError, match="config key 'context_cols': column"):
        recipes.train_lm({"context_cols": ["energy", "nope"]}, run_dir=tmp_path / "c")
    with pytest.raises(ConfigError, match="config key 'model'"):
        recipes.generate(model=tmp_path / "missing", run_dir=tmp_path / "d")
    assert not any(tmp_path.iterdir())


def test_run_folder_reads_nothing_it_lacks(tmp_path):
    run = RunFolder(tmp_path)
    assert run.history.empty and run.manifest is None
    with pytest.raises(ConfigError, match="has no config.yaml"):
        run.config
    with pytest.raises(ConfigError, match="holds no valid.csv"):
        run.valid()


def test_a_model_of_the_other_kind_is_refused_by_name(tmp_path):
    "homotopy on a train-lm run: a ConfigError naming the key, not fastai forwarding a missing method."
    lm = recipes.train_lm("tiny-lm", run_dir=tmp_path / "lm", epochs=1, n_docs=200, perplexity=False, sample_words=0)
    with pytest.raises(ConfigError, match="'model'.*ContextLMLearner.*train-vae"):
        recipes.homotopy(model=lm, s0="i love you", s1="you love me", run_dir=tmp_path / "h")
    assert not (tmp_path / "h").exists()


def test_a_steep_logistic_kl_schedule_does_not_overflow():
    from fastai_context import kl_beta
    assert kl_beta("logistic", 0, 1000, k=1.0, x0=1000) == 0.0
    assert kl_beta("logistic", 5000, 1000, k=1.0, x0=1000) == 1.0


def test_train_lm_checks_sample_values_within_and_takes_fill_before_training(tmp_path, tracks):
    for kw, key in ((dict(sample_values=["high"]), "sample_values"), (dict(within="decadez"), "within")):
        with pytest.raises(ConfigError, match=f"config key '{key}'"):
            recipes.train_lm("tiny-lm", run_dir=tmp_path / key, n_docs=100, **kw)
        assert not (tmp_path / key).exists()
    df = tracks.dropna(subset=["track_name"]).sample(200, random_state=0)[["track_name", "energy"]].copy()
    df.loc[df.index[:3], "energy"] = None
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ConfigError, match="fill"):
        recipes.train_lm("tiny-lm", run_dir=tmp_path / "nofill", data=str(tmp_path / "t.csv"))
    run = recipes.train_lm("tiny-lm", run_dir=tmp_path / "fill", data=str(tmp_path / "t.csv"), fill="mean",
                           epochs=1, perplexity=False, sample_words=0)
    assert run.model_file.exists()
