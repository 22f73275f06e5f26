"""The state a language model carries from one training window to the next (truncated BPTT).

With ``--data.carry_state=true`` each batch row continues the text where the same row of the
previous batch stopped (``hippos.data.text.StreamWindowSampler``). The model's state after a
window (``LanguageModel.forward(x, state, return_state=True)``: SSM states, KV caches) is kept,
**detached** (the gradient stops at the window boundary: truncated backpropagation through
time, as Transformer-XL and the S4 reference's LM training), and passed into the next window;
it is dropped where the streams begin again (``sampler.resets_at(i)``).

Attention layers carry at most ``kv_memory`` tokens of keys and values (the last ones; 0, the
default, carries none, so attention sees only its window). A model with learned absolute
positions takes the positions of a window from the length of its first KV cache, so there only
``kv_memory = 0`` is consistent (each window at positions 0 .. T-1); :func:`check_kv_memory`
refuses the rest.

The carried state is part of the run's position: :meth:`StateCarry.tensors` flattens it into
named tensors that the checkpoint stores (``carry.safetensors``), and :meth:`StateCarry.load`
rebuilds it on ``--resume`` with the structure of ``model.default_state``, so a resumed run
continues bitwise.

    carry = StateCarry(kv_memory=0)
    for i, (x, y) in enumerate(loader):
        if sampler.resets_at(i):
            carry.reset()
        logits, state = model(x, carry.state, return_state=True)
        ...
        carry.keep(state)
"""

from __future__ import annotations

import torch

from hippos.layers.attention import KVCache

__all__ = ["StateCarry", "check_kv_memory", "flatten_state", "trim_state", "unflatten_state"]


def check_kv_memory(kv_memory: int, learned_positions: bool) -> int:
    """``kv_memory`` as an int >= 0; nonzero refused for a model with learned absolute positions."""
    if isinstance(kv_memory, bool) or not isinstance(kv_memory, int) or kv_memory < 0:
        raise ValueError(f"kv_memory must be an integer >= 0 (KV tokens carried to the next window), got {kv_memory!r}")
    if kv_memory and learned_positions:
        raise ValueError(
            "kv_memory > 0 with learned attention positions (attn_pos='learned'): the carried keys were computed at "
            "other positions than the table would give them; use kv_memory=0 (attention within each window) or "
            "attn_pos='none'")
    return kv_memory


def trim_state(state, kv_memory: int):
    """``state`` detached, every ``KVCache`` cut to its last ``kv_memory`` tokens (a plain cache:
    no preallocated store)."""
    if isinstance(state, KVCache):
        T = state.keys.shape[-2]
        keep = min(kv_memory, T)
        return KVCache(state.keys[..., T - keep :, :].detach().clone(), state.values[..., T - keep :, :].detach().clone())
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a NamedTuple (H3State)
        return type(state)(*(trim_state(s, kv_memory) for s in state))
    if isinstance(state, (list, tuple)):
        return type(state)(trim_state(s, kv_memory) for s in state)
    if state is None:
        return None
    raise TypeError(f"cannot carry a state of type {type(state).__name__}")


def flatten_state(state, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a nested state (lists, tuples, NamedTuples, tensors, None) by path:
    ``{"0.shift": ..., "0.diag": ..., "2.keys": ...}``; None leaves are left out."""
    out = {}
    if isinstance(state, torch.Tensor):
        out[prefix.rstrip(".")] = state.detach().contiguous()
    elif isinstance(state, tuple) and hasattr(state, "_fields"):
        for name, s in zip(state._fields, state):
            out.update(flatten_state(s, f"{prefix}{name}."))
    elif isinstance(state, (list, tuple)):
        for i, s in enumerate(state):
            out.update(flatten_state(s, f"{prefix}{i}."))
    elif state is not None:
        raise TypeError(f"cannot flatten a state of type {type(state).__name__}")
    return out


def unflatten_state(template, tensors: dict[str, torch.Tensor], prefix: str = ""):
    """The inverse of :func:`flatten_state`: ``template``'s structure (``model.default_state(B)``)
    with every tensor leaf taken from ``tensors`` (shapes from the saved tensors: a KV cache of
    any length). A missing or unexpected name raises ``ValueError``."""
    used = set()

    def build(t, pre):
        if isinstance(t, torch.Tensor):
            key = pre.rstrip(".")
            if key not in tensors:
                raise ValueError(f"the saved state has no tensor {key!r}")
            used.add(key)
            v = tensors[key]
            if v.dtype != t.dtype or v.shape[:1] != t.shape[:1]:
                raise ValueError(f"the saved state's {key!r} is {v.dtype} {tuple(v.shape)}, the model's "
                                 f"{t.dtype} {tuple(t.shape)}")
            return v.to(t.device)
        if isinstance(t, KVCache):
            return KVCache(build(t.keys, f"{pre}keys."), build(t.values, f"{pre}values."))
        if isinstance(t, tuple) and hasattr(t, "_fields"):
            return type(t)(*(build(s, f"{pre}{n}.") for n, s in zip(t._fields, t)))
        if isinstance(t, (list, tuple)):
            return type(t)(build(s, f"{pre}{i}.") for i, s in enumerate(t))
        return None

    out = build(template, prefix)
    extra = set(tensors) - used
    if extra:
        raise ValueError(f"the saved state has tensors the model does not: {sorted(extra)[:5]}")
    return out


class StateCarry:
    """The detached state carried between training windows; see the module docstring."""

    def __init__(self, kv_memory: int = 0):
        self.kv_memory = check_kv_memory(kv_memory, False)
        self.state = None  # None: the streams begin (a zero state)

    def reset(self) -> None:
        self.state = None

    def keep(self, next_state) -> None:
        """Carry ``next_state`` (a model's ``return_state``) into the next window, detached."""
        self.state = trim_state(next_state, self.kv_memory)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The carried state as named tensors (empty when it is reset)."""
        return {} if self.state is None else flatten_state(self.state)

    def load(self, tensors: dict[str, torch.Tensor], template) -> None:
        """Restore :meth:`tensors` into the structure of ``template`` (``model.default_state(B)``);
        no tensors: a reset state."""
        self.state = unflatten_state(template, tensors) if tensors else None
