"""What an experiment command (``hippos synthetics``, ``hippos speech``, ``hippos lra``) does with one
arm's run directory: start it, resume it, skip it, or refuse it because it holds a run of another
config (``plan_run``); then train it with its lines in the command's log (``train_arm``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from hippos.train import checkpoint as ckpt_io
from hippos.train.config import RESUME_MUTABLE, config_to_dict, flat_config, load_config
from hippos.train.registry import config_from_dict

__all__ = ["PLAN_WORDS", "duration", "given_options", "plan_run", "train_arm"]

#: How a command announces each plan.
PLAN_WORDS = {"done": "already trained", "resume": "resuming", "fresh": "training", "restart": "restarting"}


def plan_run(cfg, ignore: Callable[[str, object], bool] = lambda key, wanted: False) -> str:
    """``"done"``, ``"resume"``, ``"fresh"`` or ``"restart"`` (a run killed before its first
    checkpoint) for ``cfg.out_dir``. The run's saved config is compared with ``cfg`` key by key
    (dotted keys), except the keys that may change on resume and those ``ignore(key, wanted value)``
    skips; a difference is a ``ValueError`` naming the first one."""
    run_dir = Path(cfg.out_dir)
    if not (run_dir / "config.json").is_file():
        return "fresh"  # the trainer refuses a non-empty directory that is not a run
    # the config a resume would run (hippos.train.registry.config_from_dict): a key the run's file
    # lacks (added to hippos after the run was saved) has the default the run trained with
    saved = flat_config(json.loads(json.dumps(config_to_dict(config_from_dict(load_config(run_dir / "config.json"))))))
    want = flat_config(json.loads(json.dumps(config_to_dict(cfg))))
    for key in sorted(set(saved) | set(want)):
        if key in RESUME_MUTABLE or ignore(key, want.get(key)):
            continue
        if saved.get(key) != want.get(key):
            raise ValueError(
                f"{str(run_dir)!r} holds a run with another config ({key}: {saved.get(key)!r} there, "
                f"{want.get(key)!r} asked); use another --out-dir or remove that directory"
            )
    results = run_dir / "results.json"
    if results.is_file() and json.loads(results.read_text()).get("complete"):
        return "done"
    return "resume" if ckpt_io.find_checkpoint(run_dir) is not None else "restart"


def train_arm(cfg, plan: str, log_path: Path, echo) -> dict:
    """Train (``"fresh"``), resume (``"resume"``) or restart (``"restart"``) the run of ``cfg``: the
    trainer's lines go to ``log_path`` prefixed ``[<run name>]``, one line per epoch to ``echo``."""
    from hippos.train.loop import train

    name = Path(cfg.out_dir).name
    with open(log_path, "a") as logf:
        def log(msg: str) -> None:
            logf.write(f"[{name}] {msg}\n")
            logf.flush()

        def on_epoch(info) -> None:
            val = info.get("val") or {}
            acc = f", val acc {100 * val['acc']:.1f}%" if val.get("acc") is not None else ""
            echo(f"  {name}: epoch {info['epoch']}/{info['epochs']}, train loss {info['train']['loss']:.3f}{acc}, "
                 f"{info['elapsed_s'] / 60:.1f} min")

        log(f"== {plan}")
        return train(cfg, resume=plan == "resume", force=plan == "restart", progress=False, log=log, on_epoch=on_epoch)


def duration(s: float) -> str:
    """``"42 s"``, ``"17 min"`` or ``"2.5 h"``."""
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def given_options(**options) -> list[tuple[str, str]]:
    """``[(key, str(value))]`` of the options given (not None): an arm's command-line settings as
    config overrides."""
    return [(key, str(value)) for key, value in options.items() if value is not None]
