"""Training: ``train(cfg, model=None)`` runs a ``TrainConfig`` for a ``Task``.

* ``hippos.train.config``: ``TrainConfig`` and the ``--key=value`` override engine;
* ``hippos.train.task``: the ``Task`` API; ``hippos.train.tasks``: the built-in tasks;
  ``hippos.train.registry``: finding tasks (``register_task``, ``get_task``, user modules) and
  reading saved configs back (``config_from_dict``);
* ``hippos.train.rundir``: ``RunDir``, a run's folder (names, atomic writes, lock);
* ``hippos.train.loop``: the loop; ``optim``: parameter groups and schedule; ``checkpoint``;
  ``objectives``; ``metrics``; ``plots``.

The command line is ``hippos.cli``. See docs/training.md.
"""

from hippos.train.config import TrainConfig, apply_overrides, config_to_dict
from hippos.train.loop import evaluate, train
from hippos.train.optim import build_optimizer, lr_factor, param_groups
from hippos.train.registry import config_from_dict, get_task, register_task, task_names
from hippos.train.rundir import RunDir
from hippos.train.task import ClassificationTask, Task, TaskData, build_model

__all__ = [
    "ClassificationTask",
    "RunDir",
    "Task",
    "TaskData",
    "TrainConfig",
    "apply_overrides",
    "build_model",
    "build_optimizer",
    "config_from_dict",
    "config_to_dict",
    "default_config",
    "evaluate",
    "get_task",
    "lr_factor",
    "param_groups",
    "register_task",
    "task_names",
    "train",
]


def default_config(name: str) -> TrainConfig:
    """The task's default ``TrainConfig`` (a fresh copy)."""
    return get_task(name).defaults()
