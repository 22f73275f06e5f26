"""The H3 layer: a shift SSM on the keys, a diagonal SSM on per-head key-value outer products.

Paper: H3, "Hungry Hungry Hippos: Towards Language Modeling with State Space Models" (Fu, Dao,
Saab, Thomas, Rudra, Ré 2023, arXiv 2212.14052) §3.2, Fig. 1 and Algorithm 1. Derivation,
shapes and the generation cache: ``docs/h3.md``. On ``u: r(B L d)``, H' = d/h heads of size h:

    q, k, v = u W_Q, u W_K, u W_V                         # (B L d)
    k ← K̄_shift * k + D_shift ⊙ k                         # shift SSM, one per channel (d)
    kv[b, l, g, i, j] = k[b, l, g, i] · v[b, l, g, j]      # (B L H' h h)
    kv ← K̄_diag[g] * kv + D_diag[g] ⊙ kv                  # diag SSM, one per head g, shared by its h·h entries
    o[b, l, g, j] = Σ_i q[b, l, g, i] · kv[b, l, g, i, j]  # (B L H' h) = (B L d)
    y = o W_O

Channels are grouped head-major: channel ``g·h + i`` is entry i of head g. The diagonal SSM is
S4D (:class:`hippos.kernels.DiagKernel`, init ``"lin"``, bilinear: the paper's choice) with H'
channels; its state for a batch is ``c(B H' h·h M)`` (M = d_state/2 modes), as if the h·h entries
of a head were extra batch rows. No norm, activation or dropout inside the layer.

Both views share the layer contract (DESIGN.md): ``forward(u, state=None, return_state=False)
-> (y, next_state)``, ``step(u_t, state, params) -> (y_t, next_state)``, ``default_state(B)``,
``setup_step()`` (pure). A state is :class:`H3State` ``(shift: r(B d N_s), diag: c(B H' h·h M))``;
it does not grow with the sequence. Forward with a carried state equals one pass (FlashConv §4.2,
the kernels' ``state_contribution`` / ``forward_state``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from hippos.kernels import DiagKernel, ShiftKernel
from hippos.kernels.base import check_state_tensor
from hippos.ops.checks import check_input_dtype, dtype_error, finish_dtype
from hippos.ops.chunked import check_chunk_size, resolve_chunk, run_chunked
from hippos.ops.fftconv import conv_size, fft_conv, kernel_spectrum

__all__ = ["H3", "H3State", "H3Stepper"]


class H3State(NamedTuple):
    """Recurrent state of one H3 layer: ``shift: r(B d N_s)`` (the last N_s shift-SSM inputs when
    B = e₁) and ``diag: c(B H' h·h M)`` (the diag SSM's modes for every key-value entry)."""

    shift: torch.Tensor
    diag: torch.Tensor


class H3(nn.Module):
    """H3 layer on ``(B, L, d_model)``. See the module docstring.

    Args:
        d_model: model width d (channels of q, k, v and of the shift SSM).
        d_state: state size N of the diagonal SSM (N/2 complex modes; 64 in H3).
        head_dim: head size h; ``d_model`` must be a multiple of it (H' = d/h heads). h = 1 is
            the paper's synthetic and small-LM setting.
        shift_state: taps of the shift SSM (its state size; 64 in H3).
        init, disc: diagonal-SSM init and discretization (``"lin"``, ``"bilinear"``: S4D-Lin, H3 §3.2).
        train_shift_B: learn the shift SSM's B (init e₁) or keep it fixed.
        dt_min, dt_max: range of the log-uniform initial Δ of the diagonal SSM.
        lr: learning rate hinted on the SSM parameters (A, B, Δ; no weight decay): None (default)
            lets the trainer use ``min(lr, 1e-3)``, a number is used as given.
        chunk_size: state passing (:mod:`hippos.ops.chunked`): a sequence longer than this runs
            in chunks of this many steps with both SSMs' states carried (equal to one pass to
            round-off; memory follows the chunk). ``"auto"`` (default): chunks of 65,536 above
            that length; None: one pass. ``forward(chunk_size=...)`` for one call.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        head_dim: int = 1,
        shift_state: int = 64,
        init: str = "lin",
        disc: str = "bilinear",
        train_shift_B: bool = True,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        lr: float | None = None,
        chunk_size: int | str | None = "auto",
    ):
        super().__init__()
        self.chunk_size = check_chunk_size(chunk_size)
        for name, value in (("d_model", d_model), ("head_dim", head_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if d_model % head_dim:
            raise ValueError(f"head_dim={head_dim} must divide d_model={d_model}")
        self.d_model, self.head_dim, self.n_heads = d_model, head_dim, d_model // head_dim
        self.qkv_proj = nn.Linear(d_model, 3 * d_model)  # W_Q, W_K, W_V stacked
        self.shift = ShiftKernel(d_model=d_model, d_state=shift_state, train_B=train_shift_B, lr=lr)
        self.D_shift = nn.Parameter(torch.randn(d_model))
        self.diag = DiagKernel(d_model=self.n_heads, d_state=d_state, init=init, disc=disc, dt_min=dt_min, dt_max=dt_max, lr=lr)
        self.D_diag = nn.Parameter(torch.randn(self.n_heads))
        self.out_proj = nn.Linear(d_model, d_model)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, head_dim={self.head_dim}, n_heads={self.n_heads}"

    # ------------------------------------------------------------------ helpers
    @property
    def _entries(self) -> int:
        """E = h·h: the key-value entries per head that share one diagonal SSM."""
        return self.head_dim * self.head_dim

    def _check(self, u: torch.Tensor, dims: int, what: str) -> None:
        if not torch.is_tensor(u) or u.dim() != dims or u.shape[-1] != self.d_model:
            shape = "(B, L, d)" if dims == 3 else "(B, d)"
            raise ValueError(f"H3.{what} expects u of shape {shape} with d={self.d_model}, got {getattr(u, 'shape', type(u))}")
        if not u.is_floating_point():
            raise TypeError(f"H3.{what} expects a floating tensor, got {u.dtype}")
        if dims == 3:  # the step checks its dtype only if it fails (see check_input_dtype)
            check_input_dtype(u, self.qkv_proj.weight.dtype, f"H3.{what}")

    def _check_state(self, state, batch: int) -> H3State:
        """An :class:`H3State` ``(shift: r(B d N_s), diag: c(B H' h·h M))`` whose B is ``batch``;
        the message names the part, and the shape, batch or dtype that does not fit."""
        if not isinstance(state, tuple) or len(state) != 2:
            raise ValueError(f"H3 state must be an H3State(shift, diag) (from default_state or forward), got {type(state).__name__}")
        check_state_tensor(state[0], (self.d_model, self.shift.state_size), batch, False, "H3 state.shift")
        check_state_tensor(state[1], (self.n_heads, self._entries, self.diag.state_size), batch, True, "H3 state.diag")
        return H3State(*state)

    def _outer(self, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``kv[..., g, i, j] = k[..., g, i] v[..., g, j]``: ``(... d), (... d) -> (... H'·h·h)``."""
        h = self.head_dim
        kv = k.unflatten(-1, (self.n_heads, h, 1)) * v.unflatten(-1, (self.n_heads, 1, h))
        return kv.flatten(-3)

    def _contract(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """``o[..., g, j] = Σ_i q[..., g, i] kv[..., g, i, j]``: ``(... d), (... H'·h·h) -> (... d)``."""
        h = self.head_dim
        o = (q.unflatten(-1, (self.n_heads, h, 1)) * kv.unflatten(-1, (self.n_heads, h, h))).sum(-2)
        return o.flatten(-2)

    # The diagonal SSM runs on (B, L, H'·E) with its H' channels broadcast over the E entries of a
    # head. For state passing the E entries become batch rows of the kernel: (B·E, L, H').
    def _to_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``r(B L H'·E) -> r(B·E L H')``."""
        B, L, _ = x.shape
        return x.view(B, L, self.n_heads, self._entries).permute(0, 3, 1, 2).reshape(B * self._entries, L, self.n_heads)

    def _state_to_rows(self, s: torch.Tensor) -> torch.Tensor:
        """``c(B H' E M) -> c(B·E H' M)``."""
        return s.transpose(1, 2).reshape(s.shape[0] * self._entries, self.n_heads, s.shape[-1])

    def _state_from_rows(self, s: torch.Tensor, batch: int) -> torch.Tensor:
        """``c(B·E H' M) -> c(B H' E M)``."""
        return s.view(batch, self._entries, self.n_heads, s.shape[-1]).transpose(1, 2).contiguous()

    # ------------------------------------------------------------------ convolutional view
    def forward(self, u: torch.Tensor, state: H3State | None = None, return_state: bool = False,
                chunk_size: int | str | None = "layer"):
        """``u: r(B L d)`` -> ``(y: r(B L d), next_state: H3State | None)``.

        ``state`` is the state before ``u[:, 0]`` (from :meth:`default_state` or a previous call);
        chunked calls that carry it equal one call on the whole sequence. ``next_state`` is
        computed when a state is passed or ``return_state`` is set, else None. ``chunk_size``
        (default: the layer's): run in chunks of that many steps, the state carried.

        Dtypes: ``u`` has the dtype of the parameters, or any float16/bfloat16/float32 under
        ``torch.autocast``. Both SSMs (kernels, FFT convolutions, D terms) and the outer product
        run in float32 (float64 after ``.double()``); the contraction with q goes to the output
        map in ``u``'s dtype, or in float32 under autocast (whose linear returns the autocast
        dtype). Empty inputs (B = 0 or L = 0) give empty outputs; with L = 0 the state passes
        through unchanged.
        """
        self._check(u, 3, "forward")
        B, L, _ = u.shape
        if state is not None:
            state = self._check_state(state, B)
        T = resolve_chunk(self.chunk_size if chunk_size == "layer" else check_chunk_size(chunk_size), L)
        if T is None:
            return self._forward_pass(u, state, state is not None or return_state)
        K_shift, K_diag = self.shift.cached(T), self.diag.cached(T)  # every chunk's kernels are their prefixes
        keep = state is not None or return_state  # as in S4: no zero state added, no unwanted last state
        specs = self._spectra(K_shift, K_diag, T) if L > T else None  # and their FFTs, for every full chunk

        def chunk(uc, st, last):
            n = uc.shape[1]
            return self._forward_pass(uc, st, keep or not last, K_shift[:, :n], K_diag[:, :n], specs if n == T else None)

        y, s = run_chunked(chunk, u, T, state)
        return y, (s if keep else None)

    @torch.no_grad()  # fft_conv's own backward gives the kernels and D their gradients
    def _spectra(self, K_shift, K_diag, T: int):
        """``kernel_spectrum`` of the shift and the (per-entry) diag kernels with their D, at length T."""
        dtype, E = self.diag.real_dtype, self._entries
        K = K_diag.repeat_interleave(E, dim=0).to(dtype)
        return (kernel_spectrum(K_shift.to(dtype), self.D_shift.to(dtype), None, conv_size(T, K_shift)),
                kernel_spectrum(K, self.D_diag.repeat_interleave(E).to(dtype), None, conv_size(T, K)))

    def _forward_pass(self, u: torch.Tensor, state: H3State | None, keep: bool, K_shift=None, K_diag=None, specs=None):
        """One FFT pass over ``u: r(B L d)`` (checked); ``K_shift, K_diag``: the kernels of length L
        when the caller has them, ``specs`` their spectra (:meth:`_spectra`)."""
        B, L, _ = u.shape
        q, k, v = self.qkv_proj(u).chunk(3, dim=-1)  # (B L d) each
        cdtype = self.diag.real_dtype  # the SSMs' compute dtype: float32, or float64
        k, v = k.to(cdtype), v.to(cdtype)
        E = self._entries
        if L == 0:
            k_ssm = k
            kv = y = self._outer(k, v)  # (B 0 H'·E)
        else:
            # shift SSM on k (one channel per feature)
            spec_shift, spec_diag = (None, None) if specs is None else specs
            k_ssm = fft_conv(k, self.shift.cached(L) if K_shift is None else K_shift, self.D_shift, spectrum=spec_shift)
            if state is not None:
                k_ssm = k_ssm + self.shift.state_contribution(state.shift, L)
            # diag SSM on the per-head outer products, one kernel per head shared by its h·h entries
            kv = self._outer(k_ssm, v)  # (B L H'·E)
            K = (self.diag.cached(L) if K_diag is None else K_diag).repeat_interleave(E, dim=0)  # (H'·E L)
            y = fft_conv(kv, K, self.D_diag.repeat_interleave(E), spectrum=spec_diag)
            if state is not None:
                c = self.diag.state_contribution(self._state_to_rows(state.diag), L)  # (B·E L H')
                y = y + c.view(B, E, L, self.n_heads).permute(0, 2, 3, 1).reshape(B, L, self.n_heads * E)
        out = self.out_proj(finish_dtype(self._contract(q.to(cdtype), y), u))
        next_state = None
        if keep:
            s0 = self.default_state(B) if state is None else state
            shift = self.shift.forward_state(k, s0.shift)
            diag = self.diag.forward_state(self._to_rows(kv), self._state_to_rows(s0.diag))
            next_state = H3State(shift, self._state_from_rows(diag, B))
        return out, next_state

    # ------------------------------------------------------------------ recurrent view
    def default_state(self, batch_size: int) -> H3State:
        """Zero state: ``shift: r(B d N_s)``, ``diag: c(B H' h·h d_state/2)``."""
        shift = self.shift.default_state(batch_size)
        diag = self.diag.default_state(batch_size)  # (B H' M)
        diag = diag[:, :, None, :].expand(-1, -1, self._entries, -1).contiguous()
        return H3State(shift, diag)

    def setup_step(self) -> dict:
        """The step's parameters of both SSMs (a pure function of the weights; cache it)."""
        return {"shift": self.shift.setup_step(), "diag": self.diag.setup_step()}

    def step(self, u_t: torch.Tensor, state: H3State, params: dict | None = None):
        """One token in O(d·(N_s + h·N)): ``u_t: r(B d)`` -> ``(y_t: r(B d), next_state)``.

        Shift SSM: :meth:`ShiftKernel.step`. Diag SSM: the step of :meth:`DiagKernel.step`
        broadcast over the h·h entries of each head, ``x' = Ā x + B̄ kv``, ``y = 2·Re Σ_M C x'``.
        """
        self._check(u_t, 2, "step")
        state = self._check_state(state, u_t.shape[0])
        params = self.setup_step() if params is None else params
        cdtype = self.diag.real_dtype
        try:
            qkv = self.qkv_proj(u_t)
        except RuntimeError:  # a dtype mismatch surfaces in the first linear: say so plainly
            err = dtype_error(u_t, self.qkv_proj.weight.dtype, "H3.step")
            if err is not None:
                raise err from None
            raise
        q, k, v = qkv.to(cdtype).chunk(3, dim=-1)  # (B d) each
        k_ssm, shift = self.shift.step(k, state.shift, params["shift"])
        k_ssm = k_ssm + self.D_shift.to(cdtype) * k
        kv = self._outer(k_ssm, v).view(u_t.shape[0], self.n_heads, self._entries)  # (B H' E)
        p = params["diag"]
        with self.diag._no_autocast():
            dA, dB, C = (t[:, None, :] for t in (p["dA"], p["dB"], p["C"]))  # c(H' 1 M)
            x = dA * state.diag + dB * kv[..., None]  # c(B H' E M)
            y = 2 * (C * x).sum(-1).real
        y = y + self.D_diag.to(cdtype)[:, None] * kv  # (B H' E)
        out = self.out_proj(finish_dtype(self._contract(q, y.flatten(1)), u_t))
        return out, H3State(shift, x)

    def stepper(self, state: H3State, params: dict | None = None) -> H3Stepper:
        """The decode loop's stepper from ``state`` (:class:`H3Stepper`): :meth:`step` with its
        state updated in place in buffers of its own; equal to :meth:`step` to rounding."""
        if not isinstance(state, tuple) or len(state) != 2 or not torch.is_tensor(state[0]):
            raise ValueError(f"H3 state must be an H3State(shift, diag) (from default_state or forward), got {type(state).__name__}")
        state = self._check_state(state, state[0].shape[0])
        return H3Stepper(self, state, self.setup_step() if params is None else params)


class H3Stepper:
    """One H3 layer in a decode loop: ``step(u_t: r(B d)) -> y_t: r(B d)`` equals :meth:`H3.step`
    (to rounding), with the state kept in buffers of its own and updated in place. ``docs/h3.md`` §5.

    * **Shift SSM as a filter.** ``y_k = C x_k`` with ``x_k = S^k x_0 + Σ_{j<k} S^j B u_{k-j}`` is
      ``Σ_{j<N} K_j u_{k-j} + C S^k x_0``: the N-tap filter of :func:`~hippos.kernels.shift.fir_taps`
      (``D_shift`` folded into ``K_0``) over the last N inputs, plus the handed-in state's
      contribution, nonzero for the first N − 1 steps only (``state_contribution``, once). The
      inputs go to a time-major window ``r(2N B d)`` written one row a token (every N tokens the
      last N rows move to the front): one read of ``(N B d)`` a token instead of the shift, the
      axpy and the read-out of the state ``r(B d N)``.
    * **Diagonal SSM in place.** ``x ← Ā x + B̄ kv`` by one ``addcmul`` into the state ``c(B H' h·h M)``,
      read out as ``2·Re Σ_M C x = Σ (2 Re C, −2 Im C) · (Re x, Im x)`` on its real view.

    :attr:`state` rebuilds the :class:`H3State` (``ShiftKernel.forward_state`` of the window's last
    inputs from the handed-in state, a copy of the diagonal state): a value, like every state. The
    state handed in is never written. Inputs have the parameters' dtype (no autocast;
    :func:`hippos.layers.stepper.fast_steppers_apply`); as in :meth:`H3.step`, the SSMs and the
    read-out run in the kernels' float32 (float64 after ``.double()``) and the projections in the
    parameters' dtype (bfloat16 or float16 too).
    """

    def __init__(self, layer: H3, state: H3State, params: dict):
        from hippos.kernels.shift import fir_taps

        self.layer, self.x0 = layer, state.shift
        B, d, N = state.shift.shape
        self.N, self.batch = N, B
        with torch.no_grad():
            sp, dp = params["shift"], params["diag"]
            taps = fir_taps(sp["B"], sp["C"]).clone()  # (d N), newest input first
            taps[:, 0] += layer.D_shift.to(taps.dtype)
            self.taps = taps.flip(-1).t()[:, None, :].contiguous()  # (N 1 d): oldest .. newest
            self.window = state.shift.new_zeros(2 * N, B, d)  # rows [p - N, p): the last N inputs
            self.pos, self.steps = N, 0
            # C S^t x_0 for the steps t = 1 .. N-1: (N-1 B d); none for a zero state
            self.carry = None
            if N > 1 and bool(state.shift.any()):
                self.carry = layer.shift.state_contribution(state.shift, N - 1).transpose(0, 1).contiguous()
            self.x = state.diag.clone()  # c(B H' E M), updated in place
            self.dA, self.dB = dp["dA"][:, None, :], dp["dB"][:, None, :]  # c(H' 1 M)
            C2 = 2 * torch.view_as_real(dp["C"])  # r(H' M 2): (2 Re C, 2 Im C)
            self.readout = torch.stack([C2[..., 0], -C2[..., 1]], -1).reshape(layer.n_heads, 1, -1)  # r(H' 1 2M)
            self.D_diag = layer.D_diag.to(C2.dtype)[:, None]  # (H' 1)

    @property
    def state(self) -> H3State:
        n = min(self.steps, self.N)
        if n == 0:
            shift = self.x0.clone()
        else:
            inputs = self.window[self.pos - n : self.pos].transpose(0, 1)  # (B n d): the last n inputs
            shift = self.layer.shift.forward_state(inputs, self.x0)
        return H3State(shift, self.x.clone())

    def step(self, u_t: torch.Tensor) -> torch.Tensor:
        layer, N = self.layer, self.N
        B, d = u_t.shape
        H, h = layer.n_heads, layer.head_dim
        qkv = F.linear(u_t, layer.qkv_proj.weight, layer.qkv_proj.bias).to(self.window.dtype)  # the SSMs' dtype
        q, k, v = qkv.view(B, 3, d).unbind(1)  # (B d) each
        # shift SSM: the N-tap filter over the window (D_shift folded in)
        p = self.pos
        self.window[p].copy_(k)
        k_ssm = (self.window[p - N + 1 : p + 1] * self.taps).sum(0)  # (B d)
        if self.carry is not None and self.steps < N - 1:
            k_ssm += self.carry[self.steps]
        self.steps += 1
        self.pos = p + 1
        if self.pos == 2 * N:  # move the last N inputs to the front
            self.window[:N].copy_(self.window[N:])
            self.pos = N
        # diagonal SSM on the per-head outer products, in place
        if h == 1:
            kv = (k_ssm * v).view(B, H, 1)  # (B H' E)
        else:
            kv = (k_ssm.view(B, H, h, 1) * v.view(B, H, 1, h)).view(B, H, h * h)
        x = self.x
        torch.addcmul(self.dB * kv[..., None], self.dA, x, out=x)  # x' = Ā x + B̄ kv
        y = (torch.view_as_real(x).flatten(-2) * self.readout).sum(-1)  # 2 Re Σ_M C x': (B H' E)
        y = torch.addcmul(y, self.D_diag, kv)
        if h == 1:
            o = q * y.view(B, d)
        else:
            o = (q.view(B, H, h, 1) * y.view(B, H, h, h)).sum(-2).view(B, d)
        return F.linear(o.to(u_t.dtype), layer.out_proj.weight, layer.out_proj.bias)
