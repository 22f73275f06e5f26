"""S4 kernel (DPLRKernel) == dense oracle; growth; rate; step == convolution; chunks; gradients."""

import copy

import pytest
import torch

from hippos.kernels import DPLRKernel
from hippos.kernels.base import dense_oracle
from hippos.ops.fftconv import fft_conv

F64 = torch.float64
MEASURES = ["legs", "legt", "fout", "lagt"]
# FouT and LegT have Re Λ = 0, clamped to -1e-4: I - Ā^L is then ill-conditioned and the oracle's
# C = C̃ (I - Ā^L)⁻¹ loses digits (the kernel itself does not need that inverse).
TOL = {"legs": 1e-10, "legt": 1e-9, "fout": 1e-7, "lagt": 1e-10}


def make(measure="legs", l_max=64, H=3, N=8, seed=0):
    torch.manual_seed(seed)
    return DPLRKernel(d_model=H, d_state=N, measure=measure, l_max=l_max, dt_min=1e-2, dt_max=0.5).double()


def close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=0, atol=tol * max(1.0, b.abs().max().item()))


def run_steps(k, u, rate=1.0, x0=None):
    params, x, ys = k.setup_step(rate), (k.default_state(u.shape[0]) if x0 is None else x0), []
    for t in range(u.shape[1]):
        y, x = k.step(u[:, t], x, params)
        ys.append(y)
    return torch.stack(ys, dim=1), x


@pytest.mark.parametrize("measure", MEASURES)
def test_kernel_equals_oracle(measure):
    for L in (1, 7, 64, 100, 257):
        k = make(measure, l_max=L)  # C̃ refers to exactly this length: the generating function path
        K = k(L)
        assert K.shape == (3, L) and K.dtype == F64
        close(K, dense_oracle(k, L), TOL[measure])
    k = make(measure, l_max=300)  # shorter kernels are the l_max kernel truncated
    for L in (1, 7, 64, 100, 257):
        close(k(L), dense_oracle(k, L), TOL[measure])


def snapshot(k):
    """Every parameter and buffer (cloned) with its in-place version counter."""
    return {n: (t.detach().clone(), t._version) for n, t in [*k.named_parameters(), *k.named_buffers()]}


def assert_unchanged(k, snap):
    now = snapshot(k)
    assert now.keys() == snap.keys()
    for n, (t, version) in snap.items():
        assert torch.equal(now[n][0], t) and now[n][1] == version, n


@pytest.mark.parametrize("measure", ["legs", "legt", "fout"])
def test_longer_kernel_leaves_the_module_unchanged(measure):
    """forward at L > l_max grows C̃ out of place for that call: no parameter or buffer moves."""
    k = make(measure, l_max=7)
    snap, sd = snapshot(k), copy.deepcopy(k.state_dict())
    K = k(100)  # C̃ doubled 7 -> 14 -> ... -> 112 for this call only
    K.pow(2).sum().backward()  # the backward writes .grad only
    assert_unchanged(k, snap)
    assert int(k.l_kernel) == 7 and all(torch.equal(v, k.state_dict()[n]) for n, v in sd.items())
    close(K, dense_oracle(k, 100), TOL[measure])
    close(k(7), dense_oracle(k, 7), TOL[measure])  # the short kernel still refers to l_max
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in k.parameters())


@pytest.mark.parametrize("measure", ["legs", "legt", "fout"])
def test_explicit_grow_equals_out_of_place_growth(measure):
    """grow(L) rewrites C̃ and l_kernel in place; the kernel (and C) are those of the pure forward."""
    k = make(measure, l_max=7)
    C_before, K_pure, oracle = k.dense_params()["C"], k(100), dense_oracle(k, 100)
    k.grow(100)
    assert int(k.l_kernel) == 112
    close(k(100), K_pure, 1e-13)
    close(k(100), oracle, TOL[measure])
    close(k.dense_params()["C"], C_before, 1e3 * TOL[measure])  # the underlying C is unchanged
    assert torch.equal(k(7), k(100)[:, :7])
    snap = snapshot(k)
    k.grow(50)  # already long enough: nothing to do
    k(200)  # and the grown kernel grows out of place again
    assert_unchanged(k, snap)
    with pytest.raises(ValueError):
        k.grow(0)


def test_gradients_through_growth_equal_those_of_explicit_grow():
    """The gradient of the pure forward at L > l_max (autograd through the doubling) equals the
    derivative of "grow(L), then forward" with respect to the original parameters (central
    differences, float64); B does not enter the doubling, so its gradient equals the one after
    an explicit grow exactly."""
    k, L, eps = make("legs", l_max=4, H=2, N=4), 13, 1e-6
    g = torch.randn(2, L, dtype=F64)  # one upstream gradient
    (g * k(L)).sum().backward()
    assert int(k.l_kernel) == 4

    def explicit(name, idx, delta):
        k2 = copy.deepcopy(k)
        with torch.no_grad():
            t = getattr(k2, name)
            t[torch.unravel_index(torch.tensor(idx), t.shape)] += delta
            k2.grow(L)
            return (g * k2(L)).sum().item()

    for name, p in k.named_parameters():
        fd = torch.tensor([(explicit(name, i, eps) - explicit(name, i, -eps)) / (2 * eps) for i in range(p.numel())], dtype=F64)
        torch.testing.assert_close(p.grad.reshape(-1), fd, rtol=1e-6, atol=1e-7 * fd.abs().max().item(), msg=name)

    grown = copy.deepcopy(k)
    grown.zero_grad()
    grown.grow(L)
    (g * grown(L)).sum().backward()
    close(k.B.grad, grown.B.grad, 1e-12)


