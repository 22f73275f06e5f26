"""A task of the user's own (``examples/custom_task.py``) stays first-class: its run evaluates and
resumes from a fresh ``hippos`` process. The run directory's lock refuses a second writer and
frees itself when its holder dies. A run saved before the ``Task``/``Block`` reshape resumes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hippos.cli import main
from hippos.train import RunDir

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_task.py"
FAST = ["--tensorboard=false", "--no-progress", "--num_threads=1"]


def _hippos(*args, cwd=None) -> subprocess.CompletedProcess:
    """``hippos ARGS`` in a fresh interpreter (nothing imported or registered beforehand)."""
    return subprocess.run([sys.executable, "-m", "hippos", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("samples_per_s", "elapsed_s")} for r in csv.DictReader(f)]


# ----------------------------------------------------------------------------- a task of your own


def test_a_custom_task_module_trains_then_evaluates_and_resumes_from_a_fresh_process(tmp_path):
    out, full = tmp_path / "run", tmp_path / "full"
    small = ["--data.n_train=256", "--data.length=50", "--epochs=2", *FAST]
    done = _hippos("train", "--task-module", str(EXAMPLE), "first-sign", *small, f"--out-dir={full}")
    assert done.returncode == 0, done.stderr
    cut = _hippos("train", "--task-module", str(EXAMPLE), "first-sign", *small, "--max_steps=3", f"--out-dir={out}")
    assert cut.returncode == 0, cut.stderr
    assert json.loads((out / "config.json").read_text())["task_module"] == str(EXAMPLE)

    # from another directory, with nothing but the run: the config names the module
    resumed = _hippos("train", "--resume", str(out), "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert _rows(out) == _rows(full)
    ev = _hippos("eval", str(out), cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout.strip().splitlines()[-1])["acc"] == json.loads((full / "results.json").read_text())["test_acc"]


def test_a_custom_task_without_its_module_is_an_unknown_task_with_a_hint(capsys):
    assert main(["train", "first-sign"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown task 'first-sign'" in err[0] and "--task-module" in err[0]


def test_custom_data_fields_are_type_checked_with_suggestions(capsys):
    assert main(["train", "--task-module", str(EXAMPLE), "first-sign", "--data.lenght=5", "--print-config"]) == 2
    assert "did you mean 'data.length'" in capsys.readouterr().err
    assert main(["train", "--task-module", str(EXAMPLE), "first-sign", "--data.length=5", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == {"length": 5, "noise": 0.5, "n_train": 2000, "n_val": 200,
                                                            "n_test": 200, "seed": 0}


def test_a_missing_task_module_is_one_line(tmp_path, capsys):
    assert main(["train", "--task-module", str(tmp_path / "nope.py"), "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.py" in err[0] and "not found" in err[0]


# ----------------------------------------------------------------------------- the lock

TINY = ["--data.length=32", "--data.bits=4", "--data.bit_length=4", "--data.n_train=32", "--data.n_val=8",
        "--data.n_test=8", "--batch_size=16", "--epochs=1", "--model.d_model=8", "--model.n_layers=1",
        "--model.d_state=8", *FAST]


def test_a_second_writer_is_refused_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    holder = RunDir(out).lock()  # as a run in progress holds it
    try:
        assert main(["train", *TINY, f"--out-dir={out}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "being written by another hippos process" in err[0] and f"pid {os.getpid()}" in err[0]
        assert os.listdir(out) == [".lock"]  # nothing written
    finally:
        holder.unlock()
    assert main(["train", *TINY, f"--out-dir={out}", "--max_steps=1"]) == 0
    holder = RunDir(out).lock()
    try:
        assert main(["train", "--resume", str(out)]) == 2
        assert "being written by another hippos process" in capsys.readouterr().err
    finally:
        holder.unlock()
    assert main(["train", "--resume", str(out)]) == 0
    steps = [r["step"] for r in _rows(out) if r["split"] == "train"]
    assert steps == sorted(set(steps))  # no doubled rows


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    code = f"from hippos.train import RunDir; RunDir({str(out)!r}).lock(); print('locked', flush=True); import time; time.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert main(["train", *TINY, f"--out-dir={out}"]) == 2
        assert f"pid {proc.pid}" in capsys.readouterr().err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert json.loads((out / ".lock").read_text())["pid"] == proc.pid  # the dead holder's file is still there
    assert main(["train", *TINY, f"--out-dir={out}"]) == 0  # ... and no longer locks anything


def test_a_refused_fresh_run_leaves_no_directory_behind(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["train", *TINY, "--model.d_input=3", f"--out-dir={out}"]) == 2
    assert not out.exists()


# ----------------------------------------------------------------------------- runs saved before the reshape

OLD_NAMES = {".mixer.": ".layer."}  # the classifier's blocks were ResidualBlock(layer, norm)


def _to_old_format(run: Path) -> None:
    """Rewrite a run as hippos 0.1.0 saved it: block weights named ``blocks.i.layer.*``, each block's
    parameters registered layer first then norm (so the optimizer state's order differs), a
    config without ``config_version`` whose ``ssm_lr`` was the old capped default 1e-3."""
    ckpt = run / "checkpoint"

    def old(name: str) -> str:
        for new, was in OLD_NAMES.items():
            name = name.replace(new, was)
        return name

    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    weights = load_file(ckpt / "model.safetensors")
    save_file({old(k): v for k, v in weights.items()}, ckpt / "model.safetensors", metadata=meta)

    blob = torch.load(ckpt / "optimizer.pt", weights_only=True)
    opt = blob["optimizer"]

    def old_position(name: str) -> tuple:  # the old registration order: a block's layer before its norm
        parts = name.split(".")  # backbone.blocks.<i>.<norm|mixer>...
        if "blocks" not in parts:
            return (-1 if parts[0] == "backbone" and parts[1] == "encoder" else 10**6, 0)
        i = parts.index("blocks")
        return (int(parts[i + 1]), 1 if parts[i + 2] == "norm" else 0)

    pairs = [(n, i, g) for g, group in enumerate(opt["param_groups"]) for n, i in zip(group["param_names"], group["params"])]
    order = sorted(pairs, key=lambda t: (old_position(t[0]), [p[0] for p in pairs].index(t[0])))  # stable
    new_id = {i: k for k, (_, i, _) in enumerate(order)}
    state = {new_id[i]: s for i, s in opt["state"].items()}
    for g, group in enumerate(opt["param_groups"]):
        members = [(n, i) for n, i, gg in order if gg == g]
        group["param_names"] = [old(n) for n, _ in members]
        group["params"] = [new_id[i] for _, i in members]
    torch.save({**blob, "optimizer": {"state": state, "param_groups": opt["param_groups"]}}, ckpt / "optimizer.pt")

    cfg = json.loads((run / "config.json").read_text())
    del cfg["config_version"], cfg["task_module"]
    cfg["model"]["ssm_lr"] = 0.001
    (run / "config.json").write_text(json.dumps(cfg, indent=2))


def test_a_run_saved_in_the_old_format_resumes_exactly(tmp_path):
    args = ["train", *TINY, "--epochs=2", "--model.n_layers=2", "--lr=2e-3"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*args, f"--out-dir={full}"]) == 0
    assert main([*args, f"--out-dir={cut}", "--max_steps=3"]) == 0
    _to_old_format(cut)
    with safe_open(str(cut / "checkpoint" / "model.safetensors"), framework="pt") as f:
        assert any(".layer." in k for k in f.keys())
    assert main(["train", "--resume", str(cut)]) == 0
    assert _rows(cut) == _rows(full)  # same moments, same learning rates: the same run
    assert json.loads((cut / "config.json").read_text())["model"]["ssm_lr"] is None  # upgraded: min(lr, 1e-3)


@pytest.mark.parametrize("ssm_lr,lr,expect", [(1e-3, 4e-3, None), (1e-2, 5e-4, None), (1e-4, 4e-3, 1e-4), (5e-4, 2e-4, 2e-4)])
def test_old_ssm_lr_values_upgrade_to_the_same_rates(ssm_lr, lr, expect):
    from hippos.train.registry import upgrade_config_dict

    got = upgrade_config_dict({"task": "delay", "lr": lr, "model": {"ssm_lr": ssm_lr}})
    assert got["model"]["ssm_lr"] == expect and got["config_version"] == 2
    old_rate = min(min(ssm_lr, 1e-3), lr)  # what 0.1.0 trained with
    assert (min(lr, 1e-3) if expect is None else expect) == old_rate


def test_old_mnist_configs_drop_the_delay_fields_they_carried():
    from hippos.train.registry import config_from_dict

    cfg = config_from_dict({"task": "smnist", "data": {"length": 512, "noise": 0.2}, "model": {"ssm_lr": 0.001}})
    assert cfg.task == "smnist" and not vars(cfg.data)
    with pytest.raises(ValueError, match="newer"):
        config_from_dict({"task": "smnist", "config_version": 99})


# ----------------------------------------------------------------------------- one flag spelling


def test_options_take_dashes_and_underscores_alike(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", *TINY, "--max-steps=1", f"--out-dir={a}"]) == 0
    assert main(["train", *TINY, "--max_steps=1", f"--out_dir={b}"]) == 0
    assert json.loads((a / "config.json").read_text())["out_dir"] == str(a)
    assert json.loads((b / "config.json").read_text())["max_steps"] == 1
    capsys.readouterr()
    assert main(["eval", str(a), "--data-dir", str(tmp_path), "--batch_size=4"]) == 0
    assert main(["eval", str(a), "--data_dir", str(tmp_path), "--batch-size=4"]) == 0
    assert main(["train", "--print_config"]) == 0 and main(["train", "--print-config"]) == 0


def test_a_task_registered_from_a_module_is_recorded_in_the_run(tmp_path, monkeypatch):
    (tmp_path / "my_registered_tasks.py").write_text(EXAMPLE.read_text().replace('"first-sign"', '"registered-sign"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_registered_tasks  # noqa: F401  (registers "registered-sign" as a side effect)

    from hippos.train import default_config, train

    cfg = default_config("registered-sign")
    cfg.out_dir, cfg.max_steps, cfg.tensorboard = str(tmp_path / "run"), 2, False
    train(cfg, progress=False, log=lambda msg: None)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["task_module"] == "my_registered_tasks"
    ev = subprocess.run([sys.executable, "-m", "hippos", "eval", str(tmp_path / "run")], capture_output=True,
                        text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=300)
    assert ev.returncode == 0, ev.stderr
