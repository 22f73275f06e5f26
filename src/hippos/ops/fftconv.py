"""Causal FFT convolution: the convolutional view ``y = K̄ * u + D u`` in O(L log L).

Papers: S4 (arXiv 2111.00396 §2.4, "the convolution can be computed with FFTs");
H3 / FlashConv (arXiv 2212.14052 §4). The FFT has length ``n ≥ L + L_k - 1`` so the circular
convolution it computes equals the causal linear one (no wrap-around); ``n`` is the smallest
even 7-smooth number that large (:func:`fft_size`), not ``2L`` itself: a length with a large prime
factor (``L = 1009``: ``2L = 2·1009``) makes the FFT several times slower.

A bidirectional layer's anti-causal kernel shares the same FFTs: ``K_rev`` sits at the end of the
circular kernel (``K̂[n - m] = K_rev[m]``), so one product gives both directions (``docs/kernels.md``
§8).
"""

from __future__ import annotations

import math

import torch

__all__ = ["conv_size", "direct_conv", "fft_conv", "fft_conv_reference", "fft_size", "kernel_spectrum"]


def fft_size(m: int) -> int:
    """The smallest even ``n = 2^a 3^b 5^c 7^d >= m`` (``a >= 1``): a length the FFT libraries
    (MKL/pocketfft on CPU, cuFFT) handle at full speed. ``fft_size(1567) = 1568``, ``fft_size(2017) = 2048``."""
    n = max(2, int(m) + int(m) % 2)
    while True:
        k = n
        for p in (2, 3, 5, 7):
            while k % p == 0:
                k //= p
        if k == 1:
            return n
        n += 2


def _check(u: torch.Tensor, K: torch.Tensor, name: str = "K") -> None:
    if u.dim() != 3:
        raise ValueError(f"u must be (B, L, H), got shape {tuple(u.shape)}")
    if K.dim() != 2 or K.shape[0] != u.shape[-1]:
        raise ValueError(f"{name} must be (H, L') with H={u.shape[-1]}, got shape {tuple(K.shape)}")
    if K.is_complex() or u.is_complex():
        raise TypeError("fft_conv takes real u and K; take 2·Re of a conjugate-halved kernel first")


def _circular(K: torch.Tensor, D: torch.Tensor | None, K_rev: torch.Tensor | None, n: int) -> torch.Tensor:
    """The circular kernel ``r(H n)`` of ``y = K * u + D u (+ anti-causal K_rev)``: K at lags
    ``0..L_k-1``, D added at lag 0 (``D u`` is the convolution with ``D δ``), ``K_rev[m]`` at lag
    ``-m``, index ``n - m`` (``K_rev[0]`` adds to lag 0). ``K: r(H L_k)``, ``K_rev: r(H L_r)``."""
    out = K.new_zeros(K.shape[0], n)
    out[:, : K.shape[1]] = K
    if D is not None:
        out[:, 0] += D
    if K_rev is not None:
        out[:, 0] += K_rev[:, 0]
        Lr = K_rev.shape[1]
        if Lr > 1:
            out[:, n - Lr + 1 :] = K_rev[:, 1:].flip(-1)
    return out


