"""``hippos bench train`` at a toy size: every model trains a step in its own process; the
baseline mechanism (another source tree first on PYTHONPATH) runs and alternates."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hippos.bench.train import TransformerClassifier, build_train_model
from hippos.cli import main

TINY = ["--batch", "2", "--L", "32", "--d-model", "8", "--d-state", "4", "--n-layers", "1", "--repeats", "1", "--threads", "1"]


def test_bench_train_cli(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert main(["bench", "train", *TINY, "--out", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    assert [r["model"] for r in res] == ["s4", "s4d", "transformer"]
    assert all(r["samples_per_s"] > 0 and r["cpu_s"] > 0 and r["extra_peak_bytes"] >= 0 and r["tree"] == "current" for r in res)
    text = capsys.readouterr().out
    assert "| s4d | current |" in text and "samples/s" in text


def test_bench_train_baseline_alternates(tmp_path, capsys):
    src = str(Path(__file__).resolve().parents[2] / "src")  # this tree as its own baseline
    out = tmp_path / "train.json"
    assert main(["bench", "train", *TINY, "--models", "s4d", "--baseline", src, "--rounds", "2", "--allocator", "cached", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    assert [r["tree"] for r in res] == ["baseline", "current"]
    assert all(len(r["rounds_s"]) == 2 and r["allocator"] == "cached" for r in res)
    assert "current/baseline" in capsys.readouterr().out


def test_models_train_and_transformer_has_learned_positions():
    job = {"model": "transformer", "d_model": 8, "n_layers": 2, "L": 16, "d_state": 4}
    model = build_train_model(job)
    assert isinstance(model, TransformerClassifier) and model.pos.shape == (16, 8)
    logits, state = model(torch.randn(3, 16, 1))
    assert logits.shape == (3, 10) and state is None
    for kind in ("s4", "s4d"):
        logits, _ = build_train_model({**job, "model": kind})(torch.randn(3, 16, 1))
        assert logits.shape == (3, 10)
