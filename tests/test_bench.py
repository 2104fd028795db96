"""``bench_all`` at toy size: random DenseNets at 64 px with the tiny stand-in text model, on CPU."""

from __future__ import annotations

import json

import pytest
import torch
from _clip_fixtures import make_tiny_text_model

from lgeclip.eval.bench import bench_all


def test_bench_all_tiny(tmp_path):
    n_threads = torch.get_num_threads()
    out = tmp_path / "bench.json"
    res = bench_all(out, batch_sizes=(1, 2), image_size=64, n_batches=1, device="cpu",
                    text_model=make_tiny_text_model(tmp_path), n_preprocess=3, n_synth=3, num_threads=1)
    assert out.is_file() and json.loads(out.read_text()) == json.loads(json.dumps(res))
    env = res["environment"]
    assert env["image_size"] == 64 and env["gpu"] is False and env["weights"] == "random weights"
    assert env["precision"] == "fp32" and env["num_threads"] == 1
    for section in ("zero_shot", "image_only"):
        sec = res[section]
        assert sec["param_memory_gb"] > 0
        assert set(sec["batches"]) == {"1", "2"}
        for row in sec["batches"].values():
            assert row["images_per_s"] > 0 and row["peak_rss_gb"] > 0
    assert res["zero_shot"]["prompt_encode_s"] > 0
    assert set(res["zero_shot"]["prompt_encode_s_per_level"]) == {"basal", "mid", "apical"}
    assert res["preprocess"]["ms_per_slice"] > 0
    assert res["preprocess"]["ms_per_study"] == pytest.approx(3 * res["preprocess"]["ms_per_slice"], abs=0.01)
    assert res["synth"]["annulus_224"]["median_ms"] > 0
    assert "peak_rss_gb" in res["notes"]
    assert torch.get_num_threads() == n_threads  # bench_synth's one-thread pinning is undone
