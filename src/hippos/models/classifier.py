"""Sequence classifier: SSM backbone, masked mean (or last-step) pooling, linear head.

Like every model, it returns ``(out, state)``: ``(logits, None)``, as a pooled classifier has no
state to carry to a next call.
"""

from __future__ import annotations

import torch
from torch import nn

from hippos.models.backbone import SSMBackbone
from hippos.models.config import ModelConfig
from hippos.ops.checks import valid_steps

__all__ = ["SequenceClassifier"]


class SequenceClassifier(nn.Module):
    """``x: r(B L d_input)``, ``lengths: long(B)`` or None -> ``(logits: r(B n_classes), None)``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"SequenceClassifier takes a ModelConfig, got {type(cfg).__name__}")
        cfg.validate()
        self.cfg = cfg
        self.backbone = SSMBackbone(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, rate: float = 1.0) -> tuple[torch.Tensor, None]:
        h, _ = self.backbone(x, lengths=lengths, rate=rate)  # (B L H)
        B, L, _ = h.shape
        if self.cfg.pool == "last":
            idx = (lengths - 1) if lengths is not None else torch.full((B,), L - 1, device=h.device)
            pooled = h[torch.arange(B, device=h.device), idx]
        elif lengths is None:
            pooled = h.mean(dim=1)
        else:
            mask = valid_steps(lengths, L).to(h.dtype)  # (B L)
            pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return self.head(pooled), None
