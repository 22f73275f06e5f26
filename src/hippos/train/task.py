"""The ``Task`` API: what the trainer asks of a task, in one object (the registry is
``hippos.train.registry``).

A task is looked up once (``get_task(name)``) and passed along; the trainer never branches on
task names or model kinds. A task says

* ``defaults() -> TrainConfig``: the task's config; its ``model`` and ``data`` sections fix the
  section types the ``--key=value`` overrides are checked against (``data`` is the task's own
  data config, only the fields its loader reads);
* ``check(cfg)``: everything about the config that can be checked before the data is read
  (the model section's kind, the data section's ranges), raising ``ValueError``/``TypeError``;
* ``load_data(cfg) -> TaskData``: the train / val / test datasets (``ds[indices]`` gives a
  whole batch: ``(x, y)`` or ``(x, y, lengths)``) and the run's *artifacts* (text files saved
  beside the run and checked on resume and eval: a vocabulary, normalization statistics);
* ``fit_config(cfg, data) -> TrainConfig``: what the model takes from the data (input width,
  classes, vocabulary size), recorded in the run's ``config.json``;
* ``build_model(cfg) -> nn.Module``: every model returns ``(out, state)``;
* ``objective``: the loss and the metrics (``hippos.train.objectives``);
* ``batches(ds, cfg, epoch, start, train)``: the index batches of one epoch (default: a seeded
  permutation per epoch, or length buckets when the dataset has ``lengths``);
* ``state_carry(cfg)``: None, or the state carried from batch to batch (truncated BPTT,
  ``hippos.train.carry``);
* ``extra_metrics(model, data, cfg, split) -> dict``: numbers beyond the objective's, reported
  by ``hippos eval`` and in ``results.json`` (the forecasting rollout, for example).

**User tasks.** Subclass :class:`Task` (or :class:`ClassificationTask`, which needs only
``defaults`` and ``load_data``) in your own file and register it with
``hippos.train.register_task``;
``hippos train --task-module my_tasks.py mytask`` imports the file first and records it in the
run's config (``task_module``), so ``hippos eval``, ``--resume`` and ``hippos generate`` find the
task again. Installed packages can also declare tasks in the entry-point group ``hippos.tasks``
(``name = "package.module:TaskClass"``). See docs/training.md ("Your own task").
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from hippos.models.config import ModelConfig
from hippos.models.lm_config import LMConfig
from hippos.train.config import TrainConfig
from hippos.train.objectives import CLASSIFICATION, Objective

__all__ = ["ClassificationTask", "EpochBatches", "Task", "TaskData", "build_model", "epoch_order"]


# ----------------------------------------------------------------------------- batch order


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of ``range(n)`` used in epoch ``epoch``: a pure function of its arguments."""
    import numpy as np

    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch), 0x5EED])))
    return torch.from_numpy(rng.permutation(n))


