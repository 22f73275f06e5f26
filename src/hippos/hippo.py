"""HiPPO operators: measures -> (A, B), their NPLR/DPLR forms, and the S4D diagonal inits.

Papers: HiPPO (Gu et al. 2020, arXiv 2008.07669) for the measures; S4 (arXiv 2111.00396,
Thm. 1) for the Normal Plus Low-Rank form; S4D (arXiv 2206.11893) for the diagonal inits.
Derivations and conventions: ``docs/hippo.md``.

Every matrix here is built in float64 / complex128. The online projection of a signal onto a
measure's basis, and its reconstruction, live in :mod:`hippos.projection`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = [
    "MEASURES",
    "DIAG_INITS",
    "DPLR",
    "transition",
    "low_rank_correction",
    "dplr",
    "clip_imag",
    "diag_init",
]

#: Measures with a closed-form (A, B). ``legs`` is time-varying (``c' = A c / t + B u / t``);
#: the others are time-invariant with a time scale ``theta`` (window length or decay time).
MEASURES = ("legs", "legt", "lagt", "fout")
#: Diagonal initialisations of S4D (arXiv 2206.11893 §4) plus two baselines.
DIAG_INITS = ("legs", "inv", "lin", "real", "random")

_F64 = torch.float64


def _check_measure(measure: str) -> str:
    if not isinstance(measure, str) or measure.lower() not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; expected one of {', '.join(MEASURES)}")
    return measure.lower()


def _check_N(N: int) -> int:
    if isinstance(N, bool) or not isinstance(N, int) or N < 1:
        raise ValueError(f"state size N must be an integer >= 1, got {N!r}")
    return N


def _check_theta(theta: float) -> float:
    if not (isinstance(theta, (int, float)) and math.isfinite(theta) and theta > 0):
        raise ValueError(f"time scale theta must be a finite number > 0, got {theta!r}")
    return float(theta)


def _fourier_endpoint(N: int) -> torch.Tensor:
    """g(0) for the Fourier basis [1, √2 cos 2πy, √2 sin 2πy, √2 cos 4πy, ...] at y = 0.

    For even N the last cosine has no sine partner in the basis, so its derivative would leave
    the span: it is kept out of the dynamics (inert, g = 0 there). Leaving it in makes the
    reconstruction error stall (MSE 0.12 at N = 64 against 1e-3 at N = 63 on a smooth signal).
    """
    g = torch.zeros(N, dtype=_F64)
    g[0] = 1.0
    g[1::2] = math.sqrt(2.0)  # the cosines; sines vanish at 0
    if N % 2 == 0:
        g[-1] = 0.0
    return g


def transition(measure: str, N: int, theta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form HiPPO operator ``(A, B)`` for ``measure`` (HiPPO Appendix D).

    Returns ``A: f64(N N)`` and ``B: f64(N)`` such that

    * ``legs``: ``c'(t) = (1/t) A c(t) + (1/t) B u(t)`` (HiPPO eq. 20), with
      ``A_nk = -√(2n+1)√(2k+1)`` (n > k), ``-(n+1)`` (n = k), 0 (n < k); ``B_n = √(2n+1)``.
      Its eigenvalues are exactly -1, ..., -N. ``theta`` is ignored (LegS has no time scale).
    * ``legt``: ``c' = A c + B u`` on the window ``[t-θ, t]`` (HiPPO eq. 10),
      ``A_nk = -(1/θ)√(2n+1)√(2k+1)·(1 if k ≤ n else (-1)^(n-k))``, ``B_n = √(2n+1)/θ``.
    * ``lagt``: measure ``e^{-(t-s)/θ}/θ`` on ``(-∞, t]``, Laguerre basis:
      ``A = -(1/θ)·tril(1)``, ``B = 1/θ`` (HiPPO eq. 11 with α = 0).
    * ``fout``: window ``[t-θ, t]``, basis ``[1, √2 cos 2πy, √2 sin 2πy, ...]``,
      ``y = (s-t)/θ``: ``A = -(1/θ)(D + 2 g gᵀ)``, ``B = 2g/θ``, with ``D`` the (skew)
      derivative of the basis and ``g`` its value at the window's ends. The factor 2 is the
      closure for the dropped endpoint ``u(t-θ)``: a truncated Fourier series converges to the
      *mean* ``(u(t) + u(t-θ))/2`` at the jump of the periodic extension, so
      ``u(t-θ) ≈ 2 Σ c_k g_k(0) - u(t)`` (``docs/hippo.md``).

    The sign conventions are pinned by the reconstruction tests: the state built by
    :func:`hippos.projection.project` rebuilds the signal with :func:`hippos.projection.basis`.
    """
    measure = _check_measure(measure)
    N = _check_N(N)
    theta = _check_theta(theta)
    n = torch.arange(N, dtype=_F64)
    r = torch.sqrt(2 * n + 1)  # (N,)
    row, col = n[:, None], n[None, :]
    if measure == "legs":
        A = torch.where(row > col, -r[:, None] * r[None, :], torch.zeros((), dtype=_F64))
        A = A - torch.diag(n + 1)
        B = r.clone()
    elif measure == "legt":
        sign = torch.where(col <= row, torch.ones((), dtype=_F64), (-1.0) ** (row - col))
        A = -(r[:, None] * sign * r[None, :]) / theta
        B = r / theta
    elif measure == "lagt":
        A = -torch.tril(torch.ones(N, N, dtype=_F64)) / theta
        B = torch.ones(N, dtype=_F64) / theta
    else:  # fout
        g = _fourier_endpoint(N)
        D = torch.zeros(N, N, dtype=_F64)
        for m in range(1, (N - 1) // 2 + 1):  # cos index 2m-1, sin index 2m
            D[2 * m - 1, 2 * m] = -2 * math.pi * m  # (cos 2πmy)' = -2πm sin 2πmy
            D[2 * m, 2 * m - 1] = 2 * math.pi * m  # (sin 2πmy)' =  2πm cos 2πmy
        A = -(D + 2 * g[:, None] * g[None, :]) / theta
        B = 2 * g / theta
    return A, B


def low_rank_correction(measure: str, N: int, theta: float = 1.0) -> torch.Tensor:
    """The real ``P: f64(R N)`` with ``A + Pᵀ P`` normal (S4 Thm. 1).

    ``A + PᵀP = c·I + S`` with S skew-symmetric: ``c = -1/2`` for LegS (``P_n = √(n+½)``) and
    LagT (``P_n = √(1/2θ)``), ``c = 0`` for LegT (rank 2: the even and odd halves of
    ``√(2n+1)/√θ``) and FouT (``P = √2·g/√θ``).
    """
    measure = _check_measure(measure)
    N = _check_N(N)
    theta = _check_theta(theta)
    n = torch.arange(N, dtype=_F64)
    if measure == "legs":
        return torch.sqrt(n + 0.5)[None, :]
    if measure == "lagt":
        return torch.full((1, N), math.sqrt(0.5 / theta), dtype=_F64)
    if measure == "legt":
        r = torch.sqrt(2 * n + 1) / math.sqrt(theta)
        even = (n % 2 == 0).to(_F64)
        return torch.stack([r * even, r * (1 - even)])
    return _fourier_endpoint(N)[None, :] * math.sqrt(2.0 / theta)


class DPLR(NamedTuple):
    """``A = V (diag(Lambda) - P^T conj(P)) V*`` with V unitary (S4 eq. 6, Thm. 1).

    Shapes (M = N, or N/2 with conjugate-pair halving): ``Lambda: c(M)``, ``P: c(R M)``
    (``P = V* P_real`` row by row), ``B: c(M)`` (``V* B``), ``V: c(N M)``.
    """

    Lambda: torch.Tensor
    P: torch.Tensor
    B: torch.Tensor
    V: torch.Tensor


def dplr(measure: str, N: int, theta: float = 1.0, halve: bool = False) -> DPLR:
    """Diagonal Plus Low-Rank form of the HiPPO matrix of ``measure`` (complex128).

    The normal part ``S = A + PᵀP`` is diagonalised through the Hermitian eigenproblem of
    ``-i·skew(S)`` (well conditioned, unlike diagonalising A itself: LegS's eigenvectors have
    condition number ~1e10 at N = 16). ``Re(Lambda) = c`` exactly, ``Im(Lambda)`` the eigenvalues.

    With ``halve=True`` (N even) only the modes with ``Im(Lambda) > 0`` are kept: the others are
    their complex conjugates, so ``A = 2 Re(V Λ V*) - P_r P_rᵀ`` with ``P_r = 2 Re(V P)`` and
    ``B = 2 Re(V B̃)``. Eigenvalues are sorted by imaginary part.
    """
    A, B = transition(measure, N, theta)
    P = low_rank_correction(measure, N, theta)  # (R, N)
    S = A + P.T @ P
    sym = (S + S.T) / 2
    c = torch.diagonal(sym).mean()
    if not torch.allclose(sym, c * torch.eye(N, dtype=_F64), atol=1e-10 * max(1.0, S.abs().max().item())):
        raise AssertionError(f"A + PᵀP is not (scalar + skew) for measure {measure!r}")  # pragma: no cover
    skew = (S - S.T) / 2
    mu, V = torch.linalg.eigh(-1j * skew.to(torch.complex128))  # skew = V diag(i mu) V*
    if halve:
        if N % 2:
            raise ValueError(f"conjugate-pair halving needs an even N, got N={N}")
        mu, V = _keep_one_of_each_pair(mu, V)
    Lambda = c.to(torch.complex128) + 1j * mu.to(torch.complex128)
    Vh = V.conj().T
    P_c = (Vh @ P.T.to(torch.complex128)).T  # (R, M)
    B_c = Vh @ B.to(torch.complex128)  # (M,)
    return DPLR(Lambda, P_c, B_c, V)


def clip_imag(B: torch.Tensor, bound: float | None) -> torch.Tensor:
    """``Re B + i·clamp(Im B, -bound, bound)`` (``bound=None``: B unchanged).

    The S4 reference initializes with ``B_clip=2``: the imaginary part of the diagonalized
    ``V* B`` clipped to [-2, 2] (LegS, N 64: 11 of the 32 kept modes change). hippos keeps the
    exact ``V* B`` unless asked (``b_clip`` of the S4 / S4D kernels, ``--model.b_clip``).
    """
    if bound is None:
        return B
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound) or bound <= 0:
        raise ValueError(f"b_clip must be None or a finite number > 0, got {bound!r}")
    return torch.complex(B.real, B.imag.clamp(-float(bound), float(bound)))


