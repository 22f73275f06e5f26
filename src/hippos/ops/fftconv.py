"""Causal FFT convolution: the convolutional view ``y = K̄ * u + D u`` in O(L log L).

Papers: S4 (arXiv 2111.00396 §2.4, "the convolution can be computed with FFTs");
H3 / FlashConv (arXiv 2212.14052 §4). The FFT has length ``n ≥ 2L`` so the circular
convolution it computes equals the causal linear one (no wrap-around).
"""

from __future__ import annotations

import torch

__all__ = ["fft_conv", "fft_conv_reference", "direct_conv"]


def _check(u: torch.Tensor, K: torch.Tensor) -> None:
    if u.dim() != 3:
        raise ValueError(f"u must be (B, L, H), got shape {tuple(u.shape)}")
    if K.dim() != 2 or K.shape[0] != u.shape[-1]:
        raise ValueError(f"K must be (H, L') with H={u.shape[-1]}, got shape {tuple(K.shape)}")
    if K.is_complex() or u.is_complex():
        raise TypeError("fft_conv takes real u and K; take 2·Re of a conjugate-halved kernel first")


class _FFTConv(torch.autograd.Function):
    """``y = irfft(rfft(u) · rfft(K))[:L]`` with a hand-written backward made of real FFTs only.

    PyTorch's own backward of ``rfft`` runs a full complex FFT (and pads/copies around it); the
    adjoint of a causal convolution is a causal *correlation*, computed here with the same real
    FFTs of length ``n = 2L``:

    ``∂ℓ/∂u_j = Σ_{l≥j} K_{l-j} g_l = irfft(conj(K̂) · ĝ)[j]``,
    ``∂ℓ/∂K_m = Σ_b Σ_{l≥m} g_{b,l} u_{b,l-m} = irfft(Σ_b conj(û_b) · ĝ_b)[m]``,

    where ``ĝ = rfft(g, n)``; the zero padding to ``n ≥ 2L`` keeps both free of wrap-around.
    One forward costs 3 real FFTs, one backward 3 (instead of 3 complex ones plus copies).
    Tensors are ``(B, H, L)`` inside, FFT over the last dimension.
    """

    @staticmethod
    def forward(ctx, u, K, n):  # u: r(B H L), K: r(H Lk) with Lk <= L
        L, Lk = u.shape[-1], K.shape[-1]
        u_f = torch.fft.rfft(u, n=n)  # (B H n/2+1)
        k_f = torch.fft.rfft(K, n=n)  # (H n/2+1)
        ctx.save_for_backward(u_f, k_f)
        ctx.sizes = (L, Lk, n)
        return torch.fft.irfft(u_f * k_f, n=n)[..., :L]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):  # g: r(B H L)
        u_f, k_f = ctx.saved_tensors
        L, Lk, n = ctx.sizes
        g_f = torch.fft.rfft(g, n=n)  # (B H n/2+1)
        grad_u = grad_K = None
        if ctx.needs_input_grad[0]:
            grad_u = torch.fft.irfft(g_f * k_f.conj(), n=n)[..., :L]
        if ctx.needs_input_grad[1]:
            grad_K = torch.fft.irfft((g_f * u_f.conj()).sum(0), n=n)[..., :Lk]
        return grad_u, grad_K, None


def fft_conv(u: torch.Tensor, K: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """``y_l = Σ_{j<=l} K_{l-j} u_j + D u_l``. ``u: r(B L H)``, ``K: r(H L')``, ``D: r(H)``.

    A kernel shorter than L is zero-padded; a longer one is truncated to L. The FFT and the
    ``D u`` term run in the promoted dtype of u and K, at least float32 (a half-precision FFT
    is inaccurate, and cuFFT takes only powers of two in half), with a real-FFT backward
    (``_FFTConv``); :func:`fft_conv_reference` is the same product left to PyTorch's autograd.
    Returns ``y: r(B L H)`` in the dtype of u. An empty u (B = 0 or L = 0) gives an empty y
    (the FFT libraries refuse empty transforms), still attached to the graph of u, K and D.
    """
    _check(u, K)
    L = u.shape[1]
    dtype = torch.promote_types(torch.promote_types(u.dtype, K.dtype), torch.float32)
    uc = u.to(dtype)
    if uc.numel() == 0:
        y = uc * K[:, :1].sum(-1).to(dtype)  # (B L H), empty
    else:
        # The FFT runs over time on (B H L); the result is copied back to a contiguous (B L H) so
        # the element-wise ops and the linear map after it (and their backward) run on dense
        # memory (the psMNIST model's training step: 1.08-1.19x faster, `scripts/time_train_step.py`).
        y = _FFTConv.apply(uc.transpose(1, 2), K[:, :L].to(dtype), 2 * L).transpose(1, 2).contiguous()  # (B L H)
    if D is not None:
        y = y + D.to(dtype) * uc
    return y.to(u.dtype)


def fft_conv_reference(u: torch.Tensor, K: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`fft_conv` computed by plain ``torch.fft`` calls and differentiated by autograd."""
    _check(u, K)
    L = u.shape[1]
    n = 2 * L
    u_f = torch.fft.rfft(u.transpose(1, 2), n=n)  # (B H n/2+1), FFT over time
    k_f = torch.fft.rfft(K[:, :L], n=n)  # (H n/2+1)
    y = torch.fft.irfft(u_f * k_f, n=n)[..., :L].transpose(1, 2)  # (B L H)
    if D is not None:
        y = y + D * u
    return y.to(u.dtype)


def direct_conv(u: torch.Tensor, K: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """The same causal convolution as a dense Toeplitz product, O(L²): a reference for tests."""
    _check(u, K)
    L = u.shape[1]
    K = torch.nn.functional.pad(K[:, :L], (0, max(0, L - K.shape[1])))  # (H L)
    lag = torch.arange(L)[:, None] - torch.arange(L)[None, :]
    T = torch.where(lag >= 0, K[:, lag.clamp(min=0)], 0)  # (H L L)
    y = torch.einsum("hij,bjh->bih", T, u)
    return y if D is None else y + D * u
