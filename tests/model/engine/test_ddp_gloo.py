"""Two CPU processes with the gloo backend: identical parameters after each step, disjoint data."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

from model.config.train_config import load_config
from model.engine.distributed import DistInfo, cleanup
from model.engine.trainer_builder import build_trainer

from .test_train_end_to_end import tiny_config

WORLD = 2
ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, root: str, out: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = load_config(None, [*tiny_config(Path(root), Path(out) / "run", 1), "eval_every=100"])
    info = DistInfo(rank=rank, world_size=WORLD, local_rank=rank)
    trainer = build_trainer(cfg, dist=info)
    trainer.sampler.set_epoch(0)
    indices = list(iter(trainer.sampler))
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train_epoch(0)
    torch.save(
        {
            "indices": indices,
            "before": before,
            # Parameters only: BatchNorm running statistics are per process by design (no
            # SyncBatchNorm, as the reference); rank 0's are the ones saved.
            "after": {k: v.detach().clone() for k, v in trainer.model.named_parameters()},
            "loss": trainer.loss.state_dict(),
            "steps": len(trainer.train_loader),
        },
        Path(out) / f"rank{rank}.pt",
    )
    cleanup(info)


def test_two_gloo_ranks_stay_in_sync_on_disjoint_shards(photo_folder: Path, tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(photo_folder), str(tmp_path), _free_port()), nprocs=WORLD)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD))
    assert set(r0["indices"]).isdisjoint(r1["indices"])
    assert r0["steps"] == r1["steps"] > 0
    changed = False
    for name, value in r0["after"].items():
        assert torch.equal(value, r1["after"][name]), name
        changed |= not torch.equal(value, r0["before"][name])
    assert changed  # the ranks agree on a model that actually trained
    for name, value in r0["loss"].items():
        assert torch.equal(value, r1["loss"][name]), name  # centers: averaged by hand


def test_torchrun_cli_trains_two_gloo_processes(photo_folder: Path, tmp_path: Path) -> None:
    """The documented multi-GPU command on the CPU (torchrun, two gloo processes)."""
    out = tmp_path / "run"
    overrides = tiny_config(photo_folder, out, 2, "data.p=4")
    cmd = [
        str(Path(sys.executable).with_name("torchrun")),
        "--standalone",
        f"--nproc_per_node={WORLD}",
        "-m",
        "model.train",
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert f"world size {WORLD}" in log
    # Only rank 0 evaluates, logs and checkpoints: one summary, one metrics row per epoch.
    assert log.count("best held-out centroid/mAP") == 1
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2
    checkpoint = torch.load(out / "last.pt", weights_only=False)
    assert checkpoint["epoch"] == 2
