"""S4D: the diagonal SSM kernel (a Vandermonde product) and its O(N) recurrent step.

Paper: S4D, "On the Parameterization and Initialization of Diagonal State Space Models"
(Gu, Gupta, Goel, Ré 2022, arXiv 2206.11893). With ``A = diag(a)``, N/2 conjugate modes kept:

* discretization (§3, eq. 5): ZOH ``Ā = e^{Δa}, B̄ = (e^{Δa} - 1)/a · B`` or bilinear
  ``Ā = (1 + Δa/2)/(1 - Δa/2), B̄ = Δ B/(1 - Δa/2)`` (:func:`hippos.discretize.discretize_diag`);
* kernel (eq. 6): ``K̄_l = 2·Re Σ_n C_n B̄_n Ā_n^l``, chunked by :func:`hippos.kernels.vandermonde.vandermonde`;
* step: ``x ← Ā x + B̄ u``, ``y = 2·Re(C x)``, O(N) per step.

Parameters (H channels, M = N/2): ``log(-Re a): r(H M)``, ``Im a: r(H M)`` (so ``Re a < 0`` always,
S4D §4), ``B, C: c(H M)`` stored with ``view_as_real``, ``log Δ: r(H)``. Inits from
:func:`hippos.hippo.diag_init`; ``B = 1`` except for ``init="legs"``, which takes the ``B`` of the
DPLR form of HiPPO-LegS (``V* B``, S4D-LegS reproduces S4's kernel at init); ``C`` complex normal
with variance 1/2 per real and imaginary part. ``b_clip`` clips ``Im B`` at init as the S4
reference's ``B_clip`` does (:func:`hippos.hippo.clip_imag`; None, the default: exact).
"""

from __future__ import annotations

import torch

from hippos.discretize import discretize_diag
from hippos.hippo import DIAG_INITS, clip_imag, diag_init, dplr
from hippos.kernels.base import SSMKernel, conj_extend, ssm_parameter
from hippos.kernels.vandermonde import (
    vandermonde_real,
    vandermonde_real_lh,
    vandermonde_state,
)

__all__ = ["DiagKernel", "DIAG_DISCRETIZATIONS"]

DIAG_DISCRETIZATIONS = ("zoh", "bilinear")