@pytest.mark.parametrize("rate", [2.0, 0.5])
@pytest.mark.parametrize("measure", ["legs", "legt"])
def test_rate_change_is_dt_over_rate(measure, rate):
    k = make(measure, l_max=64)
    close(k(50, rate=rate), dense_oracle(k, 50, rate), TOL[measure])
    u = torch.randn(1, 30, 3, dtype=F64)
    close(run_steps(k, u, rate)[0], fft_conv(u, k(30, rate=rate)), TOL[measure])
    assert int(k.l_kernel) == 64  # another rate never rewrites C̃


@pytest.mark.parametrize("measure", MEASURES)
def test_step_equals_convolution_and_chunks_equal_one_pass(measure):
    k = make(measure, l_max=41)
    u = torch.randn(2, 41, 3, dtype=F64)
    y = fft_conv(u, k(41))
    y_rec, x_rec = run_steps(k, u)
    close(y_rec, y, TOL[measure])
    x_all = k.forward_state(u, k.default_state(2))
    close(x_rec, x_all, TOL[measure])
    x1 = k.forward_state(u[:, :17], k.default_state(2))
    y2 = fft_conv(u[:, 17:], k(24)) + k.state_contribution(x1, 24)
    close(torch.cat([fft_conv(u[:, :17], k(17)), y2], dim=1), y, TOL[measure])
    close(k.forward_state(u[:, 17:], x1), x_all, TOL[measure])
    # at exactly l_kernel the state term uses C̃ as it is (no re-basing): still the recurrence
    close(k.state_contribution(x1, 41), run_steps(k, torch.zeros_like(u), x0=x1)[0], TOL[measure])


def test_step_is_low_rank_legs_n64():
    """LegS at N = 64 (eigenvectors of condition ~1e19): the O(N) Woodbury step stays exact,
    and its parameters hold no N×N matrix."""
    k = make("legs", l_max=64, H=2, N=64)
    params = k.setup_step()
    assert max(t.numel() for t in params.values()) <= 2 * 32 * k.rank
    u = torch.randn(1, 64, 2, dtype=F64)
    close(run_steps(k, u)[0], fft_conv(u, k(64)), 1e-9)


def test_gradcheck_tiny():
    k = make("legs", l_max=8, H=2, N=4)
    names = [n for n, _ in k.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in k.named_parameters())
    for L, rate in ((8, 1.0), (5, 1.0), (6, 2.0), (13, 1.0)):  # 13: grown out of place to 16
        f = lambda *ps: torch.func.functional_call(k, dict(zip(names, ps)), (L,), {"rate": rate})
        assert torch.autograd.gradcheck(f, params)
    x0 = torch.randn(2, 2, 2, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x0: k.state_contribution(x0, 8), (x0,))


def test_gradcheck_rank2_legt():
    k = make("legt", l_max=6, H=1, N=4)
    names = [n for n, _ in k.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in k.named_parameters())
    f = lambda *ps: torch.func.functional_call(k, dict(zip(names, ps)), (6,))
    assert torch.autograd.gradcheck(f, params)


def test_float32_matches_float64_and_ignores_autocast():
    torch.manual_seed(0)
    k32 = DPLRKernel(d_model=4, d_state=16, l_max=512)
    k64 = DPLRKernel(d_model=4, d_state=16, l_max=512).double()
    k64.load_state_dict(k32.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        K = k32(512)
    assert K.dtype == torch.float32
    close(K.double(), k64(512), tol=1e-4)


def test_optimizer_hints_state_and_checkpoint():
    k = DPLRKernel(d_model=4, d_state=8, lr=0.01, l_max=16)
    hinted = {n for n, p in k.named_parameters() if hasattr(p, "_optim")}
    assert hinted == {"log_dt", "log_neg_re", "im", "P", "B"}
    assert all(getattr(k, n)._optim == {"lr": 0.01, "weight_decay": 0.0} for n in hinted)  # as given
    assert DPLRKernel(d_model=4, d_state=8).P._optim == {"lr": None, "weight_decay": 0.0}  # the trainer's default
    assert "l_kernel" in k.state_dict()  # C̃'s length travels with the checkpoint
    assert k.default_state(3).shape == (3, 4, 4) and k.default_state(3).dtype == torch.complex64
    p = k.double().dense_params()
    assert p["A"].shape == (4, 8, 8) and p["C"].dtype == torch.complex128


def test_long_kernel_is_cheap():
    """L = 16384: the Cauchy kernel runs in chunks forward and backward (no (H, N, L) tensor)."""
    k = DPLRKernel(d_model=2, d_state=64, l_max=16384)
    K = k(16384)
    K.pow(2).sum().backward()
    assert K.shape == (2, 16384) and torch.isfinite(K).all() and torch.isfinite(k.C_tilde.grad).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        DPLRKernel(d_model=2, d_state=5)
    with pytest.raises(ValueError):
        DPLRKernel(d_model=2, d_state=4, measure="legx")
    with pytest.raises(ValueError):
        DPLRKernel(d_model=2, d_state=4, l_max=0)
    k = DPLRKernel(d_model=2, d_state=4)
    with pytest.raises(ValueError):
        k(0)
    with pytest.raises(ValueError):
        k(4, rate=-1.0)
    with pytest.raises(ValueError):
        k.state_contribution(torch.zeros(2, 2, 3, dtype=torch.complex64), 4)