def kernel_spectrum(K: torch.Tensor, D: torch.Tensor | None, K_rev: torch.Tensor | None, n: int) -> torch.Tensor:
    """``rfft`` of the circular kernel (:func:`_circular`), ``c(H n/2+1)``. On a CPU in blocks of
    rows like the convolution itself (one ``(H, n)`` transform at L 2^17, H 256 is 4x slower than
    the same rows in cache-sized blocks). Computed once, it serves every chunk of a state-passing
    forward (``fft_conv(..., spectrum=)``)."""
    H = K.shape[0]
    if K.device.type != "cpu":
        return torch.fft.rfft(_circular(K, D, K_rev, n), n=n)
    cdtype = (torch.ones((), dtype=K.dtype) * 1j).dtype
    out = torch.empty(H, n // 2 + 1, dtype=cdtype, device=K.device)
    rows = max(8, CPU_BLOCK * torch.get_num_threads() // n)
    for h0 in range(0, H, rows):
        hs = slice(h0, min(H, h0 + rows))
        block = _circular(K[hs], None if D is None else D[hs], None if K_rev is None else K_rev[hs], n)
        torch.fft.rfft(block, n=n, out=out[hs])
    return out


#: On a CPU the FFT convolution runs over blocks of about this many real numbers per thread
#: (``rows · n``, a row being one (batch, channel) sequence): each block's forward transform,
#: product, inverse and output stay in cache, and no (B, H, n) tensor is ever allocated (at B 8,
#: H 256, L 4096 one batched call's fresh 67 MB buffers cost page faults and cache misses).
CPU_BLOCK = 1 << 18
#: The forward keeps û for the backward pass when it takes at most this many bytes; a larger one
#: is recomputed there, block by block (one more FFT per row, memory bounded by u itself).
SAVE_SPECTRUM_BYTES = 1 << 26


class _Plan:
    """How one call walks its rows: groups of ``bb`` sequences (batch entries) and, inside a
    group, blocks of ``hb`` channels, about ``threads · CPU_BLOCK / n`` rows a block (the
    block's ops split its rows between the threads); one block on other devices (a GPU wants
    one large batched FFT).

    On a CPU a group's ``(b, L, H)`` slice is transposed to ``(b, H, L)`` one sequence at a time:
    a 2-D transpose of a contiguous ``(L, H)`` matrix, which PyTorch copies in cache-sized tiles
    (3-4x faster than a strided 3-D copy into the FFT's padded buffer, which misses the cache on
    every element). Inside the group every copy is contiguous.
    """

    def __init__(self, B: int, L: int, H: int, n: int, like: torch.Tensor, cdtype: torch.dtype):
        if like.device.type != "cpu":
            self.bb, self.hb = B, H
        else:
            rows = max(8, CPU_BLOCK * torch.get_num_threads() // n)
            self.hb = min(H, rows)
            self.bb = max(1, rows // self.hb) if self.hb == H else 1
        self.B, self.L, self.H, self.n = B, L, H, n
        self.bb = min(self.bb, B)
        self.per_sequence = like.device.type == "cpu" and H > 1 and L > 1  # tiled 2-D transposes
        # every buffer a block needs, allocated once per call (fresh large tensors cost page faults)
        self.tin = like.new_empty(self.bb, H, L)  # a group, (b H L)
        self.tout = like.new_empty(self.bb, H, L)
        self.pad = like.new_zeros(self.bb, self.hb, n)  # the FFT's input; its padding stays zero
        self.y = like.new_empty(self.bb, self.hb, n)  # the inverse FFT's output
        self.spec = torch.empty(self.bb, self.hb, n // 2 + 1, dtype=cdtype, device=like.device)

    def groups(self):
        for b0 in range(0, self.B, self.bb):
            yield b0, min(self.bb, self.B - b0)

    def blocks(self):
        for h0 in range(0, self.H, self.hb):
            yield slice(h0, min(h0 + self.hb, self.H))

    def load(self, x: torch.Tensor, b0: int, nb: int) -> torch.Tensor:
        """``x[b0:b0+nb]: r(b L H)`` -> ``r(b H L)`` in this plan's buffer."""
        t = self.tin[:nb]
        if self.per_sequence:
            for j in range(nb):
                t[j].copy_(x[b0 + j].t())
        else:
            t.copy_(x[b0 : b0 + nb].transpose(1, 2))
        return t

    def rfft(self, t: torch.Tensor, hs: slice) -> torch.Tensor:
        """rfft of rows ``t[:, hs]`` (``r(b h L)``), zero-padded to n: ``c(b h n/2+1)`` in this
        plan's spectrum buffer (overwritten by the next call)."""
        nb, h = t.shape[0], hs.stop - hs.start
        buf = self.pad[:nb, :h]
        buf[..., : self.L].copy_(t[:, hs])
        return torch.fft.rfft(buf, n=self.n, out=self.spec[:nb, :h])

    def store(self, y_f: torch.Tensor, hs: slice) -> None:
        """irfft of ``y_f: c(b h n/2+1)``, first L samples, into this plan's output buffer."""
        nb, h = y_f.shape[:2]
        y = torch.fft.irfft(y_f, n=self.n, out=self.y[:nb, :h])
        self.tout[:nb, hs] = y[..., : self.L]

    def unload(self, out: torch.Tensor, b0: int, nb: int) -> None:
        """This plan's output buffer, ``r(b H L)``, transposed into ``out[b0:b0+nb]: r(b L H)``."""
        t = self.tout[:nb]
        if self.per_sequence:
            for j in range(nb):
                out[b0 + j].copy_(t[j].t())
        else:
            out[b0 : b0 + nb] = t.transpose(1, 2)


class _FFTConv(torch.autograd.Function):
    """``y = irfft(rfft(u) · rfft(K̂))[:L]`` with a hand-written backward of real FFTs only.

    ``K̂`` is the circular kernel (:func:`_circular`): K, plus D at lag 0 (so ``D u`` costs no pass
    of its own), plus the anti-causal ``K_rev`` wrapped to its end. The adjoint of a convolution
    is a *correlation*, computed with the same real FFTs of length n:

    ``∂ℓ/∂u_j = Σ_l K̂_{l-j} g_l = irfft(conj(k̂) · ĝ)[j]`` (``D g_j`` included),
    ``c_m = Σ_b Σ_l g_{b,l} u_{b,l-m} = irfft(Σ_b conj(û_b) · ĝ_b)[m]``,

    where ``ĝ = rfft(g, n)``; ``∂ℓ/∂K_m = c_m`` (m < L_k), ``∂ℓ/∂K_rev_m = c_{n-m}`` (``c_0`` for m = 0),
    and ``∂ℓ/∂D = c_0`` (the lag-0 correlation is ``Σ g u``). The zero padding to
    ``n ≥ L + L_k - 1`` keeps all of it free of wrap-around.

    Blocked (:class:`_Plan`): each block of (batch, channel) rows goes through its forward
    transform, product and inverse transform while it is in cache; u, the output and the
    gradients stay ``(B, L, H)``, transposed a sequence at a time. The forward keeps
    ``û: c(B H n/2+1)`` for the backward pass when it is at most :data:`SAVE_SPECTRUM_BYTES`
    (sMNIST: 1.04x faster than recomputing it), else only u, and recomputes ``û`` block by block
    (one more FFT per row; ``û`` is twice the size of u: 268 MB at B 8, H 256, L 16384). Cost:
    forward 2 real FFTs per row, backward 2 (3 when ``û`` is recomputed), plus O(H) for the kernels.
    """

    @staticmethod
    def forward(ctx, u, K, D, K_rev, n, k_f=None):  # u: r(B L H), K: r(H Lk), D: r(H) | None, K_rev: r(H Lr) | None
        B, L, H = u.shape
        if k_f is None:  # else the caller's kernel_spectrum(K, D, K_rev, n), computed once for many calls
            k_f = kernel_spectrum(K, D, K_rev, n)  # (H F), F = n/2+1
        out = torch.empty((B, L, H), dtype=u.dtype, device=u.device)
        plan = _Plan(B, L, H, n, u, k_f.dtype)
        spectrum = (B, H, n // 2 + 1)
        save = any(ctx.needs_input_grad[1:4]) and (u.device.type != "cpu" or math.prod(spectrum) * k_f.element_size() <= SAVE_SPECTRUM_BYTES)
        saved = []  # conj(û) a block at a time: the backward's correlation takes it as is
        for b0, nb in plan.groups():
            t = plan.load(u, b0, nb)
            for hs in plan.blocks():
                u_f = plan.rfft(t, hs)  # (b h F)
                if save:  # block-sized tensors, not one (B, H, F) buffer: a fresh large buffer costs page faults
                    saved.append(torch.conj_physical(u_f))
                plan.store(u_f.mul_(k_f[hs]), hs)
            plan.unload(out, b0, nb)
        ctx.save_for_backward(u if not save else None, k_f, *saved)
        ctx.sizes = (B, L, H, K.shape[1], None if K_rev is None else K_rev.shape[1], n)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):  # g: r(B L H)
        u, k_f, *saved = ctx.saved_tensors
        B, L, H, Lk, Lr, n = ctx.sizes
        need_u, need_K, need_D, need_rev = ctx.needs_input_grad[:4]
        need_c = need_K or need_D or need_rev
        c_f = torch.zeros_like(k_f) if need_c else None  # Σ_b ĝ_b conj(û_b): (H F)
        grad_u = torch.empty((B, L, H), dtype=g.dtype, device=g.device) if need_u else None
        k_fc = k_f.conj().resolve_conj()
        plan = _Plan(B, L, H, n, g, k_f.dtype)
        uplan = _Plan(B, L, H, n, g, k_f.dtype) if need_c and not saved else None
        blocks = iter(saved)
        for b0, nb in plan.groups():
            t = plan.load(g, b0, nb)
            tu = uplan.load(u, b0, nb) if uplan is not None else None
            for hs in plan.blocks():
                g_f = plan.rfft(t, hs)  # (b h F)
                if need_c:
                    uc_f = next(blocks) if saved else torch.conj_physical_(uplan.rfft(tu, hs))
                    acc = c_f[hs]
                    for b in range(nb):
                        acc.addcmul_(g_f[b], uc_f[b])
                if need_u:
                    plan.store(g_f.mul_(k_fc[hs]), hs)
            if need_u:
                plan.unload(grad_u, b0, nb)
        grad_K = grad_D = grad_rev = None
        if need_c:
            c = torch.fft.irfft(c_f, n=n)  # (H n): c_m, every lag
            grad_K = c[:, :Lk] if need_K else None
            grad_D = c[:, 0] if need_D else None
            if need_rev:
                grad_rev = torch.cat([c[:, :1], c[:, n - Lr + 1 :].flip(-1)], dim=-1)
        return grad_u, grad_K, grad_D, grad_rev, None, None


def conv_size(L: int, K: torch.Tensor, K_rev: torch.Tensor | None = None) -> int:
    """The FFT length :func:`fft_conv` uses for a length-L input and these kernels (what a
    :func:`kernel_spectrum` passed to it must be computed at)."""
    longest = max(min(K.shape[1], L), 0 if K_rev is None else min(K_rev.shape[1], L))
    return fft_size(L + longest - 1)


def fft_conv(u: torch.Tensor, K: torch.Tensor, D: torch.Tensor | None = None, K_rev: torch.Tensor | None = None,
             spectrum: torch.Tensor | None = None) -> torch.Tensor:
    """``y_l = Σ_{j<=l} K_{l-j} u_j + D u_l`` (+ ``Σ_{j>=l} K_rev_{j-l} u_j`` when ``K_rev`` is given).

    ``u: r(B L H)``, ``K: r(H L')``, ``D: r(H)``, ``K_rev: r(H L'')`` (the anti-causal kernel of a
    bidirectional layer: ``fft_conv(u.flip(1), K_rev).flip(1)`` computed in the same FFTs). A kernel
    shorter than L is zero-padded; a longer one is truncated to L. The FFT and the ``D u`` term run
    in the promoted dtype of u and K, at least float32 (a half-precision FFT is inaccurate, and
    cuFFT takes only powers of two in half), with a real-FFT backward (``_FFTConv``);
    :func:`fft_conv_reference` is the same product left to PyTorch's autograd. Returns
    ``y: r(B L H)`` (contiguous) in the dtype of u. An empty u (B = 0 or L = 0) gives an empty y
    (the FFT libraries refuse empty transforms), still attached to the graph of u, K and D.
    ``spectrum``: ``kernel_spectrum(K, D, K_rev, conv_size(L, K, K_rev))`` when the caller
    already has it (the chunks of a state-passing forward share one); gradients still flow to
    K, D and K_rev as without it.
    """
    _check(u, K)
    if K_rev is not None:
        _check(u, K_rev, "K_rev")
    L = u.shape[1]
    dtype = torch.promote_types(torch.promote_types(u.dtype, K.dtype), torch.float32)
    uc = u.to(dtype)
    if uc.numel() == 0:
        y = uc * K[:, :1].sum(-1).to(dtype)  # (B L H), empty
        if K_rev is not None:
            y = y + uc * K_rev[:, :1].sum(-1).to(dtype)
        if D is not None:
            y = y + D.to(dtype) * uc
        return y.to(u.dtype)
    K = K[:, :L].to(dtype)
    K_rev = None if K_rev is None else K_rev[:, :L].to(dtype)
    n = conv_size(L, K, K_rev)
    if spectrum is not None and (spectrum.shape != (K.shape[0], n // 2 + 1) or not spectrum.is_complex()):
        raise ValueError(f"spectrum must be the kernel's rfft at n={n}: complex ({K.shape[0]}, {n // 2 + 1}), "
                         f"got {spectrum.dtype} {tuple(spectrum.shape)}")
    y = _FFTConv.apply(uc, K, None if D is None else D.to(dtype), K_rev, n, spectrum)  # (B L H)
    return y.to(u.dtype)


def fft_conv_reference(u: torch.Tensor, K: torch.Tensor, D: torch.Tensor | None = None, K_rev: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`fft_conv` computed by plain ``torch.fft`` calls (length 2L) and differentiated by
    autograd; ``K_rev`` as a second convolution of the reversed sequence."""
    _check(u, K)
    L = u.shape[1]
    n = 2 * L
    u_f = torch.fft.rfft(u.transpose(1, 2), n=n)  # (B H n/2+1), FFT over time
    k_f = torch.fft.rfft(K[:, :L], n=n)  # (H n/2+1)
    y = torch.fft.irfft(u_f * k_f, n=n)[..., :L].transpose(1, 2)  # (B L H)
    if K_rev is not None:
        y = y + fft_conv_reference(u.flip(1), K_rev).flip(1)
    if D is not None:
        y = y + D * u
    return y.to(u.dtype)


def direct_conv(u: torch.Tensor, K: torch.Tensor, D: torch.Tensor | None = None, K_rev: torch.Tensor | None = None) -> torch.Tensor:
    """The same convolution as a dense Toeplitz product, O(L²): a reference for tests."""
    _check(u, K)
    L = u.shape[1]
    K = torch.nn.functional.pad(K[:, :L], (0, max(0, L - K.shape[1])))  # (H L)
    lag = torch.arange(L)[:, None] - torch.arange(L)[None, :]
    T = torch.where(lag >= 0, K[:, lag.clamp(min=0)], 0)  # (H L L)
    y = torch.einsum("hij,bjh->bih", T, u)
    if K_rev is not None:
        y = y + direct_conv(u.flip(1), K_rev).flip(1)
    return y if D is None else y + D * u
