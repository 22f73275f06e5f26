"""Raw speech at another sampling rate, the S4 paper's test on FSDD: S4, S4D and a CNN baseline.

S4 (arXiv 2111.00396) §4.3 / Table 5 trains on raw 16 kHz Speech Commands (SC10) and, with no
retraining, tests at half the rate (every second sample, Δ doubled): 98.32% -> 96.30%. Here each
model (``s4``: DPLR, ``s4d``: diagonal, ``cnn``: the raw-waveform CNN of ``hippos.models.cnn``, all
about 134K parameters) is trained on FSDD (``hippos train fsdd``; the official split and the
held-out-speaker split) and its final weights are evaluated on the test split at 1×, 0.5×
(``decimate``: ``x[::2]`` as the reference; ``poly``: anti-aliased) and 2× (``poly``)
(``hippos eval RUN --rate R --resample M``). The SSMs get Δ/R; the CNN has no Δ and reads the
resampled audio as it is.

Each (split, model) is one ordinary run in ``<out_dir>/<split>-<model>``: a rerun skips finished
runs (and evaluations already made, kept in ``<run>/speech_eval.json``), resumes cut ones from
their last checkpoint (``hippos train --resume``, bitwise) and starts the rest. The table goes to
``speech.md`` and ``speech.json`` in ``out_dir``, the trainer's lines to ``speech.log``. The
command line is ``hippos speech`` (``hippos.cli.speech``); see docs/speech.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["EVALS", "MODELS", "PAPER", "SPLITS", "arm_config", "evaluate_arm", "plan_run", "run_speech", "table_markdown"]

MODELS = ("s4", "s4d", "cnn")
SPLITS = ("official", "speaker")
MODEL_TITLES = {"s4": "S4", "s4d": "S4D", "cnn": "CNN"}
#: What differs per model from the fsdd defaults (S4D). S4 at H 54 has 136,198 parameters, the S4D and
#: the CNN 133,770 each: at H 64 its four bidirectional DPLR layers would have 166,538.
MODEL_OVERRIDES = {
    "s4": [("model.mode", "dplr"), ("model.d_model", "54")],
    "s4d": [],
    "cnn": [("model.kind", "cnn")],
}
#: ``--smoke``: one epoch of tiny models (a check that the whole command runs, in seconds).
SMOKE_OVERRIDES = [("epochs", "1"), ("model.d_model", "8"), ("model.n_layers", "1"), ("model.d_state", "8"),
                   ("model.cnn_channels", "[4,8]"), ("model.cnn_kernel", "7")]
#: The evaluations: (column, rate, resampling method); rate 1 is the run's own test accuracy.
EVALS = (("1×", 1.0, None), ("0.5× decimate", 0.5, "decimate"), ("0.5× poly", 0.5, "poly"), ("2× poly", 2.0, "poly"))
#: S4 Table 5 (SC10, raw 16 kHz; 0.5×: every second sample, Δ doubled), test accuracy %.
PAPER = {"model": "s4", "1×": 98.32, "0.5× decimate": 96.30}
SUMMARY_MD, SUMMARY_JSON, LOG, EVAL_CACHE = "speech.md", "speech.json", "speech.log", "speech_eval.json"
#: Keys ``fit_config`` fills in from the data, or that may change on resume: not compared by ``plan_run``.
_FILLED = {"model.d_input", "model.n_classes", "model.l_max", "data.sample_rate"}


def arm_config(model: str, split: str, out_dir, *, epochs: int | None = None, smoke: bool = False, seed: int = 0,
               data_dir: str | None = None, device: str = "cpu", num_threads: int | None = None, overrides=()):
    """The ``TrainConfig`` of one arm: ``hippos train fsdd`` defaults, the model's overrides, the split,
    then ``overrides`` (``[("data.sample_rate", "4000"), ...]``)."""
    from hippos.experiments.plan import given_options
    from hippos.train import default_config
    from hippos.train.config import apply_overrides
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (models: {', '.join(MODELS)})")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (splits: {', '.join(SPLITS)})")
    for key, _ in overrides:
        if key in ("data.split", "epochs", "seed", "out_dir", "model.kind", "model.mode"):
            raise ValueError(f"{key} is set by the speech command itself (--splits, --epochs, --seed, --out-dir, --models)")
    pairs = [*MODEL_OVERRIDES[model], ("data.split", split), ("seed", str(seed)), ("device", device),
             ("tensorboard", "false")]
    if smoke:
        pairs += SMOKE_OVERRIDES
    pairs += given_options(epochs=epochs, data_dir=data_dir, num_threads=num_threads)
    cfg = apply_overrides(default_config("fsdd"), [*pairs, *overrides])
    cfg.out_dir = str(Path(out_dir) / f"{split}-{model}")
    return cfg


def plan_run(cfg) -> str:
    """What to do with ``cfg.out_dir`` (``hippos.experiments.plan.plan_run``); what ``fit_config``
    fills in from the data is not compared (``data.sample_rate`` only when the arm asks for none)."""
    from hippos.experiments.plan import plan_run as _plan_run
    from hippos.train.config import absolute_paths

    def ignore(key: str, wanted) -> bool:
        return key in _FILLED and (key != "data.sample_rate" or wanted is None)

    return _plan_run(absolute_paths(cfg), ignore)


def evaluate_arm(run_dir, evals=EVALS) -> dict:
    """``{column: {"acc", "loss", "n", "sample_rate"}}`` of the run's final weights on the test split at
    each (rate, method) of ``evals`` (rate 1: the run's own ``test_acc``). Cached in the run's
    ``speech_eval.json`` under the checkpoint's step."""
    from hippos.cli.train import load_run
    from hippos.train.loop import evaluate, resolve_device, threads

    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    cache_file = run_dir / EVAL_CACHE
    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    if cache.get("step") != results["step"]:
        cache = {"step": results["step"], "weights": "last", "results": {}}
    out, loaded = {}, None
    for column, rate, method in evals:
        key = f"{rate:g}-{method}"
        if rate == 1.0 and method is None:
            sr = json.loads((run_dir / "audio.json").read_text())["sample_rate"]
            out[column] = {"acc": results["test_acc"], "loss": results.get("test_loss"), "n": None, "sample_rate": sr}
            continue
        if key not in cache["results"]:
            if loaded is None:
                loaded = load_run(run_dir, "last")
            model, cfg, task, data = loaded[:4]
            m_at, ds, info = task.at_rate(model, data, cfg, "test", rate, method)
            with threads(cfg.num_threads):
                m = evaluate(m_at, ds, cfg, resolve_device(cfg.device), task)
            cache["results"][key] = {"acc": m["acc"], "loss": m["loss"], "n": m["n"], "sample_rate": info["sample_rate"]}
            tmp = cache_file.with_name(f".{cache_file.name}.tmp")
            tmp.write_text(json.dumps(cache, indent=1) + "\n")
            tmp.replace(cache_file)
        out[column] = cache["results"][key]
    return out


def run_speech(models=MODELS, splits=SPLITS, out_dir="runs/speech", *, echo=print, **options) -> dict:
    """Train (or resume, or skip) every (split, model) arm, evaluate each at every rate of ``EVALS``,
    write ``speech.md`` / ``speech.json`` into ``out_dir`` and return the summary. ``options`` go to
    :func:`arm_config` (``epochs``, ``smoke``, ``seed``, ``data_dir``, ``device``, ``num_threads``, ``overrides``)."""
    from hippos.experiments.plan import PLAN_WORDS, train_arm
    from hippos.experiments.synthetics import median_epoch_seconds

    out_dir = Path(out_dir)
    cfgs = [arm_config(m, s, out_dir, **options) for s in splits for m in models]
    plans = [plan_run(c) for c in cfgs]  # every conflict is found before anything runs
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs = []
    for i, (cfg, plan) in enumerate(zip(cfgs, plans), start=1):
        name = Path(cfg.out_dir).name
        what = PLAN_WORDS[plan]
        echo(f"[{i}/{len(cfgs)}] {name}: {what} ({cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''})")
        if plan == "done":
            results = json.loads((Path(cfg.out_dir) / "results.json").read_text())
        else:
            results = train_arm(cfg, plan, out_dir / LOG, echo)
        echo(f"[{i}/{len(cfgs)}] {name}: evaluating at " + ", ".join(c for c, _, _ in EVALS))
        accs = evaluate_arm(cfg.out_dir)
        saved = json.loads((Path(cfg.out_dir) / "config.json").read_text())
        run = {
            "split": cfg.data.split,
            "model": next(m for m in MODELS if Path(cfg.out_dir).name.endswith(f"-{m}")),
            "run_dir": str(cfg.out_dir),
            "params": results["n_params"],
            "epochs": results["epoch"],
            "sample_rate": saved["data"]["sample_rate"],
            "n_test": accs[EVALS[1][0]]["n"],
            "train_time_s": results["train_time_s"],
            "s_per_epoch": median_epoch_seconds(Path(cfg.out_dir) / "metrics.csv",
                                                results["train_time_s"] / max(results["epoch"], 1)),
            "acc": {c: 100 * v["acc"] for c, v in accs.items()},
        }
        runs.append(run)
        echo(f"[{i}/{len(cfgs)}] {name}: " + ", ".join(f"{c} {a:.1f}%" for c, a in run["acc"].items()))
    options = {k: v for k, v in options.items() if k != "overrides"} | {"overrides": [list(p) for p in options.get("overrides", ())]}
    summary = {"setup": {"models": list(models), "splits": list(splits), **options}, "paper": PAPER,
               "evals": [list(e) for e in EVALS], "runs": runs, "wall_time_s": round(time.perf_counter() - t0, 1)}
    (out_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    md = table_markdown(summary)
    (out_dir / SUMMARY_MD).write_text(md)
    echo(md)
    return summary


def table_markdown(summary: dict) -> str:
    """The table: every arm's test accuracy at each rate, beside the S4 paper's SC10 numbers."""
    from hippos.experiments.plan import duration

    cols = [c for c, _, _ in EVALS]
    rates = sorted({r["sample_rate"] for r in summary["runs"]})
    trained = ", ".join(f"{r} Hz" for r in rates) or "—"
    head = ["split", "model", "params", "epochs", "train time", "s / epoch", *cols]
    lines = [
        "# Raw speech: FSDD spoken digits, and zero-shot at another sampling rate",
        "",
        (f"Test accuracy (%), final weights. Trained at {trained}; 0.5× is half as many samples per second, "
        "2× twice as many. S4 and S4D are evaluated with their step Δ rescaled (Δ/rate: doubled at 0.5×); the CNN "
        "has no Δ and reads the resampled audio as it is. decimate = every second sample (the S4 reference's test), "
        "poly = scipy resample_poly (anti-aliased)."),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    order = {(s, m): k for k, (s, m) in enumerate((s, m) for s in SPLITS for m in MODELS)}
    for r in sorted(summary["runs"], key=lambda r: order[(r["split"], r["model"])]):
        cells = [r["split"], MODEL_TITLES[r["model"]], f"{r['params']:,}", str(r["epochs"]), duration(r["train_time_s"]),
                 f"{r['s_per_epoch']:.0f}"] + [f"{r['acc'][c]:.1f}" if c in r["acc"] else "—" for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    paper = ["SC10 (paper, 16 kHz)", "S4", "—", "200", "", ""] + [
        f"{PAPER[c]:.2f}" if c in PAPER else "—" for c in cols
    ]
    lines.append("| " + " | ".join(paper) + " |")
    lines += [
        "",
        ("Paper: S4 (arXiv 2111.00396) Table 5, Speech Commands SC10 from raw 16 kHz audio (6 layers, H 128, N 64); "
        "its 0.5× is every second sample (8 kHz) with Δ doubled, no retraining. FSDD (8 kHz, 6 speakers) is a "
        "stand-in: the official split shares speakers between train and test (easier than SC10), the speaker split "
        "tests a voice never heard."),
        f"This invocation's wall time {duration(summary['wall_time_s'])}.",
        "",
    ]
    return "\n".join(lines)
