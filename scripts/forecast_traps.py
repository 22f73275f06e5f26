"""The two forecasting traps of docs/forecasting.md, measured: a rollout context longer than the
training window, and a trending series modeled without differencing.

    python scripts/forecast_traps.py            # both tables, ~1-2 min on a 2-core CPU

Setup (the docs' Python example): the generated seasonal series (trend 0.03, noise 0.05), a
1-layer S4D-Lin ``Forecaster`` (H 32, N 16), AdamW lr 1e-2 with 100 warmup steps then cosine, batch
16, one thread. Table 1: window 48, differenced, 1200 steps, test-tail RMSE per rollout context
for training seeds 0-2. Table 2: window 128, length 1000, 1200 steps, with and without
differencing, seeds 0-1. Seasonal-naive (period 12) on the same tail beside them.
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn.functional as F

from hippos.data.series import ForecastDataConfig, prepare_forecast
from hippos.models import ModelConfig
from hippos.models.forecaster import Forecaster, forecast_metrics
from hippos.train.optim import build_optimizer, lr_factor, set_lr


def fit(data, window: int, seed: int, steps: int) -> Forecaster:
    torch.manual_seed(seed)
    model = Forecaster(ModelConfig(d_input=data.d, d_model=32, n_layers=1, d_state=16, init="lin", l_max=window))
    opt = build_optimizer(model, lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        set_lr(opt, lr_factor(step, steps, 100))
        x, y = data.train[torch.randint(len(data.train), (16,), generator=g)]
        loss = F.mse_loss(model(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # a context longer than the window warns: that is the point here

    contexts = (12, 24, 48, 96, 200, 400)
    data = prepare_forecast(ForecastDataConfig(window=48, horizon=24, difference=True))
    print(f"1. rollout context (window 48, differenced, {args.steps} steps): test-tail RMSE")
    print("| seed | " + " | ".join(f"context {c}" for c in contexts) + " | seasonal naive |")
    print("|---" * (len(contexts) + 2) + "|")
    for seed in range(3):
        model = fit(data, 48, seed, args.steps)
        ms = [forecast_metrics(model, data, "test", context=c) for c in contexts]
        print(f"| {seed} | " + " | ".join(f"{m['rmse']:.3f}" for m in ms) + f" | {ms[0]['seasonal_naive_rmse']:.3f} |")

    print(f"\n2. a trend without differencing (window 128, length 1000, {args.steps} steps): test-tail RMSE")
    print("| seed | levels (difference=false) | differenced | seasonal naive |")
    print("|---|---|---|---|")
    for seed in range(2):
        row = []
        for diff in (False, True):
            d = prepare_forecast(ForecastDataConfig(window=128, horizon=24, difference=diff))
            row.append(forecast_metrics(fit(d, 128, seed, args.steps), d, "test"))
        print(f"| {seed} | {row[0]['rmse']:.3f} | {row[1]['rmse']:.3f} | {row[1]['seasonal_naive_rmse']:.3f} |")


if __name__ == "__main__":
    main()
