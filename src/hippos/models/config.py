"""Dataclass configs for models built from hippos layers (DESIGN.md: models take a config)."""

from __future__ import annotations

import math
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

    def validate(self) -> ModelConfig:
        """Raise ``ValueError`` naming the first field that does not fit; return self.

        The models call it before building anything, so a bad size gives one message and no
        warning from a zero-sized ``nn.Linear`` first.
        """
        from hippos.hippo import DIAG_INITS, MEASURES
        from hippos.kernels.diag import DIAG_DISCRETIZATIONS
        from hippos.kernels.lssl import DENSE_DISCRETIZATIONS, DENSE_INITS
        from hippos.layers.block import NORMS
        from hippos.layers.s4 import ACTIVATIONS, MODES

        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ValueError(f"ModelConfig.{name} must be {what}, got {getattr(self, name)!r}")

        def is_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for name in ("d_input", "n_classes", "d_model", "n_layers", "d_state", "l_max"):
            need(is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "an integer >= 1")
        need(self.mode in MODES, "mode", f"one of {', '.join(map(repr, MODES))}")
        if self.mode != "dense":
            need(self.d_state % 2 == 0, "d_state", f"even for mode={self.mode!r} (N/2 conjugate modes are kept)")
        inits = {"dplr": MEASURES, "diag": DIAG_INITS, "dense": DENSE_INITS}[self.mode]
        need(isinstance(self.init, str) and self.init.lower() in inits, "init", f"one of {', '.join(map(repr, inits))} for mode={self.mode!r}")
        discs = {"diag": DIAG_DISCRETIZATIONS, "dense": DENSE_DISCRETIZATIONS}.get(self.mode)
        if discs is not None:  # dplr is always bilinear and ignores disc
            need(self.disc in discs, "disc", f"one of {', '.join(map(repr, discs))} for mode={self.mode!r}")
        need(is_num(self.dt_min) and self.dt_min > 0, "dt_min", "a finite number > 0")
        need(is_num(self.dt_max) and self.dt_max >= self.dt_min, "dt_max", f"a finite number >= dt_min={self.dt_min}")
        need(self.ssm_lr is None or (is_num(self.ssm_lr) and self.ssm_lr > 0), "ssm_lr", "None or a finite number > 0")
        need(is_num(self.dropout) and 0 <= self.dropout < 1, "dropout", "in [0, 1)")
        need(self.activation in ACTIVATIONS, "activation", f"one of {', '.join(map(repr, ACTIVATIONS))}")
        need(self.output in ("glu", "linear"), "output", "'glu' or 'linear'")
        need(self.norm in NORMS, "norm", f"one of {', '.join(map(repr, NORMS))}")
        need(self.pool in ("mean", "last"), "pool", "'mean' or 'last'")
        for name in ("tie_dropout", "bidirectional", "prenorm"):
            need(isinstance(getattr(self, name), bool), name, "True or False")
        return self
