"""Causal multi-head self-attention with a key-value cache, on the sequence-layer contract.

Papers: "Attention Is All You Need" (Vaswani et al. 2017, arXiv 1706.03762 §3.2.2, multi-head
attention; §3.5 / learned absolute positions as in GPT); used as the attention layers of hybrid
H3 models (H3, arXiv 2212.14052 §3.3 and Table 2's attention baseline). ``docs/h3.md``.

    p = u + P[pos]                (only when pos="learned"; pos is the absolute position)
    q, k, v = p W_Q, p W_K, p W_V, split into n_heads heads of size d/n_heads
    o = softmax(q kᵀ/√(d/n_heads) + causal mask) v    (torch's scaled_dot_product_attention)
    y = o W_O

**The cache is the state.** :class:`KVCache` ``(keys, values): r(B n_heads T d_head)`` holds the
keys and values of the T tokens seen so far (T is also the position of the next token).
``forward(u, state)`` attends from the L new tokens to the ``T + L`` cached-plus-new keys (query
``i`` sees keys ``j <= T + i``) and returns the cache grown by L; ``step`` is the case L = 1.
Unlike an SSM state, the cache grows with the sequence.

**Appending without copying, states stay values.** Outside autograd (generation, evaluation) the
keys and values live in a preallocated :class:`KVStore` with spare room, and a cache is a view of
its first T slots: appending writes the new slots in place, O(L·d), instead of copying the whole
cache (``torch.cat`` made a 64 × 1536-token decode step ~9× slower on CPU than the attention
itself). A store grows geometrically (×1.25, at least 64 slots), so the copies amortize to O(d)
per token. Only the newest cache of a store may append in place (``store.filled == T``); appending
to an older one (branching two continuations from one prompt) copies into a new store, so every
cache a caller holds keeps its values: states behave as immutable values either way. Under
autograd the cache grows by concatenation (no in-place writes in a graph).

**Decode loop.** :meth:`MultiHeadAttention.stepper` gives an :class:`AttentionStepper`: ``step``
without the per-call checks, module calls and dropout, appending to the store in place
(:mod:`hippos.layers.stepper`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from hippos.ops.checks import check_lengths, dtype_error, valid_steps

__all__ = ["IMPLS", "POSITIONS", "AttentionStepper", "KVCache", "KVStore", "MultiHeadAttention"]

POSITIONS = ("none", "learned")
IMPLS = ("fused", "materialized")


class KVStore:
    """Preallocated ``keys, values: r(B n_heads capacity d_head)`` shared by the successive caches
    of one sequence; ``filled`` slots are in use (by the newest cache). See the module docstring."""

    __slots__ = ("filled", "keys", "values")

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, filled: int):
        self.keys, self.values, self.filled = keys, values, filled

    @property
    def capacity(self) -> int:
        return self.keys.shape[-2]


def _grown(n: int) -> int:
    """Capacity of a new store for ``n`` tokens: ×1.25 and at least 64 slots of room."""
    return n + max(64, n // 4)


class KVCache(NamedTuple):
    """``keys, values: r(B n_heads T d_head)``, the keys and values of the T tokens seen so far
    (views of ``store``'s first T slots when it is set; ``store`` None: plain tensors)."""

    keys: torch.Tensor
    values: torch.Tensor
    store: KVStore | None = None

    @property
    def length(self) -> int:
        """T: tokens seen so far; the absolute position of the next token."""
        return self.keys.shape[-2]


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention on ``(B, L, d_model)``: causal with a KV cache as its state, or
    (``causal=False``) a bidirectional encoder layer with a padding mask.

    Args:
        d_model: model width d.
        n_heads: heads; must divide d_model.
        max_len: longest sequence (prompt + generated) the layer accepts; required with
            ``pos="learned"`` (the size of the position table), optional otherwise (no limit).
        pos: ``"none"`` (no positional information: the H3 hybrid's attention layers, which
            follow an H3 layer that carries order) or ``"learned"`` (absolute embeddings added to
            the layer's input, initialized N(0, 0.02²)).
        dropout: attention-probability dropout, active only in training mode.
        impl: ``"fused"`` (:func:`torch.nn.functional.scaled_dot_product_attention`: no L×L
            matrix kept when a flash/memory-efficient kernel applies) or ``"materialized"``
            (``softmax(q kᵀ/√d_head + mask) v`` written out, storing the (B, n_heads, L, T+L)
            matrix: the reference, and the S4 paper's Transformer baseline, S4 Table 3).
        causal: True (the default): position i sees positions <= i, with a KV cache as state.
            False: an encoder layer (the LRA Transformer baseline, S4 Table 4): every position sees
            the whole sequence; ``forward(u, lengths=...)`` masks the keys past each sequence's
            end; no state, no step.
    """

    def __init__(self, d_model: int, n_heads: int, max_len: int | None = None, pos: str = "none", dropout: float = 0.0,
                 impl: str = "fused", causal: bool = True):
        super().__init__()
        for name, value in (("d_model", d_model), ("n_heads", n_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        if pos not in POSITIONS:
            raise ValueError(f"unknown pos {pos!r}; expected one of {', '.join(POSITIONS)}")
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
            raise ValueError(f"max_len must be None or an integer >= 1, got {max_len!r}")
        if pos == "learned" and max_len is None:
            raise ValueError("pos='learned' needs max_len (the size of the position table)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if impl not in IMPLS:
            raise ValueError(f"unknown impl {impl!r}; expected one of {', '.join(IMPLS)}")
        if not isinstance(causal, bool):
            raise TypeError(f"causal must be True or False, got {causal!r}")
        self.causal = causal
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.max_len, self.pos, self.dropout, self.impl = max_len, pos, dropout, impl
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model) if pos == "learned" else None
        if self.pos_emb is not None:
            nn.init.normal_(self.pos_emb.weight, std=0.02)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, max_len={self.max_len}, pos={self.pos!r}, "
                f"impl={self.impl!r}, causal={self.causal}")

    # ------------------------------------------------------------------ helpers
    def _check(self, u: torch.Tensor, dims: int, what: str) -> None:
        if not torch.is_tensor(u) or u.dim() != dims or u.shape[-1] != self.d_model:
            shape = "(B, L, d)" if dims == 3 else "(B, d)"
            raise ValueError(f"MultiHeadAttention.{what} expects u of shape {shape} with d={self.d_model}, got {getattr(u, 'shape', type(u))}")
        if not u.is_floating_point():
            raise TypeError(f"MultiHeadAttention.{what} expects a floating tensor, got {u.dtype}")

    def _check_state(self, state, batch: int | None) -> KVCache:
        """A :class:`KVCache` ``keys, values: r(B n_heads T d_head)`` whose B is ``batch`` (any B
        when None); the message names the structure, shape, batch or dtype that does not fit."""
        ok = isinstance(state, tuple) and len(state) in (2, 3) and all(torch.is_tensor(s) and s.dim() == 4 for s in state[:2])
        ok = ok and (len(state) == 2 or state[2] is None or isinstance(state[2], KVStore))
        if not ok or state[0].shape != state[1].shape or state[0].shape[1] != self.n_heads or state[0].shape[-1] != self.d_head:
            got = tuple(getattr(s, "shape", type(s)) for s in state) if isinstance(state, tuple) else type(state)
            raise ValueError(f"attention state must be KVCache(keys, values) of shape (B, {self.n_heads}, T, {self.d_head}), got {got}")
        if batch is not None and state[0].shape[0] != batch:
            raise ValueError(f"attention state (KVCache) has batch {state[0].shape[0]}, input has batch {batch}")
        if not (state[0].is_floating_point() and state[1].is_floating_point()):
            raise TypeError(f"attention state (KVCache) must be floating point, got {state[0].dtype} and {state[1].dtype}")
        return KVCache(*state)

    @staticmethod
    def _append(state: KVCache | None, k: torch.Tensor, v: torch.Tensor) -> KVCache:
        """The cache ``state`` grown by ``k, v: r(B nh L dh)``: in place in its store when it is the
        store's newest cache and there is room, else into a new store (copying the T old slots)."""
        L = k.shape[-2]
        T = 0 if state is None else state.length
        st = None if state is None else state.store
        if st is None or st.filled != T or T + L > st.capacity or st.keys.dtype != k.dtype or st.keys.device != k.device:
            B, nh, _, dh = k.shape
            cap = _grown(T + L)
            st = KVStore(k.new_empty(B, nh, cap, dh), v.new_empty(B, nh, cap, dh), T)
            if T:
                st.keys[:, :, :T] = state.keys
                st.values[:, :, :T] = state.values
        st.keys[:, :, T : T + L] = k
        st.values[:, :, T : T + L] = v
        st.filled = T + L
        return KVCache(st.keys[:, :, : T + L], st.values[:, :, : T + L], st)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, T: int, dropout: float = 0.0) -> torch.Tensor:
        """``q: r(B nh L dh)``, ``k, v: r(B nh T+L dh)`` -> ``o: r(B nh L dh)``; query i (absolute
        position T + i) sees keys j <= T + i; ``dropout`` on the attention probabilities."""
        L = q.shape[-2]
        if self.impl == "materialized":
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)  # (B nh L T+L)
            mask = torch.ones(L, T + L, dtype=torch.bool, device=q.device).tril(diagonal=T)
            p = F.dropout(scores.masked_fill(~mask, float("-inf")).softmax(-1), dropout, training=dropout > 0)
            return p @ v
        if T == 0:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        if L == 1:  # one new token sees the whole cache
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        mask = torch.ones(L, T + L, dtype=torch.bool, device=q.device).tril(diagonal=T)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)

    # ------------------------------------------------------------------ both views
    def forward(self, u: torch.Tensor, state: KVCache | None = None, return_state: bool = False,
                lengths: torch.Tensor | None = None):
        """``u: r(B L d)`` -> ``(y: r(B L d), next_state: KVCache | None)``.

        ``state``: the cache of the tokens before ``u[:, 0]``; ``next_state`` (returned when a
        state is passed or ``return_state`` is set) is it grown by the L new keys and values.
        ``lengths: long(B)``: the valid steps of each sequence; a causal layer needs no mask (the
        padding comes after every valid position), an encoder (``causal=False``) masks those keys.
        """
        self._check(u, 3, "forward")
        if not self.causal:
            return self._encode(u, lengths, state, return_state), None
        B, L, d = u.shape
        T = 0 if state is None else self._check_state(state, B).length
        if self.max_len is not None and T + L > self.max_len:
            raise ValueError(f"sequence of {T + L} tokens (cache {T} + input {L}) exceeds max_len={self.max_len}")
        if self.pos_emb is not None:
            u = u + self.pos_emb(torch.arange(T, T + L, device=u.device)).to(u.dtype)
        try:
            qkv = self.qkv(u)
        except RuntimeError:  # a dtype mismatch surfaces here, free on the per-token path: say so plainly
            err = dtype_error(u, self.qkv.weight.dtype, "MultiHeadAttention")
            if err is not None:
                raise err from None
            raise
        q, k, v = qkv.view(B, L, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)  # 3 × (B nh L dh)
        keep = state is not None or return_state
        cache = None
        if keep and not (torch.is_grad_enabled() and (k.requires_grad or (state is not None and state.keys.requires_grad))):
            cache = self._append(state, k, v)  # views of a store: (B nh T+L dh), appended in place
            k, v = cache.keys, cache.values
        elif state is not None:
            k = torch.cat([state.keys.to(k.dtype), k], dim=-2)  # (B nh T+L dh)
            v = torch.cat([state.values.to(v.dtype), v], dim=-2)
        o = self._attend(q, k, v, T, self.dropout if self.training else 0.0)  # (B nh L dh)
        y = self.out_proj(o.transpose(1, 2).reshape(B, L, d))
        if keep and cache is None:
            cache = KVCache(k, v)
        return y, cache

    def _encode(self, u: torch.Tensor, lengths: torch.Tensor | None, state, return_state: bool) -> torch.Tensor:
        """The encoder view (``causal=False``): ``u: r(B L d)`` -> ``r(B L d)``, each position
        attending to the valid keys of its own sequence (``lengths``; all L when None)."""
        if state is not None or return_state:
            raise ValueError("a bidirectional (causal=False) attention layer has no state: every position sees the whole sequence")
        B, L, d = u.shape
        if self.max_len is not None and L > self.max_len:
            raise ValueError(f"sequence of {L} tokens exceeds max_len={self.max_len}")
        if self.pos_emb is not None:
            u = u + self.pos_emb(torch.arange(L, device=u.device)).to(u.dtype)
        q, k, v = self.qkv(u).view(B, L, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)  # 3 × (B nh L dh)
        mask = None
        if lengths is not None:
            check_lengths(lengths, B, L)
            mask = valid_steps(lengths, L)[:, None, None, :]  # (B 1 1 L) valid keys
        dropout = self.dropout if self.training else 0.0
        if self.impl == "materialized":
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)  # (B nh L L)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            o = F.dropout(scores.softmax(-1), dropout, training=dropout > 0) @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)  # (B nh L dh)
        return self.out_proj(o.transpose(1, 2).reshape(B, L, d))

    def _no_step(self) -> None:
        if not self.causal:
            raise ValueError("a bidirectional (causal=False) attention layer has no recurrent view: use forward on whole sequences")

    def default_state(self, batch_size: int) -> KVCache:
        """The empty cache: ``keys, values: r(B n_heads 0 d_head)`` (B = 0 allowed)."""
        self._no_step()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"batch_size must be an integer >= 0, got {batch_size!r}")
        w = self.qkv.weight
        empty = torch.zeros(batch_size, self.n_heads, 0, self.d_head, dtype=w.dtype, device=w.device)
        return KVCache(empty, empty.clone())

    def setup_step(self) -> None:
        """Attention has no discretized parameters: None (kept for the common contract)."""
        return None

    def step(self, u_t: torch.Tensor, state: KVCache, params=None):
        """One token: ``u_t: r(B d)`` -> ``(y_t: r(B d), cache grown by one)``; O(T·d)."""
        self._no_step()
        self._check(u_t, 2, "step")
        y, next_state = self.forward(u_t[:, None], state)
        return y[:, 0], next_state

    def stepper(self, state: KVCache, params=None) -> AttentionStepper:
        """The decode loop's stepper from ``state`` (:class:`AttentionStepper`); equals :meth:`step`."""
        return AttentionStepper(self, self._check_state(state, None))


