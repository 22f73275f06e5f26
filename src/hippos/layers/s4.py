"""The S4 layer: an SSM convolution per channel, a D skip, activation, dropout, output map.

Papers: S4 (Gu et al. 2022, arXiv 2111.00396 §3.4, "the S4 layer"); S4D (arXiv 2206.11893);
LSSL (arXiv 2110.13985) for ``mode="dense"``. One layer maps ``u: r(B L H) -> y: r(B L H)``:

    z = K̄ * u + D ⊙ u          (convolutional view; the recurrent view gives the same z)
    y = W · dropout(σ(z))       (W: linear H -> H, or H -> 2H followed by a GLU)

Both views share one contract (DESIGN.md): ``forward(u, state) -> (y, next_state)``,
``step(u_t, state, params) -> (y_t, next_state)``, ``default_state(batch_size)``; the step's
discretized parameters come from the pure :meth:`S4.setup_step`, cached by the caller.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hippos.kernels import DenseKernel, DiagKernel, DPLRKernel
from hippos.layers.dropout import SequenceDropout
from hippos.ops.checks import (
    check_input_dtype,
    check_lengths,
    dtype_error,
    finish_dtype,
    valid_steps,
)
from hippos.ops.chunked import check_chunk_size, resolve_chunk, run_chunked
from hippos.ops.fftconv import conv_size, fft_conv, kernel_spectrum

__all__ = ["S4", "MODES", "ACTIVATIONS"]

MODES = ("dplr", "diag", "dense")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "identity": nn.Identity}


def _make_kernel(mode: str, d_model: int, d_state: int, init: str | None, disc: str | None, dt_min: float, dt_max: float, lr: float | None, l_max: int,
                 b_clip: float | None = None):
    if mode == "dplr":
        return DPLRKernel(d_model=d_model, d_state=d_state, measure=init or "legs", l_max=l_max, dt_min=dt_min, dt_max=dt_max, lr=lr,
                          b_clip=b_clip)
    if mode == "diag":
        return DiagKernel(d_model=d_model, d_state=d_state, init=init or "legs", disc=disc or "zoh", dt_min=dt_min, dt_max=dt_max, lr=lr,
                          b_clip=b_clip)
    if mode == "dense":
        if b_clip is not None:
            raise ValueError("b_clip clips the diagonalized B of the dplr and diag modes; the dense mode has no such B")
        return DenseKernel(d_model=d_model, d_state=d_state, init=init or "legs", disc=disc or "bilinear", dt_min=dt_min, dt_max=dt_max, lr=lr)
    raise ValueError(f"unknown S4 mode {mode!r}; expected one of {', '.join(MODES)}")


class S4(nn.Module):
    """S4 / S4D / LSSL layer on ``(B, L, H)``.

    Args:
        d_model: channels H (one SSM each).
        d_state: state size N.
        mode: ``"dplr"`` (S4, Cauchy + Woodbury kernel), ``"diag"`` (S4D, Vandermonde) or
            ``"dense"`` (LSSL: any A, slow).
        init: HiPPO measure (dplr/dense; ``"random"`` too for dense) or diagonal init (diag).
        disc: ``"zoh"`` or ``"bilinear"`` (diag and dense; dplr is always bilinear).
        dt_min, dt_max: range of the log-uniform initial step Δ per channel.
        lr: learning rate hinted on the SSM parameters (no weight decay on them): None (default)
            lets the trainer use ``min(lr, 1e-3)``, a number is used as given.
        dt_lr: the learning rate of log Δ alone; None (default): as ``lr``.
        b_clip: clip the imaginary part of the initial diagonalized B (``V* B``) to
            [-b_clip, b_clip], as the S4 reference's init does with 2 (dplr and diag); None
            (default): the exact HiPPO B.
        dropout: dropout after the activation.
        tie_dropout: one dropout mask per (sequence, channel), shared along L (the S4
            reference's ``DropoutNd``); else element-wise.
        activation: ``gelu``, ``relu``, ``silu``, ``tanh`` or ``identity``.
        output: ``"glu"`` (linear H -> 2H then GLU) or ``"linear"`` (H -> H).
        bidirectional: add an anti-causal kernel (sees the future; no recurrent view).
        l_max: the sequence length the DPLR kernel is set up for (a kernel of length L <= l_max
            costs l_max, so set it to the training length; a longer one is computed out of place
            on every call, or set up once with ``layer.kernel.grow(L)``).
        chunk_size: state passing (:mod:`hippos.ops.chunked`): a causal layer runs a sequence
            longer than this in chunks of this many steps, carrying the SSM state (the output
            equals the one-pass forward to round-off; memory follows the chunk, not L). ``"auto"``
            (default): chunks of ``AUTO_CHUNK`` (65,536) above that length; None: always one
            pass. Bidirectional layers see the future and always run in one pass. ``forward``
            takes ``chunk_size=`` for one call too.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        mode: str = "dplr",
        init: str | None = None,
        disc: str | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        lr: float | None = None,
        dt_lr: float | None = None,
        b_clip: float | None = None,
        dropout: float = 0.0,
        tie_dropout: bool = False,
        activation: str = "gelu",
        output: str = "glu",
        bidirectional: bool = False,
        l_max: int = 1024,
        chunk_size: int | str | None = "auto",
    ):
        super().__init__()
        self.chunk_size = check_chunk_size(chunk_size)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
        if output not in ("glu", "linear"):
            raise ValueError(f"output must be 'glu' or 'linear', got {output!r}")
        self.d_model, self.d_state, self.mode, self.bidirectional = d_model, d_state, mode, bidirectional
        kernel_args = (mode, d_model, d_state, init, disc, dt_min, dt_max, lr, l_max, b_clip)
        self.kernel = _make_kernel(*kernel_args)
        self.kernel_rev = _make_kernel(*kernel_args) if bidirectional else None
        if dt_lr is not None:  # Δ at its own rate (the S4 LRA N-4 configs train it at the global lr)
            if isinstance(dt_lr, bool) or not isinstance(dt_lr, (int, float)) or not math.isfinite(dt_lr) or dt_lr <= 0:
                raise ValueError(f"dt_lr must be None or a finite number > 0, got {dt_lr!r}")
            for k in (self.kernel, self.kernel_rev):
                if k is not None:
                    k.log_dt._optim = {"lr": float(dt_lr), "weight_decay": 0.0}
        self.D = nn.Parameter(torch.randn(d_model))
        self.activation = ACTIVATIONS[activation]()
        self.dropout = SequenceDropout(dropout, tie=tie_dropout)
        self.output = nn.Linear(d_model, 2 * d_model if output == "glu" else d_model)
        self.glu = output == "glu"

    # ------------------------------------------------------------------ helpers
    def _check(self, u: torch.Tensor, dims: int = 3, what: str = "S4") -> None:
        if not torch.is_tensor(u) or u.dim() != dims or u.shape[-1] != self.d_model:
            shape = f"(B, L, {self.d_model})" if dims == 3 else f"(B, {self.d_model})"
            raise ValueError(f"{what} expects u of shape {shape}, got {tuple(getattr(u, 'shape', ())) or type(u).__name__}")
        if not u.is_floating_point():
            raise TypeError(f"{what} expects a floating tensor, got {u.dtype}")
        if dims == 3:  # the step checks its dtype only if it fails (see check_input_dtype)
            check_input_dtype(u, self.output.weight.dtype, what)

    def _out(self, z: torch.Tensor) -> torch.Tensor:
        y = self.output(self.dropout(self.activation(z)))
        return F.glu(y, dim=-1) if self.glu else y

    # ------------------------------------------------------------------ convolutional view
    def forward(
        self,
        u: torch.Tensor,
        state: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        rate: float = 1.0,
        return_state: bool = False,
        chunk_size: int | str | None = "layer",
    ):
        """``u: r(B L H)`` -> ``(y: r(B L H), next_state)``.

        ``state`` (from :meth:`default_state` or a previous call) is the SSM state before
        ``u[:, 0]``; chunked calls that carry it equal one call on the whole sequence.
        ``next_state`` is computed when a state is passed or ``return_state`` is set, else None.
        ``lengths: long(B)`` zeroes the padding after each sequence's end before the convolution
        (so the anti-causal half of a bidirectional layer does not see it). ``rate`` rescales
        the step size to Δ/rate (a signal sampled ``rate`` times as densely). ``chunk_size``
        (default: the layer's): run in chunks of that many steps, the state carried
        (:mod:`hippos.ops.chunked`); ignored by bidirectional layers.

        Dtypes: ``u`` has the dtype of the parameters, or any float16/bfloat16/float32 under
        ``torch.autocast``. The kernel, the FFT convolution and ``D u`` run in float32 (float64
        after ``.double()``); the output map then gets ``z`` in ``u``'s dtype, or in float32 under
        autocast, whose linear returns the autocast dtype. Empty inputs (B = 0 or L = 0) give
        empty outputs; with L = 0 the state passes through unchanged.
        """
        self._check(u)
        B, L, _ = u.shape
        if self.bidirectional and state is not None:
            raise ValueError("a bidirectional S4 layer sees the future: it has no state to carry")
        if state is not None:
            self.kernel._check_state(state, B)
        if lengths is not None:
            check_lengths(lengths, B, L)
            mask = valid_steps(lengths, L)  # (B L)
            u = u * mask[..., None]
        T = None if self.bidirectional else resolve_chunk(
            self.chunk_size if chunk_size == "layer" else check_chunk_size(chunk_size), L)
        if T is None:
            return self._forward_pass(u, state, rate, return_state)
        # state passing: every chunk's kernel is a prefix of the chunk-length one (computed once)
        K = self.kernel.cached(T, rate)
        keep = state is not None or return_state
        # and so is its spectrum, for every full chunk (the FFT of the kernel costs as much as a chunk's own)
        spec = None
        if L > T:
            with torch.no_grad():  # fft_conv's own backward gives K and D their gradients
                dtype, D = self.kernel.real_dtype, self.D
                spec = kernel_spectrum(K.to(dtype), None if D is None else D.to(dtype), None, conv_size(T, K))

        def chunk(uc, s, last):
            full = uc.shape[1] == T
            return self._forward_pass(uc, s, rate, keep or not last, K=K[:, : uc.shape[1]], spectrum=spec if full else None)

        # a zero state adds nothing to the first chunk; the last chunk's state only if asked for
        y, x = run_chunked(chunk, u, T, state)
        return y, (x if keep else None)

    def _forward_pass(self, u, state, rate: float, return_state: bool, K=None, spectrum=None):
        """One FFT pass over ``u: r(B L H)`` (already masked and checked); ``K``: the kernel of length
        L when the caller has it, ``spectrum`` its ``kernel_spectrum`` with D."""
        B, L, _ = u.shape
        uc = u.to(self.kernel.real_dtype)  # the SSM's compute dtype: float32, or float64
        if L == 0:
            z = uc
        else:
            # (B L H); a bidirectional layer's anti-causal kernel shares the same FFTs
            # (the kernels are computed once and reused while autograd is off and the weights stay)
            K_rev = self.kernel_rev.cached(L, rate) if self.bidirectional else None
            z = fft_conv(uc, self.kernel.cached(L, rate) if K is None else K, self.D, K_rev=K_rev, spectrum=spectrum)
            if state is not None:
                z = z + self.kernel.state_contribution(state, L, rate=rate)
        next_state = None
        if state is not None or return_state:
            if self.bidirectional:
                raise ValueError("a bidirectional S4 layer has no recurrent state")
            x0 = self.default_state(B).to(u.device) if state is None else state
            next_state = self.kernel.forward_state(uc, x0, rate=rate)
        return self._out(finish_dtype(z, u)), next_state

    # ------------------------------------------------------------------ recurrent view
    def default_state(self, batch_size: int) -> torch.Tensor:
        """The zero state ``(B, H, N')`` of the kernel (N' its recurrent state size)."""
        return self.kernel.default_state(batch_size)

    def setup_step(self, rate: float = 1.0):
        """Discretized step parameters: a pure function of the weights; cache it while stepping."""
        if self.bidirectional:
            raise ValueError("a bidirectional S4 layer sees the future: it cannot step")
        return self.kernel.setup_step(rate=rate)

    def step(self, u_t: torch.Tensor, state: torch.Tensor, params=None):
        """One time step, O(N) per channel for dplr and diag: ``u_t: r(B H)`` -> ``(y_t: r(B H), next_state)``.
        Dtypes as in :meth:`forward` (the SSM and ``D u`` in float32 or float64)."""
        self._check(u_t, 2, "S4.step")
        params = self.setup_step() if params is None else params
        z, next_state = self.kernel.step(u_t, state, params)  # checks the state; z: compute dtype
        z = z + self.D.to(z.dtype) * u_t.to(z.dtype)
        try:
            return self._out(finish_dtype(z, u_t)), next_state
        except RuntimeError:  # a dtype mismatch surfaces in the output linear: say so plainly
            err = dtype_error(u_t, self.output.weight.dtype, "S4.step")
            if err is not None:
                raise err from None
            raise
