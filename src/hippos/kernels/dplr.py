"""S4: the Diagonal Plus Low-Rank kernel (generating function, Woodbury, Cauchy) and its O(N) step.

Paper: S4, "Efficiently Modeling Long Sequences with Structured State Spaces" (Gu, Goel, Ré 2022,
arXiv 2111.00396), §3.2-3.3, Algorithm 1, Theorems 2-3, Appendix C.2 (the step) and C.3
(the kernel). Derivations with equation numbers: ``docs/kernels.md``.

In the unitary basis of :func:`hippos.hippo.dplr` the state matrix is ``A = Λ - P P*`` (rank R),
discretized bilinearly (S4 eq. 3). Only N/2 = M modes are stored (the others are their
conjugates; the system is real). Parameters: ``log(-Re Λ), Im Λ: r(H M)``; ``P: c(R H M)``,
``B: c(H M)``, ``C̃: c(H M)`` stored with ``view_as_real``; ``log Δ: r(H)``; the buffer
``l_kernel`` is the length L_k that ``C̃ = C (I - Ā^{L_k})`` refers to.

* kernel (Algorithm 1, App. C.3): at ``ω_k = e^{-2πik/L}``, ``K̂(ω) = (2/(1+ω)) [k00 - k01 (I + k11)⁻¹ k10]``,
  ``k_ab = Σ a b/(g(ω) - λ)`` over all N modes (:func:`hippos.kernels.cauchy.cauchy` adds each
  conjugate), ``g(ω) = (2/Δ)(1-ω)/(1+ω) = (2/Δ)·i·tan(πk/L)``. K̄ is real, so only
  ``k = 0..⌊L/2⌋`` are evaluated and ``K̄ = irfft(K̂, L)``; the Nyquist point ``ω = -1`` (g = ∞)
  takes its limit ``K̂(-1) = (Δ/2) Σ_N C̃ B``.
* length: a longer kernel doubles L_k, ``C̃_{2L} = C̃_L (I + Ā^L)`` (exact, no inverse), out of
  place and for that call only (``forward`` never rewrites a parameter or buffer; the explicit
  :meth:`DPLRKernel.grow` does it in place, once); a shorter one is the longer one truncated;
  another rate re-bases
  ``C̃' = C̃ (I - Ā^{L_k})⁻¹ (I - Ā_r^{L})`` through dense N×N matrices (complex128).
* step (O(N·R)): ``x' = (I - Δ/2·A)⁻¹ [(I + Δ/2·A) x + Δ B u]``; with the inverse by Woodbury the
  product collapses to ``Ā = E(1 + Δ/2·Λ) - Δ (E P S)(P* E)``, again diagonal plus rank R, applied in the
  halved basis: a full-basis inner product ``P* x`` of a conjugate-complete vector is
  ``2·Re(Σ_M conj(P) x)``, real, so every low-rank term is computed on M modes. Never
  diagonalizes A. ``C = C̃ (I - Ā^{L_k})⁻¹`` is solved once in :meth:`DPLRKernel.setup_step`.
"""

from __future__ import annotations

import math

import torch

from hippos.discretize import discretize
from hippos.hippo import MEASURES, clip_imag, dplr
from hippos.kernels.base import (
    SSMKernel,
    _check_pos_float,
    _check_pos_int,
    conj_extend,
    dense_state_scan,
    ssm_parameter,
)
from hippos.kernels.cauchy import cauchy

__all__ = ["DPLRKernel"]

_C128 = torch.complex128


