"""``b_clip``: the S4 reference's init clips Im(V* B) to [-2, 2] (REFERENCE.md §4, "An init detail
of the reference": on N 64 LegS 11 of the 32 kept modes change). hippos keeps the exact B by
default; ``b_clip`` gives the reference's init, in the kernels, the layer and the model config."""

from __future__ import annotations

import pytest
import torch

from hippos.hippo import clip_imag, dplr
from hippos.kernels.diag import DiagKernel
from hippos.kernels.dplr import DPLRKernel
from hippos.layers import S4
from hippos.models.backbone import SSMBackbone
from hippos.models.config import ModelConfig


def test_clip_imag_clamps_the_imaginary_part_only():
    B = torch.tensor([1 + 3j, -2 - 5j, 0.5 + 0.25j, 4 - 2j], dtype=torch.complex128)
    got = clip_imag(B, 2.0)
    torch.testing.assert_close(got, torch.tensor([1 + 2j, -2 - 2j, 0.5 + 0.25j, 4 - 2j], dtype=torch.complex128), rtol=0, atol=0)
    assert clip_imag(B, None) is B
    for bad in (0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="b_clip"):
            clip_imag(B, bad)


def test_legs_n64_clip_2_changes_11_of_32_modes():
    B = dplr("legs", 64, halve=True).B
    assert int((clip_imag(B, 2.0) != B).sum()) == 11 and len(B) == 32


@pytest.mark.parametrize("cls", [DPLRKernel, DiagKernel])
def test_kernels_start_from_the_clipped_b_and_nothing_else_changes(cls):
    torch.manual_seed(0)
    exact = cls(d_model=4, d_state=64, dtype=torch.float64)
    torch.manual_seed(0)
    clipped = cls(d_model=4, d_state=64, b_clip=2.0, dtype=torch.float64)
    B = torch.view_as_complex(exact.B)
    torch.testing.assert_close(torch.view_as_complex(clipped.B), clip_imag(B, 2.0), rtol=0, atol=0)
    assert B.imag.abs().max() > 2.0 >= torch.view_as_complex(clipped.B).imag.abs().max()
    for (name, p), (_, q) in zip(exact.named_parameters(), clipped.named_parameters()):
        if name != "B":
            torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    with torch.no_grad():  # the initial kernel changes substantially (more than 10% relative at L 1024)
        k0, k1 = exact(1024), clipped(1024)
    assert (k1 - k0).norm() > 0.1 * k0.norm()


def test_layer_and_model_config_reach_both_directions():
    layer = S4(8, d_state=16, mode="dplr", bidirectional=True, b_clip=0.5)
    for k in (layer.kernel, layer.kernel_rev):
        assert torch.view_as_complex(k.B).imag.abs().max() <= 0.5
    model = SSMBackbone(ModelConfig(d_model=8, n_layers=2, d_state=16, mode="diag", b_clip=0.5))
    kernels = [m for m in model.modules() if isinstance(m, DiagKernel)]
    assert len(kernels) == 2 and all(torch.view_as_complex(k.B).imag.abs().max() <= 0.5 for k in kernels)
    with pytest.raises(ValueError, match="b_clip"):
        ModelConfig(mode="dense", b_clip=2.0).validate()
    with pytest.raises(ValueError, match="b_clip"):
        ModelConfig(b_clip=-1.0).validate()
    with pytest.raises(ValueError, match="b_clip"):
        S4(8, d_state=16, mode="dense", b_clip=2.0)
