"""``hippos compare``: what differs between runs' configs, where a training loss leaves its
plateau, and the command on two real (tiny) runs: table, figure, errors."""

from __future__ import annotations

import csv
import json

import pytest

from hippos.cli import main
from hippos.experiments.compare import config_differences, loss_departure, summarize_run


def test_config_differences_names_only_what_changes():
    a = {"task": "pathfinder", "lr": 0.004, "out_dir": "/a", "device": "cpu", "model": {"norm": "batch", "d_model": 64},
         "data": {"augment": "none", "cache_dir": None}}
    b = {"task": "pathfinder", "lr": 0.01, "out_dir": "/b", "device": "cuda", "model": {"norm": "layer", "d_model": 64},
         "data": {"augment": "none", "cache_dir": "/x"}}
    c = {**a, "model": {"norm": "batch", "d_model": 64, "b_clip": 2.0}}
    assert config_differences([a, b]) == [{"lr": 0.004, "model.norm": "batch"}, {"lr": 0.01, "model.norm": "layer"}]
    diffs = config_differences([a, b, c])
    assert set(diffs[2]) == {"lr", "model.norm", "model.b_clip"} and diffs[0]["model.b_clip"] is None
    assert config_differences([a, a]) == [{}, {}]


def _rows(losses, per_epoch=10):
    return [{"split": "train", "epoch": (k + 1) / per_epoch, "loss": v} for k, v in enumerate(losses)]


def test_loss_departure_finds_the_end_of_a_plateau():
    flat = [0.6931 + 0.0005 * ((-1) ** k) for k in range(60)]
    assert loss_departure(_rows(flat)) is None
    falling = flat[:40] + [0.60] * 20  # drops at row 41 (epoch 4.1): the first window that ends there is below
    assert loss_departure(_rows(falling)) == pytest.approx(4.1)
    slow = flat[:40] + [0.6931 - 0.0004 * k for k in range(1, 21)]  # a slope: 0.5% below ln 2 (0.0035) at row 49
    assert 4.1 < loss_departure(_rows(slow)) <= 6.0
    assert loss_departure(_rows(flat[:10])) is None  # too few rows to tell


TINY = ["--data.length=64", "--data.bits=4", "--data.bit_length=4", "--data.n_train=32", "--data.n_val=16",
        "--data.n_test=16", "--batch_size=16", "--epochs=2", "--model.d_model=8", "--model.n_layers=1",
        "--model.d_state=8", "--tensorboard=false", "--num_threads=1", "--log_every=1"]


def test_compare_command_on_two_runs(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", *TINY, f"--out_dir={a}"]) == 0
    assert main(["train", *TINY, "--lr=0.02", f"--out_dir={b}"]) == 0
    s = summarize_run(b)
    with open(b / "metrics.csv", newline="") as f:
        val = [r for r in csv.DictReader(f) if r["split"] == "val"]
    assert s["complete"] and s["steps"] == 4 and s["epochs"] == 2 and s["task"] == "delay"
    assert s["best_val_acc"] == pytest.approx(100 * max(float(r["acc"]) for r in val))
    assert s["val_loss"] == pytest.approx([float(r["loss"]) for r in val])
    saved = json.loads((a / "config.json").read_text())  # as an older version wrote it: no b_clip yet
    del saved["model"]["b_clip"]
    (a / "config.json").write_text(json.dumps(saved))
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--labels", "base,fast", "--out", str(tmp_path / "cmp.png")]) == 0
    out = capsys.readouterr().out
    assert "| base | delay | `lr=0.01` |" in out and "| fast | delay | `lr=0.02` |" in out
    assert (tmp_path / "cmp.png").stat().st_size > 10_000 and "figure:" in out
    assert main(["compare", str(a), str(tmp_path)]) == 2  # not a run folder
    assert "is not a training run (config.json missing)" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--labels", "x,x"]) == 2
    assert "distinct label" in capsys.readouterr().err
