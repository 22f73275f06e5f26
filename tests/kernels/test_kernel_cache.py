"""The kernel kept for evaluation (``SSMKernel.cached``): reused only while autograd is off and no
parameter or buffer changed; any change (an optimizer step, ``load_state_dict``, ``grow``, a new
dtype) gives the freshly computed kernel."""

import pytest
import torch

from hippos.kernels import DenseKernel, DiagKernel, DPLRKernel, ShiftKernel
from hippos.layers import H3, S4
from hippos.ops.fftconv import fft_conv

pytestmark = pytest.mark.usefixtures("one_thread")

KERNELS = {
    "diag": lambda: DiagKernel(d_model=3, d_state=8),
    "dplr": lambda: DPLRKernel(d_model=3, d_state=8, l_max=32),
    "dense": lambda: DenseKernel(d_model=3, d_state=4),
    "shift": lambda: ShiftKernel(d_model=3, d_state=4),
}


@pytest.mark.parametrize("name", KERNELS)
def test_reused_while_nothing_changes(name):
    k = KERNELS[name]()
    with torch.no_grad():
        K1 = k.cached(32)
        assert k.cached(32) is K1  # the same tensor, not recomputed
        torch.testing.assert_close(K1, k(32), rtol=0, atol=0)
        assert k.cached(20) is not K1 and k.cached(20).shape[-1] == 20  # one entry per length


@pytest.mark.parametrize("name", ["diag", "dplr", "dense", "shift"])
def test_an_optimizer_step_invalidates_it(name):
    k = KERNELS[name]()
    opt = torch.optim.SGD(k.parameters(), lr=0.1)
    with torch.no_grad():
        before = k.cached(32)
    (k(32) ** 2).sum().backward()  # with autograd on, cached() is forward()
    opt.step()
    with torch.no_grad():
        after = k.cached(32)
        torch.testing.assert_close(after, k(32), rtol=0, atol=0)
    assert not torch.equal(after, before)


def test_grad_mode_never_shares_a_kernel():
    k = KERNELS["diag"]()
    K = k.cached(16)
    assert K.requires_grad and K.grad_fn is not None
    assert k.cached(16) is not K  # a kernel in a graph is never reused
    with torch.no_grad():
        assert not k.cached(16).requires_grad


def test_load_state_dict_dtype_and_grow_invalidate_it():
    k, other = KERNELS["dplr"](), KERNELS["dplr"]()
    with torch.no_grad():
        K0 = k.cached(32)
        k.load_state_dict(other.state_dict())
        torch.testing.assert_close(k.cached(32), other(32), rtol=0, atol=0)
        k.grow(64)  # rewrites C̃ and l_kernel in place: the same kernel up to rounding, recomputed
        K1 = k.cached(32)
        assert K1 is not K0
        torch.testing.assert_close(K1, k(32), rtol=0, atol=0)
        k.double()
        assert k.cached(32).dtype == torch.float64
        k.clear_cache()
        assert "_kernel_cache" not in k.__dict__


def test_inference_mode_kernel_is_not_used_outside_it():
    k = KERNELS["diag"]()
    for p in k.parameters():
        p.requires_grad_(False)
    with torch.inference_mode():
        K_inf = k.cached(16)
    K = k.cached(16)  # autograd on, no parameter needs grad: cached, but not the inference tensor
    assert K is not K_inf and not K.is_inference()
    u = torch.randn(2, 16, 3, requires_grad=True)
    fft_conv(u, K).sum().backward()  # usable in a graph
    assert u.grad is not None


@pytest.mark.parametrize("mode", ["dplr", "diag"])
def test_layer_eval_uses_it_and_matches_training_forward(mode):
    layer = S4(4, d_state=8, mode=mode, l_max=32, bidirectional=mode == "diag")
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-2)
    u = torch.randn(2, 32, 4)
    for _ in range(2):
        with torch.no_grad():
            y_eval, _ = layer(u)
        y, _ = layer(u)
        torch.testing.assert_close(y_eval, y.detach(), rtol=0, atol=0)
        y.square().mean().backward()
        opt.step()
        opt.zero_grad()
    assert "_kernel_cache" in layer.kernel.__dict__


def test_h3_eval_uses_it():
    layer = H3(8, d_state=8, head_dim=2, shift_state=4)
    u = torch.randn(2, 12, 8)
    with torch.no_grad():
        y1, _ = layer(u)
        y2, _ = layer(u)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    assert "_kernel_cache" in layer.diag.__dict__ and "_kernel_cache" in layer.shift.__dict__
    with torch.no_grad():
        layer.D_diag.add_(1.0)  # not a kernel parameter: the kernels stay valid, the output changes
        layer.diag.log_dt.add_(0.1)  # a kernel parameter: recomputed
        y3, _ = layer(u)
    y4, _ = layer(u)
    torch.testing.assert_close(y3, y4.detach(), rtol=0, atol=0)
