"""Mixed precision for the trainer: ``TrainConfig.precision`` ``"32"``, ``"bf16"`` or ``"16"``.

``"bf16"`` / ``"16"`` run each forward pass (training and evaluation) under
:func:`torch.autocast` to bfloat16 / float16: the projections, MLPs and attention compute in 16
bits, while the SSM kernels and the FFT convolutions switch autocast off and stay float32
(``SSMKernel._no_autocast``, ``hippos.ops.fftconv``), the losses are float32 (autocast's
policy for cross-entropy) and **every parameter stays float32** (autocast casts copies), so a
checkpoint does not depend on the precision it was trained in. ``"16"`` adds a gradient
scaler (:class:`torch.amp.GradScaler`): the loss is multiplied by a scale before ``backward``
so that small float16 gradients do not flush to zero, the gradients are unscaled before
clipping, a step whose gradient overflowed is skipped and the scale halved (then grown again
every 2,000 good steps); its state is checkpointed so a resumed run continues bitwise.
bfloat16 has float32's exponent range and needs no scaler.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["AUTOCAST_DTYPES", "autocast", "grad_scaler"]

#: precision -> the autocast dtype (None: float32, no autocast).
AUTOCAST_DTYPES = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


def autocast(precision: str, device: torch.device):
    """The context to run a forward pass in at ``precision`` on ``device``."""
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device, state: dict | None = None) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for ``"16"`` only (a disabled one passes ``scale``, ``step`` and
    ``unscale_`` through), restored from ``state`` (a ``state_dict``) when given."""
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16")
    if state and scaler.is_enabled():
        scaler.load_state_dict(state)
    return scaler
