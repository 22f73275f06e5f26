"""Residual block around a sequence layer: pre- or post-norm, LayerNorm or BatchNorm.

S4 (arXiv 2111.00396, Appendix D.2): each block is ``x + dropout(layer(norm(x)))`` (pre-norm)
or ``norm(x + dropout(layer(x)))`` (post-norm); ``tie_dropout`` shares one mask per channel along
the sequence (:class:`~hippos.layers.dropout.SequenceDropout`). Shapes ``(B L H)`` in and out.
"""

from __future__ import annotations

import torch
from torch import nn

from hippos.layers.dropout import SequenceDropout

__all__ = ["ResidualBlock", "make_norm"]


class _BatchNormBLH(nn.BatchNorm1d):
    """BatchNorm over channels of ``(B, L, H)`` (or ``(B, H)`` when stepping)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            return super().forward(x.transpose(1, 2)).transpose(1, 2)
        return super().forward(x)


def make_norm(kind: str, d_model: int) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(d_model)
    if kind == "batch":
        return _BatchNormBLH(d_model)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected 'layer', 'batch' or 'none'")


class ResidualBlock(nn.Module):
    """``layer`` follows the sequence-layer contract ``forward(u, state, ...) -> (y, next_state)``
    and ``step(u_t, state, params) -> (y_t, next_state)``; the block keeps it."""

    def __init__(self, layer: nn.Module, d_model: int, norm: str = "layer", prenorm: bool = True, dropout: float = 0.0, tie_dropout: bool = False):
        super().__init__()
        self.layer = layer
        self.norm = make_norm(norm, d_model)
        self.prenorm = prenorm
        self.dropout = SequenceDropout(dropout, tie=tie_dropout)

    def forward(self, x: torch.Tensor, state=None, **kwargs):
        z = self.norm(x) if self.prenorm else x
        z, next_state = self.layer(z, state=state, **kwargs)
        x = x + self.dropout(z)
        return (x if self.prenorm else self.norm(x)), next_state

    def default_state(self, batch_size: int):
        return self.layer.default_state(batch_size)

    def setup_step(self, **kwargs):
        return self.layer.setup_step(**kwargs)

    def step(self, x_t: torch.Tensor, state, params=None):
        z = self.norm(x_t) if self.prenorm else x_t
        z, next_state = self.layer.step(z, state, params)
        x_t = x_t + z  # dropout is off when stepping (inference)
        return (x_t if self.prenorm else self.norm(x_t)), next_state
