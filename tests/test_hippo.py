"""HiPPO operators: closed forms, spectra, DPLR reconstruction, diagonal inits."""

from __future__ import annotations

import math

import pytest
import torch

from hippos.hippo import (
    DIAG_INITS,
    MEASURES,
    diag_init,
    dplr,
    low_rank_correction,
    transition,
)


def legs_by_definition(N: int):
    """HiPPO-LegS written entry by entry from the paper (eq. 20)."""
    A = torch.zeros(N, N, dtype=torch.float64)
    B = torch.zeros(N, dtype=torch.float64)
    for n in range(N):
        B[n] = math.sqrt(2 * n + 1)
        for k in range(N):
            if n > k:
                A[n, k] = -math.sqrt(2 * n + 1) * math.sqrt(2 * k + 1)
            elif n == k:
                A[n, k] = -(n + 1)
    return A, B


@pytest.mark.parametrize("N", [1, 2, 7, 16, 64])
def test_legs_closed_form(N):
    A, B = transition("legs", N)
    A_ref, B_ref = legs_by_definition(N)
    assert A.dtype == torch.float64 and B.shape == (N,)
    torch.testing.assert_close(A, A_ref, rtol=1e-15, atol=1e-13)
    torch.testing.assert_close(B, B_ref, rtol=1e-15, atol=1e-13)


@pytest.mark.parametrize("N", [4, 16, 64])
def test_legs_eigenvalues_are_minus_one_to_minus_N(N):
    A, _ = transition("legs", N)
    ev = torch.linalg.eigvals(A)
    assert ev.imag.abs().max() < 1e-8
    torch.testing.assert_close(ev.real.sort().values, -torch.arange(N, 0, -1, dtype=torch.float64), rtol=0, atol=1e-8)


def test_legt_lagt_closed_forms():
    N, theta = 5, 2.0
    A, B = transition("legt", N, theta)
    for n in range(N):
        assert B[n] == pytest.approx(math.sqrt(2 * n + 1) / theta)
        for k in range(N):
            sign = 1.0 if k <= n else (-1.0) ** (n - k)
            assert A[n, k] == pytest.approx(-sign * math.sqrt((2 * n + 1) * (2 * k + 1)) / theta)
    A, B = transition("lagt", N, theta)
    torch.testing.assert_close(A, -torch.tril(torch.ones(N, N, dtype=torch.float64)) / theta)
    torch.testing.assert_close(B, torch.full((N,), 1 / theta, dtype=torch.float64))


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N", [8, 16, 64])
def test_dplr_rebuilds_A(measure, N):
    A, B = transition(measure, N)
    d = dplr(measure, N)
    V = d.V
    torch.testing.assert_close(V.conj().T @ V, torch.eye(N, dtype=torch.complex128), rtol=0, atol=1e-10)
    A_rebuilt = V @ (torch.diag(d.Lambda) - d.P.T @ d.P.conj()) @ V.conj().T
    assert (A_rebuilt - A).abs().max() < 1e-10 * max(1.0, A.abs().max().item())
    torch.testing.assert_close(V @ d.B, B.to(torch.complex128), rtol=0, atol=1e-10)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N", [8, 16, 64])
def test_dplr_conjugate_halving(measure, N):
    A, B = transition(measure, N)
    h = dplr(measure, N, halve=True)
    assert h.Lambda.shape == (N // 2,) and h.V.shape == (N, N // 2)
    assert (h.Lambda.imag >= 0).all()
    P_real = 2 * (h.V @ h.P.T).real  # (N R)
    A_rebuilt = 2 * (h.V @ torch.diag(h.Lambda) @ h.V.conj().T).real - P_real @ P_real.T
    assert (A_rebuilt - A).abs().max() < 1e-10 * max(1.0, A.abs().max().item())
    torch.testing.assert_close(2 * (h.V @ h.B).real, B, rtol=0, atol=1e-10)


@pytest.mark.parametrize("measure,re,rank", [("legs", -0.5, 1), ("lagt", -0.5, 1), ("legt", 0.0, 2), ("fout", 0.0, 1)])
def test_dplr_real_part_and_rank(measure, re, rank):
    d = dplr(measure, 32)
    torch.testing.assert_close(d.Lambda.real, torch.full((32,), re, dtype=torch.float64), rtol=0, atol=1e-12)
    assert low_rank_correction(measure, 32).shape == (rank, 32)


def test_dplr_is_well_conditioned_where_legs_eigenvectors_are_not():
    # The reason for DPLR: diagonalising LegS itself is hopeless (REFERENCE §1).
    A, _ = transition("legs", 32)
    _, W = torch.linalg.eig(A)
    assert torch.linalg.cond(W) > 1e12
    assert torch.linalg.cond(dplr("legs", 32).V) < 1 + 1e-8


def test_diag_inits():
    N = 16
    n = torch.arange(N // 2, dtype=torch.float64)
    torch.testing.assert_close(diag_init("lin", N), torch.complex(torch.full_like(n, -0.5), math.pi * n))
    inv = diag_init("inv", N)
    torch.testing.assert_close(inv.imag, (N / math.pi) * (N / (2 * n + 1) - 1))
    torch.testing.assert_close(diag_init("legs", N), dplr("legs", N, halve=True).Lambda)
    torch.testing.assert_close(diag_init("real", N).real, -(n + 1))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(diag_init("random", N, g1), diag_init("random", N, g2))
    for init in DIAG_INITS:
        lam = diag_init(init, N)
        assert lam.shape == (N // 2,) and lam.dtype == torch.complex128 and (lam.real < 0).all()


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: transition("legx", 4), "unknown measure"),
        (lambda: transition("legs", 0), "N must be"),
        (lambda: transition("legt", 4, theta=float("nan")), "theta"),
        (lambda: dplr("legs", 5, halve=True), "even N"),
        (lambda: diag_init("foo", 4), "unknown diagonal init"),
        (lambda: diag_init("lin", 5), "even N"),
    ],
)
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
