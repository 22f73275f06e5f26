"""The task registry: built-in tasks, tasks registered from Python, user task modules, entry
points; and saved configs (which need their task's defaults to be read back).

``register_task(task)`` adds a ``Task`` (``hippos.train.task``); ``get_task(name)`` finds one
(built-in, registered, or from the entry-point group ``hippos.tasks``: ``name =
"package.module:TaskClass"``); ``import_task_module(spec)`` imports a user's ``.py`` file or
module, which registers its tasks when imported. ``config_from_dict`` turns a saved
``config.json`` into a ``TrainConfig``, importing its ``task_module`` first and upgrading an
older format (``upgrade_config_dict``).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from hippos.train.config import CONFIG_VERSION, TrainConfig, update_from_dict
from hippos.train.task import Task
from hippos.train.tasks import BUILTIN_TASKS

__all__ = [
    "ENTRY_POINT_GROUP",
    "config_from_dict",
    "get_task",
    "import_task_module",
    "register_task",
    "task_names",
    "upgrade_config_dict",
]

ENTRY_POINT_GROUP = "hippos.tasks"

_REGISTRY: dict[str, Task] = {t.name: t for t in BUILTIN_TASKS}


def register_task(task: Task | type, *, replace: bool = False):
    """Add a task (an instance, or a ``Task`` subclass: instantiated) to the registry.

    Usable as a class decorator. A second task of the same name is refused unless ``replace``.
    """
    obj = task() if isinstance(task, type) else task
    if not isinstance(obj, Task):
        raise TypeError(f"register_task expects a Task (or a Task subclass), got {type(obj).__name__}")
    if not isinstance(obj.name, str) or not obj.name or not obj.name.replace("-", "_").isidentifier():
        raise ValueError(f"a task needs a name made of letters, digits, '_' and '-', got {obj.name!r}")
    if obj.name in _REGISTRY and not replace and type(_REGISTRY[obj.name]) is not type(obj):
        raise ValueError(f"a task named {obj.name!r} is already registered ({type(_REGISTRY[obj.name]).__name__})")
    _REGISTRY[obj.name] = obj
    return task


def _from_entry_points(name: str) -> Task | None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            register_task(ep.load())
            return _REGISTRY.get(name)
    return None


def task_names() -> list[str]:
    return list(_REGISTRY)


def get_task(name: str) -> Task:
    """The registered task ``name`` (built-in, user-registered, or from an entry point)."""
    if not isinstance(name, str):
        raise TypeError(f"a task name must be a string, got {json.dumps(name)}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    found = _from_entry_points(name)
    if found is not None:
        return found
    close = difflib.get_close_matches(name, _REGISTRY, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown task {name!r}{hint} (tasks: {', '.join(_REGISTRY)}; a task of your own: --task-module FILE.py)"
    )


def import_task_module(spec: str) -> str:
    """Import a user's task module: a ``.py`` file path or an importable module name. Return the
    spec to record in the config (a file path made absolute, so the run is found from anywhere)."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"task_module must be a Python file or module name, got {spec!r}")
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"task module {spec!r} not found")
        name = f"hippos_user_tasks_{abs(hash(str(path)))}"
        if name not in sys.modules:
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        return str(path)
    try:
        importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name and spec.startswith(e.name):
            raise FileNotFoundError(f"task module {spec!r} not found (not a file, not an importable module)") from None
        raise
    return spec


# ----------------------------------------------------------------------------- saved configs


def upgrade_config_dict(d: dict) -> dict:
    """A saved config dict of an older format rewritten to this one (``config_version`` 1 -> 2).

    Version 1 (no ``config_version``): every classifier task carried the ``delay`` task's data
    fields (now refused for MNIST: dropped), and ``ssm_lr`` was capped at 1e-3 and at ``lr``
    (now an explicit ``ssm_lr`` is used as given and none means ``min(lr, 1e-3)``): rewritten so
    that the run trains at the same rates.

    Any version: a ``charlm`` data section without ``test_fraction`` was saved before charlm had a
    test text (train on the first ``1 - val_fraction``, validate and "test" on the rest): it gets
    ``test_fraction = 0`` (no test text, test = val) and the old ``val_fraction`` default (0.1), so
    that such a run resumes bit-identically and is evaluated on the split it was trained with.
    """
    d = json.loads(json.dumps(d))  # a deep copy of JSON values
    version = d.get("config_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version > CONFIG_VERSION:
        raise ValueError(f"config_version {version!r} is newer than this hippos understands ({CONFIG_VERSION}): upgrade hippos")
    if version == 1:
        if d.get("task") in ("smnist", "psmnist"):
            d.pop("data", None)
        model, lr = d.get("model"), d.get("lr", TrainConfig.lr)
        if isinstance(model, dict) and isinstance(model.get("ssm_lr"), (int, float)) and isinstance(lr, (int, float)):
            old = min(float(model["ssm_lr"]), 1e-3)
            model["ssm_lr"] = None if old == 1e-3 else min(old, float(lr))
        d["config_version"] = CONFIG_VERSION
    data = d.get("data")
    if d.get("task") == "charlm" and isinstance(data, dict) and "test_fraction" not in data and "data.test_fraction" not in d:
        data["test_fraction"] = 0.0
        if "data.val_fraction" not in d:
            data.setdefault("val_fraction", 0.1)
    return d


def config_from_dict(d: dict) -> TrainConfig:
    """The config a (saved) dict describes: its task's defaults (which fix the section types)
    updated with the dict's values. A ``task_module`` in it is imported first."""
    if not isinstance(d, dict):
        raise TypeError(f"a config must be a JSON object, got {type(d).__name__}")
    d = upgrade_config_dict(d)
    if d.get("task_module"):
        import_task_module(d["task_module"])
    return update_from_dict(get_task(d.get("task", TrainConfig.task)).defaults(), d)