class DPLRKernel(SSMKernel):
    """S4 kernel. ``forward(L, rate) -> r(H L)``; state ``c(B H N/2)``. See the module docstring.

    ``l_max`` is the initial kernel length L_k (set it to the training length: a kernel of
    length L <= L_k costs L_k; a longer one also costs its growth, dense N×N powers, on every
    call until :meth:`grow` sets L_k up for it); Re Λ is clamped to <= -1e-4 at init (LegT and
    FouT have Re Λ = 0, which ``log(-Re Λ)`` cannot hold). ``lr``: the optimizer hint of the SSM
    parameters (None: the trainer's default, see :func:`hippos.kernels.base.ssm_parameter`).
    ``b_clip``: clip the imaginary part of the initial ``V* B`` to [-b_clip, b_clip], as the S4
    reference's init does with 2 (:func:`hippos.hippo.clip_imag`); None (default): exact.
    """

    disc = "bilinear"

    def __init__(
        self,
        *,
        d_model: int,
        d_state: int = 64,
        measure: str = "legs",
        l_max: int = 1024,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        lr: float | None = None,
        b_clip: float | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(d_model=d_model, d_state=d_state, dt_min=dt_min, dt_max=dt_max, lr=lr, dtype=dtype)
        if d_state % 2:
            raise ValueError(f"DPLRKernel keeps N/2 conjugate modes and needs an even d_state, got {d_state}")
        if not isinstance(measure, str) or measure.lower() not in MEASURES:
            raise ValueError(f"unknown measure {measure!r}; expected one of {', '.join(MEASURES)}")
        self.measure = measure.lower()
        H, M = d_model, d_state // 2
        Lam, P, B, _ = dplr(self.measure, d_state, halve=True)  # c128 (M), (R M), (M)
        B = clip_imag(B, b_clip)
        self.rank = P.shape[0]
        self.log_neg_re = ssm_parameter(torch.log(-Lam.real.clamp(max=-1e-4)).expand(H, M).to(dtype).clone(), lr)
        self.im = ssm_parameter(Lam.imag.expand(H, M).to(dtype).clone(), lr)
        self.P = ssm_parameter(torch.view_as_real(P[:, None, :].expand(-1, H, M).clone()).to(dtype), lr)
        self.B = ssm_parameter(torch.view_as_real(B.expand(H, M).clone()).to(dtype), lr)
        # C̃ = C (I - Ā^L): random at init like C (variance 1/2 per part).
        self.C_tilde = torch.nn.Parameter(torch.view_as_real(torch.randn(H, M, dtype=_C128)).to(dtype))
        self.register_buffer("l_kernel", torch.tensor(_check_pos_int("l_max", l_max), dtype=torch.long))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", measure={self.measure!r}, rank={self.rank}, l_kernel={int(self.l_kernel)}"

    # ---- parameters -----------------------------------------------------------------------
    def _params(self, dtype: torch.dtype | None = None):
        """``Λ: c(H M)``, ``P: c(R H M)``, ``B: c(H M)``, ``C̃: c(H M)`` (compute dtype, or ``dtype``)."""
        Lam = torch.complex(-torch.exp(self._real(self.log_neg_re)), self._real(self.im))
        out = (Lam, self._complex(self.P), self._complex(self.B), self._complex(self.C_tilde))
        return out if dtype is None else tuple(t.to(dtype) for t in out)

    def _dense(self, Lam, P, B, dt):
        """Full-basis ``A = diag(Λ) - P P*: c(H N N)``, ``B: c(H N)`` and bilinear ``Ā, B̄``."""
        Pf = conj_extend(P)  # (R H N)
        A = torch.diag_embed(conj_extend(Lam)) - torch.einsum("rhn,rhm->hnm", Pf, Pf.conj())
        Bf = conj_extend(B)
        return (A, Bf) + discretize(A, Bf, dt.to(A.real.dtype), "bilinear")

    def _C_full(self, Lam, P, B, Ct) -> torch.Tensor:
        """``C = C̃ (I - Ā^{L_k})⁻¹: c128(H N)`` at the training step (rate 1)."""
        _, _, Ab, _ = self._dense(Lam, P, B, self.dt())
        I = torch.eye(Ab.shape[-1], dtype=Ab.dtype, device=Ab.device)
        M1 = I - torch.linalg.matrix_power(Ab, int(self.l_kernel))
        return torch.linalg.solve(M1.transpose(-1, -2), conj_extend(Ct)[..., None])[..., 0]

    def _rebase(self, Lam, P, B, Ct, rate: float, L: int) -> torch.Tensor:
        """``C̃' = C̃ (I - Ā^{L_k})⁻¹ (I - Ā_r^L): c(H M)``, the C̃ of length L at step Δ/rate."""
        dtype = Ct.dtype
        Lam, P, B, Ct = (t.to(_C128) for t in (Lam, P, B, Ct))
        C = self._C_full(Lam, P, B, Ct)
        _, _, Ab, _ = self._dense(Lam, P, B, self.dt(rate))
        I = torch.eye(Ab.shape[-1], dtype=Ab.dtype, device=Ab.device)
        Ct_new = (C[:, None, :] @ (I - torch.linalg.matrix_power(Ab, L)))[:, 0]
        return Ct_new[..., : Lam.shape[-1]].to(dtype)

    def _grown(self, Lam, P, B, Ct, L: int) -> tuple[torch.Tensor, int]:
        """``(C̃_{L'}: c128(H M), L')`` with ``L' = 2^j L_k`` the first doubling of ``l_kernel`` >= L:
        ``C̃_{2L} = C (I - Ā^{2L}) = C̃_L (I + Ā^L)`` each time (exact, no inverse), in complex128
        through dense N×N powers. Out of place and differentiable; ``(C̃, L_k)`` when ``L <= L_k``."""
        Lk = int(self.l_kernel)
        if L <= Lk:
            return Ct, Lk
        Lam, P, B, Ct = (t.to(_C128) for t in (Lam, P, B, Ct))
        _, _, Ab, _ = self._dense(Lam, P, B, self.dt())
        AL = torch.linalg.matrix_power(Ab, Lk)
        Ct = conj_extend(Ct)
        while Lk < L:
            Ct = Ct + (Ct[:, None, :] @ AL)[:, 0]
            Lk *= 2
            if Lk < L:
                AL = AL @ AL
        return Ct[..., : Lam.shape[-1]], Lk

    @torch.no_grad()
    def grow(self, L: int) -> None:
        """Set the kernel up for length L, in place: double ``l_kernel`` until it is >= L, with
        ``C̃ ← C̃ (I + Ā^{L_k})`` each time (the same C, so the same kernel and step).

        The one call that rewrites ``C̃`` and ``l_kernel``; :meth:`forward` never does (a longer
        kernel grows out of place for that call only, at the cost of the dense N×N powers each
        time). Call it once, outside any graph, before training or generating at a length above
        ``l_max``; ``l_kernel`` is a buffer, so a checkpoint keeps the meaning of C̃.
        """
        L = self._check_L(L)
        if L <= int(self.l_kernel):
            return
        with self._no_autocast():
            Ct, Lk = self._grown(*self._params(), L)
        self.C_tilde.copy_(torch.view_as_real(Ct.contiguous()).to(self.C_tilde.dtype))
        self.l_kernel.fill_(Lk)

    # ---- generating function ----------------------------------------------------------------
    def _generating(self, Lam, P, Ct, b, dt, L: int) -> torch.Tensor:
        """``K̂(ω_k) = (2/(1+ω)) C̃ (g(ω) - A)⁻¹ b`` (S4 Algorithm 1, App. C.3) for ``k = 0..⌊L/2⌋``.

        ``Lam, Ct: c(H M)``, ``P: c(R H M)``, ``b: c(... H M)`` (B for the kernel), ``dt: r(H)``.
        Returns ``c(... H ⌊L/2⌋+1)``, the rfft of the length-L kernel that ``C̃`` truncates.
        """
        R = self.rank
        nyquist = L % 2 == 0
        Fc = L // 2 + 1 - nyquist
        t = torch.tan(math.pi / L * torch.arange(Fc, dtype=dt.dtype, device=dt.device))  # (Fc)
        z = torch.complex(torch.zeros_like(dt[:, None] * t), (2 / dt)[:, None] * t)  # g(ω): (H Fc)
        Pc = P.conj()
        top = [Ct * b] + [Pc[r] * b for r in range(R)]  # (... H M) each: k00, k10
        low = [Ct * P[r] for r in range(R)] + [Pc[r] * P[s] for r in range(R) for s in range(R)]  # k01, k11
        if b.dim() == 2:  # one pass over the poles for all numerators
            k = cauchy(torch.stack(top + low), z, Lam)
            kb, kp = k[: 1 + R], k[1 + R :]
        else:
            kb = cauchy(torch.stack(top, dim=-3), z, Lam)  # (... 1+R H Fc)
            kp = cauchy(torch.stack(low), z, Lam)  # (R+R² H Fc)
        k00, k10, k01, k11 = kb[..., 0, :, :], kb[..., 1:, :, :], kp[:R], kp[R:]
        if R == 1:
            corr = k01[0] * k10[..., 0, :, :] / (1 + k11[0])
        else:  # (I + k11)⁻¹ k10, an R×R solve per (h, k)
            M_ = torch.eye(R, dtype=k11.dtype, device=k11.device) + k11.reshape(R, R, *k11.shape[1:]).permute(2, 3, 0, 1)
            sol = torch.linalg.solve(M_, k10.movedim(-3, -1)[..., None])[..., 0]  # (... H Fc R)
            corr = (k01.permute(1, 2, 0) * sol).sum(-1)
        Khat = torch.complex(torch.ones_like(t), t) * (k00 - corr)  # 2/(1+ω) = 1 + i·tan(πk/L)
        if nyquist:  # ω = -1: (Δ/2) Σ_N C̃ b = Δ·Re Σ_M C̃ b
            Kn = dt[:, None] * (Ct * b).sum(-1, keepdim=True).real
            Khat = torch.cat([Khat, Kn.to(Khat.dtype)], dim=-1)
        return Khat

    # ---- convolution view -----------------------------------------------------------------
    def forward(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """``K̄_l = C Ā^l B̄`` for ``l < L`` at step ``Δ/rate``. Returns ``r(H L)``.

        Pure: at rate 1 a kernel longer than ``l_kernel`` uses C̃ doubled out of place (and
        differentiably) to the first ``2^j l_kernel >= L``, for this call only; parameters and
        buffers stay as they are (:meth:`grow` is the explicit, in-place way to lengthen it).
        """
        L, rate = self._check_L(L), _check_pos_float("rate", rate)
        with self._no_autocast():
            Lam, P, B, Ct = self._params()
            if rate == 1.0:
                Lk = int(self.l_kernel)
                if L > Lk:
                    Ct, Lk = self._grown(Lam, P, B, Ct, L)
                    Ct = Ct.to(Lam.dtype)
                return torch.fft.irfft(self._generating(Lam, P, Ct, B, self.dt(), Lk), n=Lk)[..., :L]
            Ct = self._rebase(Lam, P, B, Ct, rate, L)
            return torch.fft.irfft(self._generating(Lam, P, Ct, B, self.dt(rate), L), n=L)

    def dense_params(self, rate: float = 1.0) -> dict:
        """Full basis (N modes): ``A = diag(Λ) - P P*: c128(H N N)``, ``B, C: c128(H N)`` with
        ``C = C̃ (I - Ā^{L_k})⁻¹``, ``dt: f64(H)``; bilinear, so ``dense.kernel(*discretize(A, B, dt,
        "bilinear"), C, L).real`` equals ``forward(L, rate)``."""
        with torch.no_grad():
            Lam, P, B, Ct = self._params(_C128)
            A, Bf, _, _ = self._dense(Lam, P, B, self.dt())
            return {"A": A, "B": Bf, "C": self._C_full(Lam, P, B, Ct), "dt": self.dt(rate).to(torch.float64)}

    # ---- recurrent view ---------------------------------------------------------------------
    @staticmethod
    def _apply_A(Lam, P, x):
        """``A x = Λ x - P (P* x)`` on the kept modes of a conjugate-complete x: ``P* x = 2 Re Σ_M conj(P) x``."""
        Px = 2 * torch.einsum("rhm,...hm->...hr", P.conj(), x).real
        return Lam * x - torch.einsum("rhm,...hr->...hm", P, Px.to(P.dtype))

    def setup_step(self, rate: float = 1.0) -> dict:
        """Tensors of the O(N·R) bilinear step at ``Δ/rate`` (S4 Appendix C.2). Pure; cache it.

        With ``h = Δ/2``, ``E = (1 - hΛ)⁻¹`` and ``S = (I + h P* E P)⁻¹: r(H R R)``, Woodbury gives
        ``(I - hA)⁻¹ = E - h E P S P* E``; multiplied by ``I + hA = (1 + hΛ) - h P P*`` and simplified
        (``I - h S P*EP = S``, ``1 + E(1 + hΛ) = 2E``) the transition is itself diagonal plus rank R:
        ``Ā = E(1 + hΛ) - 2h (E P S) (P* E)``, and ``B̄ = Δ (E - h E P S P* E) B``. Returned:
        ``dA = E(1 + hΛ): c(H M)``, ``U = 2h E P S: c(R H M)``, ``W = conj(P) E: c(R H M)``,
        ``dB = B̄: c(H M)``, ``C = C̃ (I - Ā^{L_k})⁻¹: c(H M)``. No N×N tensor.
        """
        with self._no_autocast():
            Lam, P, B, Ct = self._params()
            dt = self.dt(rate)
            h = (dt / 2)[:, None]  # (H 1)
            E = 1 / (1 - h * Lam)  # (H M)
            W = P.conj() * E  # the rows P* E: (R H M)
            G = 2 * torch.einsum("rhm,shm->hrs", W, P).real  # P* E P over N modes, real: (H R R)
            S = torch.linalg.inv(torch.eye(self.rank, dtype=G.dtype, device=G.device) + h[..., None] * G)
            U = 2 * h * torch.einsum("shm,hsr->rhm", E * P, S.to(P.dtype))  # 2h E P S: (R H M)
            EB = E * B  # (H M)
            wB = 2 * torch.einsum("rhm,hm->hr", W, B).real  # P* E B: (H R)
            dB = dt[:, None] * (EB - 0.5 * torch.einsum("rhm,hr->hm", U, wB.to(U.dtype)))
            C = self._C_full(*(t.to(_C128) for t in (Lam, P, B, Ct)))[..., : Lam.shape[-1]].to(Lam.dtype)
            return {"dA": E * (1 + h * Lam), "U": U, "W": W, "dB": dB, "C": C}

    def step(self, u_t: torch.Tensor, state: torch.Tensor, params: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``x' = Ā x + B̄ u_t`` with ``Ā = dA - U W`` (diagonal plus rank R, see :meth:`setup_step`),
        ``y_t = 2·Re(C x')``: O(N·R). ``u_t: r(B H)``, ``state: c(B H M)``. ``W x`` is the full-basis
        product ``P* E x_f = 2·Re Σ_M conj(P) E x``, a real R-vector."""
        u_t, x = self._check_step(u_t, state)
        p = params
        with self._no_autocast():
            if self.rank == 1:  # elementwise only (LegS, LegT, LagT): fewer, cheaper kernels than einsum
                w = 2 * (p["W"][0] * x).sum(-1, keepdim=True).real  # (B H 1)
                x = p["dA"] * x - p["U"][0] * w + p["dB"] * u_t[..., None]
            else:
                w = 2 * torch.einsum("rhm,bhm->bhr", p["W"], x).real  # (B H R)
                x = p["dA"] * x - torch.einsum("rhm,bhr->bhm", p["U"], w.to(x.dtype)) + p["dB"] * u_t[..., None]
            return 2 * (p["C"] * x).sum(-1).real, x

    # ---- state passing --------------------------------------------------------------------
    def forward_state(self, u: torch.Tensor, state: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """``x_L = Ā^L x0 + Σ_l Ā^{L-1-l} B̄ u_l`` by a chunked dense scan in the full basis
        (O(N²) per step): ``u: r(B L H)``, ``state: c(B H M)`` -> ``c(B H M)``."""
        u = self._check_u(u)
        x0 = self._check_state(state, u.shape[0])
        with self._no_autocast():
            Lam, P, B, _ = self._params(_C128)
            _, _, Ab, Bb = self._dense(Lam, P, B, self.dt(rate))
            x = dense_state_scan(Ab.to(x0.dtype), Bb.to(x0.dtype), u, conj_extend(x0))
            return x[..., : Lam.shape[-1]]

    def state_contribution(self, state: torch.Tensor, L: int, rate: float = 1.0) -> torch.Tensor:
        """``y_l = C Ā^{l+1} x0`` for ``l < L``: the generating function with ``B`` replaced by
        ``(I + Δ/2·A) x0 / Δ`` (since ``(I - ωĀ)⁻¹ Ā = (2/(1+ω))(g - A)⁻¹ (I + Δ/2·A)/Δ``).
        ``state: c(B H M)`` -> ``r(B L H)``."""
        L, rate = self._check_L(L), _check_pos_float("rate", rate)
        x0 = self._check_state(state)
        if x0.shape[0] == 0:  # a batch of 0 states (the FFT libraries refuse empty transforms)
            return torch.zeros(0, L, self.d_model, dtype=self.real_dtype, device=x0.device)
        with self._no_autocast():
            Lam, P, B, Ct = self._params()
            if not (rate == 1.0 and L == int(self.l_kernel)):
                Ct = self._rebase(Lam, P, B, Ct, rate, L)
            dt = self.dt(rate)
            b = (x0 + (dt / 2)[:, None] * self._apply_A(Lam, P, x0)) / dt[:, None]
            return torch.fft.irfft(self._generating(Lam, P, Ct, b, dt, L), n=L).transpose(1, 2)
