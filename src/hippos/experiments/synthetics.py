"""H3 Table 2 on this machine: train S4D, H3 and attention on Associative Recall and Induction Head.

H3 (arXiv 2212.14052) §3.1, Table 2. Each (task, model) pair is one ordinary trainer run
(``hippos train ar|ih --model.mixer=...``, the paper's configs as the task defaults, see
``hippos.train.tasks.lm``) in its own directory ``<out_dir>/<task>-<model>``, so the whole
table is resumable: a rerun skips finished runs, resumes interrupted ones from their last
checkpoint (bitwise, as ``hippos train --resume``) and starts the rest. The table compares the
final weights' last-token test accuracy with the paper's numbers; ``synthetics.md`` and
``synthetics.json`` in ``out_dir`` hold it with the per-run details and wall times. Several
training seeds (``seeds``) give one run per seed, ``<task>-<model>-seed<S>`` for S > 0; the table
shows every finished seed of a cell found in ``out_dir``, so the seeds of one cell can be added
later by another invocation. The command
line is ``hippos synthetics`` (``hippos.cli.lm``); see ``docs/synthetics.md``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from hippos.experiments.plan import plan_run as _plan_run
from hippos.train import checkpoint as ckpt_io
from hippos.train import default_config
from hippos.train.tasks.lm import resolved_synthetic_config

__all__ = ["MODELS", "PAPER", "TASKS", "TASK_TITLES", "plan_run", "run_dir_name", "run_synthetics", "synthetic_config",
           "table_markdown"]

#: H3 Table 2, last-token test accuracy in %. GSS is not implemented here.
PAPER = {
    "ih": {"random": 5.0, "s4d": 35.6, "gss": 6.8, "h3": 100.0, "attention": 100.0},
    "ar": {"random": 25.0, "s4d": 86.0, "gss": 78.0, "h3": 99.8, "attention": 100.0},
}
TASKS = ("ih", "ar")  # the paper's row order
TASK_TITLES = {"ih": "Induction Head", "ar": "Associative Recall"}
MODELS = ("s4d", "h3", "attention")  # the paper's column order
MODEL_TITLES = {"s4d": "S4D", "h3": "H3", "attention": "Attention", "s4": "S4"}
SUMMARY_MD, SUMMARY_JSON, LOG = "synthetics.md", "synthetics.json", "synthetics.log"


def run_dir_name(task: str, model: str, seed: int = 0) -> str:
    """``<task>-<model>`` for training seed 0 (the paper's single run), ``<task>-<model>-seed<S>`` otherwise."""
    return f"{task}-{model}" + (f"-seed{seed}" if seed else "")


def synthetic_config(task: str, model: str, out_dir: str | os.PathLike, *, epochs_scale: float = 1.0,
                     max_epochs: int | None = None, n_train: int | None = None, n_test: int | None = None,
                     seed: int = 0, device: str = "cpu", num_threads: int | None = None):
    """The ``TrainConfig`` of one table cell: the task's defaults, ``model.mixer = model``, the
    epochs scaled by ``epochs_scale`` (at least 1) and capped by ``max_epochs``; the 10% warmup
    is a fraction, so it scales with them."""
    if task not in PAPER:
        raise ValueError(f"unknown synthetic task {task!r} (tasks: {', '.join(TASKS)})")
    cfg = default_config(task)
    cfg.model.mixer = model
    cfg.epochs = max(1, round(cfg.epochs * epochs_scale))
    if max_epochs is not None:
        cfg.epochs = min(cfg.epochs, max_epochs)
    if n_train is not None:
        cfg.data.n_train = n_train
    if n_test is not None:
        cfg.data.n_test = n_test
    cfg.seed, cfg.device, cfg.tensorboard = seed, device, False
    if num_threads is not None:
        cfg.num_threads = num_threads
    cfg.out_dir = str(Path(out_dir) / run_dir_name(task, model, seed))
    return cfg


#: LMConfig fields only attention layers read: they cannot make two attention-free runs differ.
ATTENTION_FIELDS = ("n_heads", "attn_pos", "attn_dropout", "max_len")


def plan_run(cfg) -> str:
    """What to do with ``cfg.out_dir`` (``hippos.experiments.plan.plan_run``); the attention options
    of an SSM-only model are not compared (the model does not read them)."""
    resolved = resolved_synthetic_config(cfg)
    m = resolved.model
    no_attention = m.mixer != "attention" and not m.attn_layers

    def ignore(key: str, wanted) -> bool:
        return no_attention and key.startswith("model.") and key.split(".", 1)[1] in ATTENTION_FIELDS

    return _plan_run(resolved, ignore)


def _n_params(cfg) -> int:
    from hippos.train.task import build_model

    return sum(p.numel() for p in build_model(resolved_synthetic_config(cfg).model).parameters())


def _bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="epoch", dynamic_ncols=True, file=sys.stderr, leave=True)


