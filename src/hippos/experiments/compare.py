"""``hippos compare``: several training runs side by side, a table and a figure.

For a sweep (the same task with one setting changed per run) the question is "which setting
did what": each row names what its config changes from the others (``differs``: the keys whose
values are not the same in every run), how far it trained, where its training loss first left
its start, and its best validation and test accuracy. The figure is the runs' training loss and
validation accuracy against the epoch (:func:`hippos.train.plots.plot_compare`). A training loss
that falls while the validation loss rises past its minimum is fitting the training set, not
learning the task (what the first Pathfinder runs did: docs/lra.md).

A run folder needs ``config.json`` and ``metrics.csv`` (what ``hippos train`` writes from its
first step); ``results.json`` (written when a run ends or is cut) adds the test accuracy and the
train time, else they come from the metrics.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["IGNORED_KEYS", "compare_markdown", "compare_runs", "config_differences", "loss_departure", "summarize_run"]

#: config keys that say where or how fast a run went, not what it trained
IGNORED_KEYS = frozenset({"out_dir", "data_dir", "task_module", "device", "num_threads", "num_workers", "tensorboard",
                          "log_every", "eval_every", "checkpoint_every", "checkpoint_minutes", "max_steps",
                          "dist_backend", "data.cache_dir", "data.workers", "config_version"})


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{key}."))
        else:
            out[key] = v
    return out


def config_differences(configs: list[dict]) -> list[dict]:
    """For each config, ``{key: value}`` of the keys (flattened, ``model.norm``) whose values are
    not the same in all of them (a key missing from some counts as differing); ``IGNORED_KEYS``
    left out."""
    flats = [_flat(c) for c in configs]
    keys = sorted({k for f in flats for k in f} - IGNORED_KEYS)
    missing = object()
    differing = [k for k in keys if len({json.dumps(f.get(k, missing), default=str) for f in flats}) > 1]
    return [{k: f.get(k) for k in differing} for f in flats]


def loss_departure(rows: list[dict], window: int = 8, drop: float = 0.005) -> float | None:
    """The first epoch at which the training loss, averaged over ``window`` logged rows, sits
    ``drop`` (relative) below its first window's average: where a run leaves its plateau (LRA
    Pathfinder sits at ln 2 for epochs). None when it never does (or there are too few rows)."""
    train = [r for r in rows if r.get("split") == "train" and r.get("loss") is not None and r.get("epoch") is not None]
    if len(train) < 2 * window:
        return None
    start = sum(r["loss"] for r in train[:window]) / window
    for k in range(window, len(train) - window + 1):
        if sum(r["loss"] for r in train[k:k + window]) / window < start * (1 - drop):
            return train[k + window - 1]["epoch"]
    return None


def _complete(raw: dict) -> dict:
    """The saved config with what an older version did not write filled in (upgraded, keys added
    since at their defaults, which keep the old behaviour), so a new key does not count as a
    difference; the dict as saved where it cannot be read that way (a task not importable here)."""
    from hippos.train.config import config_to_dict
    from hippos.train.registry import config_from_dict

    try:
        return config_to_dict(config_from_dict(raw))
    except (ValueError, TypeError, KeyError, ImportError, OSError):  # a task this install lacks: compare what was saved
        return raw


def summarize_run(run_dir) -> dict:
    """One row: task, epochs done / planned, steps, params (from results.json when written), best
    validation accuracy and its epoch, test accuracy (best-validation weights where recorded), the
    last epoch's mean training loss, where the loss left its start, train time."""
    from hippos.train.plots import read_metrics

    run = Path(run_dir)
    for name in ("config.json", "metrics.csv"):
        if not (run / name).is_file():
            raise FileNotFoundError(f"{str(run)!r} is not a training run ({name} missing)")
    config = _complete(json.loads((run / "config.json").read_text()))
    rows = read_metrics(run / "metrics.csv")
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
    val = [r for r in rows if r["split"] == "val" and r.get("acc") is not None]
    best = max(val, key=lambda r: r["acc"], default=None)
    tests = [r for r in rows if r["split"] in ("test_best", "test") and r.get("acc") is not None]
    test = results.get("test_acc_best_val", results.get("test_acc"))
    if test is None and tests:
        test = tests[-1]["acc"]
    train = [r for r in rows if r["split"] == "train" and r.get("loss") is not None]
    last_epoch = math.ceil(train[-1]["epoch"]) if train else 0
    last = [r["loss"] for r in train if math.ceil(r["epoch"]) == last_epoch]
    step = results.get("step", int(max((r["step"] for r in rows if r.get("step") is not None), default=0)))
    epoch = max((r["epoch"] for r in rows if r.get("epoch") is not None), default=0.0)
    elapsed = max((r["elapsed_s"] for r in rows if r.get("elapsed_s") is not None), default=None)
    return {
        "run_dir": str(run), "task": config.get("task"), "config": config,
        "epochs": float(results.get("epoch", epoch)), "planned_epochs": config.get("epochs"), "steps": int(step),
        "complete": bool(results.get("complete")), "params": results.get("n_params"),
        "best_val_acc": None if best is None else 100 * best["acc"], "best_val_epoch": None if best is None else best["epoch"],
        "test_acc": None if test is None else 100 * test,
        "last_train_loss": sum(last) / len(last) if last else None, "loss_departure": loss_departure(rows),
        "val_loss": [r["loss"] for r in val if r.get("loss") is not None],  # per evaluation, in order
        "train_time_s": results.get("train_time_s", elapsed),
    }


