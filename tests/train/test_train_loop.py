"""The trainer end to end on a tiny ``delay`` task with the real SequenceClassifier:
checkpoints reload exactly, a cut-and-resumed run is bitwise the uninterrupted one, the CLI
refuses bad input with one line, and ``hippos eval`` reads a run back."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from hippos.cli import main
from hippos.data.generated import delay
from hippos.train import build_model
from hippos.train import checkpoint as ckpt_io
from hippos.train.config import load_config
from hippos.train.registry import config_from_dict
from hippos.train.task import Task

# 48 examples / batch 16 = 3 steps per epoch; dropout on, so resuming must restore the RNG.
TINY = [
    "--data.length=64", "--data.bits=4", "--data.bit_length=4", "--data.n_train=48", "--data.n_val=16",
    "--data.n_test=16", "--batch_size=16", "--epochs=2", "--model.d_model=8", "--model.n_layers=2",
    "--model.d_state=8", "--model.dropout=0.1", "--warmup_steps=2", "--log_every=1", "--tensorboard=false",
    "--lr=1e-2",
]


def _train(out, *extra) -> int:
    return main(["train", *TINY, f"--out_dir={out}", *extra])


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("samples_per_s", "elapsed_s")} for r in csv.DictReader(f)]


def test_two_steps_write_a_checkpoint_that_reloads_exactly(tmp_path, monkeypatch, capsys):
    built = []
    real = Task.build_model
    monkeypatch.setattr(Task, "build_model", lambda self, cfg: built.append(real(self, cfg)) or built[-1])
    out = tmp_path / "run"
    assert _train(out, "--max_steps=2") == 0
    for name in ("config.json", "metrics.csv", "checkpoint/model.safetensors", "checkpoint/optimizer.pt",
                 "checkpoint/trainer_state.json"):
        assert (out / name).is_file(), name
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["epoch"] == 0 and state["batch_in_epoch"] == 2
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["step"] == 2 and printed["complete"] is False

    trained = built[0].eval()
    cfg = config_from_dict(load_config(out / "config.json"))
    fresh = build_model(cfg.model).eval()
    ckpt_io.load_weights(fresh, out / "checkpoint" / "model.safetensors")
    x, _ = delay("test", 4, cfg.data.length, cfg.data.bits, cfg.data.bit_length, cfg.model.n_classes, cfg.data.noise)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), trained(x), rtol=0, atol=0)


def test_resume_after_a_cut_is_bitwise_identical(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _train(full, "--checkpoint_every=2") == 0
    assert _train(cut, "--max_steps=4") == 0  # stops in the middle of epoch 2
    # what a kill leaves behind: rows logged after the checkpoint, a half-written checkpoint
    with open(cut / "metrics.csv", "a") as f:
        f.write("5,1.6667,train,9,0,0.01,,\n")
    (cut / ".checkpoint-tmp").mkdir()
    (cut / ".checkpoint-tmp" / "model.safetensors").write_bytes(b"partial")
    assert main(["train", "--resume", str(cut), "--num_workers=1"]) == 0  # workers do not change the data

    a, b = load_file(full / "checkpoint" / "model.safetensors"), load_file(cut / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa = torch.load(full / "checkpoint" / "optimizer.pt", weights_only=True)["optimizer"]
    ob = torch.load(cut / "checkpoint" / "optimizer.pt", weights_only=True)["optimizer"]
    for pid, s in oa["state"].items():
        for k, v in s.items():
            assert torch.equal(v, ob["state"][pid][k]), (pid, k)
    assert _rows(full) == _rows(cut)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (full, cut))
    assert (ra["test_loss"], ra["test_acc"], ra["best_val_acc"]) == (rb["test_loss"], rb["test_acc"], rb["best_val_acc"])
    assert not (cut / ".checkpoint-tmp").exists()
    assert (full / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert config_from_dict(load_config(cut / "config.json")).num_workers == 1


def test_same_seed_same_run_other_seed_differs(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert _train(tmp_path / name, "--max_steps=2", f"--seed={seed}") == 0
    wa, wb, wc = (load_file(tmp_path / n / "checkpoint" / "model.safetensors") for n in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_eval_reads_a_run_back(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out) == 0
    results = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["split"] == "test" and got["n"] == 16 and got["step"] == 6
    assert got["acc"] == results["test_acc"] and got["loss"] == pytest.approx(results["test_loss"], rel=1e-6)
    assert main(["eval", str(out / "checkpoint"), "--split", "val", "--weights", "best"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["split"] == "val" and got["acc"] == results["best_val_acc"]


def _one_line_error(capsys, argv, fragment):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and "Traceback" not in err[0], err


@pytest.fixture
def corrupt_data(tmp_path):
    from hippos.data.mnist import FILES

    d = tmp_path / "data" / "mnist"
    d.mkdir(parents=True)
    for name, (_, size) in FILES.items():
        (d / name).write_bytes(b"\x01" * size)
    return d.parent


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["nosuch"], "unknown task 'nosuch'"),
        (["smnst"], "did you mean 'smnist'"),
        (["--model.d_modle=8"], "did you mean 'model.d_model'"),
        (["--epochs=1.5"], "--epochs expects an integer"),
        (["--model.prenorm=maybe"], "boolean"),
        (["--lr=-1"], "lr must be > 0"),
        (["--task=smnist"], "first argument"),
        (["--config", "/nonexistent/c.json"], "not found"),
        (["smnist", "--data_dir={empty}"], "missing data file"),
        (["smnist", "--data_dir={corrupt}"], "is not the MNIST file"),
        (["smnist", "--data.noise=0.9"], "unknown config key 'data.noise': the smnist data section has no keys"),
        (["--model.n_classes=10", "--model.d_input=3"], "d_input"),
        (["--device=cuda:7"] if not torch.cuda.is_available() else ["--device=bogus"], "device"),
    ],
)
def test_train_refuses_bad_input_with_one_line(tmp_path, capsys, corrupt_data, args, fragment):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [a.format(empty=empty, corrupt=corrupt_data) for a in args]
    out = tmp_path / "run"
    tiny = [a for a in TINY if not a.startswith("--data.")] if args[0] == "smnist" else TINY  # delay's data keys
    _one_line_error(capsys, ["train", *tiny, *args, f"--out_dir={out}"], fragment)
    assert not out.exists()


def test_existing_run_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out, "--max_steps=1") == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _one_line_error(capsys, ["train", *TINY, f"--out_dir={out}"], "already holds a run")
    _one_line_error(capsys, ["train", *TINY, "--lr=0.5", f"--out_dir={out}"], "--resume")
    _one_line_error(capsys, ["train", "--resume", str(out), "--lr=0.5"], "cannot change lr")
    _one_line_error(capsys, ["train", "--resume", str(out), "--force"], "do not go together")
    _one_line_error(capsys, ["train", "smnist", "--resume", str(out)], "is a 'delay' run")
    _one_line_error(capsys, ["train", "--resume", str(tmp_path / "nothing")], "holds no run")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    _one_line_error(capsys, ["train", *TINY, f"--out_dir={tmp_path / 'other'}", "--force"], "holds no hippos run")
    assert _train(out, "--max_steps=1", "--force", "--seed=3") == 0
    assert config_from_dict(load_config(out / "config.json")).seed == 3


def test_eval_errors(tmp_path, capsys):
    _one_line_error(capsys, ["eval", str(tmp_path / "nothing")], "does not exist")
    _one_line_error(capsys, ["eval", str(tmp_path)], "not a hippos run")


def test_print_config_and_help(capsys):
    assert main(["train", "psmnist", "--print-config", "--model.d_model=32"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["task"] == "psmnist" and cfg["model"]["d_model"] == 32 and cfg["model"]["n_layers"] == 4
    assert main(["train", "-h"]) == 0
    text = capsys.readouterr().out
    assert "--resume" in text and "psmnist" in text


def test_tensorboard_is_used_when_importable(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    class FakeWriter:
        def __init__(self, log_dir, purge_step=None):
            calls.append(("init", log_dir, purge_step))

        def add_scalar(self, tag, value, step):
            calls.append((tag, step))

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    out = tmp_path / "run"
    assert _train(out, "--max_steps=3", "--tensorboard=true") == 0
    assert calls[0] == ("init", str(out / "tb"), None) and calls[-1] == ("close",)
    assert ("train/loss", 1) in calls and ("val/acc", 3) in calls


def test_mnist_task_path_with_stand_in_images(tmp_path, monkeypatch):
    """smnist / psmnist through the whole loop, with small random images instead of the files."""
    import numpy as np

    from hippos.data import mnist

    def fake_split(split, data_dir=None):
        rng = np.random.default_rng(len(split))
        n = {"train": 20, "val": 10, "test": 10}[split]
        return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.uint8)

    monkeypatch.setattr(mnist, "load_split", fake_split)
    small = ["--model.d_model=4", "--model.n_layers=1", "--model.d_state=4", "--model.mode=diag", "--batch_size=10",
             "--epochs=1", "--tensorboard=false"]
    for task in ("smnist", "psmnist"):
        assert main(["train", task, *small, f"--out_dir={tmp_path / task}"]) == 0
        results = json.loads((tmp_path / task / "results.json").read_text())
        assert results["complete"] and results["step"] == 2 and 0 <= results["test_acc"] <= 1


def test_a_killed_run_resumes_to_the_same_result(tmp_path):
    """SIGKILL a real ``hippos train`` process after a few checkpoints, resume, compare."""
    import subprocess
    import sys
    import time

    args = [*TINY, "--epochs=3", "--checkpoint_every=1", "--num_threads=1"]  # the same count in both processes
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(["train", *args, f"--out_dir={full}"]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "hippos.cli", "train", *args, f"--out_dir={killed}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    state = killed / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.loads(state.read_text())["step"] >= 2:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.002)
    finally:
        proc.kill()
        proc.wait()
    assert not (killed / "results.json").exists(), "the run ended before it could be killed"
    assert main(["train", "--resume", str(killed)]) == 0
    a, b = (load_file(d / "checkpoint" / "model.safetensors") for d in (full, killed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _rows(full) == _rows(killed)


@pytest.mark.parametrize("minutes, saved_steps", [(0, [3, 6]), (1e-9, [1, 2, 3, 4, 5, 6])])
def test_checkpoint_minutes_saves_long_epochs(tmp_path, monkeypatch, minutes, saved_steps):
    """``checkpoint_minutes``: a checkpoint whenever that much time has passed since the last, in
    the middle of an epoch too (a kill of a run with hour-long epochs loses at most that much);
    0 leaves the epoch ends only (and ``checkpoint_every``, 0 here)."""
    steps = []
    real = ckpt_io.save_checkpoint
    monkeypatch.setattr(ckpt_io, "save_checkpoint", lambda path, m, o, state, **kw: steps.append(state["step"]) or real(
        path, m, o, state, **kw))
    assert _train(tmp_path / "run", f"--checkpoint_minutes={minutes}") == 0
    assert steps == saved_steps
