"""Run folders and configs: one folder per experiment holding everything it produced.

A config is a flat mapping of knobs. `load_config` starts from a command's defaults,
applies a YAML or JSON file and then `key=value` overrides, and checks every key and type
against the defaults, so a typo fails at once with the key's name instead of an hour later.
`make_run_dir` creates the folder; `save_config` writes the resolved config into it;
`RunLock` keeps a second process out of a folder that one is writing to; `RunFolder` names
and reads the files the commands write into a run folder, so that no command has to know
another's file names.
"""
from __future__ import annotations

import difflib
import json
import os
import socket
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

try:
    import fcntl
except ImportError:                           # Windows: run folders are not locked
    fcntl = None

__all__ = ["ConfigError", "atomic_path", "parse_value", "load_config", "make_run_dir", "save_config",
           "read_config", "CONFIG_NAME", "packaged_configs", "resolve_config", "RunLock", "clean_stale_temporaries",
           "RunFolder"]

CONFIG_NAME = "config.yaml"
LOCK_NAME = ".lock"


class ConfigError(ValueError):
    "A config key is unknown, has the wrong type, or points at something missing."


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; when the block succeeds, move it over `path`
    with `os.replace`, so a reader (or a kill) never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)          # mkstemp makes it private; give it a normal file's mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _tmp_pattern(name: str = "*") -> str:
    "The names `atomic_path` gives its temporaries (`.NAME.<random>.tmp`)."
    return f".{name}.*.tmp"


def clean_stale_temporaries(folder: str | Path, name: str = "*") -> list[Path]:
    """Remove the temporaries a killed `atomic_path` write left in `folder` (of file `name`, or all);
    call it only while holding the folder (e.g. under `RunLock`). Returns the removed paths."""
    removed = []
    for p in Path(folder).glob(_tmp_pattern(name)):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


class RunLock:
    """A lock on a run folder for as long as a command writes to it: an exclusive `flock` on
    `.lock` (which holds the owner's PID and host, for the message). A second process is refused
    with the PID holding it; the kernel drops the lock of a process that dies, so the lock left
    by a killed run is simply taken over. Use as a context manager. (POSIX only: without `fcntl`,
    as on Windows, there is no lock.)"""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _holder(self) -> str:
        try:
            pid, host = (self.path.read_text().split() + ["", ""])[:2]
        except OSError:
            return "another process"
        if not pid:
            return "another process"
        return f"process {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")

    def acquire(self) -> "RunLock":
        if fcntl is None or self.held:
            return self
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ConfigError(f"run folder {str(self.path.parent)!r} is in use by {self._holder()} (lock file "
                                  f"{str(self.path)!r}); wait for it to end, or stop it") from None
            try:                             # the holder may have removed the file while we opened it
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            self._fd = fd
            return self
        raise ConfigError(f"could not take the lock file {str(self.path)!r}: other processes keep taking it")

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)   # while still holding it: the next owner makes a new file
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _type_name(v: Any) -> str:
    return "list" if isinstance(v, (list, tuple)) else type(v).__name__


