"""Chunked Vandermonde and Cauchy products equal their naive references, values and gradients."""

import pytest
import torch

from hippos.kernels.cauchy import cauchy, cauchy_naive
from hippos.kernels.vandermonde import (
    vandermonde,
    vandermonde_naive,
    vandermonde_real,
    vandermonde_real_lh,
    vandermonde_state,
    vandermonde_transpose,
    vandermonde_transpose_naive,
    vandermonde_transpose_real,
)

C128 = torch.complex128


def _nodes(H, M, seed=0, dtype=C128):
    g = torch.Generator().manual_seed(seed)
    re = -torch.rand(H, M, generator=g, dtype=torch.float64) * 0.3 - 0.01
    im = torch.randn(H, M, generator=g, dtype=torch.float64)
    return torch.complex(re, im).to(dtype)


def _randc(*shape, seed=1):
    return torch.randn(*shape, dtype=C128, generator=torch.Generator().manual_seed(seed))


def _close(a, b, rtol=1e-12):
    torch.testing.assert_close(a, b, rtol=0, atol=rtol * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("chunk", [None, 1, 3, 4, 5, 12, 100])
@pytest.mark.parametrize("lead", [(), (2,), (2, 3)])
def test_vandermonde_equals_naive(chunk, lead):
    L, H, M = 12, 3, 4  # chunks 3, 4, 12 divide L; 5 does not; 100 exceeds it
    s, v, w = _nodes(H, M), _randc(*lead, H, M), _randc(*lead, H, L, seed=2)
    _close(vandermonde(v, s, L, chunk=chunk), vandermonde_naive(v, s, L))
    _close(vandermonde_transpose(w, s, chunk=chunk), vandermonde_transpose_naive(w, s))


@pytest.mark.parametrize("L", [1, 2, 7, 64, 257])
def test_vandermonde_lengths_and_real_input(L):
    s = _nodes(2, 3)
    v = torch.randn(2, 3, dtype=torch.float64)  # real input is promoted
    _close(vandermonde(v, s, L), vandermonde_naive(v, s, L))
    w = torch.randn(4, 2, L, dtype=torch.float64)
    _close(vandermonde_transpose(w, s), vandermonde_transpose_naive(w, s))


@pytest.mark.parametrize("transpose", [False, True])
def test_vandermonde_gradients_equal_naive(transpose):
    H, M, L = 3, 4, 11
    s = _nodes(H, M).requires_grad_()
    a = (_randc(2, H, L) if transpose else _randc(2, H, M)).requires_grad_()
    fast = (lambda a, s: vandermonde_transpose(a, s, chunk=4)) if transpose else (lambda a, s: vandermonde(a, s, L, chunk=4))
    slow = (lambda a, s: vandermonde_transpose_naive(a, s)) if transpose else (lambda a, s: vandermonde_naive(a, s, L))
    g = _randc(*fast(a, s).shape, seed=5)
    ga = torch.autograd.grad(fast(a, s), (a, s), g)
    gb = torch.autograd.grad(slow(a, s), (a, s), g)
    for x, y in zip(ga, gb):
        _close(x, y)
    assert torch.autograd.gradcheck(fast, (a, s))


def test_vandermonde_float32_and_underflow():
    """Strongly decaying nodes: the flushed powers (no subnormals) still match the reference."""
    s = _nodes(2, 8).to(torch.complex64) * torch.tensor([1.0, 50.0])[:, None]
    v = _randc(2, 8).to(torch.complex64)
    out = vandermonde(v, s, 3000)
    assert out.dtype == torch.complex64 and torch.isfinite(torch.view_as_real(out)).all()
    ref = vandermonde_naive(v.to(C128), s.to(C128), 3000)
    torch.testing.assert_close(out.to(C128), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunk", [None, 1, 3, 4, 5, 100])
@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
def test_cauchy_equals_naive(chunk, lead):
    H, M, L = 2, 5, 12
    v, z, w = _randc(*lead, H, M), _randc(H, L, seed=3), _nodes(H, M)
    _close(cauchy(v, z, w, chunk=chunk), cauchy_naive(v, z, w))


def test_cauchy_includes_both_conjugates():
    """With one pole w and numerator v: v/(z-w) + conj(v)/(z-conj(w)), not 2·Re(v/(z-w))."""
    v = torch.tensor([[1 + 2j]], dtype=C128)
    w = torch.tensor([[-0.5 + 3j]], dtype=C128)
    z = torch.tensor([[0.7j, 1 - 1j]], dtype=C128)
    expect = v / (z - w) + v.conj() / (z - w.conj())
    _close(cauchy(v, z, w), expect)


def test_cauchy_gradients_equal_naive():
    H, M, L = 2, 3, 10
    v = _randc(2, H, M).requires_grad_()
    z = _randc(H, L, seed=3).requires_grad_()
    w = _nodes(H, M).requires_grad_()
    g = _randc(2, H, L, seed=6)
    fast = torch.autograd.grad(cauchy(v, z, w, chunk=3), (v, z, w), g)
    slow = torch.autograd.grad(cauchy_naive(v, z, w), (v, z, w), g)
    for x, y in zip(fast, slow):
        _close(x, y)
    assert torch.autograd.gradcheck(lambda v, z, w: cauchy(v, z, w, chunk=4), (v, z, w))


def test_bad_arguments():
    s, v = _nodes(2, 3), _randc(2, 3)
    with pytest.raises(TypeError):
        vandermonde(v, s.real, 4)
    with pytest.raises(ValueError):
        vandermonde(_randc(3, 3), s, 4)
    with pytest.raises(ValueError):
        vandermonde(v, s, 4, chunk=0)
    with pytest.raises(TypeError):
        cauchy(v.real, _randc(2, 4), s)
    with pytest.raises(ValueError):
        cauchy(_randc(2, 4), _randc(2, 4), s)


def _same_values_and_gradients(fast, ref, inputs):
    """``fast = (real product, complex product)`` equals ``ref`` in values and in the gradients of a
    random linear loss with respect to ``inputs`` (float64)."""
    for a, b in zip(fast, ref):
        _close(a, b)
    seed = torch.Generator().manual_seed(4)
    g0 = torch.randn(fast[0].shape, dtype=torch.float64, generator=seed)
    g1 = torch.randn(fast[1].shape, dtype=C128, generator=seed)
    grads = []
    for out0, out1 in (fast, ref):
        loss = (out0 * g0).sum() + (out1 * g1.conj()).real.sum()
        grads.append(torch.autograd.grad(loss, inputs))
    for a, b in zip(*grads):
        _close(a, b, 1e-11)


@pytest.mark.parametrize("chunk", [None, 1, 5, 12, 100])
@pytest.mark.parametrize("lead", [(), (2, 3)])
def test_real_arithmetic_products_equal_naive(chunk, lead):
    """vandermonde_real = Re of the naive product; vandermonde_transpose_real of a real w = the
    naive transpose; values and gradients (float64)."""
    L, H, M = 12, 3, 4
    s = _nodes(H, M).requires_grad_()
    v = _randc(*lead, H, M).requires_grad_()
    w = torch.randn(*lead, H, L, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    fast = (vandermonde_real(v, s, L, chunk=chunk), vandermonde_transpose_real(w, s, chunk=chunk))
    ref = (vandermonde_naive(v, s, L).real, vandermonde_transpose_naive(w.to(C128), s))
    assert not fast[0].is_complex() and fast[1].is_complex()
    _same_values_and_gradients(fast, ref, (s, v, w))


@pytest.mark.parametrize("L", [1, 5, 12, 37, 64, 100])
@pytest.mark.parametrize("chunk", [None, 1, 5, 16])
def test_layer_layout_products_equal_naive(L, chunk):
    """The products in the layers' (P, L, H) layout: ``vandermonde_real_lh`` is the naive
    ``Re Σ_m v_m x_m^l`` transposed, ``vandermonde_state`` the naive ``Σ_l x^{L-1-l} u_l`` (the
    state a chunk adds: a reversed transpose product, incl. a partial leading block), values and
    gradients (float64)."""
    P, H, M = 2, 3, 4
    s = _nodes(H, M).requires_grad_()
    v = _randc(P, H, M).requires_grad_()
    u = torch.randn(P, L, H, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    fast = (vandermonde_real_lh(v, s, L, chunk=chunk), vandermonde_state(u, s, chunk=chunk))
    ref = (vandermonde_naive(v, s, L).real.transpose(1, 2), vandermonde_transpose_naive(u.flip(1).transpose(1, 2).to(C128), s))
    assert fast[0].shape == (P, L, H) and fast[0].is_contiguous() and fast[1].shape == (P, H, M)
    _same_values_and_gradients(fast, ref, (s, v, u))
    assert vandermonde_state(u[:, :0], s).shape == (P, H, M)
    with pytest.raises(ValueError, match="real"):
        vandermonde_state(u.to(C128), s)
