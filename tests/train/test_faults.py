"""Faults a user meets, through ``hippos.cli.main`` as a user types them: a damaged checkpoint
file, a full disk or a read-only run directory, Ctrl-C, a run without a terminal. Each ends with
one line on stderr and exit code 2 (Ctrl-C: 130), no traceback, nothing half-written left behind,
and the run still resumes to the uninterrupted result, bit for bit."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal

import pytest
import torch
from safetensors.torch import load_file

from hippos.cli import main
from hippos.train import checkpoint as ckpt_io
from hippos.train import loop
from hippos.train.objectives import Objective

# 48 examples / batch 16 = 3 steps per epoch x 2 epochs; dropout on, so resuming must restore the RNG.
TINY = [
    "--data.length=64", "--data.bits=4", "--data.bit_length=4", "--data.n_train=48", "--data.n_val=16",
    "--data.n_test=16", "--batch_size=16", "--epochs=2", "--model.d_model=8", "--model.n_layers=2",
    "--model.d_state=8", "--model.dropout=0.1", "--warmup_steps=2", "--log_every=1", "--tensorboard=false",
    "--lr=1e-2", "--num_threads=1",
]


def _train(out, *extra) -> int:
    return main(["train", *TINY, f"--out_dir={out}", *extra])


def _rows(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("samples_per_s", "elapsed_s")} for r in csv.DictReader(f)]


def _step(run_dir) -> int:
    return json.loads((run_dir / "checkpoint" / "trainer_state.json").read_text())["step"]


def _assert_same_run(a, b) -> None:
    """Two finished runs: the same final weights, optimizer moments, metrics rows and results."""
    wa, wb = (load_file(d / "checkpoint" / "model.safetensors") for d in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    oa, ob = (torch.load(d / "checkpoint" / "optimizer.pt", weights_only=True)["optimizer"]["state"] for d in (a, b))
    assert all(torch.equal(v, ob[i][k]) for i, s in oa.items() for k, v in s.items())
    assert _rows(a) == _rows(b)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert (ra["test_loss"], ra["test_acc"], ra["best_val_acc"]) == (rb["test_loss"], rb["test_acc"], rb["best_val_acc"])


def _leftovers(run_dir) -> list[str]:
    """Temporary files and directories of interrupted writes."""
    return sorted(p.name for p in run_dir.rglob("*") if p.name.startswith(".") and p.name not in (".lock", ".artifacts.json"))


def _one_error_line(capsys, *fragments) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0] and err[0].startswith("hippos train: error: "), err
    assert all(f in err[0] for f in fragments), err[0]
    return err[0]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The uninterrupted run every cut run must end equal to."""
    out = tmp_path_factory.mktemp("full") / "run"
    assert _train(out) == 0
    return out


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    """A run stopped by max_steps at step 2 (mid epoch 1), to damage and resume."""
    out = tmp_path_factory.mktemp("cut") / "run"
    assert _train(out, "--max_steps=2") == 0
    return out


# ----------------------------------------------------------------------------- 1. damaged checkpoint files


def _rewrite_state(edit):
    def damage(f):
        state = json.loads(f.read_text())
        edit(state)
        f.write_text(json.dumps(state))
    return damage


