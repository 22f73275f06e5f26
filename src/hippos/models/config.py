"""Dataclass configs for models built from hippos layers (DESIGN.md: models take a config)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelConfig"]


@dataclass
class ModelConfig:
    """A deep SSM sequence model: encoder -> ``n_layers`` residual blocks -> pooling -> head.

    ``mode`` picks the SSM kernel of each S4 layer: ``"dplr"`` (S4), ``"diag"`` (S4D) or
    ``"dense"`` (LSSL, any A). ``init`` is the HiPPO measure for dplr/dense (``legs``, ``legt``,
    ``fout``, ``lagt``, or ``random`` for dense) or the diagonal init for diag (``legs``,
    ``inv``, ``lin``, ``real``, ``random``).
    """

    d_input: int = 1
    n_classes: int = 10
    d_model: int = 128
    n_layers: int = 4
    d_state: int = 64
    mode: str = "diag"
    init: str = "legs"
    disc: str = "zoh"  # diag only; dplr is bilinear
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    ssm_lr: float | None = None  # SSM parameters' learning rate; None: min(lr, 1e-3), a number: used as given
    dropout: float = 0.0
    tie_dropout: bool = False  # one mask per (sequence, channel), shared along L
    activation: str = "gelu"
    output: str = "glu"  # "glu" or "linear"
    bidirectional: bool = False
    norm: str = "layer"  # "layer" or "batch"
    prenorm: bool = True
    pool: str = "mean"  # "mean" or "last"
    l_max: int = 1024  # sequence length the DPLR kernel is set up for (longer ones cost more each call; kernel.grow)
