"""``hippos train`` and ``hippos eval``.

    hippos train [TASK] [--config FILE.json] [--task-module FILE.py] [--key=value ...] [--force] [--no-progress]
    hippos train --resume RUN_DIR [--key=value ...]       (only keys in RESUME_MUTABLE)
    hippos train TASK --print-config                      (the resolved config, as JSON)
    hippos eval RUN_DIR [--split test|val] [--weights last|best] [--data-dir DIR] [--task-module FILE.py]
                        [--rate R] [--resample decimate|poly|linear]   (audio tasks: another sampling rate)
                        [--data.KEY=VALUE ...]                 (e.g. --data.path=NEW if the data moved)

The language-model commands (``hippos synthetics``, ``hippos generate``) are in
``hippos.cli.lm``. Config precedence: the task's defaults < ``--config`` file < ``--key=value`` overrides.
A task of the user's own comes from ``--task-module`` (recorded in the run's config, so eval,
resume and generate import it again).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hippos.cli.options import UsageError, dashed, positive_float, positive_int

__all__ = ["add_parser", "parse_train_args", "resolve_train_config", "run_eval", "run_train"]

_TRAIN_USAGE = ("hippos train [TASK] [--config FILE] [--task-module FILE.py] [--resume RUN_DIR] [--force] "
                "[--print-config] [--no-progress] [--KEY=VALUE ...]")


def _usage_error(message: str) -> Exception:
    return UsageError(message)


class _InnerParser(argparse.ArgumentParser):
    """argparse that raises a one-line ``UsageError`` instead of exiting."""

    def error(self, message: str):
        raise _usage_error(message)


def _train_parser() -> argparse.ArgumentParser:
    from hippos.train.registry import get_task, task_names

    tasks = "\n".join(f"  {name:<9} {get_task(name).description}" for name in task_names())
    p = _InnerParser(
        prog="hippos train",
        usage=_TRAIN_USAGE,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a sequence classifier, a forecaster or a language model on a task (built-in, or your "
        "own with --task-module); the run (config, metrics, curves, checkpoints) goes to --out-dir (default "
        "runs/<task>-<date>-<time>).",
        epilog=f"tasks:\n{tasks}\n\nany config key can be set with --key=value, the model's with "
        "--model.key=value,\ne.g. --epochs=2 --lr=3e-3 --model.d_model=64 --data-dir=../shared/data, "
        "hippos train ar --model.mixer=s4d,\nhippos train classify --data.path=my.npz (see `TASK --print-config` and docs/training.md).",
    )
    p.add_argument("task", nargs="?", help="task name (default: delay, or the config file's)")
    p.add_argument("--config", metavar="FILE", help="JSON file of config values (nested or dotted keys)")
    p.add_argument("--task-module", metavar="FILE.py", help="a Python file (or module) that registers your own task")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--force", action="store_true", help="start over in an out_dir that already holds a run")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch)")
    return p


def _split_argv(argv: list[str], parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """Separate the parser's own options and the task from ``--key=value`` overrides.

    Done by hand because argparse would take a lone value (``--lr 1e-3``) for the TASK.
    """
    arity = {}
    for action in parser._actions:
        for s in action.option_strings:
            arity[s] = 0 if action.nargs == 0 else 1
    known, overrides = [], []
    i = 0
    while i < len(argv):
        tok = dashed(argv[i]) if argv[i].split("=", 1)[0].replace("_", "-") in arity else argv[i]
        name = tok.split("=", 1)[0]
        if name in arity:
            known.append(tok)
            if arity[name] and "=" not in tok and i + 1 < len(argv):
                known.append(argv[i + 1])
                i += 1
        elif tok.startswith("--") and len(tok) > 2:
            overrides.append(tok)
            if "=" not in tok and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                overrides.append(argv[i + 1])
                i += 1
        else:
            known.append(tok)
        i += 1
    return known, overrides


def parse_train_args(argv: list[str]) -> tuple[argparse.Namespace, list[tuple[str, str]]]:
    """``hippos train`` arguments -> (options namespace, ``[(key, text), ...]`` overrides)."""
    from hippos.train.config import parse_override_args

    parser = _train_parser()
    known, override_tokens = _split_argv(list(argv), parser)
    ns = parser.parse_args(known)
    return ns, parse_override_args(override_tokens)


def resolve_train_config(ns: argparse.Namespace, overrides: list[tuple[str, str]]):
    """The TrainConfig a ``hippos train`` invocation asks for (see module docstring)."""
    from hippos.train.config import (
        RESUME_MUTABLE,
        apply_overrides,
        get_value,
        load_config,
        update_from_dict,
    )
    from hippos.train.registry import config_from_dict, get_task, import_task_module
    from hippos.train.rundir import RunDir

    if any(key in ("task", "task_module") for key, _ in overrides):
        raise _usage_error("give the task as the first argument (hippos train TASK) and a module of your own as --task-module")
    module = import_task_module(ns.task_module) if ns.task_module else None
    if ns.resume:
        if ns.force:
            raise _usage_error("--resume and --force do not go together")
        if ns.config:
            raise _usage_error("--config cannot be combined with --resume (the run's config.json is used)")
        run_dir = Path(ns.resume)
        if not (run_dir / RunDir.CONFIG).is_file():
            raise FileNotFoundError(f"{str(run_dir)!r} holds no run to resume ({RunDir.CONFIG} missing)")
        saved = load_config(run_dir / RunDir.CONFIG)
        if module:
            saved["task_module"] = module
        cfg = config_from_dict(saved)
        if ns.task and ns.task != cfg.task:
            raise _usage_error(f"{str(run_dir)!r} is a {cfg.task!r} run, not {ns.task!r}")
        cfg.max_steps = None  # a stop condition of one session, not of the run
        for key, text in overrides:
            if key not in RESUME_MUTABLE:
                before = get_value(cfg, key)  # unknown keys fail here, with suggestions
                after = get_value(apply_overrides(cfg, [(key, text)]), key)
                if after != before:
                    raise _usage_error(
                        f"cannot change {key} when resuming (it changes the result); resumable changes: "
                        + ", ".join(sorted(RESUME_MUTABLE))
                    )
        cfg = apply_overrides(cfg, overrides)
        cfg.out_dir = str(run_dir)
        return cfg
    file_values = load_config(ns.config) if ns.config else {}
    if module is None and file_values.get("task_module"):
        module = import_task_module(file_values["task_module"])
    task = ns.task or file_values.get("task") or "delay"
    if not isinstance(task, str):
        raise TypeError(f"'task' expects a string, got {json.dumps(task)}")
    if ns.task and file_values.get("task") not in (None, ns.task):
        raise _usage_error(f"the config file is for task {file_values['task']!r}, the command line says {ns.task!r}")
    cfg = update_from_dict(get_task(task).defaults(), {k: v for k, v in file_values.items() if k != "task_module"})
    cfg.task_module = module
    return apply_overrides(cfg, overrides)


def run_train(args: argparse.Namespace) -> int:
    from hippos.train.config import config_to_dict, validate
    from hippos.train.distributed import launched_rank
    from hippos.train.loop import train
    from hippos.train.registry import get_task

    ns, overrides = parse_train_args(args.argv)
    cfg = resolve_train_config(ns, overrides)
    if ns.print_config:
        get_task(cfg.task).check(validate(cfg))
        print(json.dumps(config_to_dict(cfg), indent=2))
        return 0
    progress = not ns.no_progress and sys.stderr.isatty()
    results = train(cfg, resume=bool(ns.resume), force=ns.force, progress=progress)
    if launched_rank() == 0:  # under torchrun, rank 0 alone prints
        print(json.dumps(results))
    return 0


def load_run(run_dir, weights: str = "last", device: str | None = None, data_dir: str | None = None,
             batch_size: int | None = None, task_module: str | None = None, data_overrides=()):
    """``(model, cfg, task, data, run, weights_path, meta)`` of a saved run, the model in eval mode.

    The run's ``config.json`` (its ``task_module`` imported first, or ``task_module`` instead),
    its data through the task (the artifacts checked against the run's), its weights.
    ``data_overrides``: ``[("data.path", "/new/place.npz"), ...]`` for data that moved; the
    artifacts check still refuses data that gives other classes or statistics."""
    from hippos.train import checkpoint as ckpt_io
    from hippos.train.config import apply_overrides
    from hippos.train.loop import resolve_device, resolve_task
    from hippos.train.registry import config_from_dict, import_task_module
    from hippos.train.rundir import RunDir

    run = RunDir.open(run_dir)
    saved = run.config_dict()
    if task_module:
        saved["task_module"] = import_task_module(task_module)
    cfg = config_from_dict(saved)
    overrides = [(k, str(v)) for k, v in (("data_dir", data_dir), ("device", device), ("batch_size", batch_size)) if v is not None]
    for key, _ in data_overrides:
        if not key.startswith("data."):
            raise UsageError(f"only the data section can be changed at evaluation, not {key!r}")
    cfg = apply_overrides(cfg, [*overrides, *data_overrides])
    task = resolve_task(cfg)
    task.check(cfg)
    dev = resolve_device(cfg.device)
    found = ckpt_io.find_checkpoint(run_dir)
    weights_path = found / ckpt_io.MODEL if (weights == "last" and found is not None) else run.weights(weights)
    data = task.load_data(cfg)
    run.check_artifacts(data.artifacts)
    cfg = task.fit_config(cfg, data)
    model = task.build_model(cfg).to(dev)
    meta = ckpt_io.load_weights(model, weights_path, dev)
    return model.eval(), cfg, task, data, run, weights_path, meta


def run_eval(args: argparse.Namespace) -> int:
    """Rebuild the model of a run from its config.json, load its weights, print metrics."""
    from hippos.train.config import parse_override_args
    from hippos.train.loop import evaluate, resolve_device, threads
    from hippos.train.objectives import constant_answer_acc, constant_answer_line

    model, cfg, task, data, run, weights, meta = load_run(
        args.run_dir, args.weights, args.device, args.data_dir, args.batch_size, args.task_module,
        parse_override_args(list(args.data_overrides)),
    )
    rate, method = getattr(args, "rate", 1.0), getattr(args, "resample", None)
    ds, at = data.split(args.split), None
    if rate != 1.0 or method is not None:  # another sampling rate: the audio tasks' at_rate
        if not hasattr(task, "at_rate"):
            raise UsageError(f"--rate and --resample are for the audio tasks (fsdd, audio); {cfg.task!r} has no sampling rate")
        model, ds, at = task.at_rate(model, data, cfg, args.split, rate, method or "poly")
    with threads(cfg.num_threads):  # the run's thread count, restored after (in-process callers)
        m = evaluate(model, ds, cfg, resolve_device(cfg.device), task)
        extra = task.extra_metrics(model, data, cfg, args.split)
    result = {"run_dir": str(run.path), "weights": str(weights), "step": int(meta.get("step", -1)), "split": args.split,
              "loss": m["loss"], "acc": m["acc"], "n": m["n"]}
    if "bpc" in m:
        result["bpc"] = m["bpc"]
    if at is not None:
        result.update(at)
    if extra:
        result["extra"] = extra
    floor = constant_answer_acc(ds) if task.objective.kind == "classification" else None
    if floor is not None:
        result["constant_answer_acc"] = floor
    what = "windows" if task.objective.metric in ("bpc", "loss") else "examples"
    where = ""
    if at is not None:
        dt = f", Δ x{at['dt_scale']:g}" if at["dt_scale"] is not None else ", no Δ to rescale"
        where = f" at rate {rate:g} ({at['sample_rate']:g} Hz from {at['trained_sample_rate']} Hz, {at['resample']}{dt})"
    print(f"{cfg.task} {args.split}{where} ({args.weights} weights, step {result['step']}): "
          f"{task.objective.describe(m)}  (n={m['n']} {what})")
    if floor is not None:
        print(constant_answer_line({args.split: floor}))
    for line in task.describe_extra(extra):
        print(line)
    print(json.dumps(result))
    return 0


def add_parser(subparsers) -> None:
    # ``train`` takes free-form ``--key=value`` overrides that argparse cannot declare: its
    # subparser uses "+" as option prefix, so every token (``--lr=1e-3`` too) lands in
    # ``argv``, which ``run_train`` parses itself (``-h`` included).
    t = subparsers.add_parser(
        "train",
        help="train a model on a task (delay, smnist, psmnist, classify, forecast, ar, ih, charlm, or your own); "
        "`hippos train -h` for options",
        add_help=False,
        prefix_chars="+",
        usage=_TRAIN_USAGE,
    )
    t.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    t.set_defaults(func=_train_main)

    e = subparsers.add_parser(
        "eval",
        help="evaluate a trained run (its last checkpoint or best weights) on the test or val split",
        description="Rebuild the model from RUN_DIR/config.json, load its weights and print loss and accuracy "
        "(ar, ih: last-token accuracy, their test split is the val split; charlm: bits per character). "
        "Data that moved since training: --data.KEY=VALUE (e.g. --data.path=NEW.npz) replaces the run's value.",
    )
    e.add_argument("run_dir", metavar="RUN_DIR", help="run directory (or its checkpoint/ directory)")
    e.add_argument("--split", choices=("test", "val", "train"), default="test", help="which split (default: test)")
    e.add_argument("--weights", choices=("last", "best"), default="last", help="last checkpoint or best validation weights (default: last)")
    e.add_argument("--data-dir", default=None, help="data root, if not the run's (default: its config, else $HIPPOS_DATA)")
    e.add_argument("--task-module", metavar="FILE.py", default=None, help="the run's task module, if it moved (default: the one in its config)")
    e.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the run's)")
    e.add_argument("--batch-size", type=positive_int, default=None, help="evaluation batch size (default: the run's)")
    e.add_argument("--rate", type=positive_float, default=1.0,
                   help="audio tasks: evaluate at RATE times the training sample rate (0.5: half as many samples "
                   "per second, the SSM's step Δ doubled; a CNN just reads the resampled audio); default 1")
    e.add_argument("--resample", choices=("decimate", "poly", "linear"), default=None,
                   help="how --rate resamples the audio: decimate (x[::k], no filter, the S4 reference's), poly "
                   "(scipy resample_poly, anti-aliased; the default) or linear (interpolation)")
    e.set_defaults(func=run_eval, data_overrides=[])


def _train_main(args: argparse.Namespace) -> int:
    if any(tok in ("-h", "--help") for tok in args.argv):
        _train_parser().print_help()
        return 0
    return run_train(args)
