"""The benchmark's Transformer layer: a pre-norm :class:`~hippos.layers.Block` around the
``"attention"`` mixer, with a 4× GELU MLP, in two attention implementations.

``fused``: :func:`torch.nn.functional.scaled_dot_product_attention` (no L×L matrix kept when a
flash/memory-efficient kernel applies); ``materialized``: ``softmax(QKᵀ/√d) V`` written out,
which stores the (B, heads, L, L) attention matrix, as the S4 paper's baseline did (S4 Table 3).
Causal, ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``; ``(B L H)`` in, ``(y, state)`` out.
"""

from __future__ import annotations

from hippos.layers.block import Block
from hippos.layers.mixers import make_mixer

__all__ = ["transformer_layer"]


def transformer_layer(d_model: int, n_heads: int = 4, attention: str = "fused") -> Block:
    """One Transformer layer of width ``d_model``; ``attention``: ``"fused"`` or ``"materialized"``."""
    if attention not in ("fused", "materialized"):
        raise ValueError(f"attention must be 'fused' or 'materialized', got {attention!r}")
    mixer = make_mixer("attention", d_model, n_heads=n_heads, impl=attention)
    return Block(mixer, d_model, norm="layer", prenorm=True, mlp_expand=4)
