"""Data-parallel training with 2 CPU processes on gloo (torchrun + Accelerate + DDP), on real Spotify
track names: each rank trains on its own streams, rows continue across batches, and the two
ranks end with identical parameters."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.workflow import ddp_worker
from fastai_context.workflow.distributed import check_launch
from fastai_context.workflow.runs import ConfigError

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(HERE / "ddp_worker.py"), str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def by_epoch(batches, epoch):
    return [b[1:] for b in batches if b[0] == epoch]


def test_ranks_ran_distributed(ranks):
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) > 10


def test_identical_parameters_after_training(ranks):
    p0, p1 = ranks[0]["params"], ranks[1]["params"]
    assert p0.keys() == p1.keys()
    for k in p0:
        assert torch.equal(p0[k], p1[k]), f"{k} differs between ranks"
    assert ranks[0]["valid_loss"] == ranks[1]["valid_loss"]      # both ranks evaluate the whole validation set


def test_rows_continue_across_batches(ranks):
    for r in ranks:
        for epoch in (0, 1):
            batches = by_epoch(r["batches"], epoch)
            for (x0, c0, y0), (x1, c1, y1) in zip(batches, batches[1:]):
                assert x0.shape[0] == ddp_worker.BS
                assert torch.equal(y0[:, -1], x1[:, 0])      # last target of a row = first input of its next batch


def test_disjoint_streams_from_one_shared_order(ranks):
    """Rank r's rows are streams r*bs..(r+1)*bs-1 of a single process loader with bs*2 streams and the
    same shuffle seed: together they cover the corpus once, no token seen by both ranks."""
    single = ddp_worker.make_dls(bs=2 * ddp_worker.BS).train
    for epoch in (0, 1):
        expected = list(single)                                # one epoch of the single-process loader
        for r, rank in enumerate(ranks):
            got = by_epoch(rank["batches"], epoch)
            assert len(got) == len(expected)
            rows = slice(r * ddp_worker.BS, (r + 1) * ddp_worker.BS)
            for (x, c, y), (ex, ec, ey) in zip(got, expected):
                assert torch.equal(x, ex[rows]) and torch.equal(y, ey[rows]) and torch.equal(c, ec[rows])
        x0 = torch.cat([b[0] for b in by_epoch(ranks[0]["batches"], epoch)], 1)
        x1 = torch.cat([b[0] for b in by_epoch(ranks[1]["batches"], epoch)], 1)
        assert not torch.equal(x0, x1)


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_cli_train_lm_on_two_processes(tmp_path, launcher):
    """`torchrun -m fastai_context.cli train-lm` and the README's `accelerate launch --multi_gpu` (on CPUs too):
    one run folder, written by rank 0 only, random states of both ranks."""
    run_dir = tmp_path / "ddp"
    launch = {"torchrun": ["torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                           "--master_port", str(free_port())],
              "accelerate": ["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                             "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]}
    cmd = [sys.executable, "-m", *launch[launcher], "-m", "fastai_context.cli", "train-lm",
           "tiny-lm", "epochs=1", "perplexity=false", "sample_words=0",
           "--run-dir", str(run_dir)]
    res = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("train-lm: writing to") == 1          # only rank 0 prints
    assert (run_dir / "history.csv").read_text().count("epoch") == 1 and len((run_dir / "history.csv").read_text().splitlines()) == 2
    ck = torch.load(run_dir / "checkpoint.pth", weights_only=False)
    assert len(ck["rng"]) == 2 and ck["epoch"] == 1
    assert (run_dir / "model.pkl").exists() and (run_dir / "config.yaml").exists()


def test_a_refused_run_folder_stops_every_rank(tmp_path):
    "Rank 0 refuses a non-empty --run-dir: every rank exits with its message (none waits for a folder), nothing changes."
    run_dir = tmp_path / "used"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "fastai_context.cli", "train-lm", "tiny-lm", "epochs=1",
           "--run-dir", str(run_dir)]
    res = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=180)
    assert res.returncode != 0
    assert (res.stdout + res.stderr).count("is not empty: choose a new folder") == 2, res.stderr[-3000:]
    assert [p.name for p in run_dir.iterdir()] == ["notes.txt"] and (run_dir / "notes.txt").read_text() == "mine"


def test_accelerate_simple_launcher_with_several_processes_is_refused():
    "`accelerate launch --num_processes 2` without --multi_gpu on a CPU starts one process: say so, don't train alone."
    simple = {"ACCELERATE_USE_CPU": "False", "ACCELERATE_MIXED_PRECISION": "no", "MASTER_ADDR": "127.0.0.1",
              "MASTER_PORT": "29500"}
    with pytest.raises(ConfigError, match="started only this one process.*--multi_gpu --num_processes N"):
        check_launch(simple)
    check_launch({**simple, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})     # torchrun / --multi_gpu
    check_launch({k: v for k, v in simple.items() if not k.startswith("MASTER")})   # --num_processes 1
    check_launch({})                                                                # no launcher at all
