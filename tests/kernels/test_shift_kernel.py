"""H3 shift SSM (ShiftKernel) == dense oracle (kernel and scan); step == convolution; chunks; gradients."""

import pytest
import torch

from hippos.kernels import ShiftKernel, dense
from hippos.kernels.base import dense_oracle
from hippos.kernels.shift import shift_matrix
from hippos.ops.fftconv import fft_conv

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def make(H=3, N=8, train_B=True, perturb_B=True, seed=0):
    torch.manual_seed(seed)
    k = ShiftKernel(d_model=H, d_state=N, train_B=train_B).double()
    if perturb_B:  # a trained B is no longer e₁: test the general system
        with torch.no_grad():
            k.B.add_(0.3 * torch.randn_like(k.B))
    return k


def close(a, b, tol=1e-12):
    torch.testing.assert_close(a, b, rtol=0, atol=tol * max(1.0, b.abs().max().item()))


def run_steps(k, u, x=None):
    params, ys = k.setup_step(), []
    x = k.default_state(u.shape[0]) if x is None else x
    for t in range(u.shape[1]):
        y, x = k.step(u[:, t], x, params)
        ys.append(y)
    return torch.stack(ys, dim=1), x


def test_init_is_an_N_tap_filter_of_C():
    k = make(perturb_B=False)
    assert torch.equal(k.B, torch.eye(8, dtype=F64)[0].expand(3, 8))
    K = k(20)
    close(K[:, :8], k.C.detach())
    assert (K[:, 8:] == 0).all()
    close(k(5), k.C.detach()[:, :5])
    # the state is a shift register of the last N inputs
    u = torch.randn(2, 11, 3, dtype=F64)
    _, x = run_steps(k, u)
    close(x, u[:, -8:].flip(1).transpose(1, 2))


@pytest.mark.parametrize("N", [1, 4, 8])
@pytest.mark.parametrize("perturb_B", [False, True])
def test_kernel_equals_oracle(N, perturb_B):
    k = make(N=N, perturb_B=perturb_B)
    p = k.dense_params()
    assert k.disc == "forward_euler"
    # the oracle's discretization of (A, dt) reproduces the discrete system exactly
    from hippos.discretize import discretize

    Ab, Bb = discretize(p["A"], p["B"], p["dt"], k.disc)
    assert torch.equal(Ab, p["Ab"]) and torch.equal(Bb, p["Bb"])
    assert torch.equal(p["Ab"][0].real, shift_matrix(N))
    for L in (1, 3, N, N + 1, 37):
        K = k(L)
        assert K.shape == (3, L) and K.dtype == F64
        close(K, dense_oracle(k, L))
        close(K, dense.kernel(p["Ab"], p["Bb"], p["C"], L).real)


@pytest.mark.parametrize("perturb_B", [False, True])
def test_step_and_convolution_equal_dense_scan(perturb_B):
    k = make(perturb_B=perturb_B)
    p = k.dense_params()
    u = torch.randn(2, 29, 3, dtype=F64)
    x0 = torch.randn(2, 3, 8, dtype=F64)
    y_ref, x_ref = dense.scan(p["Ab"], p["Bb"], p["C"], None, u, x0=x0.to(torch.complex128))
    y_ref, x_ref = y_ref.real, x_ref.real
    y_rec, x_rec = run_steps(k, u, x0)
    close(y_rec, y_ref)
    close(x_rec, x_ref)
    y_conv = fft_conv(u, k(29)) + k.state_contribution(x0, 29)
    close(y_conv, y_ref)
    close(k.forward_state(u, x0), x_ref)


@pytest.mark.parametrize("L", [1, 3, 7, 8, 9, 30])
def test_state_passing_is_exact_for_every_length(L):
    k = make()
    p = k.dense_params()
    u = torch.randn(2, L, 3, dtype=F64)
    x0 = torch.randn(2, 3, 8, dtype=F64)
    y_ref, x_ref = dense.scan(p["Ab"], p["Bb"], p["C"], None, u, x0=x0.to(torch.complex128))
    close(k.forward_state(u, x0), x_ref.real)
    close(fft_conv(u, k(L)) + k.state_contribution(x0, L), y_ref.real)


def test_chunks_equal_one_pass():
    k = make()
    u = torch.randn(2, 41, 3, dtype=F64)
    y = fft_conv(u, k(41))
    x_all = k.forward_state(u, k.default_state(2))
    x, parts = k.default_state(2), []
    for a, b in [(0, 5), (5, 6), (6, 20), (20, 41)]:
        parts.append(fft_conv(u[:, a:b], k(b - a)) + k.state_contribution(x, b - a))
        x = k.forward_state(u[:, a:b], x)
    close(torch.cat(parts, 1), y)
    close(x, x_all)


def test_gradcheck_and_hints():
    k = make(H=2, N=4)
    names = [n for n, _ in k.named_parameters()]
    assert set(names) == {"B", "C"}
    assert k.B._optim == {"lr": None, "weight_decay": 0.0} and not hasattr(k.C, "_optim")
    params = tuple(p.detach().clone().requires_grad_() for _, p in k.named_parameters())
    f = lambda *ps: torch.func.functional_call(k, dict(zip(names, ps)), (7,))
    assert torch.autograd.gradcheck(f, params)
    x0 = torch.randn(2, 2, 4, dtype=F64, requires_grad=True)
    u = torch.randn(2, 5, 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x0: k.state_contribution(x0, 6), (x0,))
    assert torch.autograd.gradcheck(lambda u, x0: k.forward_state(u, x0), (u, x0))
    fixed = ShiftKernel(d_model=2, d_state=4, train_B=False)
    assert [n for n, _ in fixed.named_parameters()] == ["C"] and "B" in dict(fixed.named_buffers())


def test_float32_and_autocast():
    k = ShiftKernel(d_model=4, d_state=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        K = k(40)
    assert K.dtype == torch.float32
    assert k.default_state(2).dtype == torch.float32 and k.default_state(2).shape == (2, 4, 16)


def test_bad_arguments():
    k = ShiftKernel(d_model=2, d_state=4)
    with pytest.raises(ValueError, match="rate"):
        k(5, rate=0.5)
    with pytest.raises(ValueError):
        k(0)
    with pytest.raises(ValueError):
        ShiftKernel(d_model=0, d_state=4)
    with pytest.raises(TypeError):
        ShiftKernel(d_model=2, d_state=4, dtype=torch.float16)
    with pytest.raises(ValueError):
        k.step(torch.zeros(3, 2), k.default_state(2), k.setup_step())
    with pytest.raises(TypeError):
        k.step(torch.zeros(2, 2), k.default_state(2).to(torch.complex64), k.setup_step())
    with pytest.raises(ValueError):
        k.forward_state(torch.zeros(2, 5, 3), k.default_state(2))