DAMAGE = {
    "optimizer random bytes": ("optimizer.pt", lambda f: f.write_bytes(os.urandom(1000)), "cannot load optimizer state"),
    "optimizer cut off": ("optimizer.pt", lambda f: f.write_bytes(f.read_bytes()[: f.stat().st_size // 2]),
                          "cannot load optimizer state"),
    "optimizer empty": ("optimizer.pt", lambda f: f.write_bytes(b""), "cannot load optimizer state"),
    "optimizer of another program": ("optimizer.pt", lambda f: torch.save([torch.zeros(2)], f), "not a hippos optimizer state"),
    "weights random bytes": ("model.safetensors", lambda f: f.write_bytes(os.urandom(1000)), "cannot load weights"),
    "weights cut off": ("model.safetensors", lambda f: f.write_bytes(f.read_bytes()[:-100]), "cannot load weights"),
    "state cut off": ("trainer_state.json", lambda f: f.write_text(f.read_text()[:500]), "is damaged"),
    "state random bytes": ("trainer_state.json", lambda f: f.write_bytes(b"\xff\xfe" + os.urandom(500)), "is damaged"),
    "state not an object": ("trainer_state.json", lambda f: f.write_text("[1, 2]"), "unknown checkpoint format"),
    "state without a key": ("trainer_state.json", _rewrite_state(lambda s: s.pop("epoch_sums")), "is damaged: no epoch_sums"),
    "state step not a number": ("trainer_state.json", _rewrite_state(lambda s: s.update(step="two")), "step is not a number"),
    "torch rng": ("trainer_state.json", _rewrite_state(lambda s: s["rng"].update(torch="AAAA")), "RNG state does not restore"),
    "numpy rng": ("trainer_state.json", _rewrite_state(lambda s: s["rng"]["numpy"].pop()), "RNG state does not restore"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_checkpoint_file_stops_resume_with_one_line_naming_it(case, cut, tmp_path, capsys):
    name, damage, fragment = DAMAGE[case]
    run = tmp_path / "run"
    shutil.copytree(cut, run)
    damage(run / "checkpoint" / name)
    before = {p.name: p.read_bytes() for p in (run / "checkpoint").iterdir()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    line = _one_error_line(capsys, fragment, str(run / "checkpoint"))
    assert "weights_only" not in line  # torch's advice to unpickle anything is not ours to give
    assert {p.name: p.read_bytes() for p in (run / "checkpoint").iterdir()} == before


def test_a_run_saved_with_an_optimizer_pt_still_resumes(cut, full, tmp_path):
    """The format is unchanged (optimizer.pt read with weights_only=True): a run cut by an earlier
    version resumes exactly."""
    run = tmp_path / "run"
    shutil.copytree(cut, run)
    blob = torch.load(run / "checkpoint" / "optimizer.pt", weights_only=True)
    torch.save(blob, run / "checkpoint" / "optimizer.pt")  # written by torch.save to a path, as before
    assert main(["train", "--resume", str(run)]) == 0
    _assert_same_run(full, run)


# ----------------------------------------------------------------------------- 2. a full disk, a read-only run


def _fail_at_second_checkpoint(monkeypatch, where: str, exc: BaseException) -> None:
    """Make the second checkpoint's write of ``where`` raise ``exc`` (after writing part of it)."""
    calls = []

    def hit(path) -> bool:
        calls.append(str(path))
        return len(calls) == 2

    if where == "weights":  # safetensors reports an OS error inside its own error type
        from safetensors import SafetensorError
        from safetensors import torch as st

        real = st.save_model

        def save_model(model, filename, metadata=None):
            if ckpt_io._TMP in str(filename) and hit(filename):
                open(filename, "wb").write(b"partial")
                raise SafetensorError(f'Error while serializing: I/O error: {exc.strerror} (os error {exc.errno}) at path "{filename}"')
            return real(model, filename, metadata=metadata)

        monkeypatch.setattr(st, "save_model", save_model)
    elif where == "optimizer":
        real = ckpt_io._write_file

        def write_file(path, data):
            if path.name == ckpt_io.OPTIMIZER and hit(path):
                path.write_bytes(bytes(data[:100]))
                raise exc
            return real(path, data)

        monkeypatch.setattr(ckpt_io, "_write_file", write_file)
    else:  # "rename": between the two renames, checkpoint/ already moved aside to .checkpoint-old/
        real = os.replace

        def replace(src, dst):
            if os.path.basename(src) == ckpt_io._TMP and hit(src):
                raise exc
            return real(src, dst)

        monkeypatch.setattr(os, "replace", replace)


ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
EROFS = OSError(errno.EROFS, os.strerror(errno.EROFS))


@pytest.mark.parametrize("where,exc", [("weights", ENOSPC), ("optimizer", ENOSPC), ("rename", EROFS),
                                       ("optimizer", KeyboardInterrupt()), ("rename", KeyboardInterrupt())])
def test_a_failed_checkpoint_write_keeps_the_last_one_and_leaves_nothing_behind(where, exc, full, tmp_path, monkeypatch,
                                                                                capsys):
    run = tmp_path / "run"
    _fail_at_second_checkpoint(monkeypatch, where, exc)
    capsys.readouterr()
    if isinstance(exc, KeyboardInterrupt):  # a second Ctrl-C during the save
        assert _train(run, "--checkpoint_every=1") == 130
        assert capsys.readouterr().err.strip().splitlines() == ["hippos train: interrupted"]
    else:
        assert _train(run, "--checkpoint_every=1") == 2
        _one_error_line(capsys, f"cannot write the checkpoint {str(run / 'checkpoint')!r}", exc.strerror)
    assert _leftovers(run) == [] and _step(run) == 1  # the first checkpoint, whole
    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0
    _assert_same_run(full, run)


def test_a_failed_weights_write_leaves_no_temp_file(tmp_path, monkeypatch):
    """best.safetensors on a full disk: OSError naming it, the previous file intact, no temp file."""
    model = torch.nn.Linear(2, 2)
    ckpt_io.save_weights(model, tmp_path / "best.safetensors")
    before = (tmp_path / "best.safetensors").read_bytes()
    from safetensors import torch as st

    def full_disk(model, filename, metadata=None):
        open(filename, "wb").write(b"part")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(st, "save_model", full_disk)
    with torch.no_grad():
        model.weight.add_(1)
    with pytest.raises(OSError, match="cannot write weights .*best.safetensors.*No space left on device") as e:
        ckpt_io.save_weights(model, tmp_path / "best.safetensors")
    assert e.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors"]
    assert (tmp_path / "best.safetensors").read_bytes() == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_a_read_only_run_directory_stops_with_one_line(cut, full, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cut, run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    for d in (run / "checkpoint", run):
        d.chmod(0o555)
    try:
        capsys.readouterr()
        assert main(["train", "--resume", str(run)]) == 2
        _one_error_line(capsys, "cannot write", str(run), os.strerror(errno.EACCES))
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        assert _train(ro / "new") == 2
        _one_error_line(capsys, str(ro / "new"), os.strerror(errno.EACCES))
        assert list(ro.iterdir()) == []
    finally:
        for d in (run, run / "checkpoint"):
            d.chmod(0o755)
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"} == before
    assert main(["train", "--resume", str(run)]) == 0
    _assert_same_run(full, run)


# ----------------------------------------------------------------------------- 3. Ctrl-C


def _at_training_step(monkeypatch, k: int, action) -> None:
    """Run ``action()`` inside the forward pass of training step ``k`` (1-based, this process)."""
    real, seen = Objective.loss_and_metrics, []

    def loss_and_metrics(self, model, x, y, lengths=None):
        if model.training:
            seen.append(1)
            if len(seen) == k:
                action()
        return real(self, model, x, y, lengths)

    monkeypatch.setattr(Objective, "loss_and_metrics", loss_and_metrics)


def test_ctrl_c_finishes_the_step_saves_it_and_resumes_exactly(full, tmp_path, monkeypatch, capsys):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is handled by someone else here")
    run = tmp_path / "run"
    _at_training_step(monkeypatch, 2, lambda: signal.raise_signal(signal.SIGINT))  # a real Ctrl-C, mid epoch 1
    capsys.readouterr()
    assert _train(run) == 130
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == f"stopped at step 2 (interrupted); continue with: hippos train --resume {run}"
    assert err.strip().splitlines()[-1] == "hippos train: interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    assert _step(run) == 2 and _leftovers(run) == []  # saved at the interrupt, not at the epoch's start
    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0
    _assert_same_run(full, run)


def test_sigterm_finishes_the_step_saves_it_and_resumes_exactly(full, tmp_path, monkeypatch, capsys):
    """SIGTERM (``kill PID``, a scheduler's preemption) stops like the first Ctrl-C, exit 143."""
    if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        pytest.skip("SIGTERM is handled by someone else here")
    run = tmp_path / "run"
    _at_training_step(monkeypatch, 2, lambda: signal.raise_signal(signal.SIGTERM))
    capsys.readouterr()
    assert _train(run) == 143
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == f"stopped at step 2 (terminated); continue with: hippos train --resume {run}"
    assert err.strip().splitlines()[-1] == "hippos train: terminated"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back
    assert _step(run) == 2 and _leftovers(run) == []
    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0
    _assert_same_run(full, run)


@pytest.mark.parametrize("k,saved", [(5, 3), (2, None)])
def test_a_second_ctrl_c_stops_at_once_and_the_last_checkpoint_stands(k, saved, full, tmp_path, monkeypatch, capsys):
    """KeyboardInterrupt inside a step (a second Ctrl-C): that step is not saved; the checkpoint of
    epoch 1 (step 3) is where the run continues from, or there is none yet."""
    run = tmp_path / "run"

    def interrupt():
        raise KeyboardInterrupt

    _at_training_step(monkeypatch, k, interrupt)
    capsys.readouterr()
    assert _train(run) == 130
    out, err = capsys.readouterr()
    hint = out.strip().splitlines()[-1]
    assert err.strip().splitlines() == ["hippos train: interrupted"]
    assert _leftovers(run) == []
    monkeypatch.undo()
    if saved is None:
        assert hint == f"interrupted at step {k - 1}; no checkpoint was written yet, nothing to resume"
        assert not (run / "checkpoint").exists()
        return
    assert hint == f"interrupted at step {k - 1}; continue from the checkpoint of step {saved} with: hippos train --resume {run}"
    assert _step(run) == saved
    assert main(["train", "--resume", str(run)]) == 0
    _assert_same_run(full, run)


# ----------------------------------------------------------------------------- 4. no terminal: progress lines


@pytest.mark.parametrize("interval,lines", [(1e-9, 4), (0, 0), (loop.PROGRESS_EVERY_S, 0)])
def test_without_a_terminal_progress_lines_come_at_the_interval(interval, lines, tmp_path, monkeypatch, capsys):
    """A line at most every PROGRESS_EVERY_S seconds (0: none) besides the epoch lines; a tiny interval
    gives one per step except the steps that end an epoch (their epoch line follows)."""
    monkeypatch.setattr(loop, "PROGRESS_EVERY_S", interval)
    capsys.readouterr()
    assert _train(tmp_path / "run") == 0  # capsys: stderr is not a terminal, so no progress bar
    out = capsys.readouterr().out.strip().splitlines()
    progress = [ln for ln in out if " samples/s  (" in ln]
    assert len(progress) == lines
    if lines:
        assert progress[0].startswith("epoch 1/2  step 1/3  train loss ") and progress[-1].startswith("epoch 2/2  step 2/3")
    assert sum(ln.startswith("epoch ") and " val " in ln for ln in out) == 2  # the epoch lines stay
    assert json.loads(out[-1])["complete"] is True
