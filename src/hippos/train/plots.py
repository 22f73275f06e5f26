"""Training curves from ``metrics.csv``: loss and accuracy against the step, one PNG.

Uses ``matplotlib.figure.Figure`` directly (the Agg canvas), never ``pyplot``, so it works
without a display and leaves the caller's matplotlib backend alone. Returns False (and
writes nothing) when matplotlib is not installed.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
from pathlib import Path

__all__ = ["plot_compare", "plot_curves", "read_metrics"]


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Rows of ``metrics.csv`` with numbers parsed (empty cells become None)."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for k, v in row.items():
                if k == "split":
                    parsed[k] = v
                else:
                    parsed[k] = float(v) if v not in ("", None) else None
            rows.append(parsed)
    return rows


def plot_curves(metrics_csv: str | os.PathLike, out_png: str | os.PathLike, title: str = "",
                loss_name: str = "cross-entropy") -> bool:
    """Two panels (loss, accuracy) of train and val rows against the step; PNG written atomically.
    Rows without an accuracy (regression) leave the accuracy panel empty."""
    try:
        fig = _curves_figure(read_metrics(metrics_csv), title, loss_name)
    except ImportError:
        return False
    return _save(fig, out_png)


def _curves_figure(rows: list[dict], title: str, loss_name: str):
    """The ``plot_curves`` figure of ``metrics.csv`` rows (``read_metrics``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.8 if title else 0.86, wspace=0.22)
    ax_loss, ax_acc = fig.subplots(1, 2)
    styles = {"train": dict(color="tab:blue", lw=1, alpha=0.8), "val": dict(color="tab:orange", marker="o", ms=3)}
    for split, style in styles.items():
        pts = [r for r in rows if r["split"] == split and r.get("loss") is not None]
        if not pts:
            continue
        steps = [r["step"] for r in pts]
        ax_loss.plot(steps, [r["loss"] for r in pts], label=split, **style)
        with_acc = [r for r in pts if r.get("acc") is not None]  # a regression task has no accuracy
        if with_acc:
            ax_acc.plot([r["step"] for r in with_acc], [100 * r["acc"] for r in with_acc], label=split, **style)
    for r in rows:
        if r["split"] in ("test", "test_best") and r.get("acc") is not None:
            style = dict(color="tab:green", ls="--") if r["split"] == "test" else dict(color="tab:red", ls=":")
            name = "test" if r["split"] == "test" else "test (best val)"
            ax_acc.axhline(100 * r["acc"], lw=1, label=f"{name} {100 * r['acc']:.2f}%", **style)
    ax_loss.set(xlabel="step", ylabel=loss_name)
    ax_acc.set(xlabel="step", ylabel="accuracy (%)")
    if any(r["split"] == "train" and (r.get("loss") or 0) > 0 for r in rows):
        _log_axis_plain(ax_loss)
    # the epoch boundaries along the top
    epochs = sorted({(r["step"], r["epoch"]) for r in rows if r["split"] == "val" and r.get("epoch") is not None
                     and float(r["epoch"]).is_integer()})
    if len(epochs) > 12:
        epochs = epochs[:: math.ceil(len(epochs) / 12)]
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        if epochs:
            top = ax.secondary_xaxis("top")
            top.set_xticks([s for s, _ in epochs], labels=[f"{e:g}" for _, e in epochs])
            top.set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    return fig


def _log_axis_plain(ax) -> None:
    """A log y axis labelled in plain numbers (0.69, 0.7) instead of 6.9 × 10⁻¹: on a loss that
    spans less than a decade matplotlib labels the minor ticks, and its scientific labels were
    wider than the figure's left margin (cut off). Which ticks get a label is matplotlib's choice."""
    from matplotlib.ticker import LogFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))


def _save(fig, out_png) -> bool:
    """Write ``fig`` to ``out_png`` atomically (a temp file, then a rename)."""
    out_png = Path(out_png)
    tmp = out_png.with_name(f".{out_png.stem}.tmp.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, out_png)
    except BaseException:  # a full disk, Ctrl-C: no temp file left behind
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return True


def plot_compare(runs: dict[str, str | os.PathLike], out_png: str | os.PathLike, title: str = "",
                 references: dict[str, float] | None = None, loss_name: str = "cross-entropy") -> bool:
    """Several runs of one task side by side against the epoch: training loss (left) and
    validation accuracy (right), each run's test accuracy of its best-validation weights as a
    star at its last epoch, ``references`` (``{"paper S4": 94.2}``, in %) as dotted lines.
    ``runs``: ``{label: metrics.csv}``; a missing file is skipped (its color stays its own). Returns False (and writes
    nothing) when matplotlib is not installed or no run has rows."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    colors = ["tab:blue", "tab:green", "tab:orange", "tab:red", "tab:purple", "tab:brown"]
    color_of = {label: colors[k % len(colors)] for k, label in enumerate(runs)}  # by place: stable across figures
    data = {label: read_metrics(path) for label, path in runs.items() if Path(path).is_file()}
    data = {label: rows for label, rows in data.items() if rows}
    if not data:
        return False
    fig = Figure(figsize=(10, 4.2))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.86 if title else 0.94, wspace=0.22)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for label, rows in data.items():
        color = color_of[label]
        train = [r for r in rows if r["split"] == "train" and r.get("loss") is not None and r.get("epoch") is not None]
        if train:
            ax_loss.plot([r["epoch"] for r in train], [r["loss"] for r in train], color=color, lw=1, alpha=0.8, label=label)
        val = [r for r in rows if r["split"] == "val" and r.get("acc") is not None and r.get("epoch") is not None]
        if val:
            ax_acc.plot([r["epoch"] for r in val], [100 * r["acc"] for r in val], color=color, marker="o", ms=3, label=label)
        test = [r for r in rows if r["split"] == "test_best" and r.get("acc") is not None] or \
            [r for r in rows if r["split"] == "test" and r.get("acc") is not None]
        if test:
            last = max((r["epoch"] for r in rows if r.get("epoch") is not None), default=0.0)
            ax_acc.plot([last], [100 * test[-1]["acc"]], color=color, marker="*", ms=12, ls="none",
                        label=f"{label}: test {100 * test[-1]['acc']:.1f}%")
    for k, (name, value) in enumerate((references or {}).items()):
        ax_acc.axhline(value, color="gray", ls=":", lw=1 + k % 2)
        ax_acc.annotate(f"{name} {value:g}", (0, value), xycoords=("axes fraction", "data"), fontsize=7, color="gray",
                        xytext=(2, 2), textcoords="offset points")
    ax_loss.set(xlabel="epoch", ylabel=f"training {loss_name}")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)
