"""What an experiment command (``hippos synthetics``, ``hippos speech``) does with one arm's run
directory: start it, resume it, skip it, or refuse it because it holds a run of another config."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from hippos.train import checkpoint as ckpt_io
from hippos.train.config import RESUME_MUTABLE, config_to_dict, flat_config, load_config

__all__ = ["plan_run"]


def plan_run(cfg, ignore: Callable[[str, object], bool] = lambda key, wanted: False) -> str:
    """``"done"``, ``"resume"``, ``"fresh"`` or ``"restart"`` (a run killed before its first
    checkpoint) for ``cfg.out_dir``. The run's saved config is compared with ``cfg`` key by key
    (dotted keys), except the keys that may change on resume and those ``ignore(key, wanted value)``
    skips; a difference is a ``ValueError`` naming the first one."""
    run_dir = Path(cfg.out_dir)
    if not (run_dir / "config.json").is_file():
        return "fresh"  # the trainer refuses a non-empty directory that is not a run
    saved = flat_config(load_config(run_dir / "config.json"))
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