class AttentionStepper:
    """One attention layer in a decode loop: ``step(u_t: r(B d)) -> y_t: r(B d)``, equal to
    :meth:`MultiHeadAttention.step` in eval mode (no dropout, whatever the training flag).

    The cache is appended in place in its store (:meth:`MultiHeadAttention._append`; a cache that
    is not its store's newest is copied first, so the state handed in keeps its contents), with
    no per-token input checks or module calls: a few aten ops a token. :attr:`state` is the cache
    after the steps so far (a :class:`KVCache`, valid as a value like any other). Inputs have the
    parameters' dtype, the cache too (no autocast: :func:`hippos.layers.stepper.fast_steppers_apply`).
    """

    def __init__(self, layer: MultiHeadAttention, state: KVCache):
        self.layer, self.cache = layer, state

    @property
    def state(self) -> KVCache:
        return self.cache

    def step(self, u_t: torch.Tensor) -> torch.Tensor:
        layer, cache = self.layer, self.cache
        B, T = u_t.shape[0], cache.keys.shape[-2]
        if layer.max_len is not None and T >= layer.max_len:
            raise ValueError(f"sequence of {T + 1} tokens (cache {T} + input 1) exceeds max_len={layer.max_len}")
        if layer.pos_emb is not None:
            u_t = u_t + layer.pos_emb.weight[T]
        qkv = F.linear(u_t, layer.qkv.weight, layer.qkv.bias).view(B, 3, layer.n_heads, 1, layer.d_head)
        q, k, v = qkv.unbind(1)  # (B nh 1 dh) each
        self.cache = cache = layer._append(cache, k, v)
        o = layer._attend(q, cache.keys, cache.values, T)  # (B nh 1 dh): its memory is (B d)
        return F.linear(o.view(B, layer.d_model), layer.out_proj.weight, layer.out_proj.bias)
