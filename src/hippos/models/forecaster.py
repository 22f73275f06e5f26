"""A next-step forecaster over the SSM backbone, rolled out by recurrence; its forecast metrics.

S4 (arXiv 2111.00396 §3.4 and §4.3, time-series forecasting): the convolutional view trains on
whole windows; the recurrent view forecasts one step at a time. Here::

    ŷ_t = head(backbone(x)_t)        ŷ_t predicts x_{t+1}        (B L d) -> (B L d)

:meth:`Forecaster.rollout` prefills a context with the convolution (``return_state=True``): its
last output is the first prediction, and the state after the context is handed to
:meth:`Forecaster.step`, which is fed each prediction back::

    ŷ_1, s = forward(x_{1..Lc})[-1];   ŷ_{k+1}, s = step(ŷ_k, s)    k = 1 .. horizon - 1

which equals re-running the convolution on the growing sequence (context + predictions so far),
at O(N) per step instead of O(L log L). Details and the context-length trap: ``docs/forecasting.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import torch
from torch import nn

from hippos.data.series import ForecastData, last_value, mae, rmse, seasonal_naive
from hippos.models.backbone import SSMBackbone
from hippos.models.config import ModelConfig

__all__ = ["Forecaster", "forecast_metrics"]


@contextlib.contextmanager
def _inference(module: nn.Module):
    """No gradients and no dropout for one call; the modules' training flags are restored."""
    was_training = [m for m in module.modules() if m.training]
    for m in was_training:
        m.training = False
    try:
        with torch.no_grad():
            yield
    finally:
        for m in was_training:
            m.training = True


class Forecaster(nn.Module):
    """Next-step predictions of a d-variable series: ``x: r(B L d) -> ŷ: r(B L d)``.

    Built from a :class:`~hippos.models.config.ModelConfig`: the backbone fields (``d_model``,
    ``n_layers``, ``d_state``, ``mode``, ``init``, ...) and ``d_input`` = d, the number of
    variables; a linear head maps the backbone's ``(B, L, H)`` to ``(B, L, d)``. ``pool`` and
    ``n_classes`` do not apply (there is no pooling and no class). ``bidirectional=True`` is
    refused: a forecaster must be causal (and a bidirectional layer has no recurrent view).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"Forecaster takes a ModelConfig, got {type(cfg).__name__}")
        if cfg.bidirectional:
            raise ValueError("a forecaster must be causal: model.bidirectional=True would let it see the future")
        self.cfg = cfg = dataclasses.replace(cfg)  # a private copy
        self.backbone = SSMBackbone(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.d_input)

    def _check(self, x: torch.Tensor, dims: int, what: str) -> None:
        shape = f"(B, L, {self.cfg.d_input})" if dims == 3 else f"(B, {self.cfg.d_input})"
        if not torch.is_tensor(x) or x.dim() != dims or x.shape[-1] != self.cfg.d_input or x.numel() == 0:
            raise ValueError(f"{what} expects a non-empty tensor of shape {shape}, got {tuple(getattr(x, 'shape', ())) or type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{what} expects a floating tensor, got {x.dtype}")

    # ------------------------------------------------------------------ convolutional view
    def forward(self, x: torch.Tensor, state: list | None = None, return_state: bool = False):
        """``x: r(B L d)`` -> ``(ŷ: r(B L d), next_state)``; ``ŷ[:, t]`` predicts ``x[:, t+1]``.

        ``state`` is the state before ``x[:, 0]`` (:meth:`default_state` or a previous call);
        ``next_state`` is returned when a state is passed or ``return_state`` is set, else None.
        """
        self._check(x, 3, "Forecaster.forward")
        h, next_state = self.backbone(x, state=state, return_state=return_state)  # (B L H)
        return self.head(h), next_state

    # ------------------------------------------------------------------ recurrent view
    def default_state(self, batch_size: int) -> list:
        """The zero state of every layer (before the first step)."""
        return self.backbone.default_state(batch_size)

    def setup_step(self) -> list:
        """Discretized step parameters of every layer: a pure function of the weights; cache it."""
        return self.backbone.setup_step()

    def step(self, x_t: torch.Tensor, state: list, params: list | None = None):
        """One step: ``x_t: r(B d)`` -> ``(ŷ_t: r(B d), next_state)``, the prediction of ``x_{t+1}``."""
        self._check(x_t, 2, "Forecaster.step")
        h, next_state = self.backbone.step(x_t, state, params)  # (B H)
        return self.head(h), next_state

    def rollout(self, context: torch.Tensor, horizon: int) -> torch.Tensor:
        """Forecast ``horizon`` steps after ``context: r(B Lc d)`` -> ``r(B horizon d)``.

        Prefill by convolution (its last output is the first prediction), then ``step`` on each
        prediction fed back. Runs under ``torch.no_grad`` in eval mode (no dropout; batch norm
        with its running statistics); the training flags are restored.
        """
        self._check(context, 3, "Forecaster.rollout")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
        if not torch.isfinite(context).all():
            raise ValueError("rollout: the context contains NaN or infinite values")
        with _inference(self):
            y, state = self(context, return_state=True)  # (B Lc d)
            preds = [y[:, -1]]  # (B d)
            params = self.setup_step() if horizon > 1 else None
            for _ in range(horizon - 1):
                y_t, state = self.step(preds[-1], state, params)
                preds.append(y_t)
        return torch.stack(preds, dim=1)  # (B horizon d)


def forecast_metrics(model: Forecaster, data: ForecastData, split: str = "test", context: int | None = None) -> dict:
    """RMSE and MAE of ``model``'s rollout over the ``split`` tail, in original units, beside
    the seasonal-naive (period ``data.period``) and last-value baselines on the same tail.

    The context is the last ``context`` transformed steps before the tail (default: the
    training window; longer warns, see ``docs/forecasting.md``). Returns a JSON-ready dict:
    ``rmse, mae, seasonal_naive_rmse, seasonal_naive_mae, last_value_rmse, last_value_mae``
    (floats), ``rmse_per_step, mae_per_step`` (lists of horizon floats: error at lead k, over
    the variables), and ``split, horizon, context, period``.
    """
    ev = data.eval_split(split, context)
    p = next(model.parameters())
    ctx = torch.as_tensor(ev.context, dtype=p.dtype, device=p.device)[None]  # (1 Lc d)
    h = len(ev.target)
    z = model.rollout(ctx, h)[0].detach().cpu().double().numpy()  # (h d), transformed
    pred = data.inverse(z, last=ev.last)  # (h d), original units
    sn, lv = seasonal_naive(ev.history, h, data.period), last_value(ev.history, h)
    err = pred - ev.target  # (h d)
    return {
        "split": split,
        "horizon": h,
        "context": len(ev.context),
        "period": data.period,
        "rmse": rmse(pred, ev.target),
        "mae": mae(pred, ev.target),
        "seasonal_naive_rmse": rmse(sn, ev.target),
        "seasonal_naive_mae": mae(sn, ev.target),
        "last_value_rmse": rmse(lv, ev.target),
        "last_value_mae": mae(lv, ev.target),
        "rmse_per_step": np.sqrt(np.mean(err**2, axis=1)).tolist(),
        "mae_per_step": np.mean(np.abs(err), axis=1).tolist(),
    }