def _train_cell(cfg, plan: str, log_path: str, on_epoch=None) -> dict:
    """Train (or resume) one cell; the trainer's lines are appended to ``log_path``. Module-level
    so that a worker process (``jobs > 1``) can run it."""
    from hippos.train.loop import train

    with open(log_path, "a") as logf:
        def log(msg: str) -> None:
            logf.write(f"[{Path(cfg.out_dir).name}] {msg}\n")
            logf.flush()

        log(f"== {plan}")
        return train(cfg, resume=plan == "resume", force=plan == "restart", progress=False, log=log, on_epoch=on_epoch)


def _finished_seeds(out_dir: Path, task: str, model: str, options: dict, skip) -> dict[int, tuple]:
    """``{seed: (cfg, results)}`` of the finished runs of one cell already in ``out_dir`` whose config is
    the one ``options`` asks for, seeds in ``skip`` (this invocation's) left out: they join the table."""
    found = {}
    for d in out_dir.glob(f"{task}-{model}*"):
        rest = d.name[len(f"{task}-{model}"):]
        if rest and not (rest.startswith("-seed") and rest[5:].isdigit() and not rest[5:].startswith("0")):
            continue
        seed = int(rest[5:]) if rest else 0
        if seed in skip:
            continue
        cfg = synthetic_config(task, model, out_dir, seed=seed, **options)
        try:
            if plan_run(cfg) == "done":
                found[seed] = (cfg, json.loads((d / "results.json").read_text()))
        except ValueError:  # a run of another config (say another --max-epochs): not this table's
            continue
    return found


