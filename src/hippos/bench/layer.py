"""``hippos bench layer``: forward + backward time and extra peak memory of one layer.

Layers (``(B L H)`` in and out, the same width): a residual S4 block (DPLR, S4 paper) and a
residual S4D block (pre-LayerNorm, GELU, GLU output, N = 64), and a Transformer encoder layer
with fused ``scaled_dot_product_attention`` or with the materialized softmax(QKᵀ) matrix
(:mod:`hippos.bench.transformer`). REFERENCE §3 lists the reference implementations' numbers
on the same machine. Each configuration runs in its own process (:mod:`hippos.bench.measure`).
"""

from __future__ import annotations

import torch

__all__ = ["LAYER_KINDS", "build_layer_job", "layer_jobs"]

LAYER_KINDS = ("s4", "s4d", "attn_fused", "attn_materialized")


def _make(kind: str, d_model: int, d_state: int, L: int) -> torch.nn.Module:
    if kind in ("s4", "s4d"):
        from hippos.layers import Block, make_mixer

        return Block(make_mixer(kind, d_model, d_state=d_state, l_max=L), d_model, norm="layer", prenorm=True)
    from hippos.bench.transformer import transformer_layer

    return transformer_layer(d_model, n_heads=4, attention="fused" if kind == "attn_fused" else "materialized")


def build_layer_job(job: dict):
    """Returns ``(fn, meta)``: ``fn()`` runs one forward + backward of the configured layer."""
    kind, L, batch, d_model, d_state = job["kind"], job["L"], job["batch"], job["d_model"], job["d_state"]
    module = _make(kind, d_model, d_state, L)
    x = torch.randn(batch, L, d_model, requires_grad=True)

    def fn():
        module.zero_grad(set_to_none=True)
        x.grad = None
        y, _ = module(x)
        y.square().mean().backward()

    return fn, {"params": sum(p.numel() for p in module.parameters())}


def layer_jobs(kinds, lengths, batch: int, d_model: int, d_state: int, repeats: int, attn_max_L: int) -> list[dict]:
    jobs = []
    for L in lengths:
        for kind in kinds:
            job = {"what": "layer", "kind": kind, "L": L, "batch": batch, "d_model": d_model, "d_state": d_state, "repeats": repeats}
            if kind.startswith("attn") and L > attn_max_L:
                job["skipped"] = f"L > --attn-max-L {attn_max_L}"
            jobs.append(job)
    return jobs
