"""Input checks shared by the layers and models: finite values, dtypes under autocast.

Cheap on the normal path: :func:`check_finite` is one ``isfinite().all()`` reduction (and a host
sync) and looks for the position only once something is wrong; :func:`check_input_dtype` compares
two dtypes and asks about autocast only when they differ. ``docs/kernels.md`` ("Edge inputs")
says what a NaN does to the convolutional view and why the check exists.
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_finite", "check_input_dtype", "check_lengths", "dtype_error", "finish_dtype", "valid_steps"]

#: Names of the dimensions of a ``(B, L, H)`` tensor, as the messages spell them.
BLH = ("batch", "step", "channel")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_finite(x: torch.Tensor, what: str = "input", dims: tuple[str, ...] | None = None) -> torch.Tensor:
    """Raise ``ValueError`` naming the first non-finite entry of ``x`` (in row-major order); return ``x``.

    ``dims`` names the dimensions in the message; default ``("batch", "step", "channel")`` for a
    3-D tensor (the ``(B, L, H)`` layout), else ``dim 0, dim 1, ...``. Integer and boolean
    tensors are always finite. Example message: ``input has a non-finite value (NaN) at batch 0,
    step 10, channel 3 (2 non-finite values in all)``.

    Why it matters: one NaN in the convolutional view (an FFT over the whole sequence) turns
    every step of its sequence NaN, before and after it (``docs/kernels.md``, "Edge inputs").
    """
    if not torch.is_tensor(x):
        raise TypeError(f"{what} must be a tensor, got {type(x).__name__}")
    if not (x.is_floating_point() or x.is_complex()):
        return x
    if bool(torch.isfinite(x).all()):
        return x
    bad = ~torch.isfinite(x)
    first = [int(i) for i in bad.nonzero()[0]]
    value = x[tuple(first)].item()
    value = "NaN" if isinstance(value, float) and math.isnan(value) else value  # inf, -inf print as such
    names = dims if dims is not None else (BLH if x.dim() == 3 else tuple(f"dim {d}" for d in range(x.dim())))
    if len(names) != x.dim():
        raise ValueError(f"check_finite: dims names {len(names)} dimensions, {what} has {x.dim()}")
    where = ", ".join(f"{n} {i}" for n, i in zip(names, first))
    count = int(bad.sum())
    more = f" ({count} non-finite values in all)" if count > 1 else ""
    raise ValueError(f"{what} has a non-finite value ({value}) at {where}{more}")


def dtype_error(u: torch.Tensor, param_dtype: torch.dtype, who: str) -> TypeError | None:
    """The error :func:`check_input_dtype` raises, or None when ``u``'s dtype is acceptable."""
    if u.dtype == param_dtype:
        return None
    if torch.is_autocast_enabled(u.device.type) and torch.float64 not in (u.dtype, param_dtype):
        return None
    d, p = _dtype_name(u.dtype), _dtype_name(param_dtype)
    return TypeError(f"{who}: input is {d} but the layer's parameters are {p}; use layer.to(torch.{d}) or torch.autocast")


def check_input_dtype(u: torch.Tensor, param_dtype: torch.dtype, who: str) -> None:
    """The usual PyTorch rule, with a clear message: ``u`` must have the dtype of the layer's
    parameters, except under ``torch.autocast`` on ``u``'s device, where float32, float16 and
    bfloat16 inputs and parameters mix freely (float64 never does).

    The recurrent steps, called once per token, do not pay for it up front: they run, and on a
    ``RuntimeError`` ask :func:`dtype_error` whether the input's dtype was the cause.
    """
    err = dtype_error(u, param_dtype, who)
    if err is not None:
        raise err


def finish_dtype(z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The SSM part's output ``z`` (computed in the kernels' float32/float64) in the dtype that the
    layer's output map takes: ``u``'s dtype (that of the parameters, :func:`check_input_dtype`),
    except under autocast, where ``z`` stays float32 and the output linear casts it."""
    if z.dtype == u.dtype or torch.is_autocast_enabled(u.device.type):
        return z
    return z.to(u.dtype)


def check_lengths(lengths: torch.Tensor, B: int, L: int) -> None:
    """Refuse ``lengths`` that are not ``(B,)`` with every value in ``[1, L]`` (the valid steps of
    each sequence of a padded batch ``(B, L, ...)``)."""
    if lengths.shape != (B,) or (lengths < 1).any() or (lengths > L).any():
        raise ValueError(f"lengths must be (B,) = ({B},) with values in [1, {L}], got {lengths}")


def valid_steps(lengths: torch.Tensor, L: int) -> torch.Tensor:
    """``bool(B, L)``: True at step ``t`` of sequence ``b`` when ``t < lengths[b]`` (its valid
    steps; padding after them is False). On ``lengths``' device."""
    return torch.arange(L, device=lengths.device)[None, :] < lengths[:, None]
