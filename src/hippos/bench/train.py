"""``hippos bench train``: samples/s and peak memory of a whole training step (forward, backward,
AdamW) of the sequential-MNIST-size classifiers: S4 (DPLR), S4D and a Transformer.

The S4 paper's sMNIST model at CPU size: ``SequenceClassifier`` with 4 pre-LayerNorm blocks,
H 64, N 64, GLU output map, mean pooling, batch 50, L 784, one input channel, 10 classes
(``ModelConfig``; the classifier ``hippos train smnist --model.d_model=64`` trains). The
Transformer has the same width and depth: a linear encoder, learned positions added to the
residual stream, the benchmark's Transformer layer (:func:`hippos.bench.transformer.transformer_layer`:
fused ``scaled_dot_product_attention``, causal, 4 heads, 4x GELU MLP), final LayerNorm, mean
pooling, linear head. Random inputs and labels (a step's cost does not depend on the data);
the optimizer is the trainer's (:func:`hippos.train.optim.build_optimizer`, AdamW, the SSM
parameters in their own group).

Each configuration runs in its own process (:func:`run_train_job` through
:mod:`hippos.bench.worker`), so its peak memory is its own. **Baseline in the same command**
(:func:`hippos.bench.measure.run_rounds`): ``--baseline`` is the ``src`` folder of another hippos
tree (``git worktree add /tmp/hippos-head HEAD``); each job then also runs with that tree first
on ``PYTHONPATH`` (this file, loaded by the worker from this tree, needs only ``ModelConfig``,
``SequenceClassifier``, ``build_optimizer``, ``transformer_layer`` and the memory functions of
:mod:`hippos.bench.measure` from the tree it times), the two alternating round by round.

**Timing on a shared machine.** Besides the wall time of each step the worker records its CPU
time (``time.process_time``): with one thread, CPU time is what the step costs even while other
processes take turns on the cores, and it is far steadier than wall time there.

**Allocator** (``--allocator``). ``thp`` (the default): ``THP_MEM_ALLOC_ENABLE=1`` in the
worker's environment, what the ``hippos`` command sets for itself (``hippos_entry``), so torch
backs tensors of 2 MB and more with transparent huge pages (one fault per 2 MB; peak memory as
with ``system``). ``system``: glibc's and torch's defaults (``THP_MEM_ALLOC_ENABLE=0``), what a
Python program importing hippos gets; every tensor above glibc's mmap threshold (at most 32 MB) is fresh memory that page-faults
on first touch, which on a VM costs about as much as the arithmetic of an element-wise op.
``cached``: glibc keeps freed memory in the heap (``mallopt``, as ``bench generate`` does):
fastest, with a higher peak resident set. ``docs/kernels.md`` §8 has measurements.
"""

from __future__ import annotations

import gc
import os
import statistics
import time

import torch

__all__ = ["ALLOCATORS", "TRAIN_MODELS", "TransformerClassifier", "build_train_model", "cache_freed_memory", "run_train_job", "train_jobs"]

TRAIN_MODELS = ("s4", "s4d", "transformer")
ALLOCATORS = ("system", "cached", "thp")


class TransformerClassifier(torch.nn.Module):
    """``x: r(B L d_input) -> (logits: r(B n_classes), None)``: encoder, learned positions,
    ``n_layers`` Transformer layers (fused attention, 4x MLP), final LayerNorm, mean pooling, head."""

    def __init__(self, d_input: int, n_classes: int, d_model: int, n_layers: int, max_len: int, n_heads: int = 4):
        super().__init__()
        from hippos.bench.transformer import transformer_layer

        self.encoder = torch.nn.Linear(d_input, d_model)
        self.pos = torch.nn.Parameter(0.02 * torch.randn(max_len, d_model))
        self.blocks = torch.nn.ModuleList(transformer_layer(d_model, n_heads=n_heads, attention="fused") for _ in range(n_layers))
        self.norm = torch.nn.LayerNorm(d_model)
        self.head = torch.nn.Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor):
        h = self.encoder(x) + self.pos[: x.shape[1]]
        for block in self.blocks:
            h, _ = block(h)
        return self.head(self.norm(h).mean(1)), None


def build_train_model(job: dict) -> torch.nn.Module:
    """The model of a job: ``s4`` / ``s4d`` (``SequenceClassifier``) or ``transformer``."""
    kind, d, layers, L = job["model"], job["d_model"], job["n_layers"], job["L"]
    if kind == "transformer":
        return TransformerClassifier(1, 10, d, layers, L, n_heads=job.get("n_heads", 4))
    from hippos.models import ModelConfig, SequenceClassifier

    mode = {"s4": "dplr", "s4d": "diag"}[kind]
    cfg = ModelConfig(d_input=1, n_classes=10, d_model=d, n_layers=layers, d_state=job["d_state"], mode=mode, l_max=L,
                      norm=job.get("norm", "layer"))
    return SequenceClassifier(cfg)


def cache_freed_memory() -> bool:
    """glibc: serve large allocations from the heap and never trim it (what PyTorch's GPU
    caching allocator does). On a VM, every fresh large tensor otherwise costs page faults."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1))


def run_train_job(job: dict) -> dict:
    """Build the job's model and optimizer, time ``repeats`` training steps after ``warmup``;
    returns the job with ``median_s``, ``cpu_s`` (median CPU time), ``samples_per_s``,
    ``extra_peak_bytes`` and ``params``."""
    import torch.nn.functional as F

    from hippos.bench.measure import current_rss_bytes, peak_rss_bytes, reset_peak_rss
    from hippos.train.optim import build_optimizer

    if job.get("allocator", "system") == "cached":
        cache_freed_memory()
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    model = build_train_model(job).train()
    opt = build_optimizer(model, 4e-3, 0.01)
    x = torch.randn(job["batch"], job["L"], 1)
    y = torch.randint(0, 10, (job["batch"],))

    def step():
        loss = F.cross_entropy(model(x)[0], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    gc.collect()
    exact = reset_peak_rss()
    base = current_rss_bytes()
    for _ in range(job.get("warmup", 2)):
        step()
    wall, cpu = [], []
    for _ in range(job["repeats"]):
        t, c = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    med = statistics.median(wall)
    return {
        **job,
        "params": sum(p.numel() for p in model.parameters()),
        "median_s": med,
        "cpu_s": statistics.median(cpu),
        "times_s": wall,
        "samples_per_s": job["batch"] / med,
        "extra_peak_bytes": max(0, peak_rss_bytes() - base),
        "peak_is_exact": exact,
        "threads": torch.get_num_threads(),
        "hippos": os.path.dirname(os.path.dirname(__import__("hippos").__file__)),
    }


def train_jobs(models, batch: int, L: int, d_model: int, n_layers: int, d_state: int, repeats: int, threads, allocator: str,
               norm: str = "layer") -> list[dict]:
    """One job per model; ``norm``: the S4 / S4D blocks' (``"layer"`` or ``"batch"``)."""
    return [
        {"what": "train", "model": m, "batch": batch, "L": L, "d_model": d_model, "n_layers": n_layers, "d_state": d_state, "repeats": repeats,
         "threads": threads, "allocator": allocator, "norm": norm}
        for m in models
    ]

