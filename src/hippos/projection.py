"""Online function approximation with HiPPO: project a signal as time advances, rebuild it.

Paper: HiPPO (Gu et al. 2020, arXiv 2008.07669 §2-3, Appendix D). For a measure μ^(t) with
orthonormal basis g_n(s, t), the state ``c_n(t) = ∫ u(s) g_n(s, t) dμ^(t)(s)`` obeys the ODE of
:func:`hippos.hippo.transition`, and ``u(s) ≈ Σ_n c_n(t) g_n(s, t)`` on the measure's support.

Time convention: sample ``u_k`` is the signal's value on ``(kΔ, (k+1)Δ]`` (zero before 0) and
``c[k]`` is the state at ``t_k = (k+1)Δ``. For LegS the ODE ``c' = (A c + B u)/t`` becomes
time-invariant in ``τ = log t`` (``dc/dτ = A c + B u``), so each step is discretized with
``Δτ_k = log(t_k / t_{k-1})``; the first step is exact for every method (the projection of a
constant on ``[0, Δ]`` is ``u_0·e_0``). With ``method="zoh"`` the LegS state is then the *exact*
Legendre projection of the piecewise-constant signal, and depends on Δ not at all.
"""

from __future__ import annotations

import math

import torch

from hippos.discretize import discretize
from hippos.hippo import _check_measure, _check_N, _check_theta, transition

__all__ = ["basis", "window", "project", "reconstruct"]

_F64 = torch.float64


def _legendre(x: torch.Tensor, N: int) -> torch.Tensor:
    """``P_0..P_{N-1}(x)`` by Bonnet's recurrence ``(n+1)P_{n+1} = (2n+1)x P_n - n P_{n-1}``."""
    P = [torch.ones_like(x), x]
    for n in range(1, N - 1):
        P.append(((2 * n + 1) * x * P[n] - n * P[n - 1]) / (n + 1))
    return torch.stack(P[:N], dim=-1)


def _laguerre(x: torch.Tensor, N: int) -> torch.Tensor:
    """``L_0..L_{N-1}(x)`` by ``(n+1)L_{n+1} = (2n+1-x)L_n - n L_{n-1}``."""
    Lg = [torch.ones_like(x), 1 - x]
    for n in range(1, N - 1):
        Lg.append(((2 * n + 1 - x) * Lg[n] - n * Lg[n - 1]) / (n + 1))
    return torch.stack(Lg[:N], dim=-1)


def _fourier(y: torch.Tensor, N: int) -> torch.Tensor:
    """``[1, √2 cos 2πy, √2 sin 2πy, √2 cos 4πy, ...]`` (first N)."""
    cols = [torch.ones_like(y)]
    m = 1
    while len(cols) < N:
        cols.append(math.sqrt(2) * torch.cos(2 * math.pi * m * y))
        cols.append(math.sqrt(2) * torch.sin(2 * math.pi * m * y))
        m += 1
    return torch.stack(cols[:N], dim=-1)


def basis(measure: str, N: int, s: torch.Tensor, t: float, theta: float = 1.0) -> torch.Tensor:
    """The measure's orthonormal basis ``g_n(s, t)`` at points ``s: f64(S)``. Returns ``f64(S N)``.

    legs: ``√(2n+1) P_n(2s/t - 1)``; legt: ``√(2n+1) P_n(2(s-t)/θ + 1)``;
    lagt: ``L_n((t-s)/θ)``; fout: Fourier basis of ``y = (s-t)/θ`` (see :func:`transition`).
    """
    measure = _check_measure(measure)
    N = _check_N(N)
    theta = _check_theta(theta)
    s = torch.as_tensor(s, dtype=_F64)
    n = torch.arange(N, dtype=_F64)
    if measure == "legs":
        if not t > 0:
            raise ValueError(f"LegS needs t > 0, got {t}")
        return torch.sqrt(2 * n + 1) * _legendre(2 * s / t - 1, N)
    if measure == "legt":
        return torch.sqrt(2 * n + 1) * _legendre(2 * (s - t) / theta + 1, N)
    if measure == "lagt":
        return _laguerre((t - s) / theta, N)
    return _fourier((s - t) / theta, N)


