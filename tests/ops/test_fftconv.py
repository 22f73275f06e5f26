"""Causal FFT convolution: values and gradients equal the dense Toeplitz product (float64),
the hand-written real-FFT backward equals autograd through ``torch.fft``, causality, dtypes."""

import pytest
import torch

from hippos.ops.fftconv import direct_conv, fft_conv, fft_conv_reference

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
