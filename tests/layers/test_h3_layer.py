"""The H3 layer: convolution == recurrence (any head_dim), chunked == one pass, causality, the math."""

from __future__ import annotations

import pytest
import torch

from hippos.layers import H3, H3State
from hippos.ops.fftconv import direct_conv

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def make(d=8, head_dim=1, N=8, Ns=4, **kw):
    return H3(d, d_state=N, head_dim=head_dim, shift_state=Ns, dt_min=0.01, dt_max=0.1, **kw).double()


def close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def run_steps(layer, u, state=None):
    params = layer.setup_step()
    state = layer.default_state(u.shape[0]) if state is None else state
    ys = []
    for t in range(u.shape[1]):
        y, state = layer.step(u[:, t], state, params)
        ys.append(y)
    return torch.stack(ys, 1), state


@pytest.mark.parametrize("head_dim", [1, 2, 4])
@pytest.mark.parametrize("L", [1, 3, 13])
def test_forward_equals_looped_step(head_dim, L):
    layer = make(head_dim=head_dim)
    u = torch.randn(2, L, 8, dtype=F64)
    y, final = layer(u, return_state=True)
    y_rec, state = run_steps(layer, u)
    close(y_rec, y)
    close(state, final)
    assert isinstance(final, H3State)
    assert final.shift.shape == (2, 8, 4) and final.shift.dtype == F64
    assert final.diag.shape == (2, 8 // head_dim, head_dim**2, 4) and final.diag.dtype == torch.complex128


@pytest.mark.parametrize("head_dim", [1, 2, 4])
def test_chunked_with_state_equals_one_pass(head_dim):
    layer = make(head_dim=head_dim)
    u = torch.randn(2, 23, 8, dtype=F64)
    y, x = layer(u, return_state=True)
    state, parts = layer.default_state(2), []
    for a, b in [(0, 2), (2, 3), (3, 9), (9, 23)]:  # chunks shorter and longer than the shift taps
        y_c, state = layer(u[:, a:b], state=state)
        parts.append(y_c)
    close(torch.cat(parts, 1), y)
    close(state, x)
    # the recurrence picks up from a convolution's state
    y_tail, s_tail = run_steps(layer, u[:, 9:], layer(u[:, :9], return_state=True)[1])
    close(y_tail, y[:, 9:])
    close(s_tail, x)


@pytest.mark.parametrize("head_dim", [1, 4])
def test_causal(head_dim):
    layer = make(head_dim=head_dim)
    u = torch.randn(1, 30, 8, dtype=F64)
    u2 = u.clone()
    u2[:, 17] += 1.0
    y, y2 = layer(u)[0], layer(u2)[0]
    torch.testing.assert_close(y2[:, :17], y[:, :17], rtol=0, atol=1e-12)
    assert (y2[:, 17:] - y[:, 17:]).abs().max() > 1e-6


@pytest.mark.parametrize("head_dim", [1, 2])
def test_matches_the_written_out_math(head_dim):
    """q, k, v; k ← shift SSM; kv = k ⊗ v per head; kv ← diag SSM per head; o = Σ_i q_i kv_ij."""
    layer = make(head_dim=head_dim)
    u = torch.randn(2, 11, 8, dtype=F64)
    L, h, Hp = 11, head_dim, 8 // head_dim
    W_Q, W_K, W_V = layer.qkv_proj.weight.chunk(3)
    b_Q, b_K, b_V = layer.qkv_proj.bias.chunk(3)
    q, k, v = u @ W_Q.T + b_Q, u @ W_K.T + b_K, u @ W_V.T + b_V
    k = direct_conv(k, layer.shift(L), layer.D_shift)
    kv = torch.einsum("blgi,blgj->blgij", k.view(2, L, Hp, h), v.view(2, L, Hp, h))
    K = layer.diag(L)  # (H' L)
    kv = torch.stack(
        [direct_conv(kv[..., i, j], K, layer.D_diag) for i in range(h) for j in range(h)], -1
    ).view(2, L, Hp, h, h)
    o = torch.einsum("blgi,blgij->blgj", q.view(2, L, Hp, h), kv).reshape(2, L, 8)
    close(layer(u)[0], layer.out_proj(o))


def test_defaults_follow_the_paper():
    layer = H3(16)
    assert layer.shift.d_state == 64 and layer.diag.d_state == 64 and layer.diag.state_size == 32
    assert layer.diag.init == "lin" and layer.diag.disc == "bilinear"
    s = layer.default_state(3)
    assert s.shift.shape == (3, 16, 64) and s.diag.shape == (3, 16, 1, 32)
    ssm_params = {n for n, p in layer.named_parameters() if hasattr(p, "_optim")}
    assert ssm_params == {"shift.B", "diag.log_dt", "diag.log_neg_re", "diag.im", "diag.B"}


@pytest.mark.parametrize("head_dim", [1, 2, 4])
@pytest.mark.parametrize("Ns", [1, 4])
@pytest.mark.parametrize("batch", [1, 3])
def test_stepper_equals_forward_and_the_reference_step(head_dim, Ns, batch):
    """H3Stepper (shift SSM as an N-tap filter over a window, diagonal state in place) == forward ==
    the reference step, from a zero and a nonzero state, with a trained (non-e₁) shift B, across the
    window's wrap-arounds (every N_s tokens); its state equals forward's after fewer than N_s
    steps, exactly N_s and many more; the state handed in is never written."""
    from hippos.layers.h3 import H3Stepper

    layer = make(head_dim=head_dim, Ns=Ns)
    with torch.no_grad():
        layer.shift.B.add_(0.3 * torch.randn_like(layer.shift.B))  # a trained B: the filter is not C
    u = torch.randn(batch, 30, 8, dtype=F64)
    y_full, _ = layer(u, return_state=True)
    with torch.no_grad():
        for start in (0, 5):
            s0 = layer.default_state(batch) if start == 0 else layer(u[:, :start], return_state=True)[1]
            copy = H3State(s0.shift.clone(), s0.diag.clone())
            stepper = layer.stepper(s0)
            assert isinstance(stepper, H3Stepper)
            ys = []
            for t in range(start, 30):
                ys.append(stepper.step(u[:, t]))
                n = t + 1 - start
                if n in (1, Ns - 1, Ns, Ns + 1, 2 * Ns + 3, 30 - start):
                    close(stepper.state, layer(u[:, : t + 1], return_state=True)[1])
            close(torch.stack(ys, 1), y_full[:, start:])
            close(ys[0], layer.step(u[:, start], s0)[0])
            close(s0, copy)
            assert torch.equal(s0.shift, copy.shift) and torch.equal(s0.diag, copy.diag)
    # float32: the same to float32 rounding
    layer32 = H3(8, d_state=8, head_dim=head_dim, shift_state=Ns)
    u32 = torch.randn(batch, 12, 8)
    with torch.no_grad():
        y32 = layer32(u32)[0]
        st = layer32.stepper(layer32.default_state(batch))
        close(torch.stack([st.step(u32[:, t]) for t in range(12)], 1), y32, tol=1e-4)


def test_fir_taps_are_the_shift_kernel():
    from hippos.kernels.shift import fir_taps

    layer = make(Ns=5)
    with torch.no_grad():
        layer.shift.B.copy_(torch.randn_like(layer.shift.B))
        close(fir_taps(layer.shift.B, layer.shift.C), layer.shift(5))


def test_float32_step_matches_forward_and_gradients_flow():
    layer = H3(8, d_state=8, head_dim=2, shift_state=4)
    u = torch.randn(2, 9, 8, requires_grad=True)
    y, _ = layer(u)
    assert y.dtype == torch.float32
    y.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
    with torch.no_grad():
        close(run_steps(layer, u.detach())[0], layer(u.detach())[0], tol=1e-4)


def test_gradcheck_through_state_passing():
    layer = make(d=4, head_dim=2, N=4, Ns=3)
    u = torch.randn(1, 5, 4, dtype=F64, requires_grad=True)
    s0 = layer(torch.randn(1, 4, 4, dtype=F64), return_state=True)[1]
    assert torch.autograd.gradcheck(lambda u: layer(u, state=s0)[0], (u,))


def test_bad_arguments():
    with pytest.raises(ValueError, match="head_dim"):
        H3(6, head_dim=4)
    layer = make()
    with pytest.raises(ValueError, match="H3.forward"):
        layer(torch.zeros(2, 5, 7, dtype=F64))
    with pytest.raises(TypeError):
        layer(torch.zeros(2, 5, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="state"):
        layer(torch.zeros(2, 5, 8, dtype=F64), state=layer.default_state(3))
    with pytest.raises(ValueError, match="state"):
        layer.step(torch.zeros(2, 8, dtype=F64), (torch.zeros(2, 8, 4),), layer.setup_step())
    with pytest.raises(ValueError, match="H3.step"):
        layer.step(torch.zeros(2, 1, 8, dtype=F64), layer.default_state(2), layer.setup_step())
