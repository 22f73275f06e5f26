"""State passing (issue 17): a causal layer run in chunks equals the one-pass forward, outputs,
final states and gradients, at odd chunk sizes and lengths (float64: round-off only)."""

from __future__ import annotations

import pytest
import torch

from hippos.layers import S4
from hippos.ops import chunked


def _layer(mode: str, **kw) -> S4:
    torch.manual_seed(0)
    layer = S4(d_model=5, d_state=8, mode=mode, l_max=64, chunk_size=None, **kw).double()
    layer.D.data.normal_()
    return layer


@pytest.mark.parametrize("mode", ["diag", "dplr", "dense"])
@pytest.mark.parametrize(("L", "T"), [(50, 7), (50, 50), (37, 12), (64, 1), (9, 4)])
def test_chunked_equals_one_pass_forward_state_and_gradients(mode, L, T):
    layer = _layer(mode)
    u = torch.randn(3, L, 5, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn_like(layer.default_state(3))  # a nonzero state before the sequence
    y1, s1 = layer(u, x0.clone())
    (y1.square().sum() + s1.abs().square().sum()).backward()
    g_u1, g_p1 = u.grad.clone(), {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
    u.grad = None
    layer.zero_grad()
    y2, s2 = layer(u, x0.clone(), chunk_size=T)
    (y2.square().sum() + s2.abs().square().sum()).backward()
    torch.testing.assert_close(y2, y1, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(s2, s1, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(u.grad, g_u1, rtol=1e-8, atol=1e-9)
    for n, p in layer.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, g_p1[n], rtol=1e-7, atol=1e-9, msg=n)


def test_layer_option_and_auto_threshold(monkeypatch):
    layer = _layer("diag")
    u = torch.randn(2, 40, 5, dtype=torch.float64)
    calls = []
    real = layer._forward_pass
    monkeypatch.setattr(layer, "_forward_pass", lambda *a, **k: calls.append(a[0].shape[1]) or real(*a, **k))
    with torch.no_grad():
        y_one, _ = layer(u)  # chunk_size None: one pass
        assert calls == [40]
        calls.clear()
        layer.chunk_size = 16
        y_ch, _ = layer(u)
        assert calls == [16, 16, 8]
        calls.clear()
        monkeypatch.setattr(chunked, "AUTO_CHUNK", 32)
        layer.chunk_size = "auto"
        y_auto, _ = layer(u)
        assert calls == [32, 8]
        calls.clear()
        layer(u[:, :32])  # not above the threshold: one pass
        assert calls == [32]
    torch.testing.assert_close(y_ch, y_one, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(y_auto, y_one, rtol=1e-9, atol=1e-10)


def test_chunked_with_lengths_masks_the_padding_first():
    layer = _layer("diag")
    u = torch.randn(3, 30, 5, dtype=torch.float64)
    lengths = torch.tensor([30, 11, 4])
    with torch.no_grad():
        y1, s1 = layer(u, lengths=lengths, return_state=True)
        y2, s2 = layer(u, lengths=lengths, return_state=True, chunk_size=7)
    torch.testing.assert_close(y2, y1, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(s2, s1, rtol=1e-9, atol=1e-10)


def test_bidirectional_layers_never_chunk():
    torch.manual_seed(0)
    layer = S4(d_model=4, d_state=8, mode="diag", bidirectional=True, chunk_size=8).double()
    u = torch.randn(2, 30, 4, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(u)[0], layer(u, chunk_size=None)[0])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "big"])
def test_bad_chunk_size_is_refused(bad):
    with pytest.raises(ValueError, match="chunk_size"):
        S4(d_model=4, d_state=8, mode="diag", chunk_size=bad)
    layer = S4(d_model=4, d_state=8, mode="diag")
    with pytest.raises(ValueError, match="chunk_size"):
        layer(torch.randn(1, 5, 4), chunk_size=bad)


@pytest.mark.parametrize("head_dim", [1, 2])
@pytest.mark.parametrize(("L", "T"), [(45, 8), (45, 45), (20, 3)])
def test_h3_chunked_equals_one_pass(head_dim, L, T):
    from hippos.layers import H3

    torch.manual_seed(1)
    layer = H3(d_model=4, d_state=8, head_dim=head_dim, shift_state=6, chunk_size=None).double()
    u = torch.randn(2, L, 4, dtype=torch.float64, requires_grad=True)
    s0 = layer.default_state(2)
    s0 = type(s0)(torch.randn_like(s0.shift), torch.randn_like(s0.diag))  # a nonzero state before

    def run(chunk):
        u.grad = None
        layer.zero_grad()
        y, s = layer(u, s0, chunk_size=chunk)
        (y.square().sum() + s.shift.square().sum() + s.diag.abs().square().sum()).backward()
        return y.detach(), s, u.grad.clone(), {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}

    y1, s1, gu1, gp1 = run(None)
    y2, s2, gu2, gp2 = run(T)
    torch.testing.assert_close(y2, y1, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(s2.shift, s1.shift, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(s2.diag, s1.diag, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(gu2, gu1, rtol=1e-8, atol=1e-9)
    assert gp1.keys() == gp2.keys()
    for n in gp1:
        torch.testing.assert_close(gp2[n], gp1[n], rtol=1e-7, atol=1e-9, msg=n)
