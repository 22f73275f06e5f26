"""The ``delay`` task: generated delayed pattern recall (``hippos.data.generated``), no data files.

The default run of ``hippos train``: a small S4D that must hold a pattern seen in the first half
of a 512-step noisy sequence until the last step (a few minutes on a laptop CPU).
"""

from __future__ import annotations

from hippos.data.generated import DelayDataConfig
from hippos.train.config import TrainConfig, require
from hippos.train.task import ClassificationTask, TaskData

__all__ = ["DelayTask"]


class DelayTask(ClassificationTask):
    name = "delay"
    description = "generated delayed pattern recall, L 512, 10 classes (no data files)"

    def defaults(self) -> TrainConfig:
        cfg = TrainConfig(task="delay", epochs=5, batch_size=64, lr=1e-2, weight_decay=0.01, warmup_steps=50, log_every=25)
        cfg.data = DelayDataConfig()
        m = cfg.model
        m.d_input, m.n_classes = 1, 10
        m.d_model, m.n_layers, m.d_state = 32, 2, 64
        m.mode, m.init = "diag", "lin"
        m.dropout, m.prenorm, m.norm, m.pool = 0.0, True, "layer", "last"
        m.l_max = cfg.data.length
        return cfg

    def check(self, cfg: TrainConfig) -> None:
        super().check(cfg)
        for key in ("length", "bits", "bit_length", "n_train", "n_val", "n_test"):
            require(cfg, getattr(cfg.data, key) >= 1, f"data.{key}", ">= 1")
        require(cfg, cfg.data.noise >= 0, "data.noise", ">= 0")
        require(cfg, cfg.data.seed >= 0, "data.seed", ">= 0")
        require(cfg, cfg.model.d_input == 1, "model.d_input", "1 (the delay task's sequences are scalar)")
        require(cfg, cfg.model.n_classes >= 2, "model.n_classes", ">= 2")

    def load_data(self, cfg: TrainConfig) -> TaskData:
        from hippos.data.generated import TensorSequences, delay

        d = cfg.data

        def split(name: str, n: int):
            x, y = delay(name, n, d.length, d.bits, d.bit_length, cfg.model.n_classes, d.noise, d.seed)
            return TensorSequences(x, y)

        return TaskData(split("train", d.n_train), split("val", d.n_val), split("test", d.n_test),
                        extra={"d_input": 1, "n_classes": cfg.model.n_classes})