def parse_value(key: str, value: Any, default: Any) -> Any:
    """Check `value` (from a file, or a string from the command line) against the type of
    `default` and convert it: ints are accepted for floats, and strings are parsed as the
    default's type. A default of None accepts anything."""
    if default is None:
        return value
    def fail(expected: str):
        raise ConfigError(f"config key {key!r}: expected {expected}, got {value!r} ({_type_name(value)})")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        fail("true or false")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        fail("an integer")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):   # YAML 1.1 reads `1e-3` as a string
            try:
                return float(value)
            except ValueError:
                pass
        fail("a number")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        fail("a string")
    if isinstance(default, dict):
        if isinstance(value, str):   # `context='{genre: rock}'`
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                pass
        if not isinstance(value, dict):
            fail("a mapping such as {key: value}")
        return dict(value)
    if isinstance(default, (list, tuple)):
        if isinstance(value, str):   # `cols=energy,valence` or `cols=[energy, valence]`
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            fail("a list")
        item = default[0] if len(default) else None
        return [parse_value(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    return value


#: The example configs that ship inside the package (`fastai-context configs` lists them).
PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def packaged_configs() -> dict[str, Path]:
    "The packaged example configs by name (`tiny-lm`, `demo-lm`, ...)."
    return {p.stem: p for p in sorted(PACKAGED_CONFIGS.glob("*.yaml"))}


def resolve_config(path: str | Path) -> Path:
    """The config file `path`; a bare name with no such file here (`tiny-lm` or `tiny-lm.yaml`)
    is the packaged config of that name, so that a pip install needs no checkout."""
    p = Path(path)
    if p.exists() or p.parent != Path("."):
        return p
    return packaged_configs().get(p.name[:-5] if p.name.endswith(".yaml") else p.name, p)
class _DuplicateKey(Exception):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    "YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise _DuplicateKey(f"key {key!r} appears twice (lines {seen[key] + 1} and "
                                        f"{key_node.start_mark.line + 1}); keep one")
                seen[key] = key_node.start_mark.line
            except TypeError:                # an unhashable key: SafeLoader's own error follows
                pass
        return super().construct_mapping(node, deep=deep)


def _unique_json_keys(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    dup = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
    if dup is not None:
        raise _DuplicateKey(f"key {dup!r} appears twice; keep one")
    return dict(pairs)


def _read_file(path: Path) -> dict:
    path = resolve_config(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} not found; packaged configs, usable by name: "
                          f"{list(packaged_configs())} (`fastai-context configs` describes them)")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {e.object[e.start]:#04x} at "
                          f"position {e.start}); save it as UTF-8") from None
    try:
        data = (json.loads(text, object_pairs_hook=_unique_json_keys) if path.suffix == ".json"
                else yaml.load(text, Loader=_UniqueKeyLoader))
    except _DuplicateKey as e:
        raise ConfigError(f"config file {str(path)!r}: {e}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"config file {str(path)!r} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                          + " ".join(str(e).split())) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of key: value, not {_type_name(data)}")
    return data


def _check_key(key: str, defaults: Mapping, where: str) -> None:
    if key not in defaults:
        close = difflib.get_close_matches(key, list(defaults), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown config key {key!r} in {where}{hint} Known keys: {sorted(defaults)}")


def load_config(path: str | Path | Mapping | None, overrides: Sequence[str] = (), defaults: Mapping[str, Any] = {},
                command: str | None = None, values: Mapping[str, Any] | None = None) -> dict:
    """`defaults`, updated by the YAML/JSON file at `path` (if any; or a mapping in its place), then
    by `key=value` strings, then by the Python `values`. Unknown keys and values of the wrong type
    raise `ConfigError` naming the key. A file may name its `command` (as a run folder's
    `config.yaml` does); it must then be `command`."""
    cfg = dict(defaults)
    if isinstance(path, Mapping):
        for k, v in path.items():
            _check_key(k, defaults, "the config")
            cfg[k] = parse_value(k, v, defaults[k])
    elif path is not None:
        data = _read_file(Path(path))
        saved = data.pop("command", None)
        if saved is not None and command is not None and saved != command:
            raise ConfigError(f"config file {str(path)!r} is for the {saved!r} command, not {command!r}")
        for k, v in data.items():
            _check_key(k, defaults, f"config file {str(path)!r}")
            cfg[k] = parse_value(k, v, defaults[k])
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override {o!r} is not of the form key=value")
        k, v = o.split("=", 1)
        k = k.strip()
        _check_key(k, defaults, "the command line")
        cfg[k] = parse_value(k, v, defaults[k])
    for k, v in (values or {}).items():
        _check_key(k, defaults, "the keyword arguments")
        cfg[k] = parse_value(k, os.fspath(v) if isinstance(v, os.PathLike) else v, defaults[k])
    return cfg


def make_run_dir(command: str, root: str | Path = "runs", name: str = "") -> Path:
    "Create and return a new folder `root/<name or command-timestamp>` (never reusing one)."
    root = Path(root)
    base = name or f"{command}-{datetime.now():%Y%m%d-%H%M%S}"
    for i in range(1000):
        d = root / (base if i == 0 else f"{base}-{i}")
        try:
            d.mkdir(parents=True, exist_ok=False)
            return d
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run folder under {str(root)!r} named {base!r}")


def save_config(run_dir: str | Path, cfg: Mapping[str, Any], command: str) -> Path:
    "Write the resolved config (and the command that ran it) to `run_dir/config.yaml`, atomically."
    path = Path(run_dir) / CONFIG_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump({"command": command, **cfg}, sort_keys=False), encoding="utf-8")
    return path


def read_config(run_dir: str | Path) -> tuple[str, dict]:
    "The command and resolved config saved in `run_dir` by `save_config`."
    path = Path(run_dir) / CONFIG_NAME
    if not path.exists():
        raise ConfigError(f"{str(run_dir)!r} is not a run folder: it has no {CONFIG_NAME}")
    data = _read_file(path)
    return data.pop("command", None), data


class RunFolder:
    """A run folder and the files a command writes into it, by what they are: every command
    (and a notebook) reads another run's results through this, never through file names of
    its own. `fastai_context.workflow.recipes` returns one from each recipe.

        run = RunFolder("runs/lm")
        run.config["text_col"], run.history.valid_loss.iloc[-1], run.perplexity["true"]
    """
    HISTORY, MODEL, VALID, PERPLEXITY, CONTEXT_GAIN = ("history.csv", "model.pkl", "valid.csv", "perplexity.json",
                                                       "context_gain.csv")
    SAMPLES, SAMPLES_DIR, MANIFEST = "samples.txt", "samples", "manifest.json"
    CONTROLLABILITY, WORDCLOUDS, DISTINCTIVE_WORDS, HOMOTOPY = ("controllability.txt", "wordclouds.png",
                                                                "distinctive_words.csv", "homotopy.txt")

    def __init__(self, path: str | Path | "RunFolder"):
        self.path = Path(path)

    def __fspath__(self) -> str:                 # `Path(run)`, `open(run / ...)`, `str(run)` all work
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __eq__(self, other) -> bool:
        return isinstance(other, RunFolder) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ------------------------------------------------------------ file names
    config_file = property(lambda self: self.path / CONFIG_NAME)
    lock_file = property(lambda self: self.path / LOCK_NAME)
    history_file = property(lambda self: self.path / self.HISTORY, doc="per-epoch metrics (fastai's CSVLogger)")
    model_file = property(lambda self: self.path / self.MODEL, doc="the exported learner (`load_learner`)")
    valid_file = property(lambda self: self.path / self.VALID, doc="train-lm's held-out documents")
    perplexity_file = property(lambda self: self.path / self.PERPLEXITY)
    context_gain_file = property(lambda self: self.path / self.CONTEXT_GAIN)
    samples_file = property(lambda self: self.path / self.SAMPLES, doc="texts sampled after training")
    samples_dir = property(lambda self: self.path / self.SAMPLES_DIR, doc="generate's texts, one file per value")
    manifest_file = property(lambda self: self.samples_dir / self.MANIFEST,
                             doc="generate's record of each samples file's context")
    controllability_file = property(lambda self: self.path / self.CONTROLLABILITY)
    wordclouds_file = property(lambda self: self.path / self.WORDCLOUDS)
    distinctive_words_file = property(lambda self: self.path / self.DISTINCTIVE_WORDS)
    homotopy_file = property(lambda self: self.path / self.HOMOTOPY)

    def sample_file(self, name: str) -> Path:
        "The samples file of one generated value (`energy=1.0` -> `samples/energy=1.0.txt`)."
        return self.samples_dir / f"{name}.txt"

    # ------------------------------------------------------------ readers
    @property
    def command(self) -> str | None:
        "The command that made this run (from its config.yaml)."
        return read_config(self.path)[0]

    @property
    def config(self) -> dict:
        "The run's resolved config (from its config.yaml)."
        return read_config(self.path)[1]

    @property
    def history(self):
        "The per-epoch metrics as a DataFrame (empty before the first epoch ends)."
        import pandas as pd
        if not self.history_file.exists():
            return pd.DataFrame()
        return pd.read_csv(self.history_file)

    @property
    def perplexity(self) -> dict:
        "train-lm's validation perplexity with true, shuffled and mean context."
        return json.loads(self.perplexity_file.read_text(encoding="utf-8"))

    @property
    def text_col(self) -> str:
        return self.config["text_col"]

    @property
    def context_cols(self) -> list[str]:
        return list(self.config["context_cols"])

    def valid(self):
        "train-lm's held-out documents: its text and context columns (raises `ConfigError` if it saved none)."
        import pandas as pd
        if not self.valid_file.exists():
            raise ConfigError(f"{str(self.path)!r} holds no {self.VALID} (the held-out documents train-lm saves)")
        return pd.read_csv(self.valid_file)

    @property
    def manifest(self) -> dict | None:
        """generate's manifest: `{'feature': ..., 'samples': [{'value', 'context', 'file'}, ...]}` in
        the order of the values; None for a folder written before manifests existed."""
        if not self.manifest_file.exists():
            return None
        return json.loads(self.manifest_file.read_text(encoding="utf-8"))

    def lock(self) -> RunLock:
        "The folder's `RunLock` (use as a context manager)."
        return RunLock(self.path)
