"""Data-parallel helpers on 2 local CPU processes (gloo): the shares of a global batch, the loss
scale that makes DDP's averaged gradient the global batch's gradient (an uneven last batch
included), and complex SSM parameters, stored as real views, all-reduced real and imaginary."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from hippos.train.distributed import (
    SINGLE,
    Dist,
    all_sum,
    from_env,
    gather_rows,
    loss_scale,
    shard,
    shutdown,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(n: int):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 16, 4, generator=g), torch.randn(n, 16, 4, generator=g)


def _layer():
    from hippos.layers.s4 import S4

    torch.manual_seed(0)
    return S4(4, d_state=8, mode="diag")  # its A and B are complex, stored as real views


def _grads_of_mean_loss(layer, x, y, scale=1.0):
    out, _ = layer(x)
    loss = (out - y).pow(2).mean(dim=(1, 2)).mean() * scale
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in layer.named_parameters()}


def _worker(rank: int, world: int, port: int, n: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    d, device = from_env("cpu")
    assert (d.rank, d.world, d.backend, device) == (rank, world, "gloo", "cpu")
    x, y = _batch(n)
    idx = shard(torch.arange(n), d)
    model = torch.nn.parallel.DistributedDataParallel(_layer())
    grads = _grads_of_mean_loss(model, x[idx], y[idx], loss_scale(len(idx), d))
    sums = all_sum([len(idx), float(idx.sum())], d)
    if rank == 0:
        torch.save({"grads": {k.removeprefix("module."): v for k, v in grads.items()}, "sums": sums}, out)
    del model  # DDP's reducer holds the process group: free it first, or gloo may abort at exit
    shutdown(d, True)


@pytest.mark.parametrize("n", [8, 9])
def test_two_processes_give_the_global_batch_gradient(n, tmp_path):
    out = str(tmp_path / "rank0.pt")
    mp.spawn(_worker, args=(2, _free_port(), n, out), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    assert got["sums"] == [n, n * (n - 1) / 2]  # the two shares cover the batch exactly once
    x, y = _batch(n)
    want = _grads_of_mean_loss(_layer(), x, y)
    assert got["grads"].keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got["grads"][k], want[k], rtol=1e-5, atol=1e-7)
    # the complex parameters are real views (..., 2): both parts were reduced
    complex_views = [k for k in want if want[k].shape[-1:] == (2,) and want[k].dim() >= 2]
    assert complex_views and all(want[k][..., 1].abs().max() > 0 for k in complex_views)


def _gather_worker(rank: int, world: int, port: int, n: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    d, _ = from_env("cpu")
    full = {"z": torch.complex(torch.arange(n * 3.0), -torch.arange(n * 3.0)).reshape(n, 3),
            "k": torch.arange(n * 2 * 4.0).reshape(n, 2, 4)}
    got = gather_rows({k: shard(v, d) for k, v in full.items()}, d, n)
    if rank == 0:
        torch.save({"got": got, "full": full}, out)
    shutdown(d, True)


@pytest.mark.parametrize("n", [4, 5])
def test_gather_rows_inverts_the_shares(n, tmp_path):
    """The streams' carried state goes to the checkpoint whole: every rank's rows back in the
    global order, an uneven split and complex state (real views on the wire) included."""
    out = str(tmp_path / "rank0.pt")
    mp.spawn(_gather_worker, args=(2, _free_port(), n, out), nprocs=2, join=True)
    r = torch.load(out, weights_only=True)
    assert r["got"].keys() == r["full"].keys()
    for k in r["full"]:
        assert r["got"][k].dtype == r["full"][k].dtype and torch.equal(r["got"][k], r["full"][k])


def test_single_process_is_the_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d, device = from_env("cpu")
    assert d is SINGLE and device == "cpu" and d.main and not d.active
    idx = torch.arange(5)
    assert torch.equal(shard(idx, d), idx) and loss_scale(5, d) == 1.0 and all_sum([2, 3], d) == [2.0, 3.0]
    assert torch.equal(shard(idx, Dist(rank=1, world=2)), torch.tensor([1, 3]))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match="RANK is not set"):
        from_env("cpu")


# ----------------------------------------------------------------------------- torchrun, end to end

TINY = ["train", "delay", "--data.length=64", "--data.bits=4", "--data.bit_length=4", "--data.n_train=48",
        "--data.n_val=16", "--data.n_test=16", "--batch_size=16", "--epochs=2", "--model.d_model=8", "--model.n_layers=2",
        "--model.d_state=8", "--warmup_steps=2", "--log_every=1", "--tensorboard=false", "--lr=1e-2", "--num_threads=1",
        "--no-progress"]


def _torchrun(args, nproc: int = 2):
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={_free_port()}",
           "-m", "hippos", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)


def _rows(run) -> list[dict]:
    import csv

    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("samples_per_s", "elapsed_s")} for r in csv.DictReader(f)]


def test_torchrun_two_processes_equal_one(tmp_path):
    """2 processes × half the global batch = 1 process × the whole batch: the same weights (to float32
    reduction order), metrics and results; rank 0 alone wrote the run directory and printed."""
    import json

    from safetensors.torch import load_file

    from hippos.cli import main

    one, two = tmp_path / "one", tmp_path / "two"
    uneven = [*TINY, "--batch_size=13"]  # 48 = 3 x 13 + 9: the last batch splits 5 / 4 over the two ranks
    assert main([*uneven, f"--out_dir={one}"]) == 0
    p = _torchrun([*uneven, f"--out_dir={two}"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count('"task": "delay"') == 1  # the results line, once
    a, b = (load_file(d / "checkpoint" / "model.safetensors") for d in (one, two))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert ra["step"] == rb["step"] == 8 and abs(ra["test_loss"] - rb["test_loss"]) < 1e-4
    assert ra["test_acc"] == rb["test_acc"]
    assert sorted(p.name for p in one.rglob("*")) == sorted(p.name for p in two.rglob("*"))  # no file per rank
    ma, mb = _rows(one), _rows(two)
    assert [r["step"] for r in ma] == [r["step"] for r in mb]
    for x, y in zip(ma, mb):
        assert abs(float(x["loss"]) - float(y["loss"])) < 1e-4


def test_torchrun_resume_equals_uninterrupted(tmp_path):
    from safetensors.torch import load_file

    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _torchrun([*TINY, f"--out_dir={full}"]).returncode == 0
    assert _torchrun([*TINY, "--max_steps=4", f"--out_dir={cut}"]).returncode == 0
    p = _torchrun(["train", "--resume", str(cut), "--no-progress"])
    assert p.returncode == 0, p.stderr[-2000:]
    a, b = (load_file(d / "checkpoint" / "model.safetensors") for d in (full, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_refuses_batches_smaller_than_the_job(tmp_path):
    p = _torchrun([*TINY, "--batch_size=47", f"--out_dir={tmp_path / 'r'}"])  # the last batch has 1 example
    assert p.returncode != 0 and "cannot be shared by 2 processes" in p.stderr


def test_torchrun_streams_keep_their_carried_state(tmp_path):
    """Language-model streams with a carried state (``data.carry_state``) on 2 processes: rank k
    keeps rows k, k+2, ... of every batch, so each carries the state of the same streams window
    after window and the job trains the model 1 process trains. The checkpoint holds every
    stream's state (gathered from the ranks), so a 2-process run cut mid-pass resumes bitwise on 2
    processes and, to float32 reduction order, on 1."""
    import shutil

    from safetensors.torch import load_file

    from hippos.cli import main

    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60)))
    # 3K characters in 4 streams of windows of 16: ~44 windows a pass, 12 steps (the state carried throughout)
    args = ["train", "charlm", f"--data.path={text}", "--data.seq_len=16", "--data.steps_per_epoch=6", "--batch_size=4",
            "--epochs=2", "--model.d_model=8", "--model.d_state=8", "--model.shift_state=4", "--warmup_steps=1",
            "--log_every=1", "--tensorboard=false", "--data.carry_state=true", "--num_threads=1", "--no-progress"]
    one, two, cut = tmp_path / "one", tmp_path / "two", tmp_path / "cut"
    assert main([*args, f"--out_dir={one}"]) == 0
    p = _torchrun([*args, "--checkpoint_minutes=1e-9", f"--out_dir={two}"])  # + a checkpoint (a gather) every step
    assert p.returncode == 0, p.stderr[-2000:]
    for name in ("model.safetensors", "carry.safetensors"):  # the weights, and the state of all 4 streams
        a, b = (load_file(d / "checkpoint" / name) for d in (one, two))
        assert a.keys() == b.keys() and a
        for k in a:
            assert a[k].shape == b[k].shape
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)

    assert _torchrun([*args, "--max_steps=4", f"--out_dir={cut}"]).returncode == 0
    cut1 = tmp_path / "cut1"
    shutil.copytree(cut, cut1)
    p = _torchrun(["train", "--resume", str(cut), "--no-progress"])
    assert p.returncode == 0, p.stderr[-2000:]
    a, b = (load_file(d / "checkpoint" / "model.safetensors") for d in (two, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)  # 2 processes, cut and resumed: bitwise
    assert main(["train", "--resume", str(cut1), "--no-progress"]) == 0
    c = load_file(cut1 / "checkpoint" / "model.safetensors")
    for k in a:  # the 2-process checkpoint resumed by 1 process
        torch.testing.assert_close(c[k], a[k], rtol=1e-4, atol=1e-5)
