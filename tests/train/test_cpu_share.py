"""The busy-CPU note: when it is printed (threads that oversubscribe a loaded machine) and that a
training run prints it on its first lines, and not on an idle machine or with one thread."""

from __future__ import annotations

import os

import pytest

from hippos.cli import main
from hippos.train.cpu_share import machine_hint, shared_cpu_hint


@pytest.mark.parametrize(
    "threads, load, cores, noted",
    [
        (2, 1.0, 2, True),  # another 1-thread job on a 2-core machine: 3 busy threads for 2 cores
        (2, 2.3, 2, True),
        (16, 2.0, 16, True),  # a few other jobs on a big machine, the run takes every core
        (2, 0.2, 2, False),  # idle machine
        (2, 0.9, 2, False),  # below BUSY_LOAD: the run's own data loading
        (1, 3.0, 2, False),  # one thread cannot wait on its siblings
        (4, 1.5, 16, False),  # fits
    ],
)
def test_hint_only_when_threads_oversubscribe_a_busy_machine(threads, load, cores, noted):
    hint = shared_cpu_hint(threads, load, cores)
    assert (hint is not None) == noted
    if noted:
        assert f"load {load:.1f} on {cores} cores" in hint and f"{threads} threads" in hint
        assert "--num_threads=1" in hint


def test_machine_hint_reads_this_machine(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 0.0, 0.0))
    assert machine_hint(2) is not None and "load 50.0" in machine_hint(2)
    assert machine_hint(1) is None
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert machine_hint(64) is None

    def unavailable():
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    assert machine_hint(2) is None


TINY = ["--data.length=64", "--data.bits=4", "--data.bit_length=4", "--data.n_train=16", "--data.n_val=8", "--data.n_test=8", "--batch_size=8",
        "--epochs=1", "--model.d_model=8", "--model.n_layers=1", "--model.d_state=8", "--tensorboard=false"]


@pytest.mark.parametrize("threads, noted", [(2, True), (1, False)])
def test_training_prints_the_note_with_its_thread_count(tmp_path, monkeypatch, capsys, threads, noted):
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 0.0, 0.0))
    assert main(["train", *TINY, f"--num_threads={threads}", f"--out_dir={tmp_path / 'run'}", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"device cpu ({threads} threads)" in out
    assert ("note: the CPU is busy (load 50.0" in out) == noted
