"""The Long Range Arena table at CPU scale: S4, S4D and a Transformer on ListOps, Text, Pathfinder
and Image (S4 arXiv 2111.00396 Table 4; LRA arXiv 2011.04006).

Each (task, model) arm is one ordinary run of ``hippos train TASK`` in ``<out_dir>/<task>-<model>``
(the task's defaults, ``hippos.train.tasks.lra``; ``s4d``: ``model.mode=diag``; ``transformer``:
:func:`~hippos.train.tasks.lra.lra_transformer` for :data:`TRANSFORMER_EPOCHS`, a budget of
training time rather than of epochs), with its own ``curves.png``; ``<task>.png`` puts a task's
models side by side. A rerun skips
finished arms, resumes cut ones from their last checkpoint (``hippos train --resume``, bitwise) and
starts the rest; a directory holding another config is refused before anything runs. The table
(test accuracy of the best-validation weights, parameters, steps, wall time, beside the paper's)
goes to ``lra.md`` / ``lra.json`` in ``out_dir``, the trainer's lines to ``lra.log``. The command
line is ``hippos lra`` (``hippos.cli.lra``); see docs/lra.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

__all__ = ["LRA_TRAIN_KEYS", "MODELS", "PAPER", "TASKS", "TRANSFORMER_EPOCHS", "arm_config", "plot_task", "run_lra", "table_markdown"]

TASKS = ("listops", "lra-text", "pathfinder", "lra-image")
TASK_TITLES = {"listops": "ListOps", "lra-text": "Text", "pathfinder": "Pathfinder", "lra-image": "Image"}
MODELS = ("s4", "s4d", "transformer")
MODEL_TITLES = {"s4": "S4", "s4d": "S4D", "transformer": "Transformer"}
#: S4 (arXiv 2111.00396) Table 4, test accuracy %: its S4 and the LRA paper's Transformer.
PAPER = {
    "s4": {"listops": 59.60, "lra-text": 86.82, "pathfinder": 94.20, "lra-image": 88.65},
    "transformer": {"listops": 36.37, "lra-text": 64.27, "pathfinder": 71.40, "lra-image": 42.44},
}
SUMMARY_MD, SUMMARY_JSON, LOG = "lra.md", "lra.json", "lra.log"
#: ``--smoke``: a few steps of tiny models on tiny data (a check that the whole command runs, in a minute).
SMOKE_OVERRIDES = {
    "*": [("epochs", "1"), ("model.d_model", "8"), ("model.n_layers", "1"), ("batch_size", "8"), ("model.n_heads", "2")],
    "listops": [("data.n_train", "32"), ("data.n_val", "8"), ("data.n_test", "8"), ("data.min_length", "20"),
                ("data.max_length", "80")],
    "lra-text": [("data.max_length", "128"), ("data.n_train", "32"), ("data.val_size", "8"), ("data.n_test", "8")],
    "pathfinder": [("data.n_train", "32"), ("data.n_val", "8"), ("data.n_test", "8")],
    "lra-image": [("data.n_train", "32"), ("data.val_size", "8"), ("data.n_test", "8")],
}
#: The Transformer's budget: the epochs that give it at least the S4 arm's training time on a CPU,
#: not S4's epochs. Its training step costs 3.7-8.9× S4's there (attention is quadratic in L;
#: ``scripts/lra_step_cost.py`` measures it and prints these numbers); at S4's epochs its four
#: arms would take about 25 hours of one core. ``--epochs`` sets every arm, these included.
TRANSFORMER_EPOCHS = {"listops": 1, "lra-text": 2, "pathfinder": 2, "lra-image": 6}
#: the training keys ``hippos lra --KEY=VALUE`` sets in every arm (optimization only: the rest are its own options)
LRA_TRAIN_KEYS = ("lr", "weight_decay", "warmup_fraction", "warmup_steps", "schedule", "min_lr_ratio", "grad_clip", "batch_size")
#: Keys ``fit_config`` fills in from the data: not compared when deciding to resume.
_FILLED = {"model.d_input", "model.n_classes", "model.vocab_size", "model.l_max"}


def arm_config(task: str, model: str, out_dir, *, epochs: int | None = None, smoke: bool = False, seed: int = 0,
               data_dir: str | None = None, device: str = "cpu", num_threads: int | None = None, max_steps: int | None = None,
               overrides=()):
    """The ``TrainConfig`` of one arm: the task's defaults, the model's overrides, then ``overrides``
    (``[("data.n_train", "20000"), ("model.b_clip", "2"), ("lr", "0.01"), ...]``: a data key applies
    to every task that has it, a model key or one of ``LRA_TRAIN_KEYS`` to every arm)."""
    from hippos.experiments.plan import given_options
    from hippos.train import default_config
    from hippos.train.config import apply_overrides
    from hippos.train.tasks.lra import lra_transformer

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (tasks: {', '.join(TASKS)})")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (models: {', '.join(MODELS)})")
    cfg = default_config(task)
    pairs = {"s4": [], "s4d": [("model.mode", "diag")],
             "transformer": [*lra_transformer(cfg), ("epochs", str(TRANSFORMER_EPOCHS[task]))]}[model]
    pairs = [*pairs, ("seed", str(seed)), ("device", device), ("tensorboard", "false")]
    if smoke:
        pairs += SMOKE_OVERRIDES["*"] + SMOKE_OVERRIDES[task]
    pairs += given_options(epochs=epochs, data_dir=data_dir, num_threads=num_threads, max_steps=max_steps)
    data_keys = {f"data.{k}" for k in vars(cfg.data)}
    for k, _ in overrides:
        if not (k.startswith(("data.", "model.")) or k in LRA_TRAIN_KEYS):
            raise ValueError(f"hippos lra sets data.*, model.* and {', '.join(LRA_TRAIN_KEYS)} in its arms, not {k!r}")
    pairs += [(k, v) for k, v in overrides if not k.startswith("data.") or k in data_keys]
    cfg = apply_overrides(cfg, pairs)
    cfg.out_dir = str(Path(out_dir) / f"{task}-{model}")
    return cfg


def _plan(cfg) -> str:
    from hippos.experiments.plan import plan_run
    from hippos.train.config import absolute_paths

    return plan_run(absolute_paths(cfg), lambda key, wanted: key in _FILLED)


def run_lra(tasks=TASKS, models=MODELS, out_dir="runs/lra", *, echo=print, **options) -> dict:
    """Train (or resume, or skip) every (task, model) arm in order, write ``lra.md`` / ``lra.json`` into
    ``out_dir`` after each arm and return the summary. ``options`` go to :func:`arm_config`."""
    from hippos.experiments.plan import PLAN_WORDS, train_arm
    out_dir = Path(out_dir)
    cfgs = [arm_config(t, m, out_dir, **options) for t in tasks for m in models]
    plans = [_plan(c) for c in cfgs]  # every conflict is found before anything runs
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = _summary(tasks, models, options, _all_arms(out_dir), 0.0)
    for i, (cfg, plan) in enumerate(zip(cfgs, plans), start=1):
        name = Path(cfg.out_dir).name
        what = PLAN_WORDS[plan]
        echo(f"[{i}/{len(cfgs)}] {name}: {what} ({cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''})")
        results = json.loads((Path(cfg.out_dir) / "results.json").read_text()) if plan == "done" else \
            train_arm(cfg, plan, out_dir / LOG, echo)
        runs = _all_arms(out_dir)  # this invocation's and any other arm trained into out_dir
        summary = _summary(tasks, models, options, runs, time.perf_counter() - t0)
        _write(out_dir / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")  # atomic: two invocations may share out_dir
        _write(out_dir / SUMMARY_MD, table_markdown(summary))
        plot_task(out_dir, cfg.task)
        acc = results.get("test_acc_best_val", results.get("test_acc"))
        done = f"test {100 * acc:.1f}%" if acc is not None else f"stopped at step {results['step']} (resume: rerun this command)"
        echo(f"[{i}/{len(cfgs)}] {name}: {done}")
    md = table_markdown(summary)
    echo(md)
    return summary


def plot_task(out_dir, task: str) -> Path | None:
    """``<out_dir>/<task>.png``: every model's run of ``task`` in ``out_dir`` side by side (training
    loss and validation accuracy against the epoch, test accuracy as a star), the paper's
    numbers as dotted lines. None when there is nothing to plot (or no matplotlib)."""
    from hippos.train.plots import plot_compare

    out_dir = Path(out_dir)
    runs = {MODEL_TITLES[m]: out_dir / f"{task}-{m}" / "metrics.csv" for m in MODELS}
    refs = {f"paper {MODEL_TITLES[m]}": PAPER[m][task] for m in PAPER}
    path = out_dir / f"{task}.png"
    return path if plot_compare(runs, path, f"LRA {TASK_TITLES[task]} ({out_dir.name})", refs) else None


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _all_arms(out_dir: Path) -> list[dict]:
    """A row for every ``<task>-<model>`` run in ``out_dir`` with a ``results.json`` (finished or
    cut), so the table shows what several invocations (say, one per core) trained there."""
    rows = []
    for task in TASKS:
        for model in MODELS:
            run = out_dir / f"{task}-{model}"
            if (run / "results.json").is_file() and (run / "config.json").is_file():
                results = json.loads((run / "results.json").read_text())
                config = json.loads((run / "config.json").read_text())
                acc = results.get("test_acc_best_val", results.get("test_acc"))
                rows.append({
                    "task": task, "model": model, "run_dir": str(run), "params": results["n_params"],
                    "steps": results["step"], "epochs": results["epoch"], "planned_epochs": config["epochs"],
                    "complete": bool(results.get("complete")), "train_time_s": results["train_time_s"],
                    "n_train": config["data"].get("n_train"), "d_model": config["model"]["d_model"],
                    "n_layers": config["model"]["n_layers"], "d_state": config["model"]["d_state"],
                    "device": config.get("device", "cpu"),
                    "best_val_acc": None if results.get("best_val_acc") is None else 100 * results["best_val_acc"],
                    "test_acc": None if acc is None else 100 * acc})
    return rows


def _summary(tasks, models, options, runs: list[dict], wall: float) -> dict:
    options = {k: v for k, v in options.items() if k != "overrides"} | {"overrides": [list(p) for p in options.get("overrides", ())]}
    return {"setup": {"tasks": list(tasks), "models": list(models), **options}, "paper": PAPER, "runs": runs,
            "wall_time_s": round(wall, 1)}


def table_markdown(summary: dict) -> str:
    """The table: test accuracy of every arm (best-validation weights), beside the paper's."""
    from hippos.experiments.plan import duration

    head = ["task", "model", "layers × H × N", "params", "epochs", "steps", "device", "train time", "val acc", "test acc",
            "paper"]
    lines = ["# Long Range Arena at CPU scale", "",
             ("Test accuracy (%) of the weights with the best validation accuracy. Paper: S4 (arXiv 2111.00396) "
              "Table 4 (S4; the LRA paper's Transformer), at full scale (6 layers, H 256-512, up to 200 epochs). "
              "Without --epochs the Transformer trains for fewer epochs than S4, as many as give it at least the "
              "S4 arm's training time on a CPU (its step costs 4-9 S4 steps there: scripts/lra_step_cost.py); "
              "the epochs column says what each arm had. Train time is wall time on the arm's device, on a "
              "machine other runs may have shared."), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {(t, m): k for k, (t, m) in enumerate((t, m) for t in TASKS for m in MODELS)}
    for r in sorted(summary["runs"], key=lambda r: order[(r["task"], r["model"])]):
        paper = PAPER.get(r["model"], {}).get(r["task"])
        pct = (lambda v: "—" if v is None else f"{v:.1f}")
        shape = f"{r['n_layers']} × {r['d_model']}" + (f" × {r['d_state']}" if r["model"] != "transformer" else "")
        cells = [TASK_TITLES[r["task"]], MODEL_TITLES[r["model"]], shape, f"{r['params']:,}",
                 str(r["epochs"]) + ("" if r["complete"] else f" of {r['planned_epochs']} (cut)"), f"{r['steps']:,}",
                 r.get("device", "cpu"), duration(r["train_time_s"]),
                 pct(r["best_val_acc"]), pct(r["test_acc"]), "—" if paper is None else f"{paper:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    given = summary.get("setup", {}).get("overrides") or []
    if given:  # a variant: the keys it changed in every arm (hippos lra --KEY=VALUE)
        lines += ["", "Changed from the task defaults in every arm: " + " ".join(f"`--{k}={v}`" for k, v in given) + "."]
    lines += ["", f"This invocation's wall time {duration(summary['wall_time_s'])}.", ""]
    return "\n".join(lines)