def _value(v) -> str:
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)


def compare_markdown(summaries: list[dict], labels: list[str]) -> str:
    """The table of :func:`summarize_run` rows, ``differs`` from :func:`config_differences`."""
    from hippos.experiments.plan import duration

    diffs = config_differences([s["config"] for s in summaries])
    pct = (lambda v: "—" if v is None else f"{v:.1f}")
    head = ["run", "task", "differs", "epochs", "steps", "loss left start", "last-epoch train loss",
            "val loss first → min → last", "best val acc", "test acc", "train time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, s, diff in zip(labels, summaries, diffs):
        epochs = f"{s['epochs']:g}" + ("" if s["complete"] else f" of {s['planned_epochs']}")
        cells = [label, str(s["task"]), " ".join(f"`{k}={_value(v)}`" for k, v in diff.items()) or "—", epochs,
                 f"{s['steps']:,}", "—" if s["loss_departure"] is None else f"epoch {s['loss_departure']:.1f}",
                 "—" if s["last_train_loss"] is None else f"{s['last_train_loss']:.4f}",
                 " → ".join(f"{v:.4f}" for v in (s["val_loss"][0], min(s["val_loss"]), s["val_loss"][-1]))
                 if s["val_loss"] else "—",
                 pct(s["best_val_acc"]) + ("" if s["best_val_epoch"] is None else f" (epoch {s['best_val_epoch']:g})"),
                 pct(s["test_acc"]), "—" if s["train_time_s"] is None else duration(s["train_time_s"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def compare_runs(run_dirs, labels=None, out_png=None, title: str = "") -> tuple[str, Path | None]:
    """The table (markdown) of ``run_dirs`` and, with ``out_png``, their figure (None when not written)."""
    from hippos.train.plots import plot_compare

    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise ValueError("compare needs at least one run folder")
    labels = list(labels) if labels else [r.name for r in run_dirs]
    if len(labels) != len(run_dirs) or len(set(labels)) != len(labels):
        raise ValueError(f"need one distinct label per run: {len(run_dirs)} runs, labels {labels}")
    summaries = [summarize_run(r) for r in run_dirs]
    if len({s["task"] for s in summaries}) > 1:
        title = title or "runs of different tasks"
    md = compare_markdown(summaries, labels)
    png = None
    if out_png is not None:
        runs = {label: r / "metrics.csv" for label, r in zip(labels, run_dirs)}
        png = Path(out_png) if plot_compare(runs, out_png, title or str(summaries[0]["task"])) else None
    return md, png
