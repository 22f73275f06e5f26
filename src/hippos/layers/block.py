"""The residual block around a sequence mixer, with an optional MLP: one block for classifiers,
language models and benchmarks.

S4 (arXiv 2111.00396, Appendix D.2) and H3 (arXiv 2212.14052 §5). Pre-norm (the default)::

    x = x + drop(mixer(norm(x)))
    x = x + mlp(mlp_norm(x))                      # only when mlp_expand > 0

post-norm::

    x = norm(x + drop(mixer(x)))
    x = mlp_norm(x + mlp(x))                      # only when mlp_expand > 0

``norm`` is LayerNorm, BatchNorm over channels (its statistics over the valid steps when
``lengths`` is given), or none. ``drop`` is
:class:`~hippos.layers.dropout.SequenceDropout` (``tie_dropout``: one mask per channel, shared
along the sequence); ``mlp`` is the GELU MLP of :mod:`hippos.layers.mlp`, with dropout on its
output (``mlp_dropout``, default ``dropout``). An S4 classifier block is ``mlp_expand=0``; an
H3/Transformer language-model block is ``mlp_expand=4``. Shapes ``(B L H)`` in and out.

The block keeps the mixer's contract: ``forward(x, state) -> (y, next_state)``,
``step(x_t, state, params) -> (y_t, next_state)``, ``default_state``, ``setup_step``.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from hippos.layers.dropout import SequenceDropout
from hippos.layers.mlp import MLP
from hippos.ops.checks import valid_steps

__all__ = ["NORMS", "Block", "make_norm", "normed"]

NORMS = ("layer", "batch", "none")


class _BatchNormBLH(nn.BatchNorm1d):
    """BatchNorm over channels of ``(B, L, H)`` (or ``(B, H)`` when stepping).

    With ``lengths: long(B)`` in training mode, the batch statistics (and the running ones) are
    taken over the valid steps only, so the padding of a variable-length batch (zeros, or
    whatever a layer made of them) does not shift the normalization of the real steps: a
    sequence's output does not depend on how long the other sequences of its batch are.
    """

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3:
            return super().forward(x)
        B, L, H = x.shape
        # (B·L, H), channels last: torch's fast CPU kernel (on a transposed (B, H, L) view forward
        # and backward are about 4x slower); the statistics are the same, over all B·L steps
        flat = x.reshape(B * L, H)
        if lengths is None or not self.training or bool((lengths >= L).all()):
            return super().forward(flat).view(B, L, H)
        # training on a padded batch: the statistics of the valid steps only (rows b·L + t, t < lengths[b])
        rows = valid_steps(lengths, L).reshape(-1).nonzero().squeeze(1)  # (n_valid)
        wide = torch.promote_types(x.dtype, torch.float32)  # half precision: statistics in float32
        y = super().forward(flat.index_select(0, rows).to(wide)).to(x.dtype)  # (n_valid, H)
        return flat.new_zeros(flat.shape).index_copy(0, rows, y).view(B, L, H)  # padding: 0


def normed(norm: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``norm(x)``, with the valid ``lengths`` for a BatchNorm (masked statistics)."""
    if lengths is not None and isinstance(norm, _BatchNormBLH):
        return norm(x, lengths)
    return norm(x)


def make_norm(kind: str, d_model: int) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(d_model)
    if kind == "batch":
        return _BatchNormBLH(d_model)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected one of {', '.join(map(repr, NORMS))}")


