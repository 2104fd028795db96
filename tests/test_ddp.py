"""DDP with 2 CPU processes (gloo, torchrun): ranks agree, shards are disjoint, result equals 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _ddp_worker import CFG_KW, TASK_KW
from _toy_task import ToyTask

from lgeclip.train import LoopCfg, fit
from lgeclip.utils import load_tensors

WORKER = Path(__file__).resolve().parent / "_ddp_worker.py"


def test_ddp_two_cpu_ranks(tmp_path, monkeypatch):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LGECLIP_NO_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
           str(tmp_path)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=110)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"torchrun did not finish in 110 s:\n{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world_size"] for i in info] == [2, 2]
    # parameters agree across ranks (bitwise: DDP averages gradients, every rank takes the same step)
    w0, w1 = (load_tensors(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    # per-rank batch = 16 // 2; each epoch the two ranks see disjoint halves covering the 64 items
    steps = 64 // 16
    for i in info:
        assert len(i["seen"]) == 2 * steps and all(len(b) == 8 for b in i["seen"])
    for epoch in range(2):
        s0, s1 = ({x for b in i["seen"][epoch * steps:(epoch + 1) * steps] for x in b} for i in info)
        assert not s0 & s1 and s0 | s1 == set(range(64)) and len(s0) == 32
    assert info[0]["summary"]["best_metric"] == info[1]["summary"]["best_metric"] is not None

    # rank 0 alone wrote the run folder: one log line per epoch, one metrics row per epoch
    run = tmp_path / "run"
    log = (run / "train.log").read_text()
    assert log.count("epoch=1 ") == 1 and log.count("epoch=2 ") == 1 and "world_size=2" in log
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 3
    assert (run / "checkpoints/last/state.json").is_file() and (run / "model.safetensors").is_file()
    assert len(json.loads((run / "checkpoints/last/state.json").read_text())["rng"]) == 2

    # same global batch in one process sees the same items per step -> the same weights (up to reduction order)
    torch.set_num_threads(1)
    monkeypatch.setenv("LGECLIP_NO_PROGRESS", "1")
    single = ToyTask(**TASK_KW)
    fit(single, LoopCfg(**CFG_KW), tmp_path / "single")
    ws = single.model.state_dict()
    for k in w0:
        assert torch.allclose(ws[k], w0[k], atol=1e-5), k
    flat0 = [sorted(a + b) for a, b in zip(info[0]["seen"], info[1]["seen"], strict=True)]
    assert flat0 == [sorted(b) for b in single.seen]
