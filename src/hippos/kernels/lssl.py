"""LSSL: a dense (unstructured) learned state matrix; kernel by blocked powers, O(N²) step.

Paper: LSSL, "Combining Recurrent, Convolutional, and Continuous-time Models with Linear State
Space Layers" (Gu, Johnson, Goel, Saab, Dao, Rudra, Ré 2021, arXiv 2110.13985): §2.2 (GBT
discretization, eq. 4), §3.2 (the kernel ``K̄_l = C Ā^l B̄``, eq. 5), §4.1 and Table 5/6 (HiPPO
vs random A). Any real ``A: r(H N N)``, learned with ``B, C: r(H N)`` and ``log Δ: r(H)``.

Inits (``init``): a HiPPO measure name (``(A, B)`` of :func:`hippos.hippo.transition`, in the LTI
form ``x' = A x + B u`` that S4 uses), or ``"random"``, the LSSL ablation: ``A = G/√N - s·I`` with
``G_ij ~ N(0, 1)`` (so the spectrum of ``G/√N`` fills the unit disk, circular law) and the shift
``s = 1/2 + max Re eig(G/√N)`` per channel, putting the rightmost eigenvalue exactly at -1/2
(the ``Re Λ`` of the S4 inits); ``B`` stays LegS's ``√(2n+1)`` so only A changes. ``C ~ N(0, 1)``.

The kernel is :func:`hippos.kernels.base.dense_power_products` (``O(N³ log L + N L)`` per
channel, ``O(N √L)`` memory, no (H, N, L) tensor); the state is real, ``r(B H N)``.
"""

from __future__ import annotations

import math

import torch

from hippos.discretize import discretize
from hippos.hippo import MEASURES, transition
from hippos.kernels.base import (
    SSMKernel,
    dense_power_products,
    dense_state_scan,
    ssm_parameter,
)

__all__ = ["DenseKernel", "DENSE_INITS", "DENSE_DISCRETIZATIONS"]

DENSE_INITS = MEASURES + ("random",)
DENSE_DISCRETIZATIONS = ("bilinear", "zoh", "forward_euler", "backward_euler")


def random_A(H: int, N: int) -> torch.Tensor:
    """``A = G/√N - (1/2 + max Re eig(G/√N)) I``, ``G ~ N(0, 1)``: ``f64(H N N)``, rightmost eigenvalue -1/2."""
    G = torch.randn(H, N, N, dtype=torch.float64) / math.sqrt(N)
    shift = 0.5 + torch.linalg.eigvals(G).real.amax(-1)  # (H)
    return G - shift[:, None, None] * torch.eye(N, dtype=torch.float64)


class DenseKernel(SSMKernel):
    """LSSL kernel with a dense A. ``forward(L, rate) -> r(H L)``; state ``r(B H N)``."""

    state_is_complex = False

    def __init__(
        self,
        *,
        d_model: int,
        d_state: int = 64,
        init: str = "legs",
        disc: str = "bilinear",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        lr: float | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(d_model=d_model, d_state=d_state, dt_min=dt_min, dt_max=dt_max, lr=lr, dtype=dtype)
        if not isinstance(init, str) or init.lower() not in DENSE_INITS:
            raise ValueError(f"unknown init {init!r}; expected one of {', '.join(DENSE_INITS)}")
        if disc not in DENSE_DISCRETIZATIONS:
            raise ValueError(f"unknown disc {disc!r}; expected one of {', '.join(DENSE_DISCRETIZATIONS)}")
        self.init, self.disc = init.lower(), disc
        H, N = d_model, d_state
        if self.init == "random":
            A, B = random_A(H, N), transition("legs", N)[1]
        else:
            A, B = transition(self.init, N)
        self.A = ssm_parameter(A.expand(H, N, N).to(dtype).clone(), lr)
        self.B = ssm_parameter(B.expand(H, N).to(dtype).clone(), lr)
        self.C = torch.nn.Parameter(torch.randn(H, N, dtype=torch.float64).to(dtype))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", init={self.init!r}"

    def _discrete(self, rate: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``Ā: r(H N N)``, ``B̄: r(H N)``, ``C: r(H N)`` at step ``Δ/rate``."""
        Ab, Bb = discretize(self._real(self.A), self._real(self.B), self.dt(rate), self.disc)
        return Ab, Bb, self._real(self.C)

    def forward(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """``K̄_l = C Ā^l B̄`` (LSSL eq. 5) for ``l < L``. Returns ``r(H L)``."""
        L = self._check_L(L)
        with self._no_autocast():
            Ab, Bb, C = self._discrete(rate)
            return dense_power_products(Ab, C, Bb, L)

    def dense_params(self, rate: float = 1.0) -> dict:
        """``A: c128(H N N)``, ``B, C: c128(H N)``, ``dt: f64(H)`` (the parameters themselves)."""
        with torch.no_grad():
            A, B, C = (t.to(torch.complex128) for t in (self.A, self.B, self.C))
            return {"A": A, "B": B, "C": C, "dt": self.dt(rate).to(torch.float64)}

    def setup_step(self, rate: float = 1.0) -> dict:
        """``{"dA": r(H N N), "dB": r(H N), "C": r(H N)}``. A pure function of the parameters."""
        with self._no_autocast():
            Ab, Bb, C = self._discrete(rate)
            return {"dA": Ab, "dB": Bb, "C": C}

    def step(self, u_t: torch.Tensor, state: torch.Tensor, params: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``x' = Ā x + B̄ u_t``, ``y_t = C x'``: O(N²). ``u_t: r(B H)``, ``state: r(B H N)``."""
        u_t, x = self._check_step(u_t, state)
        with self._no_autocast():
            x = torch.einsum("hnm,bhm->bhn", params["dA"], x) + params["dB"] * u_t[..., None]
            return (params["C"] * x).sum(-1), x

    def forward_state(self, u: torch.Tensor, state: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """``x_L = Ā^L x0 + Σ_l Ā^{L-1-l} B̄ u_l``: ``u: r(B L H)``, ``state: r(B H N)`` -> ``r(B H N)``."""
        u = self._check_u(u)
        x0 = self._check_state(state, u.shape[0])
        with self._no_autocast():
            Ab, Bb, _ = self._discrete(rate)
            return dense_state_scan(Ab, Bb, u, x0)

    def state_contribution(self, state: torch.Tensor, L: int, rate: float = 1.0) -> torch.Tensor:
        """``y_l = C Ā^{l+1} x0`` for ``l < L``: ``state: r(B H N)`` -> ``r(B L H)``."""
        L = self._check_L(L)
        x0 = self._check_state(state)
        with self._no_autocast():
            Ab, _, C = self._discrete(rate)
            x1 = torch.einsum("hnm,bhm->bhn", Ab, x0)
            return dense_power_products(Ab, C, x1, L).transpose(1, 2)
