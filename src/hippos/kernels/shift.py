"""The shift SSM of H3: a learned N-tap causal filter written as a state space model.

Paper: H3, "Hungry Hungry Hippos: Towards Language Modeling with State Space Models" (Fu, Dao,
Saab, Thomas, Rudra, Ré 2023, arXiv 2212.14052) §3.1 ("Shift SSM"). Math: ``docs/h3.md``.

A discrete-time SISO system per channel h, defined directly in discrete time (no Δ):

    x_k = S x_{k-1} + B u_k,     y_k = C x_k          (no D: the layer adds it)

with S the N×N down-shift matrix (ones on the subdiagonal: ``(S x)_n = x_{n-1}``, ``(S x)_0 = 0``),
so the state is a shift register of the last N inputs. With ``B = e₁`` (its init) the state is
``x_k = (u_k, u_{k-1}, ..., u_{k-N+1})`` and the kernel is ``K̄_l = C S^l B = C_l`` for l < N,
0 after: a learned N-tap causal filter. B is trainable (as in the paper's code), and then

    K̄_l = Σ_m C_{m+l} B_m      (a correlation of C with B; zero for l >= N).

Shapes: ``B, C: r(H N)``, state ``x: r(B H N)`` (real). S is nilpotent (``S^N = 0``), so every
view is exact and cheap: kernel and state passing are length-2N FFT correlations/convolutions,
the step shifts the state (O(N)).

**Oracle.** ``dense_params`` returns ``A = S - I`` with ``dt = 1`` and ``disc = "forward_euler"``:
forward Euler gives ``Ā = I + Δ·A = S`` and ``B̄ = Δ·B = B`` exactly (1 + (-1) = 0 and 0 + 1 = 1 are
exact in floating point), so :func:`hippos.kernels.base.dense_oracle` reproduces this system
with no change to the discretization code. ``"Ab"`` and ``"Bb"`` (S and B) are returned as
well, for :func:`hippos.kernels.dense.scan` / :func:`~hippos.kernels.dense.kernel` directly.

**Sampling rate.** The system has no step size: ``rate`` must be 1 (ValueError otherwise).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hippos.kernels.base import (
    SSMKernel,
    _check_batch_size,
    _check_pos_float,
    _check_pos_int,
    ssm_parameter,
)
from hippos.ops.fftconv import fft_conv

__all__ = ["ShiftKernel", "fir_taps", "shift_matrix"]


def shift_matrix(N: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """The down-shift matrix ``S: (N N)``, ``S[n, n-1] = 1``: ``(S x)_n = x_{n-1}``, ``(S x)_0 = 0``."""
    return torch.diag(torch.ones(N - 1, dtype=dtype, device=device), -1)


def _correlate(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``out[..., k] = Σ_m a[..., m + k] b[..., m]`` for ``k < N`` (zero beyond the end of a).

    ``a, b: r(... N)`` (broadcast) -> ``r(... N)``, by an FFT of length 2N (no wrap-around:
    ``m + k <= 2N - 2``).
    """
    N = a.shape[-1]
    if a.numel() == 0 or b.numel() == 0:  # a batch of 0 states: the FFT libraries refuse empty transforms
        return torch.zeros(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.promote_types(a.dtype, b.dtype), device=a.device)
    a_f, b_f = torch.fft.rfft(a, n=2 * N), torch.fft.rfft(b, n=2 * N)
    return torch.fft.irfft(a_f * b_f.conj(), n=2 * N)[..., :N]


