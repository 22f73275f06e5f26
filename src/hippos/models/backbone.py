"""A deep SSM backbone: encoder (linear on features, or an embedding of token ids), a stack of
residual blocks (:class:`~hippos.layers.Block` around the mixer ``"s4"``, ``"s4d"`` or ``"lssl"``
of ``ModelConfig.mode``, or self-attention for the Transformer baseline), final norm.

S4 (arXiv 2111.00396, Appendix D.2). ``x: r(B L d_input)`` or ``long(B L)`` -> ``r(B L H)``; keeps
the layer contract (``forward(x, state)``, ``step``, ``default_state``, ``setup_step``) across the
stack. ``lengths`` reaches every mixer and BatchNorm that masks padding.
"""

from __future__ import annotations

import torch
from torch import nn

from hippos.layers.block import Block, make_norm, normed
from hippos.layers.mixers import MIXER_OF_MODE, make_mixer
from hippos.models.config import ModelConfig
from hippos.ops.checks import check_finite

__all__ = ["SSMBackbone"]


def _mixer(cfg: ModelConfig):
    """One block's mixer: the S4 layer of ``cfg.mode``, or self-attention (``cfg.mixer``)."""
    if cfg.mixer == "attention":  # the Transformer baseline (positions added once, by the backbone); an encoder when bidirectional
        return make_mixer("attention", cfg.d_model, n_heads=cfg.n_heads, max_len=cfg.l_max, pos="none",
                          dropout=cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout, causal=not cfg.bidirectional)
    return make_mixer(MIXER_OF_MODE[cfg.mode], cfg.d_model, d_state=cfg.d_state, init=cfg.init, disc=cfg.disc,
                      dt_min=cfg.dt_min, dt_max=cfg.dt_max, lr=cfg.ssm_lr, dt_lr=cfg.dt_lr, b_clip=cfg.b_clip, dropout=cfg.dropout,
                      tie_dropout=cfg.tie_dropout, activation=cfg.activation, output=cfg.output,
                      bidirectional=cfg.bidirectional, l_max=cfg.l_max)


class SSMBackbone(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"SSMBackbone takes a ModelConfig, got {type(cfg).__name__}")
        cfg.validate()  # before any module is built: one clean message, no zero-size warnings
        self.cfg = cfg
        # tokens long(B L) -> r(B L H) through an embedding, or features r(B L d_input) through a linear map
        self.encoder = nn.Embedding(cfg.vocab_size, cfg.d_model) if cfg.vocab_size else nn.Linear(cfg.d_input, cfg.d_model)
        self.pos_emb = None  # learned absolute positions (the Transformer baseline; an SSM needs none)
        if cfg.mixer == "attention":
            self.pos_emb = nn.Embedding(cfg.l_max, cfg.d_model)
            nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.blocks = nn.ModuleList(
            Block(_mixer(cfg), cfg.d_model, norm=cfg.norm, prenorm=cfg.prenorm, dropout=cfg.dropout,
                  tie_dropout=cfg.tie_dropout, mlp_expand=cfg.mlp_expand)
            for _ in range(cfg.n_layers)
        )
        self.final_norm = make_norm(cfg.norm, cfg.d_model) if cfg.prenorm else nn.Identity()

    def forward(self, x: torch.Tensor, state: list | None = None, lengths: torch.Tensor | None = None, rate: float = 1.0, return_state: bool = False):
        """``x: r(B L d_input)`` -> ``(h: r(B L H), next_states: list | None)``.

        A non-finite input is refused with its first position (:func:`hippos.ops.check_finite`;
        one reduction over the small ``(B, L, d_input)`` input): in the convolutional view a NaN
        would turn its whole sequence NaN, earlier steps included (``docs/kernels.md``).
        """
        self._check_input(x, 3)
        h = self.encoder(x)
        if self.pos_emb is not None:
            if h.shape[1] > self.cfg.l_max:
                raise ValueError(f"sequence of {h.shape[1]} steps exceeds l_max={self.cfg.l_max} (the learned position table)")
            h = h + self.pos_emb.weight[: h.shape[1]]
        states = [None] * len(self.blocks) if state is None else self._check_states(state)
        next_states = []
        for block, s in zip(self.blocks, states):
            h, ns = block(h, state=s, lengths=lengths, rate=rate, return_state=return_state)
            next_states.append(ns)
        keep = state is not None or return_state
        return normed(self.final_norm, h, lengths), (next_states if keep else None)

    def _check_input(self, x, dims: int) -> None:
        """Token ids ``long(B L)`` / ``long(B)`` in ``[0, vocab_size)``, or finite ``r(B L d_input)`` /
        ``r(B d_input)`` (``dims`` is the feature case's rank)."""
        got = tuple(getattr(x, "shape", ())) or type(x).__name__
        if self.cfg.vocab_size:
            want = "(B, L)" if dims == 3 else "(B,)"
            if not torch.is_tensor(x) or x.dim() != dims - 1 or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
                raise ValueError(f"expected integer token ids of shape {want}, got {getattr(x, 'dtype', '')} {got}")
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.cfg.vocab_size):
                raise ValueError(f"token ids must be in [0, {self.cfg.vocab_size}), got {int(x.min())} .. {int(x.max())}")
            return
        want = f"(B, L, {self.cfg.d_input})" if dims == 3 else f"(B, {self.cfg.d_input})"
        if not torch.is_tensor(x) or x.dim() != dims or x.shape[-1] != self.cfg.d_input:
            raise ValueError(f"expected input of shape {want}, got {got}")
        check_finite(x, "input")

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
        if self.pos_emb is not None:
            raise ValueError("the attention classifier (mixer='attention') has no recurrent step: run forward on whole sequences")
        state = self._check_states(state)
        params = self.setup_step() if params is None else params
        self._check_input(x_t, 2)
        h = self.encoder(x_t)
        next_states = []
        for block, s, p in zip(self.blocks, state, params):
            h, ns = block.step(h, s, p)
            next_states.append(ns)
        return self.final_norm(h), next_states
