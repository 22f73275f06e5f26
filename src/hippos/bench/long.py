"""``hippos bench long``: time and peak memory of one layer's forward pass from L = 2^12 to 2^22.

One sequence mixer of width H (default 256; no norm, MLP or residual: what grows with L is the
mixer), batch 1, float32, each (layer, L) in its own process (:mod:`hippos.bench.measure`):

* ``s4d``, ``s4`` (DPLR), ``h3``: causal, with state passing in chunks of ``--chunk`` steps
  (:mod:`hippos.ops.chunked`; the kernel is computed once at the chunk length);
* ``s4d-onepass``, ``h3-onepass``: the same layers in one FFT pass (``chunk_size=None``), the
  baseline state passing must match in time;
* ``attn_fused``: causal multi-head attention through ``scaled_dot_product_attention``.

``mode="forward"`` runs under ``torch.inference_mode()``: the output ``(1, L, H)`` is the only
tensor that must grow with L, so the record also has ``working_bytes`` = extra peak memory minus
the output's bytes. ``mode="train"``: forward and backward of ``mean(y²)`` through the chunks
(autograd through the carried state), whose saved activations grow linearly with L.

A layer stops at the first L whose run fails (out of memory, ``--timeout``) or takes longer than
``--time-budget`` seconds; the reason is recorded (``stopped``) for the table.
"""

from __future__ import annotations

import math

import torch

__all__ = ["LONG_KINDS", "build_long_job", "fit_slope", "long_jobs"]

LONG_KINDS = ("s4d", "s4", "h3", "s4d-onepass", "h3-onepass", "attn_fused")


def _make(kind: str, d_model: int, d_state: int, chunk: int, L: int) -> torch.nn.Module:
    from hippos.layers import make_mixer

    if kind == "attn_fused":
        return make_mixer("attention", d_model, n_heads=4, impl="fused")
    base = kind.removesuffix("-onepass")
    chunk_size = None if kind.endswith("-onepass") else chunk
    opts = {"d_state": d_state, "chunk_size": chunk_size}
    if base == "s4":  # the DPLR kernel set up at the length it is computed at
        opts["l_max"] = min(chunk, L) if chunk_size else L
    return make_mixer(base, d_model, **opts)


def build_long_job(job: dict):
    """``(fn, meta)``: ``fn()`` runs the configured layer once on a ``(batch, L, H)`` input."""
    kind, L, batch, d_model = job["kind"], job["L"], job["batch"], job["d_model"]
    module = _make(kind, d_model, job["d_state"], job["chunk"], L)
    train = job.get("mode", "forward") == "train"
    x = torch.randn(batch, L, d_model, requires_grad=train)
    if not train:
        module.requires_grad_(False)

    def fn():
        if train:
            module.zero_grad(set_to_none=True)
            x.grad = None
            y, _ = module(x)
            y.square().mean().backward()
        else:
            with torch.inference_mode():
                y, _ = module(x)
        del y

    out_bytes = 0 if train else batch * L * d_model * 4
    return fn, {"params": sum(p.numel() for p in module.parameters()), "output_bytes": out_bytes}


def long_jobs(kinds, exponents, batch: int, d_model: int, d_state: int, chunk: int, mode: str, repeats: int) -> list[dict]:
    """One job per (kind, L = 2^e), kinds outer, L increasing (the order the stop rule needs)."""
    return [{"what": "long", "kind": k, "L": 1 << e, "batch": batch, "d_model": d_model, "d_state": d_state,
             "chunk": chunk, "mode": mode, "repeats": repeats} for k in kinds for e in exponents]


def fit_slope(points) -> float | None:
    """Least-squares slope of log(y) against log(L) over ``[(L, y), ...]`` (None with < 2 points)."""
    pts = [(math.log(L), math.log(y)) for L, y in points if y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else None


def plot_long(results: list[dict], path, title: str) -> None:
    """Time and memory against L, log-log, one line per layer (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind in dict.fromkeys(r["kind"] for r in results):
        ok = [r for r in results if r["kind"] == kind and "median_s" in r]
        if not ok:
            continue
        Ls = [r["L"] for r in ok]
        style = {"ls": "--"} if kind.endswith("-onepass") else {}
        ax_t.plot(Ls, [r["median_s"] for r in ok], marker="o", ms=3, label=kind, **style)
        mem = [max(r.get("working_bytes", r["extra_peak_bytes"]), 1) / 2**30 for r in ok]
        ax_m.plot(Ls, mem, marker="o", ms=3, label=kind, **style)
    for ax, ylabel in ((ax_t, "forward time (s)"), (ax_m, "peak memory beyond the input and output (GiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
