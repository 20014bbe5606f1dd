"""The package installs and explains itself: the wheel carries the example configs, the CLI
takes them by name and lists them."""
import importlib.util
import shutil
import subprocess
import sys
import zipfile

import pytest

from fastai_context.cli import COMMANDS, main
from fastai_context.workflow.runs import PACKAGED_CONFIGS, ConfigError, load_config, packaged_configs, resolve_config
from tests.helpers import ROOT



def test_packaged_configs_by_name(tmp_path, monkeypatch):
    assert {"tiny-lm", "demo-lm", "demo-generate", "demo-vae", "demo-homotopy"} <= set(packaged_configs())
    monkeypatch.chdir(tmp_path)
    assert resolve_config("tiny-lm") == resolve_config("tiny-lm.yaml") == PACKAGED_CONFIGS / "tiny-lm.yaml"
    cfg = load_config("tiny-lm", ["epochs=2"], COMMANDS["train-lm"].defaults, command="train-lm")
    assert (cfg["n_docs"], cfg["context_cols"], cfg["epochs"]) == (300, ["energy"], 2)
    (tmp_path / "tiny-lm").write_text("n_docs: 50\n")              # a file of that name here comes first
    assert load_config("tiny-lm", [], COMMANDS["train-lm"].defaults)["n_docs"] == 50
    with pytest.raises(ConfigError, match="'tiny-llm' not found; packaged configs, usable by name: .*'tiny-lm'"):
        load_config("tiny-llm", [], COMMANDS["train-lm"].defaults)
    with pytest.raises(ConfigError, match="not found"):               # a path is never looked up in the package
        load_config("elsewhere/tiny-lm", [], COMMANDS["train-lm"].defaults)


def test_configs_command_lists_them(capsys):
    main(["configs"])
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines() if line and not line.startswith("(")}
    expected = {"demo-generate": "generate", "demo-homotopy": "homotopy", "demo-lm": "train-lm",
                "demo-vae": "train-vae", "tiny-lm": "train-lm"}       # name -> the command its keys belong to
    assert expected.items() <= lines.items()
    assert "fastai-context train-lm tiny-lm" in out


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="building a wheel needs setuptools")
def test_wheel_carries_configs_and_sources(tmp_path):
    src = tmp_path / "src"                      # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(ROOT / "fastai_context", src / "fastai_context", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, timeout=300, capture_output=True)
    names = zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).namelist()
    assert {f"fastai_context/configs/{p.name}" for p in PACKAGED_CONFIGS.glob("*.yaml")} <= set(names)
    assert {"fastai_context/sources/reccobeats.py", "fastai_context/sources/http.py"} <= set(names)


def test_old_module_paths_and_pickles_of_0_1_still_resolve():
    "0.1 kept the LM and the workflow at the package root; exported learners pickled those paths."
    import pickle

    import fastai_context.checkpoint
    import fastai_context.data
    from fastai_context import ContextAWD_LSTM, ContextLanguageModelLoader, Checkpoint
    from fastai_context.runs import load_config
    assert fastai_context.data.ContextLanguageModelLoader is ContextLanguageModelLoader
    assert fastai_context.checkpoint.Checkpoint is Checkpoint and callable(load_config)
    # What pickle reads for a class saved by 0.1: its module path and name.
    old = b"\x80\x04\x95(\x00\x00\x00\x00\x00\x00\x00\x8c\x15fastai_context.models\x94\x8c\x0fContextAWD_LSTM\x94\x93\x94."
    assert pickle.loads(old) is ContextAWD_LSTM
