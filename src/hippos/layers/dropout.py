"""Dropout for ``(B L H)`` sequences, element-wise or tied along the sequence.

``tie=False`` is ``nn.Dropout``: an independent mask per ``(b, l, h)``. ``tie=True`` drops whole
channels of a sequence: one mask per ``(b, h)`` shared by every position ``l`` (the S4
reference's ``DropoutNd(tie=True)``, here ``F.dropout1d`` on the ``(B H L)`` view). Kept
entries are scaled by ``1/(1-p)`` either way, so the expectation is the identity.

The tied mask also draws L times fewer random numbers, which matters on a CPU, where drawing
the element-wise mask of a long sequence costs about as much as the layer's FFT convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SequenceDropout"]


class SequenceDropout(nn.Module):
    def __init__(self, p: float = 0.0, tie: bool = False):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p, self.tie = p, tie

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B L H) -> (B L H)
        if not self.training or self.p == 0.0:
            return x
        if not self.tie:
            return F.dropout(x, self.p, training=True)
        if x.dim() != 3:
            raise ValueError(f"tied dropout needs whole sequences (B, L, H), got shape {tuple(x.shape)}; step in eval mode")
        return F.dropout1d(x.transpose(1, 2), self.p, training=True).transpose(1, 2)  # mask (B H 1)

    def extra_repr(self) -> str:
        return f"p={self.p}, tie={self.tie}"
