"""Forecasting data: loading (CSV, .npz, generated), the split, the transform and its exact
inverse, the windows of next-step targets, the evaluation pieces, the baselines and metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hippos.data.series import (
    ForecastData,
    ForecastDataConfig,
    generate_seasonal,
    last_value,
    load_series,
    mae,
    prepare_forecast,
    rmse,
    seasonal_naive,
)


def _cfg(**kw) -> ForecastDataConfig:
    base = {"window": 8, "horizon": 4, "synth_length": 60}
    base.update(kw)
    return ForecastDataConfig(**base)


def _csv(tmp_path, text: str, name: str = "s.csv") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# ---------------------------------------------------------------------------------- loading
def test_generated_series_is_seeded_and_seasonal():
    a = generate_seasonal(100, period=12, trend=0.0, noise=0.0, seed=0)
    assert a.shape == (100, 1) and a.dtype == np.float64
    np.testing.assert_allclose(a[12:], a[:-12], atol=1e-12)  # no trend, no noise: period 12
    b, c = generate_seasonal(50, noise=0.1, seed=1), generate_seasonal(50, noise=0.1, seed=1)
    np.testing.assert_array_equal(b, c)
    assert not np.array_equal(b, generate_seasonal(50, noise=0.1, seed=2))
    np.testing.assert_array_equal(load_series(ForecastDataConfig(synth_length=50, synth_noise=0.1, synth_seed=1)), b)


CSV = "date,sales,temp\n2020-01,1.5,10\n2020-02,2.5,11\n\n2020-03,3,12\n"


def test_csv_named_multiple_and_default_columns(tmp_path):
    path = _csv(tmp_path, CSV)
    np.testing.assert_array_equal(load_series(ForecastDataConfig(path=path, column="sales")), [[1.5], [2.5], [3.0]])
    two = load_series(ForecastDataConfig(path=path, column="temp, sales"))
    np.testing.assert_array_equal(two, [[10, 1.5], [11, 2.5], [12, 3.0]])
    # None: every column but the date-like first one
    np.testing.assert_array_equal(load_series(ForecastDataConfig(path=path)), [[1.5, 10], [2.5, 11], [3.0, 12]])
    # a numeric first column with a plain name is a variable too
    path2 = _csv(tmp_path, "a,b\n1,2\n3,4\n", "n.csv")
    np.testing.assert_array_equal(load_series(ForecastDataConfig(path=path2)), [[1, 2], [3, 4]])
    # ... and a first column whose first value is not a number is an index, whatever its name
    path3 = _csv(tmp_path, "label,x\nmon,1\ntue,2\n", "l.csv")
    np.testing.assert_array_equal(load_series(ForecastDataConfig(path=path3)), [[1], [2]])


@pytest.mark.parametrize(
    "text,column,match",
    [
        (CSV, "price", r"no column 'price'; available: 'date', 'sales', 'temp'"),
        ("t,x\n0,1\n1,abc\n", "x", r"line 3, column 'x': 'abc' is not a finite number"),
        ("t,x\n0,1\n1,\n", "x", r"line 3, column 'x': '' is a missing value"),
        ("t,x\n0,nan\n1,2\n", "x", r"line 2, column 'x': 'nan' is a missing value"),
        ("t,x\n0,inf\n", "x", r"line 2, column 'x': 'inf' is not a finite number"),
        ("t,x\n0,1,2\n", "x", r"line 2 has 3 fields, the header has 2"),
        ("t,x\n", "x", r"no data rows"),
        ("date\n2020\n", None, r"no value columns"),
    ],
)
def test_csv_bad_inputs(tmp_path, text, column, match):
    with pytest.raises(ValueError, match=match):
        load_series(ForecastDataConfig(path=_csv(tmp_path, text), column=column))


def test_npz_shapes_keys_and_errors(tmp_path):
    p1 = tmp_path / "a.npz"
    np.savez(p1, np.arange(5.0))  # the only array, 1-D -> (T, 1)
    assert load_series(ForecastDataConfig(path=str(p1))).shape == (5, 1)
    p2 = tmp_path / "b.npz"
    np.savez(p2, series=np.ones((6, 3), np.float32), other=np.zeros(2))
    out = load_series(ForecastDataConfig(path=str(p2)))
    assert out.shape == (6, 3) and out.dtype == np.float64
    assert load_series(ForecastDataConfig(path=str(p2), column="other")).shape == (2, 1)
    p3 = tmp_path / "c.npz"
    np.savez(p3, a=np.ones(3), b=np.ones(3))
    with pytest.raises(ValueError, match="none named 'series'"):
        load_series(ForecastDataConfig(path=str(p3)))
    p4 = tmp_path / "d.npz"
    np.savez(p4, series=np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="at step 1, variable 0"):
        load_series(ForecastDataConfig(path=str(p4)))
    p5 = tmp_path / "e.npz"
    np.savez(p5, series=np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match=r"1-D \(T,\) or 2-D \(T, d\)"):
        load_series(ForecastDataConfig(path=str(p5)))
    with pytest.raises(ValueError, match="no file"):
        load_series(ForecastDataConfig(path=str(tmp_path / "missing.csv")))
    (tmp_path / "x.txt").write_text("1\n")
    with pytest.raises(ValueError, match=r"\.csv or \.npz"):
        load_series(ForecastDataConfig(path=str(tmp_path / "x.txt")))


@pytest.mark.parametrize(
    "kw,err",
    [({"window": 0}, ValueError), ({"horizon": True}, ValueError), ({"val_horizon": 0}, ValueError),
     ({"context": 1.5}, ValueError), ({"synth_noise": -1.0}, ValueError), ({"difference": 1}, TypeError),
     ({"path": 3}, TypeError), ({"column": "a,,b"}, ValueError)],
)
def test_config_is_checked(kw, err):
    with pytest.raises(err, match="data."):
        prepare_forecast(_cfg(**kw))


# ------------------------------------------------------------------- split and transform
def test_split_sizes_and_too_short():
    data = prepare_forecast(_cfg(val_horizon=5))
    assert (data.n_train, data.n_val, data.n_test) == (51, 5, 4)
    with pytest.raises(ValueError, match=r"too short: 16 steps leave a train part of 8 .* needs 9"):
        prepare_forecast(_cfg(synth_length=16))
    with pytest.raises(ValueError, match=r"needs 10 \(window 8 \+ 1 target \+ 1 for differencing\)"):
        prepare_forecast(_cfg(synth_length=17, difference=True))
    prepare_forecast(_cfg(synth_length=17))  # train part exactly window + 1


def test_nonfinite_series_refused():
    x = np.ones((40, 1))
    x[7] = np.nan
    with pytest.raises(ValueError, match="non-finite value nan at step 7"):
        ForecastData(x, _cfg())


@pytest.mark.parametrize("difference", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
def test_transform_round_trip(difference, normalize):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 2)).cumsum(0) * 3 + 100
    data = ForecastData(x, _cfg(difference=difference, normalize=normalize))
    z = data.transform(x)
    assert z.shape == (49 if difference else 50, 2)
    if difference:
        np.testing.assert_allclose(data.inverse(z, last=x[0]), x[1:], rtol=1e-13, atol=1e-12)
        # batched: several forecasts, each from its own last value
        zz = np.stack([data.transform(x[:10]), data.transform(x[20:30])])  # (2 9 2)
        np.testing.assert_allclose(data.inverse(zz, last=np.stack([x[0], x[20]])), np.stack([x[1:10], x[21:30]]), rtol=1e-13)
        with pytest.raises(ValueError, match="last observed value"):
            data.inverse(z)
    else:
        np.testing.assert_allclose(data.inverse(z), x, rtol=1e-13)
    if normalize:  # train statistics: the train part's transformed values have mean 0, std 1
        zt = data.transform(x[: data.n_train])
        np.testing.assert_allclose(zt.mean(0), 0, atol=1e-12)
        np.testing.assert_allclose(zt.std(0), 1, rtol=1e-12)


def test_differenced_linear_trend_comes_back_exactly():
    t = np.arange(40.0)[:, None]
    x = np.hstack([2.0 + 0.5 * t, -1.0 - 0.25 * t])  # (40 2), exactly linear
    data = ForecastData(x, _cfg(difference=True, normalize=True))
    np.testing.assert_allclose(data.mean, [0.5, -0.25])
    np.testing.assert_array_equal(data.std, [1.0, 1.0])  # constant differences: σ = 1, not 0
    ev = data.eval_split("test")
    # the zero forecast in the transformed space is "continue the trend"
    pred = data.inverse(np.zeros((4, 2)), last=ev.last)
    np.testing.assert_allclose(pred, ev.target, rtol=0, atol=1e-12)
    np.testing.assert_allclose(data.transform(np.vstack([ev.history[-1:], ev.target])), 0, atol=1e-12)


def test_normalization_uses_the_train_part_only():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 1))
    y = x.copy()
    y[-8:] += 50.0  # the val and test tails (4 + 4 steps) change, the train part does not
    for diff in (False, True):
        a, b = ForecastData(x, _cfg(difference=diff)), ForecastData(y, _cfg(difference=diff))
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.std, b.std)
        idx = torch.arange(len(a.train))
        torch.testing.assert_close(a.train[idx], b.train[idx], rtol=0, atol=0)


# ------------------------------------------------------------------------------ windows
@pytest.mark.parametrize("difference", [False, True])
def test_windows_are_next_step_pairs(difference):
    x = np.random.default_rng(2).standard_normal((60, 2))
    data = ForecastData(x, _cfg(difference=difference))
    z = torch.from_numpy(data.transform(x)).float()
    lag = int(difference)
    assert len(data.train) == data.n_train - lag - 8
    xb, yb = data.train[torch.tensor([0, 3, len(data.train) - 1])]
    assert xb.shape == yb.shape == (3, 8, 2) and xb.dtype == torch.float32
    torch.testing.assert_close(xb[:, 1:], yb[:, :-1], rtol=0, atol=0)
    torch.testing.assert_close(xb[1], z[3:11], rtol=0, atol=0)
    torch.testing.assert_close(yb[-1, -1], z[data.n_train - lag - 1], rtol=0, atol=0)  # last train target
    x1, y1 = data.train[2]  # an integer index: one window
    assert x1.shape == y1.shape == (8, 2)
    # val / test: one window ending on each step of the tail
    assert len(data.val) == data.n_val and len(data.test) == data.n_test
    _, yv = data.val[torch.arange(len(data.val))]
    torch.testing.assert_close(yv[:, -1], z[data.n_train - lag : data.n_train - lag + data.n_val], rtol=0, atol=0)
    _, yt = data.dataset("test")[torch.arange(len(data.test))]
    torch.testing.assert_close(yt[:, -1], z[-data.n_test :], rtol=0, atol=0)
    with pytest.raises(ValueError, match="split must be one of"):
        data.dataset("dev")


def test_stride():
    data = prepare_forecast(_cfg(stride=3))
    assert len(data.train) == len(range(0, data.n_train - 8, 3))
    torch.testing.assert_close(data.train.starts[:3], torch.tensor([0, 3, 6]))


def test_eval_split_pieces_and_context():
    x = np.random.default_rng(3).standard_normal((60, 1)).cumsum(0)
    data = ForecastData(x, _cfg(difference=True, val_horizon=6))
    ev = data.eval_split("test")
    np.testing.assert_array_equal(ev.target, x[-4:])
    np.testing.assert_array_equal(ev.history, x[:-4])
    np.testing.assert_array_equal(ev.last, x[-5])
    assert ev.context.shape == (8, 1)  # default: the training window
    np.testing.assert_allclose(ev.context, data.transform(x[:-4])[-8:])
    ev = data.eval_split("val", context=5)
    np.testing.assert_array_equal(ev.target, x[50:56])
    assert ev.context.shape == (5, 1)
    with pytest.warns(UserWarning, match="longer than the training window 8"):
        data.eval_split("test", context=20)
    with pytest.raises(ValueError, match="longer than the 55 transformed steps"):
        data.eval_split("test", context=56)
    with pytest.raises(ValueError, match="'val' or 'test'"):
        data.eval_split("train")
    assert ForecastData(x, _cfg(context=6)).eval_split().context.shape == (6, 1)  # data.context


# ------------------------------------------------------------------- baselines, metrics
def test_baselines_by_hand():
    h = np.arange(1.0, 11.0)  # 1 .. 10
    np.testing.assert_array_equal(seasonal_naive(h, 6, 4)[:, 0], [7, 8, 9, 10, 7, 8])
    np.testing.assert_array_equal(seasonal_naive(h, 3, 1)[:, 0], [10, 10, 10])
    two = np.stack([h, -h], 1)
    np.testing.assert_array_equal(seasonal_naive(two, 2, 3), [[8, -8], [9, -9]])
    np.testing.assert_array_equal(last_value(two, 3), [[10, -10]] * 3)
    with pytest.raises(ValueError, match="period 12 needs at least 12 steps"):
        seasonal_naive(h, 3, 12)


def test_metrics_by_hand():
    pred, true = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 0.0], [0.0, 4.0]])
    assert rmse(pred, true) == pytest.approx(np.sqrt((0 + 4 + 9 + 0) / 4))
    assert mae(pred, true) == pytest.approx((0 + 2 + 3 + 0) / 4)
    with pytest.raises(ValueError, match="one non-empty shape"):
        rmse(pred, true[:1])
