"""Numerics at length (issue 17): float32 state passing over a long sequence against a float64
one-pass reference, at the ends of the Δ range [1e-4, 1e-1]; kernels finite."""

from __future__ import annotations

import pytest
import torch

from hippos.layers import S4

L_LONG = 1 << 17  # long enough for 8 chunks of 2^14 and for Δ·L from 13 to 13,000


def _pair(mode: str, dt: float, l_max: int):
    torch.manual_seed(0)
    f32 = S4(d_model=3, d_state=64, mode=mode, dt_min=dt, dt_max=dt, l_max=l_max, chunk_size=None).requires_grad_(False)
    f64 = S4(d_model=3, d_state=64, mode=mode, dt_min=dt, dt_max=dt, l_max=l_max, chunk_size=None).requires_grad_(False)
    f64.load_state_dict(f32.state_dict())
    return f32, f64.double()


@pytest.mark.parametrize("dt", [1e-4, 1e-1])
@pytest.mark.parametrize(("mode", "L", "T"), [("diag", L_LONG, 1 << 14), ("dplr", 1 << 15, 1 << 12)])
def test_float32_state_passing_matches_float64_one_pass(mode, dt, L, T):
    f32, f64 = _pair(mode, dt, T)
    u = torch.randn(1, L, 3, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        y32, _ = f32(u, chunk_size=T)
        y64, _ = f64(u.double(), chunk_size=None)
        K = f32.kernel(T)
    assert torch.isfinite(K).all() and torch.isfinite(y32).all()
    for a in (0, L // 2, L - 4096):  # the start, the middle and the end of the sequence
        ref = y64[:, a : a + 4096]
        err = (y32[:, a : a + 4096].double() - ref).abs().max() / ref.abs().max()
        assert err < 1e-4, (a, err.item())
