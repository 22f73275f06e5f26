"""``forecast``: next-step forecasting of a series (``hippos.data.series``, ``hippos.models.forecaster``).

``hippos train forecast --data.path=FILE.csv --data.column=NAME`` (or ``.npz``; without a path,
a generated seasonal series): windows of ``data.window`` steps of the normalized (optionally
differenced) series, mean squared error of the next step at every position; the last
``data.horizon`` steps are the test tail, the ``data.val_horizon`` before them the validation
tail. The validation/test loss is teacher-forced (true inputs); the forecast itself —
``extra_metrics``, printed by ``hippos eval RUN`` and kept in ``results.json`` — prefills the
last ``data.context`` steps before the tail through the convolutional view and rolls the model
forward with the recurrent ``step`` over the horizon, feeding back its own predictions; its RMSE
and MAE in the series' units stand beside the seasonal-naive and last-value baselines of the
same tail. ``forecast.json`` keeps the transform's statistics (checked on resume and eval).
See docs/forecasting.md.
"""

from __future__ import annotations

import json

import torch

from hippos.data.series import ForecastDataConfig
from hippos.models.config import ModelConfig
from hippos.train.config import TrainConfig, require
from hippos.train.objectives import REGRESSION
from hippos.train.task import Task, TaskData

__all__ = ["TRANSFORM", "ForecastTask"]

TRANSFORM = "forecast.json"


class ForecastTask(Task):
    name = "forecast"
    description = "next-step forecasting of your own series: --data.path=FILE.csv --data.column=NAME (or .npz)"
    objective = REGRESSION

    def defaults(self) -> TrainConfig:
        cfg = TrainConfig(task="forecast", epochs=20, batch_size=32, lr=1e-2, weight_decay=0.01, warmup_fraction=0.05,
                          grad_clip=1.0, log_every=25)
        # differenced by default: a trend takes the levels of the test tail outside those trained on, and a
        # model of the levels then loses to seasonal-naive (docs/forecasting.md measures it)
        cfg.data = ForecastDataConfig(difference=True)
        m = cfg.model
        m.d_input, m.d_model, m.n_layers, m.d_state = 1, 64, 2, 64
        m.mode, m.init = "diag", "lin"
        m.dropout, m.prenorm, m.norm = 0.0, True, "layer"
        m.l_max = cfg.data.window
        return cfg

    def check(self, cfg: TrainConfig) -> None:
        if not isinstance(cfg.model, ModelConfig):
            raise TypeError("task 'forecast' trains a Forecaster: its model section must be a ModelConfig")
        cfg.model.validate()
        require(cfg, not cfg.model.bidirectional, "model.bidirectional", "false (a forecaster must be causal)")
        require(cfg, cfg.model.norm != "batch", "model.norm", "'layer' or 'none' (the rollout steps one sample at a time)")
        ctx = cfg.data.context
        if isinstance(ctx, int) and isinstance(cfg.data.window, int) and ctx > cfg.data.window:
            import warnings

            from hippos.data.series import long_context_warning

            warnings.warn(long_context_warning(ctx, cfg.data.window), stacklevel=2)  # before training, not after

    def load_data(self, cfg: TrainConfig) -> TaskData:
        from hippos.data.series import prepare_forecast

        fd = prepare_forecast(cfg.data)
        transform = {"names": fd.names, "mean": fd.mean.tolist(), "std": fd.std.tolist(),
                     "n_train": fd.n_train, "n_val": fd.n_val, "n_test": fd.n_test}
        return TaskData(fd.train, fd.val, fd.test, artifacts={TRANSFORM: json.dumps(transform, indent=1) + "\n"},
                        extra={"forecast": fd})

    def fit_config(self, cfg: TrainConfig, data: TaskData) -> TrainConfig:
        cfg.model.d_input = int(data.extra["forecast"].d)
        cfg.model.l_max = max(cfg.data.window, cfg.data.context or 0)
        return cfg

    def build_model(self, cfg: TrainConfig) -> torch.nn.Module:
        import dataclasses

        from hippos.models.forecaster import Forecaster

        return Forecaster(dataclasses.replace(cfg.model))

    def extra_metrics(self, model, data: TaskData, cfg: TrainConfig, split: str) -> dict:
        from hippos.models.forecaster import forecast_metrics

        if split == "train":
            return {}
        return forecast_metrics(model, data.extra["forecast"], split, context=cfg.data.context)

    def describe_extra(self, m: dict) -> list[str]:
        if not m:
            return []
        return [
            f"rollout over the {m['split']} tail ({m['horizon']} steps, context {m['context']}, recurrent step):",
            "| forecast | RMSE | MAE |",
            "|---|---|---|",
            f"| model (rollout) | {m['rmse']:.4g} | {m['mae']:.4g} |",
            f"| seasonal naive (period {m['period']}) | {m['seasonal_naive_rmse']:.4g} | {m['seasonal_naive_mae']:.4g} |",
            f"| last value | {m['last_value_rmse']:.4g} | {m['last_value_mae']:.4g} |",
        ]