def run_synthetics(tasks=("ar", "ih"), models=MODELS, out_dir: str | os.PathLike = "runs/synthetics", *,
                   progress: bool = True, echo=print, jobs: int = 1, seeds=(0,), **options) -> dict:
    """Train (or resume, or skip) every ``(task, model, seed)`` run, then write and return the table.

    ``options`` go to :func:`synthetic_config`; ``seeds`` are training seeds (init, dropout, data
    order; the examples stay those of seed 0), one run each. The table also takes in the finished
    runs of other seeds of the same cells that ``out_dir`` already holds. ``echo(line)`` receives
    one line per run and the table; the trainer's own lines go to ``<out_dir>/synthetics.log``. ``jobs > 1`` trains
    that many runs at once, each in its own process (with the tasks' one thread each, a 2-core
    machine runs two; per-run progress bars are then replaced by one line per finished run).
    The results do not depend on ``jobs``. Returns the summary written to ``synthetics.json``.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    seeds = list(dict.fromkeys(seeds))
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be integers >= 0, got {seeds!r}")
    out_dir = Path(out_dir)
    cfgs = [synthetic_config(t, m, out_dir, seed=s, **options) for t in tasks for m in models for s in seeds]
    plans = [plan_run(c) for c in cfgs]  # every conflict is found before anything runs
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = str(out_dir / LOG)
    t0 = time.perf_counter()
    results: dict[int, dict] = {}
    runs_by_index: dict[int, dict] = {}  # summaries, made once per run (each builds the model to count it)

    def report(i: int) -> None:
        run = runs_by_index[i] = _run_summary(cfgs[i], results[i])
        echo(f"{Path(cfgs[i].out_dir).name}: test acc {run['test_acc']:.1f}% (best epoch {run['test_acc_best_val']:.1f}%), "
             f"{run['epochs']} epoch{'s' if run['epochs'] != 1 else ''}, {run['train_time_s']:.0f} s ({run['s_per_epoch']:.2f} s/epoch, median)"
             + (" [already done]" if plans[i] == "done" else ""))

    todo = []
    for i, (cfg, plan) in enumerate(zip(cfgs, plans)):
        if plan == "done":
            results[i] = json.loads((Path(cfg.out_dir) / "results.json").read_text())
            report(i)
        else:
            todo.append(i)
    if jobs == 1 or len(todo) <= 1:
        for i in todo:
            results[i] = _train_with_bar(cfgs[i], plans[i], log_path, progress)
            report(i)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: a forked child of a process whose OpenMP pool is running can hang
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_train_cell, cfgs[i], plans[i], log_path): i for i in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                report(i)
    runs = [runs_by_index[i] for i in range(len(cfgs))]
    for t in tasks:  # other seeds of the same cells, finished earlier
        for m in models:
            for seed, (cfg, res) in sorted(_finished_seeds(out_dir, t, m, options, set(seeds)).items()):
                runs.append(_run_summary(cfg, res))
    order = {(t, m): k for k, (t, m) in enumerate((t, m) for t in TASKS for m in dict.fromkeys([*MODELS, *models]))}
    runs.sort(key=lambda r: (order[(r["task"], r["model"])], r["seed"]))
    summary = {
        "setup": {"tasks": list(tasks), "models": list(models), "seeds": seeds, **{k: v for k, v in options.items()}},
        "paper": PAPER,
        "runs": runs,
        "jobs": jobs,
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "train_time_s": round(sum(r["train_time_s"] for r in runs), 1),
    }
    (out_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    md = table_markdown(summary)
    (out_dir / SUMMARY_MD).write_text(md)
    echo(md)
    return summary


def _train_with_bar(cfg, plan: str, log_path: str, progress: bool) -> dict:
    """One cell in this process, with an epoch progress bar."""
    done = 0
    if plan == "resume":
        state = json.loads((ckpt_io.find_checkpoint(cfg.out_dir) / ckpt_io.STATE).read_text())
        done = state["epoch"]
    bar = _bar(cfg.epochs, done, Path(cfg.out_dir).name, progress)

    def on_epoch(info):
        if bar is not None:
            bar.update(1)
            bar.set_postfix(val_acc=f"{100 * info['val']['acc']:.1f}%", loss=f"{info['train']['loss']:.3f}")

    try:
        return _train_cell(cfg, plan, log_path, on_epoch)
    finally:
        if bar is not None:
            bar.close()


def _run_summary(cfg, results: dict) -> dict:
    epochs = results["epoch"]
    return {
        "task": cfg.task,
        "model": cfg.model.mixer,
        "seed": cfg.seed,
        "run_dir": str(cfg.out_dir),
        "params": _n_params(cfg),
        "epochs": epochs,
        "n_train": cfg.data.n_train,
        "n_test": cfg.data.n_test,
        "test_acc": 100 * results["test_acc"],
        "test_acc_best_val": 100 * results["test_acc_best_val"],
        "best_step": results["best_step"],
        "train_time_s": results["train_time_s"],
        "s_per_epoch": median_epoch_seconds(Path(cfg.out_dir) / "metrics.csv", results["train_time_s"] / max(epochs, 1)),
    }


def median_epoch_seconds(metrics_csv: Path, fallback: float) -> float:
    """The median wall time of one epoch: the differences of ``elapsed_s`` between consecutive
    ``val`` rows of the run's ``metrics.csv`` (the first from 0). A median, so that an epoch
    during which the process was paused or starved does not move it, unlike total / epochs.
    ``fallback`` when the file has no usable rows."""
    import csv
    import statistics

    try:
        with open(metrics_csv, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("split") == "val" and r.get("elapsed_s")]
    except OSError:
        return fallback
    by_epoch = {}
    for r in rows:  # a resumed run may repeat an epoch's row: keep the last
        by_epoch[round(float(r["epoch"]))] = float(r["elapsed_s"])
    times = [by_epoch[e] for e in sorted(by_epoch)]
    diffs = [b - a for a, b in zip([0.0] + times, times)]
    return statistics.median(diffs) if diffs else fallback


def table_markdown(summary: dict) -> str:
    """The table (ours beside the paper's) and the per-run details, as Markdown. A cell trained
    with several seeds lists one number per seed, in seed order."""
    runs: dict[tuple, list] = {}
    for r in summary["runs"]:
        runs.setdefault((r["task"], r["model"]), []).append(r)
    tasks = [t for t in TASKS if t in summary["setup"]["tasks"]]
    models = [m for m in MODELS if m in summary["setup"]["models"]] + [
        m for m in summary["setup"]["models"] if m not in MODELS
    ]
    head = ["Task", "Random"] + [MODEL_TITLES.get(m, m) for m in models]
    lines = [
        "# H3 synthetic tasks (H3 arXiv 2212.14052, Table 2)",
        "",
        "Last-token test accuracy (%), **ours (paper)**; final weights. Random is the paper's 1/|vocab|.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for t in tasks:
        cells = [TASK_TITLES[t], f"{PAPER[t]['random']:.1f}"]
        for m in models:
            rs = sorted(runs.get((t, m), []), key=lambda r: r["seed"])
            ours = " · ".join(f"{r['test_acc']:.1f}" for r in rs) if rs else "—"
            paper = PAPER[t].get(m)
            cells.append(f"{ours} ({paper:.1f})" if paper is not None else ours)
        lines.append("| " + " | ".join(cells) + " |")
    multi = [(t, m) for t in tasks for m in models if len(runs.get((t, m), [])) > 1]
    if multi:
        seeds = "; ".join(
            f"{MODEL_TITLES.get(m, m)} on {TASK_TITLES[t]}: seeds "
            + ", ".join(str(r["seed"]) for r in sorted(runs[(t, m)], key=lambda r: r["seed"]))
            + f" (mean {sum(r['test_acc'] for r in runs[(t, m)]) / len(runs[(t, m)]):.1f})"
            for t, m in multi
        )
        lines += ["", f"A cell with several numbers has one per training seed, in seed order: {seeds}."]
    lines += [
        "",
        "| run | seed | params | epochs | n train / test | test acc, final | test acc, best epoch (step) | train time | s / epoch (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["runs"]:
        lines.append(
            f"| {r['task']}-{r['model']} | {r['seed']} | {r['params']:,} | {r['epochs']} | {r['n_train']} / {r['n_test']} | "
            f"{r['test_acc']:.1f} | {r['test_acc_best_val']:.1f} ({r['best_step']}) | {r['train_time_s']:.0f} s | "
            f"{r['s_per_epoch']:.2f} |"
        )
    setup = summary["setup"]
    opts = ", ".join(f"{k}={v}" for k, v in setup.items() if k not in ("tasks", "models", "seeds") and v is not None)
    lines += [
        "",
        f"Total training time {summary['train_time_s']:.0f} s; this invocation's wall time {summary['wall_time_s']:.0f} s"
        + (f" ({summary['jobs']} runs at once)" if summary.get("jobs", 1) > 1 else "")
        + (f"; options: {opts}" if opts else "") + ".",
        "The test split is also the validation split (the reference has none), so \"best epoch\" is selected on test.",
        "",
    ]
    return "\n".join(lines)
