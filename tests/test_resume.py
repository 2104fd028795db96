"""Resumption reaches the uninterrupted run's weights; checkpoints are atomic and pickle-free."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil

import numpy as np
import pytest
import torch
from _toy_task import ToyNet, ToyTask
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from lgeclip.train import LoopCfg, fit
from lgeclip.train.checkpoint import (
    find_checkpoint,
    flatten_optimizer_state,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    unflatten_optimizer_state,
)
from lgeclip.utils import load_tensors

torch.set_num_threads(1)


def _cfg(**kw) -> LoopCfg:
    base = dict(epochs=4, batch_size=16, lr=1e-2, weight_decay=0.01, warmup_steps=3, log_every=0,
                monitor="val_loss", monitor_mode="min", grad_clip=1.0)
    return LoopCfg(**{**base, **kw})


def _rows(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_resume_after_crash_matches_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("LGECLIP_NO_PROGRESS", "1")
    a, b = tmp_path / "a", tmp_path / "b"
    fit(ToyTask(dropout=0.3), _cfg(), a)

    # run B dies in the middle of epoch 3 (4 steps per epoch: training_step call 10)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(ToyTask(dropout=0.3, crash_at_call=10), _cfg(), b)
    assert json.loads((b / "checkpoints/last/state.json").read_text())["epoch"] == 2
    assert len(_rows(b)) == 2
    # ... and a later checkpoint write was interrupted too: a partial temp folder is left behind
    junk = b / "checkpoints" / ".tmp-crashed"
    junk.mkdir()
    (junk / "model.safetensors").write_bytes(b"\x00" * 10)

    summary = fit(ToyTask(dropout=0.3), _cfg(), b, resume=True)
    assert summary["epochs"] == 4 and summary["steps"] == 16
    assert not junk.exists()  # cleaned by the next checkpoint save

    for name in ("checkpoints/last/model.safetensors", "checkpoints/last/optim.safetensors", "model.safetensors"):
        ta, tb = load_tensors(a / name), load_tensors(b / name)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (name, k)
    ra, rb = _rows(a), _rows(b)
    assert [r["epoch"] for r in rb] == ["1", "2", "3", "4"]
    for x, y in zip(ra, rb, strict=True):
        for col in ("train_loss", "val_loss", "lr", "step"):
            assert x[col] == y[col], (col, x, y)
    sa = json.loads((a / "checkpoints/last/state.json").read_text())
    sb = json.loads((b / "checkpoints/last/state.json").read_text())
    assert sa["rng"] == sb["rng"] and sa["scheduler"] == sb["scheduler"] and sa["best"] == sb["best"]

    # resuming a finished run is a no-op that keeps the weights
    again = fit(ToyTask(dropout=0.3), _cfg(), b, resume=True)
    assert again["steps"] == 16 and again["best_metric"] == summary["best_metric"]


def test_resume_without_checkpoint_starts_fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("LGECLIP_NO_PROGRESS", "1")
    summary = fit(ToyTask(n_train=32), _cfg(epochs=1), tmp_path / "r", resume=True)
    assert summary["steps"] == 2


def _toy_states(steps: int = 2):
    model = ToyNet(dropout=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(4, 1, 6, 6)).sum().backward()
        opt.step()
    return model, opt


def test_checkpoint_swap_crash_leaves_a_readable_checkpoint(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    model, opt = _toy_states()
    save_checkpoint(root, model.state_dict(), opt.state_dict(), {"epoch": 1})
    real_replace = os.replace
    calls = []

    def crash_on_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old 'last' already moved aside, new one not yet renamed in
            raise OSError("simulated power cut")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second)
    with pytest.raises(OSError, match="power cut"):
        save_checkpoint(root, model.state_dict(), opt.state_dict(), {"epoch": 2})
    monkeypatch.setattr(os, "replace", real_replace)

    assert not (root / "last").exists()
    found = find_checkpoint(root)
    assert found is not None and found.parent.name.startswith(".trash-")
    _, _, state = load_checkpoint(found)
    assert state["epoch"] == 1
    # the next save recovers a clean layout
    save_checkpoint(root, model.state_dict(), opt.state_dict(), {"epoch": 3})
    assert sorted(p.name for p in root.iterdir()) == ["last"]
    assert load_checkpoint(find_checkpoint(root))[2]["epoch"] == 3


def test_optimizer_state_round_trip_is_exact():
    model, opt = _toy_states()
    tensors, meta = flatten_optimizer_state(opt.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in tensors.values()) and json.loads(meta)["param_groups"]
    tensors = safetensors_load(safetensors_save(tensors))  # through bytes, as on disk (no shared storage)
    clone = ToyNet(dropout=0.0)
    clone.load_state_dict(model.state_dict())
    opt2 = torch.optim.AdamW(clone.parameters(), lr=0.1)
    opt2.load_state_dict(unflatten_optimizer_state(tensors, meta))
    assert opt2.param_groups[0]["betas"] == (0.9, 0.999)
    x = torch.randn(4, 1, 6, 6)
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    for p, q in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(p, q)


def test_rng_state_round_trip_through_json():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = json.loads(json.dumps(rng_state()))
    expect = (random.random(), np.random.rand(), torch.rand(3))
    for _ in range(3):  # move every generator on
        random.random(), np.random.rand(), torch.rand(5)
    set_rng_state(state)
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expect[0] and got[1] == expect[1] and torch.equal(got[2], expect[2])


def test_tied_weights_save(tmp_path):
    """Tensors sharing storage (tied embeddings) must not break safetensors checkpoints."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 3, bias=False), torch.nn.Linear(3, 3, bias=False))
    model[1].weight = model[0].weight
    opt = torch.optim.Adam(model.parameters())
    path = save_checkpoint(tmp_path / "c", model.state_dict(), opt.state_dict(), {"epoch": 0})
    state, _, _ = load_checkpoint(path)
    assert torch.equal(state["0.weight"], state["1.weight"])
    shutil.rmtree(tmp_path / "c")
