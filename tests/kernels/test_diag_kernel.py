"""S4D kernel (DiagKernel) == dense oracle; step == convolution; chunked == one pass; rate; gradients."""

import pytest
import torch

from hippos.hippo import DIAG_INITS
from hippos.kernels import DiagKernel
from hippos.kernels.base import dense_oracle
from hippos.ops.fftconv import fft_conv

F64 = torch.float64


def make(init="legs", disc="zoh", H=3, N=8, seed=0, **kw):
    torch.manual_seed(seed)
    return DiagKernel(d_model=H, d_state=N, init=init, disc=disc, dt_min=1e-2, dt_max=0.5, **kw).double()


def close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=0, atol=tol * max(1.0, b.abs().max().item()))


def run_steps(k, u, rate=1.0):
    params, x, ys = k.setup_step(rate), k.default_state(u.shape[0]), []
    for t in range(u.shape[1]):
        y, x = k.step(u[:, t], x, params)
        ys.append(y)
    return torch.stack(ys, dim=1), x


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
@pytest.mark.parametrize("init", DIAG_INITS)
def test_kernel_equals_oracle(init, disc):
    k = make(init, disc)
    for L in (1, 7, 100, 257):
        K = k(L)
        assert K.shape == (3, L) and K.dtype == F64
        close(K, dense_oracle(k, L))


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
@pytest.mark.parametrize("init", ["legs", "inv", "real"])
def test_step_equals_convolution_and_chunks_equal_one_pass(init, disc):
    k = make(init, disc)
    u = torch.randn(2, 41, 3, dtype=F64)
    y = fft_conv(u, k(41))
    y_rec, x_rec = run_steps(k, u)
    close(y_rec, y)
    x_all = k.forward_state(u, k.default_state(2))
    close(x_rec, x_all)
    # two chunks with the state carried: y2 = K * u2 + C Ā^{l+1} x1
    x1 = k.forward_state(u[:, :17], k.default_state(2))
    y2 = fft_conv(u[:, 17:], k(24)) + k.state_contribution(x1, 24)
    close(torch.cat([fft_conv(u[:, :17], k(17)), y2], dim=1), y)
    close(k.forward_state(u[:, 17:], x1), x_all)


@pytest.mark.parametrize("rate", [2.0, 0.5, 3.0])
def test_rate_change_is_dt_over_rate(rate):
    k = make("inv", "zoh")
    assert torch.allclose(k.dense_params(rate)["dt"], k.dense_params()["dt"] / rate)
    close(k(60, rate=rate), dense_oracle(k, 60, rate))
    # the step at that rate reproduces the convolution at that rate
    u = torch.randn(1, 30, 3, dtype=F64)
    close(run_steps(k, u, rate)[0], fft_conv(u, k(30, rate=rate)))


def test_rate_zoh_continuous_time_invariance():
    """ZOH and a rate r = 1/2: two steps of Δ equal one of 2Δ, so K_{1/2}[l] = K̄ of the pair sums."""
    k = make("lin", "zoh")
    u = torch.randn(1, 20, 3, dtype=F64)
    u2 = u.repeat_interleave(2, dim=1)  # the same signal sampled twice as densely (rate 2)
    y2 = fft_conv(u2, k(40, rate=2.0))
    y1 = fft_conv(u, k(20))
    close(y2[:, 1::2], y1)


def test_gradcheck_tiny():
    k = make("legs", "zoh", H=2, N=4)
    names = [n for n, _ in k.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in k.named_parameters())
    f = lambda *ps: torch.func.functional_call(k, dict(zip(names, ps)), (8,))
    assert torch.autograd.gradcheck(f, params)
    x0 = torch.randn(2, 2, 2, dtype=torch.complex128, requires_grad=True)
    u = torch.randn(2, 5, 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x0: k.state_contribution(x0, 6), (x0,))
    assert torch.autograd.gradcheck(lambda u, x0: k.forward_state(u, x0), (u, x0))


def test_float32_matches_float64_and_ignores_autocast():
    torch.manual_seed(0)
    k32 = DiagKernel(d_model=4, d_state=16, init="inv")
    k64 = DiagKernel(d_model=4, d_state=16, init="inv").double()
    k64.load_state_dict(k32.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        K = k32(500)
    assert K.dtype == torch.float32
    close(K.double(), k64(500), tol=1e-4)


def test_optimizer_hints_and_dtypes():
    k = DiagKernel(d_model=4, d_state=8, lr=1e-2)
    hinted = {n for n, p in k.named_parameters() if hasattr(p, "_optim")}
    assert hinted == {"log_dt", "log_neg_re", "im", "B"}
    for n in hinted:
        assert getattr(k, n)._optim == {"lr": 1e-2, "weight_decay": 0.0}  # as given, no cap
    assert DiagKernel(d_model=4, d_state=8).B._optim == {"lr": None, "weight_decay": 0.0}  # the trainer decides
    for bad in (0.0, -1e-3, float("nan"), float("inf"), True, "1e-3"):
        with pytest.raises(ValueError, match="lr"):
            DiagKernel(d_model=4, d_state=8, lr=bad)
    assert all(p.dtype == torch.float32 for p in k.parameters())
    k = k.double()
    assert hasattr(k.B, "_optim") and k.B.dtype == F64
    assert k.default_state(3).shape == (3, 4, 4) and k.default_state(3).dtype == torch.complex128
    p = k.dense_params()
    assert p["A"].shape == (4, 8, 8) and p["A"].dtype == torch.complex128 and p["dt"].dtype == F64


def test_long_kernel_is_cheap():
    """L = 16384 with H 8: the Vandermonde product never builds (H, N, L)."""
    k = DiagKernel(d_model=8, d_state=64)
    K = k(16384)
    assert K.shape == (8, 16384) and torch.isfinite(K).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        DiagKernel(d_model=2, d_state=5)
    with pytest.raises(ValueError):
        DiagKernel(d_model=2, d_state=4, init="nope")
    with pytest.raises(ValueError):
        DiagKernel(d_model=2, d_state=4, disc="euler")
    with pytest.raises(ValueError):
        DiagKernel(d_model=2, d_state=4, dt_min=0.1, dt_max=0.01)
    k = DiagKernel(d_model=2, d_state=4)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError):
            k(bad)
    with pytest.raises(ValueError):
        k(4, rate=0.0)
    with pytest.raises(ValueError):
        k.step(torch.zeros(3, 2), k.default_state(2), k.setup_step())
    with pytest.raises(TypeError):
        k.step(torch.zeros(2, 2), k.default_state(2).real, k.setup_step())
    with pytest.raises(ValueError):
        k.forward_state(torch.zeros(2, 5, 3), k.default_state(2))
