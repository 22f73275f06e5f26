"""Time series forecasting data: a series from a CSV or ``.npz`` file (or a generated seasonal
one), split into a training part and two held-out tails, transformed, and cut into windows of
next-step targets. The math and the trap of long rollout contexts: ``docs/forecasting.md``.

A series ``x: f64(T d)`` (T steps, d variables) is split by time, never shuffled::

    x[: T - v - h]          train part     (windows for the next-step loss; transform statistics)
    x[T - v - h : T - h]    val tail       (v = val_horizon, default h)
    x[T - h :]              test tail      (h = horizon)

The transform is first differences (optional) then per-variable normalization with the mean
and standard deviation of the *train part only*::

    Δx_t = x_t - x_{t-1}                    (difference=True; the series loses its first step)
    z_t  = (Δx_t - μ) / σ                   (normalize=True; μ, σ: f64(d) from the train part)

and :meth:`ForecastData.inverse` maps a forecast ``ẑ_{T+1..T+h}`` back to original units,
exactly: ``x̂_{T+k} = x_T + Σ_{j≤k} (σ ẑ_{T+j} + μ)`` with differencing (``x_T`` the last
observed value), ``σ ẑ + μ`` without.

Baselines (the same split, original units): seasonal-naive ``x̂_{T+k} = x_{T+k-p⌈k/p⌉}`` and
last-value ``x̂_{T+k} = x_T``; metrics ``rmse``, ``mae`` over the horizon and the variables.
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "SPLITS",
    "EvalSplit",
    "ForecastData",
    "ForecastDataConfig",
    "WindowDataset",
    "generate_seasonal",
    "last_value",
    "load_series",
    "mae",
    "prepare_forecast",
    "rmse",
    "seasonal_naive",
]

SPLITS = ("train", "val", "test")

#: Header names (lower case) of a first column taken as a time index when ``column`` is None.
_TIME_NAMES = {"", "ds", "t", "day", "week", "month", "quarter", "year", "period", "index"}


@dataclass
class ForecastDataConfig:
    """The data section of the ``forecast`` task (``--data.KEY=VALUE``).

    ``path=None`` uses the built-in generated seasonal series (:func:`generate_seasonal`, the
    ``synth_*`` fields), so the task runs with no file. ``column`` (CSV): one header name, or
    comma-separated names for a multivariate series; None takes every column, except a first
    column that looks like a time index (its header contains "date" or "time" or is one of
    ``ds, t, day, week, month, quarter, year, period, index`` or empty, or its first value is not a
    number). ``.npz``: ``column`` names the array (default: ``series``, or the only array).
    """

    path: str | None = None  # CSV (header row) or .npz; None: the generated series below
    column: str | None = None  # CSV column name(s), comma-separated; .npz: the array's key
    window: int = 128  # training window length W (inputs x[t : t+W], targets x[t+1 : t+W+1])
    horizon: int = 24  # the test tail: the last `horizon` steps, forecast by rolling out
    val_horizon: int | None = None  # the validation tail before the test tail; None: = horizon
    difference: bool = False  # model first differences (undone exactly for the metrics)
    normalize: bool = True  # subtract the mean, divide by the std (train part only, per variable)
    period: int = 12  # seasonal-naive baseline: the value one period earlier
    context: int | None = None  # rollout context length; None: = window (longer is a trap: docs)
    stride: int = 1  # steps between the starts of consecutive training windows
    synth_length: int = 1000  # generated series: T
    synth_period: int = 12  # generated series: its season's period
    synth_trend: float = 0.03  # generated series: slope per step (seasonal-naive misses it by trend·P)
    synth_noise: float = 0.05  # generated series: std of the Gaussian noise
    synth_seed: int = 0  # generated series: seed of the noise


def _int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _float(name: str, v, lo: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not math.isfinite(v) or (lo is not None and v < lo):
        bound = f" >= {lo}" if lo is not None else ""
        raise ValueError(f"{name} must be a finite number{bound}, got {v!r}")
    return float(v)


def _check_config(cfg: ForecastDataConfig) -> None:
    if not isinstance(cfg, ForecastDataConfig):
        raise TypeError(f"expected a ForecastDataConfig, got {type(cfg).__name__}")
    for name in ("path", "column"):
        if not isinstance(getattr(cfg, name), (str, type(None))):
            raise TypeError(f"data.{name} must be a string or None, got {getattr(cfg, name)!r}")
    if cfg.column is not None and not all(c.strip() for c in cfg.column.split(",")):
        raise ValueError(f"data.column: expected a name or comma-separated names, got {cfg.column!r}")
    for name, lo in (("window", 1), ("horizon", 1), ("period", 1), ("stride", 1), ("synth_length", 2), ("synth_period", 1), ("synth_seed", 0)):
        _int(f"data.{name}", getattr(cfg, name), lo)
    for name in ("val_horizon", "context"):
        if getattr(cfg, name) is not None:
            _int(f"data.{name}", getattr(cfg, name), 1)
    _float("data.synth_trend", cfg.synth_trend)
    _float("data.synth_noise", cfg.synth_noise, 0.0)
    for name in ("difference", "normalize"):
        if not isinstance(getattr(cfg, name), bool):
            raise TypeError(f"data.{name} must be a bool, got {getattr(cfg, name)!r}")


def long_context_warning(context: int, window: int) -> str:
    """The one line said when a rollout context exceeds the training window (a known trap)."""
    return (f"rollout context {context} is longer than the training window {window}: the model never saw such "
            "states and its errors may grow (docs/forecasting.md, 'Known traps')")


# ---------------------------------------------------------------------------------- loading
def generate_seasonal(length: int = 1000, period: int = 12, trend: float = 0.03, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """The built-in series ``f64(length 1)``: trend + a two-harmonic season + Gaussian noise,

        x_t = trend·t + sin(2πt/P) + ½·cos(4πt/P) + noise·ε_t,   ε_t ~ N(0, 1) iid (PCG64(seed)).

    The trend is what seasonal-naive misses (by ``trend·P`` per step); the season is what
    last-value misses.
    """
    length, period = _int("length", length, 2), _int("period", period, 1)
    trend, noise = _float("trend", trend), _float("noise", noise, 0.0)
    t = np.arange(length, dtype=np.float64)
    season = np.sin(2 * np.pi * t / period) + 0.5 * np.cos(4 * np.pi * t / period)
    eps = np.random.Generator(np.random.PCG64(_int("seed", seed, 0))).standard_normal(length)
    return (trend * t + season + noise * eps)[:, None]


def _is_time_name(name: str) -> bool:
    low = name.strip().lower()
    return "date" in low or "time" in low or low in _TIME_NAMES


def _parse_float(cell: str) -> float | None:
    try:
        v = float(cell)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _read_csv(path: Path, column: str | None) -> tuple[np.ndarray, list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file (expected a header row and values)")
        header = [h.strip() for h in header]
        rows = []  # (line number, cells)
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            if len(cells) != len(header):
                raise ValueError(f"{path}: line {reader.line_num} has {len(cells)} fields, the header has {len(header)}")
            rows.append((reader.line_num, cells))
    if not rows:
        raise ValueError(f"{path}: no data rows after the header")
    if column is None:  # every column but a first one that looks like a time index
        first_is_time = _is_time_name(header[0]) or _parse_float(rows[0][1][0].strip()) is None
        cols = list(range(int(first_is_time), len(header)))
        if not cols:
            raise ValueError(f"{path}: no value columns (header {header}); name one with data.column")
    else:
        names = [c.strip() for c in column.split(",")]
        cols = []
        for name in names:
            hits = [i for i, h in enumerate(header) if h == name]
            if not hits:
                raise ValueError(f"{path}: no column {name!r}; available: {', '.join(repr(h) for h in header)}")
            if len(hits) > 1:
                raise ValueError(f"{path}: the header has {len(hits)} columns named {name!r}")
            cols.append(hits[0])
    out = np.empty((len(rows), len(cols)), dtype=np.float64)  # (T d)
    for r, (line, cells) in enumerate(rows):
        for j, c in enumerate(cols):
            cell = cells[c].strip()
            v = _parse_float(cell)
            if v is None:
                what = "a missing value" if cell.lower() in ("", "na", "nan", "null", "none") else "not a finite number"
                raise ValueError(f"{path}: line {line}, column {header[c]!r}: {cell!r} is {what}")
            out[r, j] = v
    return out, [header[c] for c in cols]


def _read_npz(path: Path, key: str | None) -> tuple[np.ndarray, list[str]]:
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        if key is None:
            if "series" in keys:
                key = "series"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise ValueError(f"{path}: {len(keys)} arrays and none named 'series'; pick one with data.column (available: {', '.join(keys)})")
        if key not in keys:
            raise ValueError(f"{path}: no array {key!r}; available: {', '.join(keys)}")
        a = z[key]
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{path}[{key!r}]: expected a real numeric array, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{path}[{key!r}]: expected a 1-D (T,) or 2-D (T, d) array, got shape {a.shape}")
    a = a.astype(np.float64)
    bad = np.argwhere(~np.isfinite(a))
    if len(bad):
        t, j = bad[0]
        raise ValueError(f"{path}[{key!r}]: {a[t, j]} at step {t}, variable {j} ({len(bad)} non-finite values in all)")
    names = [key] if a.shape[1] == 1 else [f"{key}[{j}]" for j in range(a.shape[1])]
    return a, names


def _load(cfg: ForecastDataConfig) -> tuple[np.ndarray, list[str]]:
    _check_config(cfg)
    if cfg.path is None:
        return generate_seasonal(cfg.synth_length, cfg.synth_period, cfg.synth_trend, cfg.synth_noise, cfg.synth_seed), ["generated"]
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise ValueError(f"data.path: no file {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, cfg.column)
    if suffix == ".npz":
        return _read_npz(path, cfg.column)
    raise ValueError(f"data.path: expected a .csv or .npz file, got {path.name!r}")


def load_series(cfg: ForecastDataConfig) -> np.ndarray:
    """The series ``f64(T d)`` of ``cfg``: a CSV file (header row, ``cfg.column``), an ``.npz``
    array (1-D -> ``(T, 1)``), or the generated seasonal series when ``cfg.path`` is None.

    Raises ``ValueError`` for a missing file or column (listing the available ones), and for a
    missing or non-numeric value (naming its line and column, or step and variable).
    """
    return _load(cfg)[0]


# ------------------------------------------------------------------------ baselines, metrics
def _history(history, what: str) -> np.ndarray:
    h = np.asarray(history, dtype=np.float64)
    if h.ndim == 1:
        h = h[:, None]
    if h.ndim != 2 or h.shape[0] == 0:
        raise ValueError(f"{what}: history must be a non-empty (T, d) array, got shape {h.shape}")
    return h


def seasonal_naive(history, horizon: int, period: int) -> np.ndarray:
    """``x̂_{T+k} = x_{T+k-p⌈k/p⌉}``, k = 1..horizon: the value one period earlier, the last
    observed period repeated for horizons longer than p. ``history: (T d)`` -> ``f64(horizon d)``."""
    h = _history(history, "seasonal_naive")
    horizon, period = _int("horizon", horizon, 1), _int("period", period, 1)
    if h.shape[0] < period:
        raise ValueError(f"seasonal_naive: period {period} needs at least {period} steps of history, got {h.shape[0]}")
    k = np.arange(horizon)  # k - 1 for k = 1..horizon
    return h[h.shape[0] - period + k % period]


def last_value(history, horizon: int) -> np.ndarray:
    """``x̂_{T+k} = x_T``: the last observed value repeated. ``history: (T d)`` -> ``f64(horizon d)``."""
    h = _history(history, "last_value")
    return np.repeat(h[-1:], _int("horizon", horizon, 1), axis=0)


def _pair(pred, target, what: str) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.shape != t.shape or p.size == 0:
        raise ValueError(f"{what}: prediction and target must have one non-empty shape, got {p.shape} and {t.shape}")
    return p, t


def rmse(pred, target) -> float:
    """``sqrt(mean((x̂ - x)²))`` over every step and variable."""
    p, t = _pair(pred, target, "rmse")
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(pred, target) -> float:
    """``mean(|x̂ - x|)`` over every step and variable."""
    p, t = _pair(pred, target, "mae")
    return float(np.mean(np.abs(p - t)))


# ------------------------------------------------------------------------------ the dataset
class WindowDataset(torch.utils.data.Dataset):
    """Windows of a transformed series ``z: f32(T' d)`` fetched a batch at a time:
    ``ds[indices] -> (x: f32(B W d), y: f32(B W d))`` with ``x = z[s : s+W]`` and
    ``y = z[s+1 : s+W+1]`` (the next step at every position), ``s = starts[indices]``.
    An integer index gives ``(x: f32(W d), y: f32(W d))``."""

    def __init__(self, z: torch.Tensor, starts: torch.Tensor, window: int):
        if z.dim() != 2 or starts.dim() != 1:
            raise ValueError(f"expected z (T, d) and starts (n,), got {tuple(z.shape)} and {tuple(starts.shape)}")
        if len(starts) and (starts.min() < 0 or starts.max() + window + 1 > len(z)):
            raise ValueError(f"window starts must lie in [0, {len(z) - window - 1}]")
        self.z, self.starts, self.window = z, starts.long(), int(window)
        self._offsets = torch.arange(self.window + 1)  # (W+1)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index):
        s = self.starts[index]  # (B) or ()
        seg = self.z[s[..., None] + self._offsets]  # (B W+1 d) or (W+1 d)
        return seg[..., :-1, :], seg[..., 1:, :]


@dataclass
class EvalSplit:
    """What a forecast of one tail needs. ``context: f64(Lc d)`` transformed (the model's input),
    ``history: f64(T0 d)`` and ``target: f64(h d)`` in original units (``target`` follows
    ``history``), ``last: f64(d)`` the last observed value (``history[-1]``: undoes differencing)."""

    split: str
    context: np.ndarray
    history: np.ndarray
    target: np.ndarray
    last: np.ndarray


class ForecastData:
    """A series split by time, its transform, and the datasets of the ``forecast`` task.

    Attributes: ``series: f64(T d)`` (original units), ``names`` (one per variable), ``d``,
    ``n_train``, ``n_val``, ``n_test`` (steps of each part, original units: they sum to T),
    ``mean``, ``std: f64(d)`` (of the train part's differenced values when differencing; 0 and 1
    without normalization), ``context`` (the default rollout context), and the datasets
    ``train``, ``val``, ``test`` (:class:`WindowDataset`; :meth:`dataset`). Built by
    :func:`prepare_forecast`.
    """

    def __init__(self, series, cfg: ForecastDataConfig, names: list[str] | None = None):
        _check_config(cfg)
        x = _history(series, "ForecastData")  # (T d)
        if not np.isfinite(x).all():
            t, j = np.argwhere(~np.isfinite(x))[0]
            raise ValueError(f"the series has a non-finite value {x[t, j]} at step {t}, variable {j}")
        self.cfg, self.series, self.d = cfg, x, x.shape[1]
        self.names = list(names) if names is not None else [f"x{j}" for j in range(self.d)]
        self.window, self.period = cfg.window, cfg.period
        self.context = cfg.window if cfg.context is None else cfg.context
        T, h = x.shape[0], cfg.horizon
        v = h if cfg.val_horizon is None else cfg.val_horizon
        self.n_test, self.n_val, self.n_train = h, v, T - v - h
        lag = int(cfg.difference)  # differencing drops one step
        need = cfg.window + 1 + lag
        if self.n_train < need:
            raise ValueError(
                f"the series is too short: {T} steps leave a train part of {self.n_train} after the val and test tails "
                f"({v} + {h}), and one window needs {need} (window {cfg.window} + 1 target{' + 1 for differencing' if lag else ''})"
            )
        self.mean, self.std = np.zeros(self.d), np.ones(self.d)
        if cfg.normalize:
            dtrain = self._diff(x[: self.n_train])  # (n_train - lag, d)
            std = dtrain.std(axis=0)
            self.mean, self.std = dtrain.mean(axis=0), np.where(std > 0, std, 1.0)  # a constant variable: σ = 1
        z = torch.from_numpy(self.transform(x).astype(np.float32))  # (T - lag, d); z[i] is step i + lag
        W, zt, zv = cfg.window, self.n_train - lag, self.n_train + v - lag  # ends (exclusive) of the parts in z
        # train: every target inside the train part; val/test: one window per tail step, ending on it
        self.train = WindowDataset(z, torch.arange(0, zt - W, cfg.stride), W)
        self.val = WindowDataset(z, torch.arange(zt - W, zv - W), W)
        self.test = WindowDataset(z, torch.arange(zv - W, len(z) - W), W)

    # ----------------------------------------------------------------------- the transform
    def _diff(self, x: np.ndarray) -> np.ndarray:
        return np.diff(x, axis=0) if self.cfg.difference else x

    def transform(self, x) -> np.ndarray:
        """``x: (n d)`` original units -> ``z: f64(n d)``, or ``f64(n-1 d)`` with differencing
        (``z_i = (x_{i+1} - x_i - μ)/σ``), with the train part's statistics."""
        x = _history(x, "transform")
        if x.shape[1] != self.d:
            raise ValueError(f"transform: expected {self.d} variables, got shape {x.shape}")
        return (self._diff(x) - self.mean) / self.std

    def inverse(self, z, last=None) -> np.ndarray:
        """A transformed forecast ``z: (..., n, d)`` -> original units ``f64(..., n, d)``.

        Without differencing ``x̂ = σ z + μ``. With it, ``last: (..., d)`` (the last observed value
        before the forecast, :attr:`EvalSplit.last`) is required and ``x̂_k = last + Σ_{j≤k}(σ z_j + μ)``.
        """
        z = np.asarray(z, dtype=np.float64)
        if z.ndim < 2 or z.shape[-1] != self.d:
            raise ValueError(f"inverse: expected z of shape (..., n, {self.d}), got {z.shape}")
        dx = z * self.std + self.mean
        if not self.cfg.difference:
            return dx
        if last is None:
            raise ValueError("inverse: with data.difference=True the last observed value (last=) is needed to undo it")
        last = np.asarray(last, dtype=np.float64)
        if last.shape != z.shape[:-2] + (self.d,):
            raise ValueError(f"inverse: last must have shape {z.shape[:-2] + (self.d,)}, got {last.shape}")
        return last[..., None, :] + np.cumsum(dx, axis=-2)

    # ------------------------------------------------------------------ datasets, eval pieces
    def dataset(self, split: str) -> WindowDataset:
        """Windows for the next-step loss: ``train`` (all targets in the train part, every
        ``stride`` steps), ``val``/``test`` (one window ending on each step of that tail; earlier
        targets of such a window lie before the tail, and its inputs are true values: teacher
        forcing, not the rollout)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, split)

    def eval_split(self, split: str = "test", context: int | None = None) -> EvalSplit:
        """The pieces of a forecast of the ``val`` or ``test`` tail from everything before it:
        the last ``context`` transformed steps (default :attr:`context`, the training window)."""
        if split not in ("val", "test"):
            raise ValueError(f"a forecast is evaluated on 'val' or 'test', got {split!r}")
        context = self.context if context is None else _int("context", context, 1)
        start = self.n_train if split == "val" else self.n_train + self.n_val
        n = self.n_val if split == "val" else self.n_test
        history, target = self.series[:start], self.series[start : start + n]
        z = self.transform(history)
        if context > len(z):
            raise ValueError(f"rollout context {context} is longer than the {len(z)} transformed steps before the {split} tail")
        if context > self.window:
            warnings.warn(long_context_warning(context, self.window), stacklevel=2)
        return EvalSplit(split, z[-context:], history, target, history[-1].copy())


def prepare_forecast(cfg: ForecastDataConfig) -> ForecastData:
    """Load the series of ``cfg`` (:func:`load_series`) and split, transform and window it."""
    x, names = _load(cfg)
    return ForecastData(x, cfg, names)
