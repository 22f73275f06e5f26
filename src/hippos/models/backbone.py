"""A deep SSM backbone: linear encoder, a stack of residual S4 blocks (:class:`~hippos.layers.Block`
around the mixer ``"s4"``, ``"s4d"`` or ``"lssl"`` of ``ModelConfig.mode``), final norm.

S4 (arXiv 2111.00396, Appendix D.2). ``x: r(B L d_input) -> r(B L H)``; keeps the layer
contract (``forward(x, state)``, ``step``, ``default_state``, ``setup_step``) across the stack.
"""

from __future__ import annotations

import torch
from torch import nn

from hippos.layers.block import Block, make_norm
from hippos.layers.mixers import MIXER_OF_MODE, make_mixer
from hippos.models.config import ModelConfig
from hippos.ops.checks import check_finite

__all__ = ["SSMBackbone"]


class SSMBackbone(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"SSMBackbone takes a ModelConfig, got {type(cfg).__name__}")
        cfg.validate()  # before any module is built: one clean message, no zero-size warnings
        self.cfg = cfg
        self.encoder = nn.Linear(cfg.d_input, cfg.d_model)
        self.blocks = nn.ModuleList(
            Block(
                make_mixer(
                    MIXER_OF_MODE[cfg.mode],
                    cfg.d_model,
                    d_state=cfg.d_state,
                    init=cfg.init,
                    disc=cfg.disc,
                    dt_min=cfg.dt_min,
                    dt_max=cfg.dt_max,
                    lr=cfg.ssm_lr,
                    dropout=cfg.dropout,
                    tie_dropout=cfg.tie_dropout,
                    activation=cfg.activation,
                    output=cfg.output,
                    bidirectional=cfg.bidirectional,
                    l_max=cfg.l_max,
                ),
                cfg.d_model,
                norm=cfg.norm,
                prenorm=cfg.prenorm,
                dropout=cfg.dropout,
                tie_dropout=cfg.tie_dropout,
            )
            for _ in range(cfg.n_layers)
        )
        self.final_norm = make_norm(cfg.norm, cfg.d_model) if cfg.prenorm else nn.Identity()

    def forward(self, x: torch.Tensor, state: list | None = None, lengths: torch.Tensor | None = None, rate: float = 1.0, return_state: bool = False):
        """``x: r(B L d_input)`` -> ``(h: r(B L H), next_states: list | None)``.

        A non-finite input is refused with its first position (:func:`hippos.ops.check_finite`;
        one reduction over the small ``(B, L, d_input)`` input): in the convolutional view a NaN
        would turn its whole sequence NaN, earlier steps included (``docs/kernels.md``).
        """
        if not torch.is_tensor(x) or x.dim() != 3 or x.shape[-1] != self.cfg.d_input:
            raise ValueError(f"expected input of shape (B, L, {self.cfg.d_input}), got {tuple(getattr(x, 'shape', ())) or type(x).__name__}")
        check_finite(x, "input")
        h = self.encoder(x)
        states = [None] * len(self.blocks) if state is None else self._check_states(state)
        next_states = []
        for block, s in zip(self.blocks, states):
            h, ns = block(h, state=s, lengths=lengths, rate=rate, return_state=return_state)
            next_states.append(ns)
        keep = state is not None or return_state
        return self.final_norm(h), (next_states if keep else None)

    def _check_states(self, state) -> list:
        if not isinstance(state, (list, tuple)) or len(state) != len(self.blocks):
            got = f"{len(state)} states" if isinstance(state, (list, tuple)) else type(state).__name__
            raise ValueError(f"state must be a list of {len(self.blocks)} layer states (from default_state or forward), got {got}")
        return list(state)

    def default_state(self, batch_size: int) -> list:
        return [b.default_state(batch_size) for b in self.blocks]

    def setup_step(self, rate: float = 1.0) -> list:
        return [b.setup_step(rate=rate) for b in self.blocks]

    def step(self, x_t: torch.Tensor, state: list, params: list | None = None):
        """``x_t: r(B d_input)`` -> ``(h_t: r(B H), next_states)``."""
        state = self._check_states(state)
        params = self.setup_step() if params is None else params
        h = self.encoder(x_t)
        next_states = []
        for block, s, p in zip(self.blocks, state, params):
            h, ns = block.step(h, s, p)
            next_states.append(ns)
        return self.final_norm(h), next_states