def window(measure: str, t: float, theta: float = 1.0) -> tuple[float, float]:
    """The interval the state describes at time t: ``[0, t]`` for LegS, ``[t-θ, t]`` otherwise
    (for LagT, the span where its exponential weight is above 1/e)."""
    measure = _check_measure(measure)
    return (0.0, float(t)) if measure == "legs" else (float(t) - _check_theta(theta), float(t))


def _check_signal(u: torch.Tensor) -> torch.Tensor:
    u = torch.as_tensor(u)
    if u.is_complex() or not u.is_floating_point():
        raise TypeError(f"u must be a real floating tensor (..., L), got dtype {u.dtype}")
    if u.dim() < 1 or u.shape[-1] < 1:
        raise ValueError(f"u must have shape (..., L) with L >= 1, got {tuple(u.shape)}")
    if not torch.isfinite(u).all():
        raise ValueError("u contains NaN or infinite values")
    return u.to(_F64)


#: Per-step (N, N) matrices are built ``chunk`` steps at a time, but at most this many floats
#: (32 MB of float64) per tensor: memory stays O(N²) at any N (64 steps at N = 5000 were 13 GB each).
_CHUNK_FLOATS = 1 << 22


def _chunk_steps(chunk: int, N: int) -> int:
    """How many steps' (N, N) matrices to build at once: ``chunk``, capped by :data:`_CHUNK_FLOATS`."""
    return max(1, min(chunk, _CHUNK_FLOATS // (N * N)))


def _legs_exact(u: torch.Tensor, N: int, chunk: int) -> torch.Tensor:
    """Exact LegS states of the held samples ``u: f64(B L)`` -> ``f64(B L N)`` in O(L N²).

    The same result as ZOH on ``dc/dτ = A c + B u`` (the LegS ODE is exact), computed without a
    matrix exponential. From ``t = kΔ`` to ``t' = (k+1)Δ`` (``ρ = t/t'``), the old state
    describes the degree-<N part of the history on [0, t], which is all the new projection
    needs of it, so with Gauss-Legendre nodes ``ξ_i``, weights ``w_i`` (exact to degree 2N-1):

        c'_n = ρ/2 Σ_i w_i g_n(ρ(ξ_i+1) - 1) f(ξ_i) + u_k ∫_{2ρ-1}^1 √(2n+1) P_n(x) dx / 2,

    with ``f(ξ) = Σ_k c_k √(2k+1) P_k(ξ)`` and ``∫_a^1 P_n = (P_{n-1}(a) - P_{n+1}(a))/(2n+1)``.
    """
    import numpy as np

    xi_np, w_np = np.polynomial.legendre.leggauss(N)
    xi, w = torch.from_numpy(xi_np), torch.from_numpy(w_np)
    r = torch.sqrt(2 * torch.arange(N, dtype=_F64) + 1)
    Q_T = (r * _legendre(xi, N)).T.contiguous()  # (N nodes): c -> f at the nodes
    L = u.shape[-1]
    out = torch.empty(u.shape[0], L, N, dtype=_F64)
    c = u[:, :1] * torch.eye(N, dtype=_F64)[0]  # the first constant piece, exactly
    out[:, 0] = c
    chunk = _chunk_steps(chunk, N)
    for start in range(1, L, chunk):
        k = torch.arange(start, min(L, start + chunk), dtype=_F64)
        rho = k / (k + 1)  # (C)
        G = r * _legendre(rho[:, None] * (xi + 1) - 1, N)  # (C nodes N): g_n at the nodes, new window
        W = 0.5 * rho[:, None, None] * w[None, :, None] * G  # (C nodes N)
        a = 2 * rho - 1
        P = _legendre(a, N + 1)  # (C N+1)
        b = torch.empty(len(k), N, dtype=_F64)
        b[:, 0] = (1 - a) / 2
        if N > 1:
            n = torch.arange(1, N, dtype=_F64)
            b[:, 1:] = r[1:] / 2 * (P[:, : N - 1] - P[:, 2 : N + 1]) / (2 * n + 1)  # P_{n-1} - P_{n+1}
        for j in range(len(k)):
            c = (c @ Q_T) @ W[j] + u[:, start + j, None] * b[j]
            out[:, start + j] = c
    return out


def _legs_steps(A, B, L: int, method: str, chunk: int):
    """Yield ``(Ā_k, B̄_k)`` chunks for LegS steps k = 1..L-1 (log-time steps)."""
    chunk = _chunk_steps(chunk, A.shape[-1])
    for start in range(1, L, chunk):
        k = torch.arange(start, min(L, start + chunk), dtype=_F64)
        yield discretize(A, B, torch.log((k + 1) / k), method)  # (C N N), (C N)


def project(
    u: torch.Tensor,
    measure: str,
    N: int,
    dt: float = 1.0,
    theta: float = 1.0,
    method: str = "zoh",
    chunk: int = 64,
    exact_legs: bool = True,
) -> torch.Tensor:
    """Run the HiPPO recurrence over a sampled signal: ``u: f(... L)`` -> states ``f64(... L N)``.

    ``c[..., k, :]`` holds the coefficients of the signal's history at ``t_k = (k+1)·dt``:
    ``reconstruct(c[..., k, :], measure, s, t_k)`` rebuilds ``u`` on :func:`window`.
    ``method`` is any name of :data:`hippos.discretize.METHODS`. LegS builds its per-step
    (N, N) matrices ``chunk`` steps at a time, fewer at large N (at most 4M floats per tensor),
    so memory is O(N² + L·N) whatever N. LegS with ZOH uses the O(N²)-per-step exact
    update of :func:`_legs_exact`; ``exact_legs=False`` takes the matrix exponential of each
    step instead (O(N³), the same numbers: a test ties the two).
    """
    measure = _check_measure(measure)
    N = _check_N(N)
    u = _check_signal(u)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be finite and > 0, got {dt}")
    batch, L = u.shape[:-1], u.shape[-1]
    u = u.reshape(-1, L)  # (B L)
    A, B = transition(measure, N, theta)
    c = torch.zeros(u.shape[0], N, dtype=_F64)
    out = torch.empty(u.shape[0], L, N, dtype=_F64)
    if measure == "legs" and method == "zoh" and exact_legs:
        out = _legs_exact(u, N, chunk)
    elif measure == "legs":
        c = u[:, :1] * torch.eye(N, dtype=_F64)[0]  # exact projection of the first constant piece
        out[:, 0] = c
        k = 1
        for Ab, Bb in _legs_steps(A, B, L, method, chunk):
            for j in range(Ab.shape[0]):
                c = c @ Ab[j].T + u[:, k, None] * Bb[j]
                out[:, k] = c
                k += 1
    else:
        Ab, Bb = discretize(A, B, dt, method)
        AbT = Ab.T.contiguous()
        for k in range(L):
            c = c @ AbT + u[:, k, None] * Bb
            out[:, k] = c
    return out.reshape(batch + (L, N))


def reconstruct(c: torch.Tensor, measure: str, s: torch.Tensor, t: float, theta: float = 1.0) -> torch.Tensor:
    """``u(s) ≈ Σ_n c_n g_n(s, t)``: ``c: f64(... N)`` at time t, ``s: (S)`` -> ``f64(... S)``."""
    c = torch.as_tensor(c, dtype=_F64)
    G = basis(measure, c.shape[-1], s, t, theta)  # (S N)
    return c @ G.T
