"""Causal FFT convolution: values and gradients equal the dense Toeplitz product (float64),
the hand-written real-FFT backward equals autograd through ``torch.fft``, causality, dtypes."""

import pytest
import torch

from hippos.ops import fftconv
from hippos.ops.fftconv import direct_conv, fft_conv, fft_conv_reference, fft_size

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def _grads(f, u, K, D, g):
    y = f(u, K, D)
    return (y, *torch.autograd.grad(y, (u, K, D), g))


@pytest.mark.parametrize("L, Lk", [(37, 37), (64, 64), (37, 20), (37, 50), (1, 1)])
def test_fft_conv_equals_toeplitz_values_and_gradients(L, Lk):
    u = torch.randn(3, L, 5, dtype=F64, requires_grad=True)
    K = torch.randn(5, Lk, dtype=F64, requires_grad=True)
    D = torch.randn(5, dtype=F64, requires_grad=True)
    g = torch.randn(3, L, 5, dtype=F64)
    fast = _grads(fft_conv, u, K, D, g)
    for ref in (direct_conv, fft_conv_reference):
        for a, b in zip(fast, _grads(ref, u, K, D, g)):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fft_conv_gradcheck():
    u = torch.randn(2, 11, 3, dtype=F64, requires_grad=True)
    K = torch.randn(3, 9, dtype=F64, requires_grad=True)
    D = torch.randn(3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(fft_conv, (u, K, D))


def test_fft_conv_grad_of_one_input_only():
    u = torch.randn(2, 16, 3, dtype=F64, requires_grad=True)
    K = torch.randn(3, 16, dtype=F64)
    (gu,) = torch.autograd.grad(fft_conv(u, K).sum(), u)
    (gu_ref,) = torch.autograd.grad(direct_conv(u, K).sum(), u)
    torch.testing.assert_close(gu, gu_ref)


def test_fft_conv_is_causal():
    u = torch.randn(2, 40, 4, dtype=F64)
    K = torch.randn(4, 40, dtype=F64)
    v = u.clone()
    v[:, 25] += 1.0
    y, z = fft_conv(u, K), fft_conv(v, K)
    torch.testing.assert_close(y[:, :25], z[:, :25], rtol=0, atol=1e-12)
    assert (y[:, 25:] - z[:, 25:]).abs().max() > 1e-3


def test_fft_conv_float32_matches_float64_and_keeps_dtype():
    u = torch.randn(2, 300, 8)
    K = torch.randn(8, 300) / 30
    y = fft_conv(u, K)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), direct_conv(u.double(), K.double()), rtol=1e-4, atol=1e-4)


def test_fft_conv_rejects_bad_shapes_and_complex():
    with pytest.raises(ValueError, match="u must be"):
        fft_conv(torch.randn(4, 5), torch.randn(5, 4))
    with pytest.raises(ValueError, match="K must be"):
        fft_conv(torch.randn(2, 4, 5), torch.randn(3, 4))
    with pytest.raises(TypeError, match="real"):
        fft_conv(torch.randn(2, 4, 5), torch.randn(5, 4, dtype=torch.complex64))


# ------------------------------------------------------------ the fast path's own choices (issue 16)


def _smooth(n: int) -> bool:
    for p in (2, 3, 5, 7):
        while n % p == 0:
            n //= p
    return n == 1


@pytest.mark.parametrize("m", [1, 2, 3, 7, 97, 1567, 2017, 4095, 8191, 2 * 1009 - 1])
def test_fft_size_is_the_smallest_even_7_smooth_length(m):
    n = fft_size(m)
    assert n >= m and n % 2 == 0 and _smooth(n)
    assert not any(_smooth(k) for k in range(max(2, m + m % 2), n, 2))


def test_fft_size_examples():
    assert (fft_size(1567), fft_size(2017), fft_size(8191)) == (1568, 2048, 8192)


def _all_grads(u, K, D, K_rev, g):
    y = fft_conv(u, K, D, K_rev=K_rev)
    ins = [t for t in (u, K, D, K_rev) if t is not None]
    return (y, *torch.autograd.grad(y, ins, g))


