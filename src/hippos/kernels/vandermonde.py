"""Vandermonde products ``Σ_m v_m x_m^l`` in bounded memory: the S4D kernel and its transpose.

Paper: S4D (Gu, Gupta, Goel, Ré 2022, arXiv 2206.11893) eq. (5)-(6): for a diagonal SSM the
convolution kernel is ``K̄_l = Σ_n C_n B̄_n Ā_n^l``, a product with the Vandermonde matrix
``V_nl = Ā_n^l``. The transposed product ``Σ_l w_l Ā_n^l`` gives the state after a chunk
(``x_L = Σ_l Ā^{L-1-l} B̄ u_l``, REFERENCE §1 "State passing").

The nodes are given by their logarithm, ``x_n = exp(s_n)`` (for ZOH ``s = Δ·A`` exactly), and
powers are ``exp(l·s)``: no error grows along a chain of products.

A naive product materializes ``V: c(H M L)`` (1 GB at H 256, M 32, L 16384 in complex64) and
autograd keeps it for the backward pass. Here L is split in blocks of T (default ``⌈√L⌉``):
with ``l = i·T + j``, ``x^l = x^{iT} · x^j``, so

    ``out[l] = Σ_m (v_m x_m^{iT}) · x_m^j``  — one batched matmul ``(H, P·⌈L/T⌉, M) @ (H, M, T)``,

and the transposed product is the same matmul the other way. Only ``x^j: (H M T)`` and
``x^{iT}: (H M L/T)`` are built: ``O(H·M·√L)`` memory instead of ``O(H·M·L)``, forward and
backward (plain autograd), and the work is a matrix-matrix product instead of L complex
exponentials per mode. The ``*_naive`` functions are the references they are tested against.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "vandermonde",
    "vandermonde_naive",
    "vandermonde_real",
    "vandermonde_real_lh",
    "vandermonde_state",
    "vandermonde_transpose",
    "vandermonde_transpose_naive",
    "vandermonde_transpose_real",
]


def _block(L: int, chunk: int | None) -> int:
    if chunk is not None:
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
        return chunk
    return max(1, math.isqrt(max(L - 1, 0)) + 1)


#: Moduli below ``exp(floor)`` are set to 0 (float32: e^-30 ≈ 1e-13, far below its 6e-8
#: resolution; float64: e^-300). Left as they are, decayed powers and their products fall into
#: the subnormal range, where CPU arithmetic is 10-100× slower.
_FLOOR = {torch.complex64: -30.0, torch.complex128: -300.0}


def _exp(s: torch.Tensor, ell: torch.Tensor) -> torch.Tensor:
    """``exp(s[..., None] · ell)``, ``s: c(H M)``, ``ell: r(T)`` -> ``c(H M T)``, ``Re s <= 0``.

    Through ``polar`` (real exp, cos, sin): several times faster than complex ``exp`` on CPU.
    Moduli below ``exp(_FLOOR)`` are flushed to 0.
    """
    log_mod = s.real[..., None] * ell
    floor = _FLOOR.get(s.dtype, -30.0)
    mod = torch.where(log_mod > floor, torch.exp(log_mod.clamp(min=floor)), 0.0)
    return torch.polar(mod, s.imag[..., None] * ell)


def _factors(s: torch.Tensor, L: int, T: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``x^j (H M T)`` for ``j < T``, ``x^{iT} (H M n)`` for ``i < n = ⌈L/T⌉``."""
    n = -(-L // T)
    ar = torch.arange(max(T, n), dtype=s.real.dtype, device=s.device)
    return _exp(s, ar[:T]), _exp(s, ar[:n] * T), n


def _check(a: torch.Tensor, s: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Size]:
    if not torch.is_tensor(s) or not s.is_complex() or s.dim() != 2:
        raise TypeError(f"log_x must be a complex (H, M) tensor, got {getattr(s, 'dtype', type(s))} {tuple(getattr(s, 'shape', ()))}")
    if not torch.is_tensor(a) or a.dim() < 2 or a.shape[-2] != s.shape[0]:
        raise ValueError(f"{name} must be (..., H, ·) with H={s.shape[0]}, got {tuple(getattr(a, 'shape', ()))}")
    lead = a.shape[:-2]
    return a.to(s.dtype).reshape((math.prod(lead),) + a.shape[-2:]), lead  # not -1: B may be 0


def _left(v: torch.Tensor, log_x: torch.Tensor, L: int, chunk: int | None):
    """What :func:`vandermonde` and :func:`vandermonde_real` share: ``left = v x^{iT}: c(H, P·n, M)``,
    ``x^j: c(H M T)`` and the shapes ``(lead, H, P, n, T)``."""
    a, lead = _check(v, log_x, "v")
    H, M = log_x.shape
    if a.shape[-1] != M:
        raise ValueError(f"v must be (..., H, M) with M={M}, got {tuple(v.shape)}")
    T = _block(int(L), chunk)
    Vj, Xi, n = _factors(log_x, int(L), T)
    P = a.shape[0]
    left = (a[..., None] * Xi).permute(1, 0, 3, 2).reshape(H, P * n, M)  # (H, P·n, M): v x^{iT}
    return left, Vj, (lead, H, P, n, T)


def vandermonde(v: torch.Tensor, log_x: torch.Tensor, L: int, chunk: int | None = None) -> torch.Tensor:
    """``out[..., h, l] = Σ_m v[..., h, m] · exp(l · log_x[h, m])`` for ``0 <= l < L`` (S4D eq. 5).

    ``v: c(... H M)`` (real is promoted), ``log_x: c(H M)``; returns ``c(... H L)``. ``chunk`` is the
    block length T (default ``⌈√L⌉``); memory ``O(H·M·(T + L/T))`` plus the output.
    """
    left, Vj, (lead, H, P, n, T) = _left(v, log_x, L, chunk)
    L = int(L)
    out = (left @ Vj).reshape(H, P, n * T)[..., :L]  # (H, P, L)
    return out.transpose(0, 1).reshape(lead + (H, L))


def vandermonde_transpose(w: torch.Tensor, log_x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """``out[..., h, m] = Σ_l w[..., h, l] · exp(l · log_x[h, m])``: the transposed product.

    ``w: c(... H L)`` (real is promoted), ``log_x: c(H M)``; returns ``c(... H M)``. Blocked like
    :func:`vandermonde`.
    """
    a, lead = _check(w, log_x, "w")
    H, M = log_x.shape
    P, L = a.shape[0], a.shape[-1]
    if L == 0:
        return a.new_zeros(lead + (H, M))
    T = _block(L, chunk)
    Vj, Xi, n = _factors(log_x, L, T)
    a = torch.nn.functional.pad(a, (0, n * T - L)).transpose(0, 1).reshape(H, P * n, T)
    y = (a @ Vj.transpose(-1, -2)).reshape(H, P, n, M)  # Σ_j w[iT + j] x^j
    out = (y * Xi.transpose(-1, -2)[:, None]).sum(2)  # Σ_i x^{iT} (...): (H, P, M)
    return out.transpose(0, 1).reshape(lead + (H, M))


def vandermonde_real(v: torch.Tensor, log_x: torch.Tensor, L: int, chunk: int | None = None) -> torch.Tensor:
    """``Re vandermonde(v, log_x, L)``, real ``(... H L)``, by one real matmul:
    ``Re Σ_m a_m b_m = Σ_m (Re a_m Re b_m − Im a_m Im b_m)`` is ``[Re a, −Im a] @ [Re b; Im b]``,
    half the arithmetic of the complex product and no complex output to take the real part of.
    What the S4D kernel (``2·Re Σ C B̄ Ā^l``) and the state's output contribution need."""
    left, Vj, (lead, H, P, n, T) = _left(v, log_x, L, chunk)
    L = int(L)
    left2 = torch.cat([left.real, -left.imag], dim=-1)  # (H, P·n, 2M)
    right2 = torch.cat([Vj.real, Vj.imag], dim=-2)  # (H, 2M, T)
    out = (left2 @ right2).reshape(H, P, n * T)[..., :L]  # (H, P, L)
    return out.transpose(0, 1).reshape(lead + (H, L))


def vandermonde_transpose_real(w: torch.Tensor, log_x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """:func:`vandermonde_transpose` of a real ``w: r(... H L)``: ``Σ_l w_l x^l`` as one real matmul
    against ``[Re x^j, Im x^j]`` (``w`` is never promoted to complex); returns ``c(... H M)``.
    What the state after a chunk needs (``Σ_l Ā^{L-1-l} B̄ u_l``, u real)."""
    if w.is_complex():
        return vandermonde_transpose(w, log_x, chunk)
    H, M = log_x.shape
    if not torch.is_tensor(w) or w.dim() < 2 or w.shape[-2] != H:
        raise ValueError(f"w must be (..., H, ·) with H={H}, got {tuple(getattr(w, 'shape', ()))}")
    lead = w.shape[:-2]
    a = w.to(log_x.real.dtype).reshape((math.prod(lead),) + w.shape[-2:])
    P, L = a.shape[0], a.shape[-1]
    if L == 0:
        return torch.zeros(lead + (H, M), dtype=log_x.dtype, device=log_x.device)
    T = _block(L, chunk)
    Vj, Xi, n = _factors(log_x, L, T)
    a = torch.nn.functional.pad(a, (0, n * T - L)).transpose(0, 1).reshape(H, P * n, T)
    right = torch.cat([Vj.real, Vj.imag], dim=-2).transpose(-1, -2).contiguous()  # (H, T, 2M)
    y2 = a @ right  # (H, P·n, 2M): Σ_j w[iT + j] x^j
    y = torch.complex(y2[..., :M], y2[..., M:]).reshape(H, P, n, M)
    out = (y * Xi.transpose(-1, -2)[:, None]).sum(2)  # Σ_i x^{iT} (...): (H, P, M)
    return out.transpose(0, 1).reshape(lead + (H, M))


def _lh(t: torch.Tensor) -> torch.Tensor:
    """``r(H, S)`` -> ``r(S, H)`` contiguous: a 2-D transpose of a contiguous matrix, which PyTorch
    copies in cache-sized tiles (a strided 3-D copy or add misses the cache on every element)."""
    return t.t().contiguous()


def vandermonde_real_lh(v: torch.Tensor, log_x: torch.Tensor, L: int, chunk: int | None = None) -> torch.Tensor:
    """:func:`vandermonde_real` laid out as the layers' activations: ``v: c(P H M)`` ->
    ``r(P L H)`` contiguous, ``out[p, l, h] = Re Σ_m v[p, h, m] x_m^l``. One real matmul and one
    tiled transpose per p (what the state's contribution to a chunk's output needs:
    ``2·Re Σ_n C_n Ā_n^{l+1} x_n``, added to a ``(B, L, H)`` output without a strided pass)."""
    if v.dim() != 3:
        raise ValueError(f"v must be (P, H, M), got {tuple(v.shape)}")
    L = int(L)
    T = _block(L, chunk) if chunk is not None or L < 2 else next(
        (t for t in range(_block(L, None), max(1, _block(L, None) // 2), -1) if L % t == 0), _block(L, None))
    left, Vj, (_, H, P, n, T) = _left(v, log_x, L, T)
    right2 = torch.cat([Vj.real, Vj.imag], dim=-2)  # (H, 2M, T)
    left2 = torch.cat([left.real, -left.imag], dim=-1).view(H, P, n, 2 * log_x.shape[1])  # (H, P, n, 2M)
    out = right2.new_empty(P, L, H)
    for p in range(P):  # (the block T divides L where it can: then the copy is a plain tiled transpose)
        out[p].copy_((left2[:, p] @ right2).view(H, n * T)[:, :L].t())
    return out


def vandermonde_state(u: torch.Tensor, log_x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """``out[p, h, m] = Σ_l x_m^{L-1-l} u[p, l, h]`` for a real ``u: r(P L H)`` (the layers' layout):
    the sum a chunk adds to the state, ``x_L = Σ_l Ā^{L-1-l} B̄ u_l``. Returns ``c(P H M)``.

    Blocked like :func:`vandermonde_transpose_real` but reading u as it is: per p one tiled
    transpose ``(L, H) -> (H, L)``, no flip and no padded copy. With ``L = r + n·T`` (r < T), block i
    covers ``l = r + iT + j`` with power ``(n-1-i)·T + (T-1-j)``: one real matmul against
    ``[Re x^{T-1-j}, Im x^{T-1-j}]``, then the block weights ``x^{(n-1-i)T}``; the r leading steps
    get ``x^{nT} x^{r-1-l}`` from the last r rows of the same matrix."""
    if not torch.is_tensor(log_x) or not log_x.is_complex() or log_x.dim() != 2:
        raise TypeError(f"log_x must be a complex (H, M) tensor, got {getattr(log_x, 'dtype', type(log_x))}")
    H, M = log_x.shape
    if not torch.is_tensor(u) or u.dim() != 3 or u.shape[-1] != H or u.is_complex():
        raise ValueError(f"u must be real (P, L, H) with H={H}, got {tuple(getattr(u, 'shape', ()))}")
    P, L, _ = u.shape
    if L == 0 or P == 0:
        return torch.zeros(P, H, M, dtype=log_x.dtype, device=log_x.device) + 0 * u.sum()  # (in the graph of u)
    T = _block(L, chunk)
    n, r = L // T, L % T
    ar = torch.arange(max(T, n + 1), dtype=log_x.real.dtype, device=log_x.device)
    Vj = _exp(log_x, ar[:T].flip(0))  # (H M T): x^{T-1-j}
    R = torch.cat([Vj.real, Vj.imag], dim=-2).transpose(-1, -2).contiguous()  # (H, T, 2M)
    weights = _exp(log_x, ar[: n + 1].flip(0) * T)  # (H M n+1): x^{nT}, x^{(n-1)T}, ..., x^0
    outs = []
    for p in range(P):
        w = _lh(u[p].to(log_x.real.dtype))  # (H, L)
        out = torch.zeros(H, M, dtype=log_x.dtype, device=log_x.device)
        if n:
            y2 = w[:, r:].view(H, n, T) @ R  # (H, n, 2M): Σ_j u_{r+iT+j} x^{T-1-j}
            y = torch.complex(y2[..., :M], y2[..., M:])
            out = out + (y * weights[..., 1:].transpose(-1, -2)).sum(1)  # Σ_i x^{(n-1-i)T} (...)
        if r:
            h2 = (w[:, None, :r] @ R[:, T - r :])[:, 0]  # (H, 2M): Σ_{l<r} u_l x^{r-1-l}
            out = out + weights[..., 0] * torch.complex(h2[..., :M], h2[..., M:])
        outs.append(out)
    return torch.stack(outs)


def vandermonde_naive(v: torch.Tensor, log_x: torch.Tensor, L: int) -> torch.Tensor:
    """Reference for :func:`vandermonde`: materializes ``V: c(H M L)`` with complex ``exp``."""
    V = torch.exp(log_x[..., None] * torch.arange(L, dtype=log_x.real.dtype, device=log_x.device))
    return (v.to(log_x.dtype)[..., None] * V).sum(-2)


def vandermonde_transpose_naive(w: torch.Tensor, log_x: torch.Tensor) -> torch.Tensor:
    """Reference for :func:`vandermonde_transpose`: materializes ``V: c(H M L)``."""
    L = w.shape[-1]
    V = torch.exp(log_x[..., None] * torch.arange(L, dtype=log_x.real.dtype, device=log_x.device))
    return (w.to(log_x.dtype)[..., None, :] * V).sum(-1)
