"""A task of your own, trained and evaluated by the ``hippos`` command line.

    hippos train --task-module examples/custom_task.py first-sign
    hippos eval runs/first-sign-<date>-<time>          # no --task-module needed: the run records it
    hippos train --resume runs/first-sign-<date>-<time>

The task: the class is the sign of a sequence's *first* step (±1), the other steps are
Gaussian noise of standard deviation ``data.noise``, so a model must carry one number through
``data.length`` steps. Its data section (``FirstSignData``) holds
the fields its loader reads, so ``--data.length=500`` works and ``--data.lenght=500`` is refused
with a suggestion. ``ClassificationTask`` fills ``model.d_input`` and ``model.n_classes`` in from
the data; the model is hippos' ``SequenceClassifier`` (override ``build_model`` for your own).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hippos.data.generated import TensorSequences
from hippos.train import ClassificationTask, TaskData, TrainConfig, register_task


@dataclass
class FirstSignData:
    length: int = 200  # steps per sequence, L
    noise: float = 0.5
    n_train: int = 2000
    n_val: int = 200
    n_test: int = 200
    seed: int = 0  # the examples (the training seed is the top-level `seed`)


@register_task
class FirstSign(ClassificationTask):
    name = "first-sign"
    description = "the sign of the first step of a noisy sequence (an example task of your own)"

    def defaults(self) -> TrainConfig:
        cfg = TrainConfig(task=self.name, epochs=3, batch_size=32, lr=1e-2, warmup_steps=20)
        cfg.data = FirstSignData()
        m = cfg.model  # a ModelConfig: S4D by default
        m.d_model, m.n_layers, m.d_state, m.pool = 16, 2, 16, "last"
        return cfg

    def check(self, cfg: TrainConfig) -> None:
        super().check(cfg)
        for key in ("length", "n_train", "n_val", "n_test"):
            if getattr(cfg.data, key) < 1:
                raise ValueError(f"data.{key} must be >= 1, got {getattr(cfg.data, key)}")
        if not cfg.data.noise >= 0:
            raise ValueError(f"data.noise must be >= 0, got {cfg.data.noise}")

    def load_data(self, cfg: TrainConfig) -> TaskData:
        d = cfg.data
        g = torch.Generator().manual_seed(d.seed)

        def split(n: int) -> TensorSequences:
            y = torch.randint(0, 2, (n,), generator=g)  # (n,)
            x = d.noise * torch.randn(n, d.length, 1, generator=g)  # (n L 1)
            x[:, 0, 0] = 2.0 * y - 1.0
            return TensorSequences(x, y)

        return TaskData(split(d.n_train), split(d.n_val), split(d.n_test))