@pytest.mark.parametrize("L, Lk, Lr", [(37, 37, 37), (40, 17, 40), (33, 50, 9), (16, 16, 1)])
def test_bidirectional_kernel_equals_two_convolutions(L, Lk, Lr):
    """``K_rev`` wrapped to the end of the circular kernel == the flipped second convolution."""
    u = torch.randn(3, L, 4, dtype=F64, requires_grad=True)
    K, K_rev = torch.randn(4, Lk, dtype=F64, requires_grad=True), torch.randn(4, Lr, dtype=F64, requires_grad=True)
    D = torch.randn(4, dtype=F64, requires_grad=True)
    g = torch.randn(3, L, 4, dtype=F64)
    fast = _all_grads(u, K, D, K_rev, g)
    for ref in (fft_conv_reference, direct_conv):
        y = ref(u, K, D, K_rev=K_rev)
        for a, b in zip(fast, (y, *torch.autograd.grad(y, (u, K, D, K_rev), g))):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    y_two = fft_conv(u, K, D) + fft_conv(u.flip(1), K_rev).flip(1)
    torch.testing.assert_close(fast[0], y_two, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("save", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("H", [11, 3])
def test_blocked_equals_one_block(monkeypatch, save, bidirectional, H):
    """Blocks of 8 rows (H 11: one sequence a group, channel blocks of 8; H 3: groups of two
    sequences, all channels), û kept or recomputed in the backward: the values and every
    gradient equal one batched call (and the Toeplitz oracle)."""
    B, L = 5, 29
    u = torch.randn(B, L, H, dtype=F64, requires_grad=True)
    K = torch.randn(H, L, dtype=F64, requires_grad=True)
    D = torch.randn(H, dtype=F64, requires_grad=True)
    K_rev = torch.randn(H, L, dtype=F64, requires_grad=True) if bidirectional else None
    g = torch.randn(B, L, H, dtype=F64)
    one = _all_grads(u, K, D, K_rev, g)
    monkeypatch.setattr(fftconv, "CPU_BLOCK", 1)
    monkeypatch.setattr(fftconv, "SAVE_SPECTRUM_BYTES", 1 << 40 if save else 0)
    plan = fftconv._Plan(B, L, H, fft_size(2 * L - 1), u, torch.complex128)
    assert len(list(plan.groups())) * len(list(plan.blocks())) >= 3
    many = _all_grads(u, K, D, K_rev, g)
    for a, b in zip(many, one):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    y = direct_conv(u, K, D, K_rev=K_rev)
    ins = [t for t in (u, K, D, K_rev) if t is not None]
    for a, b in zip(many, (y, *torch.autograd.grad(y, ins, g))):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_smooth_fft_length_equals_power_of_two_and_2L(monkeypatch):
    """The 7-smooth FFT length gives the result of the plain 2L and of a power of two."""
    L = 1009  # 2L - 1 = 2017: fft_size picks 2048; 2L = 2018 = 2·1009
    u, K, D = torch.randn(2, L, 3, dtype=F64), torch.randn(3, L, dtype=F64) / L, torch.randn(3, dtype=F64)
    y = fft_conv(u, K, D)
    for size in (lambda m: m + 1, lambda m: 1 << (m - 1).bit_length(), lambda m: fft_size(m) + 10):
        monkeypatch.setattr(fftconv, "fft_size", size)
        torch.testing.assert_close(fft_conv(u, K, D), y, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y, fft_conv_reference(u, K, D), rtol=1e-10, atol=1e-10)


def test_strided_inputs_and_gradients():
    """u and the upstream gradient as transposed views: same values and gradients."""
    u0 = torch.randn(3, 5, 20, dtype=F64)
    u = u0.transpose(1, 2).requires_grad_()  # (3 20 5), not contiguous
    K, D = torch.randn(5, 20, dtype=F64, requires_grad=True), torch.randn(5, dtype=F64, requires_grad=True)
    g = torch.randn(3, 5, 20, dtype=F64).transpose(1, 2)
    y = fft_conv(u, K, D)
    assert y.is_contiguous()
    fast = torch.autograd.grad(y, (u, K, D), g)
    y_ref = direct_conv(u, K, D)
    for a, b in zip((y, *fast), (y_ref, *torch.autograd.grad(y_ref, (u, K, D), g))):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_k_rev_is_checked():
    with pytest.raises(ValueError, match="K_rev must be"):
        fft_conv(torch.randn(2, 4, 5), torch.randn(5, 4), K_rev=torch.randn(3, 4))


@pytest.mark.parametrize("L, Lk", [(37, 37), (64, 20)])
def test_precomputed_spectrum_gives_the_same_output_and_gradients(monkeypatch, L, Lk):
    """``fft_conv(..., spectrum=kernel_spectrum(K, D, K_rev, conv_size(...)))`` (the chunks of a
    state-passing forward share one) equals computing it inside, values and gradients; the
    row-blocked kernel_spectrum equals one rfft; a spectrum of the wrong size is refused."""
    from hippos.ops.fftconv import _circular, conv_size, kernel_spectrum

    monkeypatch.setattr(fftconv, "CPU_BLOCK", 64)  # several row blocks even at these sizes
    u = torch.randn(2, L, 5, dtype=F64, requires_grad=True)
    K = torch.randn(5, Lk, dtype=F64, requires_grad=True)
    D = torch.randn(5, dtype=F64, requires_grad=True)
    n = conv_size(L, K)
    with torch.no_grad():
        spec = kernel_spectrum(K, D, None, n)
    torch.testing.assert_close(spec, torch.fft.rfft(_circular(K.detach(), D.detach(), None, n), n=n), rtol=1e-12, atol=1e-12)
    g = torch.randn(2, L, 5, dtype=F64)
    a = _grads(lambda u, K, D: fft_conv(u, K, D, spectrum=spec), u, K, D, g)
    b = _grads(fft_conv, u, K, D, g)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="spectrum must be"):
        fft_conv(u, K, D, spectrum=spec[:, :-1])
