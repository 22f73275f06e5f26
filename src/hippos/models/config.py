"""Dataclass configs for models built from hippos layers (DESIGN.md: models take a config)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MODEL_MIXERS", "ModelConfig"]

#: ``ModelConfig.mixer``: the S4 layer of ``mode``, or self-attention (the Transformer baseline).
MODEL_MIXERS = ("ssm", "attention")


@dataclass
class ModelConfig:
    """A deep SSM sequence model: encoder -> ``n_layers`` residual blocks -> pooling -> head.

    ``mode`` picks the SSM kernel of each S4 layer: ``"dplr"`` (S4), ``"diag"`` (S4D) or
    ``"dense"`` (LSSL, any A). ``init`` is the HiPPO measure for dplr/dense (``legs``, ``legt``,
    ``fout``, ``lagt``, or ``random`` for dense) or the diagonal init for diag (``legs``,
    ``inv``, ``lin``, ``real``, ``random``).

    ``mixer="attention"`` swaps every S4 layer for multi-head self-attention (``n_heads``,
    learned absolute positions up to ``l_max``; ``bidirectional`` makes it an encoder that sees
    the whole sequence, padding masked out): the Transformer baseline of the S4 LRA table, with an
    MLP of ``mlp_expand`` × ``d_model`` in each block as a Transformer has. ``vocab_size > 0``
    reads token ids ``long(B L)`` through an embedding instead of ``r(B L d_input)`` through a
    linear encoder (ListOps, byte-level text).
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
    dt_lr: float | None = None  # log Δ's learning rate; None: as ssm_lr (the S4 LRA N-4 configs: the global lr)
    b_clip: float | None = None  # clip Im(V* B) at init to [-b_clip, b_clip] (the S4 reference: 2); None: exact
    dropout: float = 0.0
    tie_dropout: bool = False  # one mask per (sequence, channel), shared along L
    activation: str = "gelu"
    output: str = "glu"  # "glu" or "linear"
    bidirectional: bool = False
    norm: str = "layer"  # "layer" or "batch"
    prenorm: bool = True
    pool: str = "mean"  # "mean" or "last"
    l_max: int = 1024  # sequence length the DPLR kernel is set up for (longer ones cost more each call; kernel.grow)
    vocab_size: int = 0  # > 0: the input is token ids long(B L) read through an embedding; 0: r(B L d_input)
    mixer: str = "ssm"  # "ssm" (the S4 layer of mode) or "attention" (Transformer baseline)
    n_heads: int = 4  # attention heads (mixer="attention")
    mlp_expand: int = 0  # hidden width of a per-block MLP as a multiple of d_model; 0: none (the S4 block)
    attn_dropout: float | None = None  # dropout on the attention probabilities (mixer="attention"); None: dropout

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

        for name in ("d_input", "n_classes", "d_model", "n_layers", "d_state", "l_max", "n_heads"):
            need(is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "an integer >= 1")
        for name in ("vocab_size", "mlp_expand"):
            need(is_int(getattr(self, name)) and getattr(self, name) >= 0, name, "an integer >= 0")
        need(self.mixer in MODEL_MIXERS, "mixer", f"one of {', '.join(map(repr, MODEL_MIXERS))}")
        if self.mixer == "attention":
            need(self.d_model % self.n_heads == 0, "n_heads", f"a divisor of d_model={self.d_model}")
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
        for name in ("ssm_lr", "dt_lr", "b_clip"):
            need(getattr(self, name) is None or (is_num(getattr(self, name)) and getattr(self, name) > 0), name,
                 "None or a finite number > 0")
        need(self.b_clip is None or self.mode != "dense", "b_clip", "None for mode='dense' (it clips the diagonalized B of dplr / diag)")
        need(is_num(self.dropout) and 0 <= self.dropout < 1, "dropout", "in [0, 1)")
        need(self.attn_dropout is None or (is_num(self.attn_dropout) and 0 <= self.attn_dropout < 1), "attn_dropout",
             "None or in [0, 1)")
        need(self.activation in ACTIVATIONS, "activation", f"one of {', '.join(map(repr, ACTIVATIONS))}")
        need(self.output in ("glu", "linear"), "output", "'glu' or 'linear'")
        need(self.norm in NORMS, "norm", f"one of {', '.join(map(repr, NORMS))}")
        need(self.pool in ("mean", "last"), "pool", "'mean' or 'last'")
        for name in ("tie_dropout", "bidirectional", "prenorm"):
            need(isinstance(getattr(self, name), bool), name, "True or False")
        return self
