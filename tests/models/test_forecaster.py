"""Forecaster: the step rollout equals re-running the convolution on the growing sequence; it is
causal; a short run on the generated seasonal series beats seasonal-naive on the test tail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hippos.data.series import (
    ForecastDataConfig,
    last_value,
    prepare_forecast,
    rmse,
    seasonal_naive,
)
from hippos.models.config import ModelConfig
from hippos.models.forecaster import Forecaster, forecast_metrics
from hippos.train.optim import build_optimizer, lr_factor, set_lr

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def _model(mode: str, norm: str = "layer", prenorm: bool = True, d: int = 2) -> Forecaster:
    cfg = ModelConfig(d_input=d, d_model=8, n_layers=2, d_state=8, mode=mode, norm=norm, prenorm=prenorm, dt_min=0.01, dt_max=0.2, l_max=32)
    return Forecaster(cfg).double().eval()


@pytest.mark.parametrize("mode,norm,prenorm", [("diag", "layer", True), ("dplr", "layer", True), ("dplr", "batch", False)])
def test_rollout_equals_convolution_on_the_growing_sequence(mode, norm, prenorm):
    model = _model(mode, norm, prenorm)
    context = torch.randn(3, 11, 2, dtype=F64)  # (B Lc d)
    horizon = 9
    pred = model.rollout(context, horizon)  # (B horizon d)
    assert pred.shape == (3, horizon, 2) and pred.dtype == F64
    seq, ref = context, []
    with torch.no_grad():
        for _ in range(horizon):
            y_last = model(seq)[0][:, -1]  # the convolution over everything so far
            ref.append(y_last)
            seq = torch.cat([seq, y_last[:, None]], dim=1)
    torch.testing.assert_close(pred, torch.stack(ref, 1), rtol=1e-9, atol=1e-10)


def test_rollout_restores_training_mode_and_keeps_no_graph():
    model = _model("diag").train()
    pred = model.rollout(torch.randn(2, 5, 2, dtype=F64), 3)
    assert all(m.training for m in model.modules())
    assert not pred.requires_grad
    model.eval()
    torch.testing.assert_close(model.rollout(torch.ones(1, 4, 2, dtype=F64), 1), model(torch.ones(1, 4, 2, dtype=F64))[0][:, -1:])


def test_forward_in_chunks_and_step_match_the_whole():
    model = _model("diag")
    x = torch.randn(2, 12, 2, dtype=F64)
    y, _ = model(x)
    y1, s = model(x[:, :5], return_state=True)
    y2, _ = model(x[:, 5:], state=s)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, rtol=1e-9, atol=1e-10)
    state, params = model.default_state(2), model.setup_step()
    outs = []
    for t in range(12):
        y_t, state = model.step(x[:, t], state, params)
        outs.append(y_t)
    torch.testing.assert_close(torch.stack(outs, 1), y, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("mode", ["diag", "dplr"])
def test_causal(mode):
    model = _model(mode)
    x = torch.randn(2, 16, 2, dtype=F64)
    x2 = x.clone()
    x2[:, 9] += 1.0
    y, y2 = model(x)[0], model(x2)[0]
    torch.testing.assert_close(y2[:, :9], y[:, :9], rtol=0, atol=1e-12)
    assert (y2[:, 9:] - y[:, 9:]).abs().max() > 1e-6


def test_refusals():
    with pytest.raises(ValueError, match="must be causal"):
        Forecaster(ModelConfig(d_input=1, bidirectional=True))
    with pytest.raises(TypeError, match="takes a ModelConfig"):
        Forecaster({"d_input": 1})
    model = _model("diag")
    with pytest.raises(ValueError, match=r"shape \(B, L, 2\)"):
        model(torch.randn(2, 5, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        model.step(torch.randn(2, 5, 2, dtype=F64), model.default_state(2))
    with pytest.raises(TypeError, match="floating"):
        model(torch.ones(1, 4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        model.rollout(torch.randn(1, 4, 2, dtype=F64), 0)
    with pytest.raises(ValueError, match="NaN"):
        model.rollout(torch.full((1, 4, 2), float("nan"), dtype=F64), 2)


def test_forecast_metrics_report_the_baselines_on_the_same_tail():
    data = prepare_forecast(ForecastDataConfig(window=16, horizon=6, synth_length=80, difference=True))
    model = Forecaster(ModelConfig(d_input=1, d_model=4, n_layers=1, d_state=4, l_max=16))
    m = forecast_metrics(model, data, "val")
    ev = data.eval_split("val")
    assert (m["split"], m["horizon"], m["context"], m["period"]) == ("val", 6, 16, 12)
    assert m["seasonal_naive_rmse"] == rmse(seasonal_naive(ev.history, 6, 12), ev.target)
    assert m["last_value_rmse"] == rmse(last_value(ev.history, 6), ev.target)
    assert len(m["rmse_per_step"]) == len(m["mae_per_step"]) == 6
    assert m["rmse"] == pytest.approx(float(np.sqrt(np.mean(np.square(m["rmse_per_step"])))))
    assert m["mae"] == pytest.approx(float(np.mean(m["mae_per_step"])))


def test_short_run_beats_seasonal_naive():
    """Trend + season + noise, differenced: seasonal-naive misses the trend (0.03 x 12 a step)."""
    torch.manual_seed(0)
    dcfg = ForecastDataConfig(window=48, horizon=24, difference=True, synth_length=600, synth_trend=0.03, synth_noise=0.05)
    data = prepare_forecast(dcfg)
    model = Forecaster(ModelConfig(d_input=1, d_model=32, n_layers=1, d_state=16, mode="diag", init="lin", dt_min=0.01, dt_max=0.5, l_max=48))
    opt = build_optimizer(model, lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    steps = 1200
    for step in range(steps):
        set_lr(opt, lr_factor(step, steps, warmup_steps=steps // 10))
        x, y = data.train[torch.randint(len(data.train), (16,), generator=g)]  # (16 48 1) each
        loss = torch.nn.functional.mse_loss(model(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m = forecast_metrics(model, data, "test")
    print({k: round(v, 4) for k, v in m.items() if k.endswith(("rmse", "mae"))})
    assert m["rmse"] < 0.6 * m["seasonal_naive_rmse"]
    assert m["rmse"] < m["last_value_rmse"]
