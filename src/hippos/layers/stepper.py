"""Steppers: a layer's recurrent view for a decode loop, its state held and updated in place.

``layer.step(u_t, state, params) -> (y_t, next_state)`` is the reference recurrent view: pure,
states are values, every call checks its inputs. A decode loop calls it once per token and layer,
so its per-call cost (checks, module calls, fresh state tensors) is paid thousands of times. A
*stepper* is the same recurrence as an object that owns its state::

    s = stepper(layer, state, params)   # once: checks, precomputations (FIR taps, read-out weights)
    y_t = s.step(u_t)                   # per token: the arithmetic only, state updated in place
    s.state                             # the state after the steps so far, as a value (a copy)

:func:`stepper` returns the layer's own fast stepper where it has one (:class:`~hippos.layers.h3.H3Stepper`,
:class:`~hippos.layers.attention.AttentionStepper`) and :class:`ReferenceStepper` (the layer's
``step`` behind the same interface) otherwise. A stepper runs in eval mode (no dropout) whatever
the modules' training flags. Fast steppers take inputs in the parameters' dtype (float32, float64,
bfloat16 or float16: one dtype for every parameter) outside autocast, where the dtype rules are
simple (the reference steps also follow autocast's); :func:`fast_steppers_apply` says whether that
holds. Each fast stepper is tested against the reference ``step`` and the convolutional ``forward``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FAST_DTYPES", "ReferenceStepper", "fast_steppers_apply", "stepper"]


class ReferenceStepper:
    """``layer.step`` behind the stepper interface: the reference (states are values)."""

    def __init__(self, layer: nn.Module, state, params=None):
        self.layer, self._state = layer, state
        self.params = layer.setup_step() if params is None else params
        self._modules = list(layer.modules())

    @property
    def state(self):
        return self._state

    def step(self, u_t: torch.Tensor) -> torch.Tensor:
        training = [m for m in self._modules if m.training]
        for m in training:  # eval mode for this call only (dropout off); flags restored
            m.training = False
        try:
            y, self._state = self.layer.step(u_t, self._state, self.params)
        finally:
            for m in training:
                m.training = True
        return y


#: Parameter dtypes the fast steppers take (one for the whole model).
FAST_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def fast_steppers_apply(module: nn.Module, device: torch.device) -> bool:
    """True when the floating parameters of ``module`` share one dtype of :data:`FAST_DTYPES` and
    autocast is off on ``device``: the fast steppers' condition (else :class:`ReferenceStepper`)."""
    dtypes = {p.dtype for p in module.parameters() if p.is_floating_point()}
    return len(dtypes) == 1 and dtypes <= set(FAST_DTYPES) and not torch.is_autocast_enabled(device.type)


def stepper(layer: nn.Module, state, params=None, fast: bool = True):
    """A stepper for ``layer`` from ``state`` (``params``: its ``setup_step()``, computed if None):
    the layer's fast one when ``fast`` and it has one, else :class:`ReferenceStepper`."""
    if fast and hasattr(layer, "stepper"):
        return layer.stepper(state, params)
    return ReferenceStepper(layer, state, params)