class EpochBatches(torch.utils.data.Sampler):
    """Index batches of one epoch, from batch ``start`` on (a resumed epoch skips those done)."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0, shuffle: bool = True):
        self.n, self.batch_size, self.seed, self.epoch, self.start, self.shuffle = n, batch_size, seed, epoch, start, shuffle

    def __len__(self) -> int:
        return max(0, math.ceil(self.n / self.batch_size) - self.start)

    def __iter__(self):
        order = epoch_order(self.n, self.seed, self.epoch) if self.shuffle else torch.arange(self.n)
        for b in range(self.start, math.ceil(self.n / self.batch_size)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size]


# ----------------------------------------------------------------------------- the API


def build_model(model_cfg) -> torch.nn.Module:
    """The model of a model section: ``ModelConfig`` -> ``SequenceClassifier``, ``LMConfig`` ->
    ``LanguageModel`` (each gets a private copy of the config)."""
    if isinstance(model_cfg, LMConfig):
        from hippos.models.lm import LanguageModel

        return LanguageModel(dataclasses.replace(model_cfg))
    if isinstance(model_cfg, ModelConfig):
        from hippos.models.classifier import SequenceClassifier

        return SequenceClassifier(dataclasses.replace(model_cfg))
    raise TypeError(f"build_model expects a ModelConfig or an LMConfig, got {type(model_cfg).__name__}")


@dataclass
class TaskData:
    """What ``Task.load_data`` returns: three datasets, the run's artifacts and anything else.

    ``artifacts`` maps a file name in the run directory (``vocab.json``) to its text; a fresh
    run writes them, a resumed or evaluated run must find the same text there. ``extra`` holds
    whatever the task keeps for its own use (``fit_config``, ``extra_metrics``).
    """

    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    test: torch.utils.data.Dataset
    artifacts: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def split(self, name: str) -> torch.utils.data.Dataset:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {name!r}")
        return getattr(self, name)


class Task:
    """Base of every task; see the module docstring. Subclasses set ``name``, ``description``
    and ``objective`` and implement ``defaults`` and ``load_data`` at least."""

    name: str = ""
    description: str = ""
    objective: Objective = CLASSIFICATION

    def defaults(self) -> TrainConfig:
        raise NotImplementedError(f"task {self.name!r} defines no defaults()")

    def check(self, cfg: TrainConfig) -> None:
        """The model section must be the kind ``build_model`` builds (ModelConfig or LMConfig)."""
        kind = type(self.defaults().model)
        if not isinstance(cfg.model, kind):
            raise TypeError(f"task {self.name!r} trains a {kind.__name__} model: its model section must be a {kind.__name__}")
        if isinstance(cfg.model, ModelConfig):
            cfg.model.validate()  # sizes and kinds, before any data is loaded (one line each)

    def load_data(self, cfg: TrainConfig) -> TaskData:
        raise NotImplementedError(f"task {self.name!r} defines no load_data()")

    def fit_config(self, cfg: TrainConfig, data: TaskData) -> TrainConfig:
        return cfg

    def build_model(self, cfg: TrainConfig) -> torch.nn.Module:
        """``ModelConfig`` -> ``SequenceClassifier``, ``LMConfig`` -> ``LanguageModel``."""
        return build_model(cfg.model)

    def batches(self, ds, cfg: TrainConfig, epoch: int, start: int, train: bool) -> torch.utils.data.Sampler:
        """Length buckets when the dataset has ``lengths`` (variable-length sequences), else a
        permutation per epoch (training) or the examples in order (evaluation)."""
        lengths = getattr(ds, "lengths", None)
        if lengths is not None:
            from hippos.data.buckets import LengthBucketBatches

            return LengthBucketBatches(lengths, cfg.batch_size, cfg.seed, epoch, start=start, shuffle=train)
        return EpochBatches(len(ds), cfg.batch_size, cfg.seed, epoch, start, shuffle=train)

    def state_carry(self, cfg: TrainConfig):
        """None (the default: every batch starts from a zero state), or a
        :class:`hippos.train.carry.StateCarry`: the trainer then passes each batch the detached
        state the previous one ended in, dropped where ``batches(...).resets_at(i)`` says, and
        checkpoints it (truncated BPTT; the language-model tasks with ``data.carry_state``)."""
        return None

    def extra_metrics(self, model: torch.nn.Module, data: TaskData, cfg: TrainConfig, split: str) -> dict:
        return {}

    def describe_extra(self, extra: dict) -> list[str]:
        """Lines that ``hippos eval`` prints for ``extra_metrics``."""
        return []

    def __repr__(self) -> str:
        return f"<task {self.name!r}: {self.description}>"


class ClassificationTask(Task):
    """A classifier task: ``load_data`` gives ``(x: f32(n L d), y: i64(n))`` datasets; the model
    section is a ``ModelConfig`` whose ``d_input`` and ``n_classes`` are filled in from the
    data (``TaskData.extra["d_input"]`` / ``["n_classes"]`` when given, else read off a batch)."""

    objective = CLASSIFICATION

    def fit_config(self, cfg: TrainConfig, data: TaskData) -> TrainConfig:
        d_input, n_classes = data.extra.get("d_input"), data.extra.get("n_classes")
        if d_input is None or n_classes is None:
            batch = data.train[torch.arange(min(len(data.train), 256))]
            d_input = d_input or int(batch[0].shape[-1])
            n_classes = n_classes or int(batch[1].max()) + 1
        cfg.model = dataclasses.replace(cfg.model, d_input=int(d_input), n_classes=int(n_classes))
        return cfg

    def check(self, cfg: TrainConfig) -> None:
        if not isinstance(cfg.model, ModelConfig):
            raise TypeError(f"task {self.name!r} trains a classifier: its model section must be a ModelConfig")
        cfg.model.validate()