def _keywords(fn) -> frozenset[str] | None:
    """The keyword arguments ``fn`` takes; None when it takes any (``**kwargs``)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _accepts(takes: frozenset[str] | None, name: str) -> bool:
    return takes is None or name in takes


class Block(nn.Module):
    """Residual block around ``mixer`` (see the module docstring).

    Args:
        mixer: a sequence layer on ``(B L d_model)`` with the contract above
            (:func:`hippos.layers.make_mixer` builds one by name).
        d_model: width H.
        norm: ``"layer"``, ``"batch"`` or ``"none"`` (both norms of the block).
        prenorm: normalize each branch's input (True) or the sum after it (False).
        dropout: residual dropout on the mixer's output.
        tie_dropout: one residual-dropout mask per (sequence, channel), shared along L.
        mlp_expand: hidden width of the MLP as a multiple of d_model; 0: no MLP.
        mlp_dropout: dropout on the MLP's output; None: ``dropout``.

    Keyword arguments of :meth:`forward` that the mixer's ``forward`` does not take are looked
    up once, here: ``lengths`` is dropped for such a mixer (the mixer without it, H3, is causal:
    padding after a sequence's end cannot reach its positions), and ``rate``
    must then be 1 (a mixer without a step size cannot be resampled).
    """

    def __init__(
        self,
        mixer: nn.Module,
        d_model: int,
        *,
        norm: str = "layer",
        prenorm: bool = True,
        dropout: float = 0.0,
        tie_dropout: bool = False,
        mlp_expand: int = 0,
        mlp_dropout: float | None = None,
    ):
        super().__init__()
        if not isinstance(mixer, nn.Module):
            raise TypeError(f"Block takes a mixer nn.Module, got {type(mixer).__name__}")
        takes = _keywords(mixer.forward)
        if takes is not None and not {"state", "return_state"} <= takes:
            raise TypeError(f"{type(mixer).__name__}.forward must take state= and return_state= (the sequence-layer contract)")
        for name, value, low in (("d_model", d_model, 1), ("mlp_expand", mlp_expand, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Block: {name} must be an integer >= {low}, got {value!r}")
        self._forward_takes = takes  # computed once: forward passes only what the mixer takes
        self._setup_takes = _keywords(mixer.setup_step) if hasattr(mixer, "setup_step") else frozenset()
        self.norm = make_norm(norm, d_model)
        self.mixer = mixer
        self.dropout = SequenceDropout(dropout, tie=tie_dropout)
        self.prenorm = prenorm
        self.mlp_norm = self.mlp = None
        if mlp_expand > 0:
            self.mlp_norm = make_norm(norm, d_model)
            self.mlp = MLP(d_model, expand=mlp_expand, dropout=dropout if mlp_dropout is None else mlp_dropout)

    def _mixer_kwargs(self, lengths, rate, return_state) -> dict:
        kwargs = {"return_state": return_state}
        if lengths is not None and _accepts(self._forward_takes, "lengths"):
            kwargs["lengths"] = lengths
        if _accepts(self._forward_takes, "rate"):
            kwargs["rate"] = rate
        elif rate != 1.0:
            raise ValueError(f"{type(self.mixer).__name__} has no sampling rate: rate must be 1.0, got {rate!r}")
        return kwargs

    def _mlp(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.mlp is None:
            return x
        if self.prenorm:
            return x + self.mlp(normed(self.mlp_norm, x, lengths))
        return normed(self.mlp_norm, x + self.mlp(x), lengths)

    def forward(self, x: torch.Tensor, state=None, *, lengths: torch.Tensor | None = None, rate: float = 1.0, return_state: bool = False):
        """``x: r(B L H)`` -> ``(y: r(B L H), next_state)``; ``state``, ``lengths``, ``rate`` and
        ``return_state`` go to the mixer (those it takes, see the class docstring)."""
        kwargs = self._mixer_kwargs(lengths, rate, return_state)
        z = normed(self.norm, x, lengths) if self.prenorm else x
        z, next_state = self.mixer(z, state=state, **kwargs)
        x = x + self.dropout(z)
        if not self.prenorm:
            x = normed(self.norm, x, lengths)
        return self._mlp(x, lengths), next_state

    def default_state(self, batch_size: int):
        return self.mixer.default_state(batch_size)

    def setup_step(self, rate: float = 1.0):
        """The mixer's step parameters (a pure function of the weights; cache them while stepping)."""
        if _accepts(self._setup_takes, "rate"):
            return self.mixer.setup_step(rate=rate)
        if rate != 1.0:
            raise ValueError(f"{type(self.mixer).__name__} has no sampling rate: rate must be 1.0, got {rate!r}")
        return self.mixer.setup_step()

    def step(self, x_t: torch.Tensor, state, params=None):
        """One step, ``x_t: r(B H)`` -> ``(y_t: r(B H), next_state)``; equals :meth:`forward` in eval mode."""
        z = self.norm(x_t) if self.prenorm else x_t
        z, next_state = self.mixer.step(z, state, params)
        x_t = x_t + self.dropout(z)  # tied dropout needs whole sequences: step in eval mode
        if not self.prenorm:
            x_t = self.norm(x_t)
        return self._mlp(x_t), next_state