class DiagKernel(SSMKernel):
    """S4D kernel. ``forward(L, rate) -> r(H L)``; state ``c(B H N/2)``. See the module docstring."""

    def __init__(
        self,
        *,
        d_model: int,
        d_state: int = 64,
        init: str = "legs",
        disc: str = "zoh",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        lr: float | None = None,
        b_clip: float | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(d_model=d_model, d_state=d_state, dt_min=dt_min, dt_max=dt_max, lr=lr, dtype=dtype)
        if d_state % 2:
            raise ValueError(f"DiagKernel keeps N/2 conjugate modes and needs an even d_state, got {d_state}")
        if not isinstance(init, str) or init.lower() not in DIAG_INITS:
            raise ValueError(f"unknown init {init!r}; expected one of {', '.join(DIAG_INITS)}")
        if disc not in DIAG_DISCRETIZATIONS:
            raise ValueError(f"unknown disc {disc!r}; expected one of {', '.join(DIAG_DISCRETIZATIONS)}")
        self.init, self.disc = init.lower(), disc
        H, M = d_model, d_state // 2
        a = diag_init(self.init, d_state)  # c128 (M)
        B = dplr("legs", d_state, halve=True).B if self.init == "legs" else torch.ones(M, dtype=torch.complex128)
        B = clip_imag(B, b_clip)  # the S4 reference's B_clip (None: exact)
        C = torch.randn(H, M, dtype=torch.complex128)  # torch's complex normal: variance 1/2 per part
        self.log_neg_re = ssm_parameter(torch.log(-a.real).expand(H, M).to(dtype).clone(), lr)
        self.im = ssm_parameter(a.imag.expand(H, M).to(dtype).clone(), lr)
        self.B = ssm_parameter(torch.view_as_real(B.expand(H, M).clone()).to(dtype), lr)
        self.C = torch.nn.Parameter(torch.view_as_real(C).to(dtype))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", init={self.init!r}"

    # ---- parameters and discretization ------------------------------------------------------
    def _params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``a, B, C: c(H M)`` in the compute dtype."""
        a = torch.complex(-torch.exp(self._real(self.log_neg_re)), self._real(self.im))
        return a, self._complex(self.B), self._complex(self.C)

    def _discrete(self, rate: float):
        """``log Ā, Ā, B̄, C: c(H M)`` at step ``Δ/rate``. ``log Ā = Δa`` exactly for ZOH."""
        a, B, C = self._params()
        dt = self.dt(rate)
        dA, dB = discretize_diag(a, B, dt, self.disc)
        log_dA = dt[:, None] * a if self.disc == "zoh" else torch.log(dA)
        return log_dA, dA, dB, C

    # ---- convolution view -----------------------------------------------------------------
    def forward(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """``K̄_l = 2·Re Σ_n C_n B̄_n Ā_n^l`` (S4D eq. 6), ``l < L``. Returns ``r(H L)``."""
        L = self._check_L(L)
        with self._no_autocast():
            log_dA, _, dB, C = self._discrete(rate)
            return 2 * vandermonde_real(C * dB, log_dA, L)

    def dense_params(self, rate: float = 1.0) -> dict:
        """Full basis (N = 2M modes, conjugates appended): ``A: c128(H N N)`` diagonal,
        ``B, C: c128(H N)``, ``dt: f64(H)``; ``dense.kernel(*discretize(A, B, dt, self.disc), C, L).real``
        equals ``forward(L, rate)``."""
        with torch.no_grad():
            a, B, C = (conj_extend(t).to(torch.complex128) for t in self._params())
            return {"A": torch.diag_embed(a), "B": B, "C": C, "dt": self.dt(rate).to(torch.float64)}

    # ---- recurrent view ---------------------------------------------------------------------
    def setup_step(self, rate: float = 1.0) -> dict:
        """``{"dA", "dB", "C"}: c(H M)``. A pure function of the parameters; cache it."""
        with self._no_autocast():
            _, dA, dB, C = self._discrete(rate)
            return {"dA": dA, "dB": dB, "C": C}

    def step(self, u_t: torch.Tensor, state: torch.Tensor, params: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``x' = Ā x + B̄ u_t``, ``y_t = 2·Re(C x')``. ``u_t: r(B H)``, ``state: c(B H M)``."""
        u_t, x = self._check_step(u_t, state)
        with self._no_autocast():
            x = params["dA"] * x + params["dB"] * u_t[..., None]
            return 2 * (params["C"] * x).sum(-1).real, x

    # ---- state passing --------------------------------------------------------------------
    def forward_state(self, u: torch.Tensor, state: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """``x_L = Ā^L x0 + B̄ Σ_l Ā^{L-1-l} u_l``: ``u: r(B L H)``, ``state: c(B H M)`` -> ``c(B H M)``."""
        u = self._check_u(u)
        x0 = self._check_state(state, u.shape[0])
        with self._no_autocast():
            log_dA, _, dB, _ = self._discrete(rate)
            L = u.shape[1]
            return torch.exp(L * log_dA) * x0 + dB * vandermonde_state(u, log_dA)  # Σ_l Ā^{L-1-l} u_l: (B H M)

    def state_contribution(self, state: torch.Tensor, L: int, rate: float = 1.0) -> torch.Tensor:
        """``y_l = 2·Re Σ_n C_n Ā_n^{l+1} x0_n`` for ``l < L``: ``state: c(B H M)`` -> ``r(B L H)``."""
        L = self._check_L(L)
        x0 = self._check_state(state)
        with self._no_autocast():
            log_dA, dA, _, C = self._discrete(rate)
            return vandermonde_real_lh(2 * C * dA * x0, log_dA, L)  # (B L H), contiguous