def _keep_one_of_each_pair(mu: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the modes with ``mu > 0`` and pair up the null space of a real skew matrix.

    Modes ``±i·mu`` are conjugates of each other. A zero eigenvalue (FouT's constant and its
    unpaired last cosine) has a real eigenspace of even dimension 2k; from an orthonormal real
    basis ``r_1..r_2k`` the complex vectors ``(r_2j + i r_2j+1)/√2`` and their conjugates span it.
    """
    tol = 1e-9 * max(1.0, mu.abs().max().item())
    pos, zero = mu > tol, mu.abs() <= tol
    z = int(zero.sum())
    if z % 2:  # pragma: no cover - impossible for even N
        raise AssertionError("odd null space: the spectrum is not made of conjugate pairs")
    mus, Vs = [mu[pos]], [V[:, pos]]
    if z:
        Z = V[:, zero]
        U, _, _ = torch.linalg.svd(torch.cat([Z.real, Z.imag], dim=1), full_matrices=False)
        R = U[:, :z]  # real orthonormal basis of the null space
        mus.append(torch.zeros(z // 2, dtype=mu.dtype))
        Vs.append(torch.complex(R[:, 0::2], R[:, 1::2]) / math.sqrt(2.0))
    mu, V = torch.cat(mus), torch.cat(Vs, dim=1)
    order = torch.argsort(mu)
    return mu[order], V[:, order]


def diag_init(init: str, N: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """S4D diagonal state matrix, one mode of each conjugate pair: ``c(N/2)`` (complex128).

    * ``legs``: ``Lambda`` of the DPLR form of LegS (S4D-LegS, the normal part of HiPPO-LegS);
    * ``inv``:  ``A_n = -1/2 + i (N/π)(N/(2n+1) - 1)`` (S4D-Inv);
    * ``lin``:  ``A_n = -1/2 + iπn`` (S4D-Lin);
    * ``real``: ``A_n = -(n+1)`` (real, the eigenvalues of LegS; no oscillation);
    * ``random``: ``-1/2 + i·N(0, 1)·πN/2`` (an ablation baseline), drawn from ``generator``.
    """
    if not isinstance(init, str) or init.lower() not in DIAG_INITS:
        raise ValueError(f"unknown diagonal init {init!r}; expected one of {', '.join(DIAG_INITS)}")
    N = _check_N(N)
    if N % 2:
        raise ValueError(f"diagonal inits keep N/2 conjugate modes and need an even N, got N={N}")
    init = init.lower()
    n = torch.arange(N // 2, dtype=_F64)
    half = torch.full((N // 2,), -0.5, dtype=_F64)
    if init == "legs":
        return dplr("legs", N, halve=True).Lambda
    if init == "inv":
        imag = (N / math.pi) * (N / (2 * n + 1) - 1)
    elif init == "lin":
        imag = math.pi * n
    elif init == "real":
        return torch.complex(-(n + 1), torch.zeros_like(n))
    else:
        imag = torch.randn(N // 2, dtype=_F64, generator=generator) * math.pi * N / 2
    return torch.complex(half, imag)
