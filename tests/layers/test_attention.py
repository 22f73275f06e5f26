"""Causal attention with a KV cache: forward == looped step, prefix + cache == full forward, positions."""

from __future__ import annotations

import math

import pytest
import torch

from hippos.layers import KVCache, MultiHeadAttention

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def make(d=8, n_heads=2, **kw):
    return MultiHeadAttention(d, n_heads, **kw).double().eval()


def close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def materialized(layer, u):
    """softmax(q kᵀ/√d_head + causal mask) v, written out."""
    B, L, d = u.shape
    if layer.pos_emb is not None:
        u = u + layer.pos_emb.weight[:L]
    q, k, v = layer.qkv(u).view(B, L, 3, layer.n_heads, layer.d_head).permute(2, 0, 3, 1, 4)
    s = q @ k.transpose(-1, -2) / math.sqrt(layer.d_head)
    s = s.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    return layer.out_proj((s.softmax(-1) @ v).transpose(1, 2).reshape(B, L, d))


@pytest.mark.parametrize("pos", ["none", "learned"])
@pytest.mark.parametrize("n_heads", [1, 2, 4])
def test_forward_equals_reference_and_looped_step(pos, n_heads):
    layer = make(n_heads=n_heads, pos=pos, max_len=32)
    u = torch.randn(2, 13, 8, dtype=F64)
    y, cache = layer(u, return_state=True)
    close(y, materialized(layer, u))
    state, ys = layer.default_state(2), []
    params = layer.setup_step()
    for t in range(13):
        y_t, state = layer.step(u[:, t], state, params)
        ys.append(y_t)
    close(torch.stack(ys, 1), y)
    close(state, cache)
    assert isinstance(cache, KVCache) and cache.length == 13 and cache.keys.shape == (2, n_heads, 13, 8 // n_heads)


@pytest.mark.parametrize("pos", ["none", "learned"])
def test_prefix_plus_cache_equals_full_forward(pos):
    layer = make(pos=pos, max_len=32)
    u = torch.randn(2, 20, 8, dtype=F64)
    y, cache = layer(u, return_state=True)
    state, parts = None, []
    for a, b in [(0, 7), (7, 8), (8, 15), (15, 20)]:
        y_c, state = layer(u[:, a:b], state=state, return_state=True)
        parts.append(y_c)
    close(torch.cat(parts, 1), y)
    close(state, cache)


def test_a_cache_can_be_reused_to_branch():
    """The cache grows by concatenation: continuing twice from one state gives the same result."""
    layer = make()
    u = torch.randn(1, 10, 8, dtype=F64)
    _, prefix = layer(u[:, :6], return_state=True)
    keys = prefix.keys.clone()
    a, _ = layer(u[:, 6:], state=prefix)
    _, _ = layer(torch.randn(1, 3, 8, dtype=F64), state=prefix)
    b, _ = layer(u[:, 6:], state=prefix)
    close(a, b)
    assert torch.equal(prefix.keys, keys)


def test_in_place_store_equals_concatenation_and_branches_safely():
    """Outside autograd the cache is a view of a preallocated store appended in place; it must give
    the concatenating cache's results (to rounding: SDPA on a strided view; across store growth:
    > 64 slots), append without
    copying while there is room, and keep every state a caller holds unchanged when two
    continuations branch from one state."""
    from hippos.layers.attention import KVStore

    layer = make(pos="learned", max_len=200)
    u = torch.randn(2, 150, 8, dtype=F64)
    ref_y, ref_state = [], layer.default_state(2)  # with grad: the concatenating path
    for t in range(150):
        y_t, ref_state = layer.step(u[:, t], ref_state)
        ref_y.append(y_t)
    assert ref_state.store is None
    with torch.no_grad():
        _, state = layer(u[:, :5], return_state=True)  # prefill into a store
        ys, stores = [], []
        for t in range(5, 150):
            y_t, state = layer.step(u[:, t], state)
            ys.append(y_t)
            stores.append(state.store)
        assert isinstance(state.store, KVStore) and state.length == 150 and state.store.filled == 150
        assert len({id(st) for st in stores}) <= 3  # a handful of growths, not one copy per token
        torch.testing.assert_close(torch.stack(ys, 1), torch.stack(ref_y[5:], 1).detach(), rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(state.keys, ref_state.keys.detach(), rtol=1e-12, atol=1e-13)

        # branching: A -> B (in place, A's store is B's), then A -> C must copy and leave B intact
        _, a = layer(u[:, :10], return_state=True)
        a_keys = a.keys.clone()
        yb, b = layer.step(u[:, 10], a)
        assert b.store is a.store
        b_keys = b.keys.clone()
        other = torch.randn(2, 8, dtype=F64)
        _, c = layer.step(other, a)
        assert c.store is not a.store
        assert torch.equal(a.keys, a_keys) and torch.equal(b.keys, b_keys)  # nothing a caller holds changed
        yb2, _ = layer.step(u[:, 11], b)  # B continues correctly after the branch
        _, full = layer(torch.cat([u[:, :10], other[:, None]], 1), return_state=True)
        torch.testing.assert_close(c.keys, full.keys, rtol=0, atol=1e-14)
        ref = layer(u[:, :12])[0]
        torch.testing.assert_close(torch.stack([yb, yb2], 1), ref[:, 10:12], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["fused", "materialized"])
@pytest.mark.parametrize("pos", ["none", "learned"])
@pytest.mark.parametrize("batch", [1, 3])
def test_stepper_equals_forward_and_the_reference_step(batch, pos, impl):
    """AttentionStepper (the decode loop's step: in place, no checks) == forward == step, from a
    prefilled store and from the empty cache (no store: it is made, then grown past its 64
    preallocated slots); its state equals the forward's cache; the cache handed in keeps its
    contents; training mode changes nothing (no dropout in the stepper)."""
    from hippos.layers.attention import AttentionStepper

    layer = make(pos=pos, max_len=120, impl=impl, dropout=0.3)
    u = torch.randn(batch, 100, 8, dtype=F64)
    y_full, cache_full = layer.eval()(u, return_state=True)
    with torch.no_grad():
        for start in (0, 9):
            prefix = layer.default_state(batch) if start == 0 else layer(u[:, :start], return_state=True)[1]
            keys = prefix.keys.clone()
            s = layer.stepper(prefix)
            assert isinstance(s, AttentionStepper)
            layer.train()  # the stepper never drops out
            ys = [s.step(u[:, t]) for t in range(start, 100)]
            layer.eval()
            close(torch.stack(ys, 1), y_full[:, start:])
            close(s.state.keys, cache_full.keys)
            close(s.state.values, cache_full.values)
            assert s.state.length == 100 and s.state.store.filled == 100
            assert torch.equal(prefix.keys, keys)
            ref_y, _ = layer.step(u[:, start], prefix)  # the reference step from the same cache
            close(ys[0], ref_y)
        with pytest.raises(ValueError, match="max_len"):
            for t in range(25):
                s.step(u[:, t % 100])


def test_causal_and_positions_matter():
    layer = make(pos="none")
    u = torch.randn(1, 12, 8, dtype=F64)
    u2 = u.clone()
    u2[:, 7] += 1.0
    y, y2 = layer(u)[0], layer(u2)[0]
    torch.testing.assert_close(y2[:, :7], y[:, :7], rtol=0, atol=1e-12)
    assert (y2[:, 7:] - y[:, 7:]).abs().max() > 1e-6
    # without positions the last output is invariant to permuting the earlier tokens; with them it is not
    perm = torch.cat([torch.randperm(11), torch.tensor([11])])
    close(layer(u[:, perm])[0][:, -1], y[:, -1])
    learned = make(pos="learned", max_len=12)
    assert (learned(u[:, perm])[0][:, -1] - learned(u)[0][:, -1]).abs().max() > 1e-6


@pytest.mark.parametrize("pos", ["none", "learned"])
def test_materialized_impl_equals_fused_with_and_without_cache(pos):
    """impl="materialized" (softmax(q kᵀ/√d_head + mask) v written out) == the fused path: a fresh
    sequence (causal), a chunk after a cache (the offset mask) and one token (the whole cache)."""
    fused = make(pos=pos, max_len=32)
    mat = make(pos=pos, max_len=32, impl="materialized")
    mat.load_state_dict(fused.state_dict())
    u = torch.randn(2, 12, 8, dtype=F64)
    y, cache = fused(u[:, :7], return_state=True)
    y_m, cache_m = mat(u[:, :7], return_state=True)
    close(y_m, y)
    close(y_m, materialized(fused, u[:, :7]))
    close(mat(u[:, 7:11], state=cache_m)[0], fused(u[:, 7:11], state=cache)[0])
    close(mat.step(u[:, 7], cache_m)[0], fused.step(u[:, 7], cache)[0])
    with pytest.raises(ValueError, match="impl"):
        MultiHeadAttention(8, 2, impl="flash")


def test_dropout_only_in_training():
    layer = MultiHeadAttention(8, 2, dropout=0.5).double()
    u = torch.randn(2, 9, 8, dtype=F64)
    layer.eval()
    close(layer(u)[0], layer(u)[0])
    layer.train()
    assert (layer(u)[0] - layer(u)[0]).abs().max() > 1e-6


def test_bad_arguments():
    with pytest.raises(ValueError, match="divide"):
        MultiHeadAttention(8, 3)
    with pytest.raises(ValueError, match="max_len"):
        MultiHeadAttention(8, 2, pos="learned")
    with pytest.raises(ValueError, match="pos"):
        MultiHeadAttention(8, 2, pos="rotary")
    layer = make(max_len=10)
    with pytest.raises(ValueError, match="max_len"):
        layer(torch.zeros(1, 11, 8, dtype=F64))
    _, cache = layer(torch.zeros(1, 10, 8, dtype=F64), return_state=True)
    with pytest.raises(ValueError, match="max_len"):
        layer.step(torch.zeros(1, 8, dtype=F64), cache)
    with pytest.raises(ValueError, match="KVCache"):
        layer(torch.zeros(2, 3, 8, dtype=F64), state=cache)
    with pytest.raises(ValueError, match="MultiHeadAttention.forward"):
        layer(torch.zeros(1, 3, 7, dtype=F64))
