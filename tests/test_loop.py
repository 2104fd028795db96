"""The generic training loop on a toy task: learning, run-folder contents, config validation, helpers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from _toy_task import ToyNet, ToyTask
from safetensors import safe_open

from lgeclip.config import ConfigError, load_config
from lgeclip.train import LoopCfg, fit, load_model_weights
from lgeclip.train.loop import lr_factor

torch.set_num_threads(1)
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}


def _cfg(**kw) -> LoopCfg:
    base = dict(epochs=4, batch_size=16, lr=1e-2, log_every=2, monitor="val_accuracy", monitor_mode="max")
    return LoopCfg(**{**base, **kw})


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_fit_learns_and_writes_run_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LGECLIP_NO_PROGRESS", "1")
    run = tmp_path / "run"
    summary = fit(ToyTask(), _cfg(), run, extra_config={"data": {"source": "toy"}})

    rows = _rows(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.7 * losses[0], losses
    for col in ("step", "train_loss", "train_accuracy", "lr", "images_per_s", "epoch_time_s", "val_loss",
                "val_accuracy"):
        assert col in rows[0], col
    assert float(rows[-1]["val_accuracy"]) >= 0.8
    assert float(rows[-1]["lr"]) < float(rows[0]["lr"])  # cosine decays

    assert summary["epochs"] == 4 and summary["steps"] == 16
    assert summary["best_metric"] == max(float(r["val_accuracy"]) for r in rows)
    assert summary["images_per_s"] > 0
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["task"] == "toy" and run_json["best_epoch"] == summary["best_epoch"]

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["task_name"] == "toy" and config["task"]["n_train"] == 64
    assert config["loop"]["batch_size"] == 16 and config["data"] == {"source": "toy"}
    assert load_config(LoopCfg, None, [f"{k}={json.dumps(v)}" for k, v in config["loop"].items()]) == _cfg()

    log = (run / "train.log").read_text()
    assert "epoch=4" in log and "done: best val_accuracy" in log

    # nothing pickled: no pickle-ish suffixes, no pickle / torch-zip magic, every weight file is safetensors
    files = [p for p in run.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES]
    for p in files:
        head = p.read_bytes()[:4]
        assert head[:1] != b"\x80" and head != b"PK\x03\x04", p
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert {p.relative_to(run).as_posix() for p in weights} == {
        "model.safetensors", "checkpoints/last/model.safetensors", "checkpoints/last/optim.safetensors"}
    for p in weights:
        with safe_open(str(p), framework="pt") as f:
            assert len(list(f.keys())) > 0

    # best weights reload fully into a fresh model and reproduce the best validation accuracy
    model = ToyNet()
    n, missing, unexpected = load_model_weights(model, run)
    assert n == len(model.state_dict()) and not missing and not unexpected
    model.eval()
    with torch.no_grad():
        vm = ToyTask().validate(model, ToyTask().val_dataset(), torch.device("cpu"))
    assert vm["accuracy"] == pytest.approx(summary["best_metric"])


def test_bf16_channels_last_clip_max_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("LGECLIP_NO_PROGRESS", "1")
    cfg = _cfg(bf16=True, channels_last=True, grad_clip=0.5, max_steps=3, warmup_steps=2, optimizer="adam",
               scheduler="constant", monitor="train_loss", monitor_mode="min", log_every=0)
    summary = fit(ToyTask(n_val=0), cfg, tmp_path / "run")
    assert summary["steps"] == 3 and summary["epochs"] == 1
    row = _rows(tmp_path / "run")[0]
    assert math.isfinite(float(row["train_loss"]))
    assert 0 < float(row["train_grad_norm"])
    assert float(row["lr"]) == pytest.approx(1e-2)  # warm-up done after 2 steps, constant after
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_guards(tmp_path, monkeypatch):
    monkeypatch.setenv("LGECLIP_NO_PROGRESS", "1")
    run = tmp_path / "run"
    fit(ToyTask(n_train=32), _cfg(epochs=1), run)
    with pytest.raises(FileExistsError):
        fit(ToyTask(n_train=32), _cfg(epochs=1), run)  # would overwrite a run without resume=True
    with pytest.raises(ValueError, match="val_acuracy"):
        fit(ToyTask(n_train=32), _cfg(epochs=1, monitor="val_acuracy"), tmp_path / "typo")
    with pytest.raises(ValueError, match="needs a validation set"):
        fit(ToyTask(n_val=0), _cfg(epochs=1, monitor="val_loss"), tmp_path / "noval")
    with pytest.raises(ValueError, match="no batch"):
        fit(ToyTask(n_train=8), _cfg(epochs=1), tmp_path / "tiny")


@pytest.mark.parametrize("bad", [{"optimizer": "sgd"}, {"batch_size": 0}, {"epochs": 0}, {"lr": 0.0},
                                 {"monitor_mode": "up"}, {"min_lr_ratio": 2.0}, {"grad_clip": -1.0}])
def test_loopcfg_validates(bad):
    with pytest.raises(ValueError):
        LoopCfg(**bad)


def test_loopcfg_from_yaml_overrides():
    cfg = load_config(LoopCfg, None, ["epochs=3", "optimizer=adam", "find_unused_parameters=true"])
    assert cfg.epochs == 3 and cfg.optimizer == "adam" and cfg.find_unused_parameters is True
    with pytest.raises(ConfigError):
        load_config(LoopCfg, None, ["epoch=3"])


def test_lr_factor_warmup_then_cosine():
    f = [lr_factor(s, warmup=4, total=14, kind="cosine", min_ratio=0.1) for s in range(15)]
    assert f[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f[9] == pytest.approx(0.55)  # half-way through the cosine: floor + half the range
    assert f[14] == pytest.approx(0.1) and all(a >= b for a, b in zip(f[3:], f[4:], strict=False))
    assert lr_factor(100, warmup=0, total=10, kind="constant") == 1.0


def test_load_model_weights_counts_and_strict(tmp_path):
    src = ToyNet()
    state = src.state_dict()
    fresh = ToyNet()
    n, missing, unexpected = load_model_weights(fresh, dict(state))
    assert n == 4 and not missing and not unexpected
    assert torch.equal(fresh.head.weight, src.head.weight)

    partial = {k: v for k, v in state.items() if k.startswith("conv.")}
    partial["head.weight"] = torch.zeros(3, 3)  # wrong shape
    partial["extra.bias"] = torch.zeros(2)
    with pytest.raises(ValueError, match="2 of 4 model tensors match"):
        load_model_weights(ToyNet(), partial)
    other = ToyNet()
    before = other.head.weight.detach().clone()
    n, missing, unexpected = load_model_weights(other, partial, strict=False)
    assert n == 2 and sorted(missing) == ["head.bias", "head.weight"]
    assert sorted(unexpected) == ["extra.bias", "head.weight"]
    assert torch.equal(other.conv.weight, src.conv.weight) and torch.equal(other.head.weight, before)

    prefixed = {f"features.{k}": v for k, v in state.items()} | {"decoder.x": torch.zeros(1)}
    n, _, _ = load_model_weights(ToyNet(), prefixed, prefix="features.")
    assert n == 4