def fir_taps(B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """The system as an N-tap filter, ``K_j = C S^j B = Σ_m C_{m+j} B_m`` for ``j < N``: ``B, C: r(H N)``
    -> ``r(H N)``, written out (O(H N²), no FFT): the recurrent view's taps, ``y_k = Σ_j K_j u_{k-j}``
    once the state holds only inputs (:class:`hippos.layers.h3.H3Stepper`)."""
    N = C.shape[-1]
    windows = F.pad(C, (0, N - 1)).unfold(-1, N, 1)  # (H N N): windows[h, j, m] = C[h, j + m] (0 past N)
    return (windows * B[:, None, :]).sum(-1)


class ShiftKernel(SSMKernel):
    """H3 shift SSM: ``forward(L) -> K: r(H L)`` (``K_l = C_l`` when ``B = e₁``); state ``r(B H N)``.

    Args:
        d_model: channels H.
        d_state: taps N (the shift register length; 64 in H3).
        train_B: learn B (init ``e₁``, SSM optimizer hint: ``lr``, no weight decay) or keep it
            fixed at ``e₁`` (a buffer).
        lr: learning rate hinted on B (SSM parameter): None (default) lets the trainer use
            ``min(lr, 1e-3)``, a number is used as given; C has no hint (ordinary weight).
        dtype: float32 or float64 storage.

    C is drawn ``N(0, 1)`` per tap (the paper's code). See the module docstring for the math.
    """

    disc = "forward_euler"  # for the oracle: A = S - I, Δ = 1 gives Ā = S, B̄ = B exactly
    state_is_complex = False

    def __init__(self, *, d_model: int, d_state: int = 64, train_B: bool = True, lr: float | None = None, dtype: torch.dtype = torch.float32):
        nn.Module.__init__(self)  # no Δ: the base's log_dt is not created
        self.d_model = _check_pos_int("d_model", d_model)
        self.d_state = _check_pos_int("d_state", d_state)
        self.lr = None if lr is None else _check_pos_float("lr", lr)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        H, N = d_model, d_state
        B = torch.zeros(H, N, dtype=dtype)
        B[:, 0] = 1.0
        self.train_B = bool(train_B)
        if self.train_B:
            self.B = ssm_parameter(B, lr)
        else:
            self.register_buffer("B", B)
        self.C = nn.Parameter(torch.randn(H, N, dtype=dtype))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}, train_B={self.train_B}"

    # ---- dtypes (the base reads them from log Δ, which this kernel does not have) -----------
    @property
    def real_dtype(self) -> torch.dtype:
        return torch.float64 if self.C.dtype == torch.float64 else torch.float32

    def _no_autocast(self):
        return torch.autocast(device_type=self.C.device.type, enabled=False)

    def dt(self, rate: float = 1.0) -> torch.Tensor:
        """``Δ = 1: r(H)``: the system is discrete; only ``rate = 1`` is defined."""
        self._check_rate(rate)
        return torch.ones(self.d_model, dtype=self.real_dtype, device=self.C.device)

    @staticmethod
    def _check_rate(rate: float) -> None:
        if _check_pos_float("rate", rate) != 1.0:
            raise ValueError(f"the shift SSM is defined in discrete time and has no step size to rescale; rate must be 1, got {rate}")

    def _BC(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._real(self.B), self._real(self.C)

    def default_state(self, batch_size: int) -> torch.Tensor:
        """Zero state ``r(B H N)``; ``B = 0`` gives an empty one."""
        _check_batch_size(batch_size)
        return torch.zeros(batch_size, self.d_model, self.d_state, dtype=self.real_dtype, device=self.C.device)

    # ---- convolution view -----------------------------------------------------------------
    def forward(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """``K̄_l = C S^l B = Σ_m C_{m+l} B_m`` for ``l < L`` (zero for ``l >= N``). Returns ``r(H L)``."""
        L = self._check_L(L)
        self._check_rate(rate)
        with self._no_autocast():
            B, C = self._BC()
            K = _correlate(C, B)  # (H N)
            return K[:, :L] if L <= self.d_state else F.pad(K, (0, L - self.d_state))

    def dense_params(self, rate: float = 1.0) -> dict:
        """``A = S - I: c128(H N N)``, ``B, C: c128(H N)``, ``dt = 1: f64(H)``; with
        ``disc = "forward_euler"``, ``discretize(A, B, dt, disc) = (S, B)`` exactly. Also
        ``Ab = S``, ``Bb = B`` (the discrete system itself)."""
        self._check_rate(rate)
        with torch.no_grad():
            H, N = self.d_model, self.d_state
            S = shift_matrix(N, torch.complex128, self.C.device).expand(H, N, N).clone()
            eye = torch.eye(N, dtype=torch.complex128, device=self.C.device)
            B, C = (t.detach().to(torch.complex128) for t in (self.B, self.C))
            return {"A": S - eye, "B": B, "C": C, "dt": torch.ones(H, dtype=torch.float64, device=self.C.device), "Ab": S, "Bb": B.clone()}

    # ---- recurrent view ---------------------------------------------------------------------
    def setup_step(self, rate: float = 1.0) -> dict:
        """``{"B", "C"}: r(H N)`` in the compute dtype. Pure; cache it."""
        self._check_rate(rate)
        B, C = self._BC()
        return {"B": B, "C": C}

    def step(self, u_t: torch.Tensor, state: torch.Tensor, params: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``x' = S x + B u_t`` (shift the register by one, O(N)), ``y_t = C x'``.
        ``u_t: r(B H)``, ``state: r(B H N)`` -> ``(y_t: r(B H), x': r(B H N))``."""
        u_t, x = self._check_step(u_t, state)
        with self._no_autocast():
            x = F.pad(x[..., :-1], (1, 0)) + params["B"] * u_t[..., None]
            return (params["C"] * x).sum(-1), x

    # ---- state passing --------------------------------------------------------------------
    def forward_state(self, u: torch.Tensor, state: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """``x_L = S^L x0 + Σ_j S^j B u_{L-1-j}``: ``(S^L x0)_n = x0_{n-L}`` and the sum is the
        causal convolution of B with the last N inputs reversed (``w_j = u_{L-1-j}``), first N
        entries. ``u: r(B L H)``, ``state: r(B H N)`` -> ``r(B H N)``."""
        self._check_rate(rate)
        u = self._check_u(u)
        x0 = self._check_state(state, u.shape[0])
        N, L = self.d_state, u.shape[1]
        with self._no_autocast():
            B, _ = self._BC()
            w = u[:, -N:].flip(1)  # (B min(L,N) H): w_j = u_{L-1-j}
            w = F.pad(w, (0, 0, 0, N - w.shape[1]))  # (B N H)
            x = fft_conv(w, B).transpose(1, 2)  # (B H N): Σ_{j<=n} B_{n-j} w_j
            if L < N:
                x = x + F.pad(x0[..., : N - L], (L, 0))
            return x

    def state_contribution(self, state: torch.Tensor, L: int, rate: float = 1.0) -> torch.Tensor:
        """``y_l = C S^{l+1} x0 = Σ_m C_{m+l+1} x0_m`` for ``l < L`` (zero for ``l >= N - 1``).
        ``state: r(B H N)`` -> ``r(B L H)``."""
        L = self._check_L(L)
        self._check_rate(rate)
        x0 = self._check_state(state)
        N = self.d_state
        with self._no_autocast():
            _, C = self._BC()
            y = _correlate(C, x0)[..., 1:]  # (B H N-1): lag l+1
            y = y[..., :L] if L <= N - 1 else F.pad(y, (0, L - (N - 1)))
            return y.transpose(1, 2)
