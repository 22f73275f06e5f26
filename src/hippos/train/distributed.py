"""Data-parallel training with ``torch.distributed``: one process per device, launched by ``torchrun``.

    torchrun --nproc_per_node=2 -m hippos train TASK ...                     # one machine
    torchrun --nnodes=2 --node_rank=R --rdzv_endpoint=HOST:PORT ... -m hippos train TASK ...

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous; :func:`from_env`
reads them and joins the process group: gloo for the CPU, NCCL for CUDA (``cuda:LOCAL_RANK``),
or the backend asked for. Without ``WORLD_SIZE`` (or with 1) nothing is initialized and every
helper below is the single-process identity.

**The global batch.** ``batch_size`` is the batch of the whole job. Every rank builds the same
index batch (the samplers are pure functions of the seed and the epoch) and keeps its share,
``indices[rank::world]`` (:func:`shard`). Each rank's loss is its local mean times
``n_local · world / n_global`` (:func:`loss_scale`), so the gradient DDP averages over the ranks
equals the gradient of the mean loss over the global batch, whatever the split (a last batch of
9 over 2 ranks included), to float32 reduction order.

**Metrics.** Evaluation scores each rank's share of every batch and adds the loss sums, correct
counts and sizes over the ranks (:func:`all_sum`): the numbers equal the single-process ones.

**Streams.** A language model trained on contiguous streams (``data.carry_state``) has a batch of
``batch_size`` stream windows at every step; rank k keeps rows k, k + world, ... of every batch,
so each rank carries the state of the same streams from window to window and contiguity holds.
The checkpoint stores the carried state of all the rows (:func:`gather_rows`, the inverse of
:func:`shard`), so a run resumes on any number of processes.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hippos.train.config import BACKENDS

__all__ = ["BACKENDS", "SINGLE", "Dist", "all_sum", "barrier", "from_env", "gather_rows", "launched_rank", "loss_scale", "shard", "shutdown"]



@dataclass(frozen=True)
class Dist:
    """Where this process stands in the job: ``rank`` of ``world`` (``local_rank`` on its machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run directory and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Dist()


def _env_int(name: str, default: int | None = None) -> int:
    text = os.environ.get(name)
    if text is None:
        if default is None:
            raise ValueError(f"${name} is not set: start distributed training with torchrun")
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {text!r}") from None


def launched_rank() -> int:
    """This process's ``RANK`` as torchrun set it (0 outside torchrun), without joining the group."""
    return _env_int("RANK", 0)


def from_env(device: str, backend: str | None = None) -> tuple[Dist, str]:
    """``(Dist, device)`` of this process: :data:`SINGLE` and ``device`` unchanged outside
    ``torchrun``; inside it, the process group joined (``backend``: None picks gloo for the CPU,
    NCCL for CUDA) and the device made ``cuda:LOCAL_RANK`` for a CUDA job."""
    world = _env_int("WORLD_SIZE", 1)
    if world < 1:
        raise ValueError(f"$WORLD_SIZE must be >= 1, got {world}")
    if world == 1:
        return SINGLE, device
    rank, local = _env_int("RANK"), _env_int("LOCAL_RANK", 0)
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    elif device == "auto":
        device = "cpu"
    backend = backend or ("nccl" if cuda else "gloo")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "nccl" and not cuda:
        raise ValueError("the nccl backend needs CUDA devices; use gloo for the CPU")
    if not dist.is_initialized():
        dist.init_process_group(backend)  # env:// rendezvous, as torchrun set it up
    return Dist(rank, world, local, backend), device


def barrier(d: Dist) -> None:
    """Wait for every rank (nothing in a single process)."""
    if d.active:
        dist.barrier()


def shutdown(d: Dist, finished: bool) -> None:
    """Leave the process group at the end of a run (after every rank got there when it
    ``finished`` normally), so no backend thread is left running at exit (gloo aborts the process
    with "terminate called without an active exception" otherwise, now and then)."""
    if d.active and dist.is_initialized():
        if finished:
            dist.barrier()
        gc.collect()  # a DDP wrapper no longer used (its hooks make reference cycles) lets go of the group
        dist.destroy_process_group()


def shard(indices: torch.Tensor, d: Dist) -> torch.Tensor:
    """This rank's share of a global index batch: ``indices[rank::world]``."""
    return indices[d.rank :: d.world] if d.active else indices


def gather_rows(tensors: dict[str, torch.Tensor], d: Dist, n_rows: int) -> dict[str, torch.Tensor]:
    """Every rank's rows of named tensors (dim 0: this rank's :func:`shard` of ``n_rows``) put back
    in the order of the global batch: ``full[k::world]`` is rank k's tensor. A collective (every
    rank calls it with the same names and trailing shapes); complex tensors travel as real views
    (NCCL has no complex type). The identity in a single process."""
    if not d.active:
        return tensors
    share = -(-n_rows // d.world)  # rank 0's rows, the most any rank holds
    out = {}
    for name in sorted(tensors):  # the same order on every rank
        t = tensors[name]
        real = torch.view_as_real(t) if t.is_complex() else t
        mine = len(range(d.rank, n_rows, d.world))
        if real.shape[0] != mine:
            raise ValueError(f"{name!r} has {real.shape[0]} rows; rank {d.rank} of {d.world} holds {mine} of {n_rows}")
        padded = real.new_zeros((share, *real.shape[1:]))
        padded[:mine] = real
        parts = [torch.empty_like(padded) for _ in range(d.world)]
        dist.all_gather(parts, padded)
        full = real.new_empty((n_rows, *real.shape[1:]))
        for k, part in enumerate(parts):
            full[k :: d.world] = part[: len(range(k, n_rows, d.world))]
        out[name] = torch.view_as_complex(full) if t.is_complex() else full
    return out


def all_sum(values, d: Dist, device: torch.device | str = "cpu") -> list[float]:
    """``values`` added over the ranks (float64; the identity in a single process)."""
    values = [float(v) for v in values]
    if not d.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def loss_scale(n_local: int, d: Dist, device: torch.device | str = "cpu") -> float:
    """The factor of a rank's mean loss that makes DDP's gradient average the gradient of the
    global batch's mean: ``n_local · world / n_global`` (1 in a single process)."""
    if not d.active:
        return 1.0
    (n_global,) = all_sum([n_local], d, device)
    return n_local * d.world / n_global
