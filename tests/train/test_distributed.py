"""Data-parallel helpers on 2 local CPU processes (gloo): the shares of a global batch, the loss
scale that makes DDP's averaged gradient the global batch's gradient (an uneven last batch
included), and complex SSM parameters, stored as real views, all-reduced real and imaginary."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from hippos.train.distributed import SINGLE, Dist, all_sum, from_env, loss_scale, shard


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
    torch.distributed.destroy_process_group()


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
