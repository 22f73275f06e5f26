"""The mixer vocabulary: one name per sequence mixer, shared by classifiers, language models and
benchmarks (each :class:`~hippos.layers.block.Block` wraps one mixer).

    "s4"         S4 layer, DPLR kernel (S4, arXiv 2111.00396)
    "s4d"        S4 layer, diagonal kernel (S4D, arXiv 2206.11893)
    "lssl"       S4 layer, dense kernel, any A (LSSL, arXiv 2110.13985)
    "h3"         H3 layer: shift SSM, diagonal SSM, multiplicative gates (H3, arXiv 2212.14052)
    "attention"  causal multi-head self-attention with a KV cache (arXiv 1706.03762)

Every mixer maps ``(B L d_model) -> (B L d_model)`` on the sequence-layer contract
(``forward(u, state) -> (y, next_state)``, ``step``, ``default_state``, ``setup_step``).
"""

from __future__ import annotations

import inspect

from torch import nn

from hippos.layers.attention import MultiHeadAttention
from hippos.layers.h3 import H3
from hippos.layers.s4 import S4

__all__ = ["MIXERS", "MIXER_OF_MODE", "make_mixer"]

#: kind -> (layer class, the S4 ``mode`` the kind fixes, or None)
_KINDS: dict[str, tuple[type[nn.Module], str | None]] = {
    "s4": (S4, "dplr"),
    "s4d": (S4, "diag"),
    "lssl": (S4, "dense"),
    "h3": (H3, None),
    "attention": (MultiHeadAttention, None),
}
MIXERS = tuple(_KINDS)
#: S4 layer mode (``ModelConfig.mode``) -> mixer kind
MIXER_OF_MODE = {mode: kind for kind, (_, mode) in _KINDS.items() if mode is not None}


def _options(cls: type[nn.Module], fixed: set[str]) -> list[str]:
    """The keyword options of ``cls``'s constructor, less ``d_model`` and those the kind fixes."""
    params = inspect.signature(cls.__init__).parameters
    return [n for n, p in params.items() if n not in {"self", "d_model", *fixed} and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def make_mixer(kind: str, d_model: int, **options) -> nn.Module:
    """The sequence mixer ``kind`` (one of :data:`MIXERS`) of width ``d_model``.

    ``options`` are the keyword arguments of the mixer's layer (:class:`~hippos.layers.S4` less
    ``mode``, which the kind fixes; :class:`~hippos.layers.H3`;
    :class:`~hippos.layers.MultiHeadAttention`, which needs ``n_heads``); an option the layer
    does not take raises ``TypeError`` naming the ones it does.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown mixer {kind!r}; expected one of {', '.join(MIXERS)}")
    cls, mode = _KINDS[kind]
    fixed = {"mode"} if mode is not None else set()
    allowed = _options(cls, fixed)
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise TypeError(f"mixer {kind!r} takes no option {', '.join(map(repr, bad))}; its options are {', '.join(allowed)}")
    if cls is MultiHeadAttention and "n_heads" not in options:
        raise TypeError("mixer 'attention' needs the option n_heads")
    if mode is not None:
        options["mode"] = mode
    return cls(d_model, **options)
