"""State passing: a causal sequence map run chunk by chunk, its state carried between chunks.

FlashConv's idea (H3, arXiv 2212.14052 §4.2) without its fused kernel. A linear time-invariant
SSM splits exactly at any step k: for the chunk ``u[k : k+T]`` starting in state ``x_k``,

    y[k+j] = (K̄ * u[k : k+T])[j] + C̄ Ā^j x_k        (j < T; the second term: ``state_contribution``)
    x_{k+T} = Ā^T x_k + Σ_{i<T} Ā^{T-1-i} B̄ u[k+i]    (``forward_state``)

so T-sized FFT convolutions and the carried state give the one-pass output (to round-off), with
memory set by T, not by L (the output itself aside). Under autograd the chunks stay in one graph
(the state is not detached), so gradients are exact too and activation memory grows with L only
through what each chunk saves. Truncated backpropagation (detaching between windows) is the
trainer's business, not this function's.

:func:`run_chunked` drives any ``fn(u_chunk, state) -> (y_chunk, next_state)``; layers pick the
chunk size with :func:`resolve_chunk` (``chunk_size``: None = one pass, an int, or ``"auto"``:
:data:`AUTO_CHUNK` steps once L exceeds it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["AUTO_CHUNK", "check_chunk_size", "resolve_chunk", "run_chunked"]

#: ``chunk_size="auto"``: sequences longer than this run in chunks of this many steps (2^16: an
#: FFT convolution of (B 8, H 256) at this length already needs ~1 GB of buffers; the chunked
#: forward's memory stays there for any L: docs/long-sequences.md).
AUTO_CHUNK = 1 << 16


def check_chunk_size(chunk_size, what: str = "chunk_size"):
    """``None``, ``"auto"`` or an int >= 1; else ValueError."""
    if chunk_size is None or chunk_size == "auto":
        return chunk_size
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{what} must be None, 'auto' or an integer >= 1, got {chunk_size!r}")
    return chunk_size


def resolve_chunk(chunk_size, L: int) -> int | None:
    """The chunk length to use for a sequence of ``L`` steps, or None for one pass."""
    if chunk_size is None:
        return None
    T = AUTO_CHUNK if chunk_size == "auto" else chunk_size
    return T if L > T else None


def run_chunked(fn: Callable, u: torch.Tensor, T: int, state) -> tuple[torch.Tensor, object]:
    """``fn(u[:, a:a+T], state, last) -> (y_chunk, state)`` over ``u: (B, L, ...)`` in chunks of
    ``T`` steps (the last may be shorter), the state carried; returns ``(y: (B, L, ...), state)``.
    ``state`` may be None before the first chunk (a zero state ``fn`` need not add); ``last`` tells
    ``fn`` that no chunk follows (the state after it is wanted only if the caller asked).

    With autograd on, the chunks' outputs are concatenated (one graph). Under ``no_grad`` or
    ``inference_mode``, each is written into one preallocated output as soon as it exists, so
    only one chunk's intermediates are alive at a time."""
    B, L = u.shape[0], u.shape[1]
    if not torch.is_grad_enabled():
        y = None
        for a in range(0, L, T):
            y_c, state = fn(u[:, a : a + T], state, a + T >= L)
            if y is None:
                y = y_c.new_empty((B, L, *y_c.shape[2:]))
            y[:, a : a + y_c.shape[1]] = y_c
            del y_c
        return y, state
    ys = []
    for a in range(0, L, T):
        y_c, state = fn(u[:, a : a + T], state, a + T >= L)
        ys.append(y_c)
    return torch.cat(ys, dim=1), state

