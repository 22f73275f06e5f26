"""``smnist`` / ``psmnist``: sequential and permuted sequential MNIST (``hippos.data.mnist``).

S4 (arXiv 2111.00396) Table 6 / LSSL Table 1: 784 pixels one at a time (psMNIST: in one fixed
permutation), 4 layers, H 256, N 64, pre-LayerNorm, AdamW lr 1e-3 with the SSM parameters at
lr <= 1e-3 and no weight decay, batch 50, pixels / 255. The epochs, dropout, weight decay and
warmup are not given there: ours. The files are the official ones, checked by SHA-256; for idx
files of other content use ``hippos train classify --data.format=idx``.
"""

from __future__ import annotations

from hippos.data.mnist import MnistDataConfig
from hippos.train.config import TrainConfig, require
from hippos.train.task import ClassificationTask, TaskData

__all__ = ["MnistTask"]


class MnistTask(ClassificationTask):
    def __init__(self, permuted: bool):
        self.permuted = permuted
        self.name = "psmnist" if permuted else "smnist"
        self.description = "permuted sequential MNIST, one fixed permutation" if permuted else "sequential MNIST, 784 pixels one at a time"

    def defaults(self) -> TrainConfig:
        cfg = TrainConfig(task=self.name, epochs=100, batch_size=50, lr=1e-3, weight_decay=0.01, warmup_steps=1000,
                          checkpoint_every=500)
        cfg.data = MnistDataConfig()
        m = cfg.model
        m.d_input, m.n_classes = 1, 10
        m.d_model, m.n_layers, m.d_state = 256, 4, 64
        m.mode, m.init = "dplr", "legs"
        m.dropout, m.prenorm, m.norm, m.pool = 0.1, True, "layer", "mean"
        m.l_max = 784
        return cfg

    def check(self, cfg: TrainConfig) -> None:
        super().check(cfg)
        require(cfg, cfg.model.d_input == 1, "model.d_input", "1 (MNIST pixels are scalar)")
        require(cfg, cfg.model.n_classes == 10, "model.n_classes", "10 (MNIST has 10 classes)")

    def load_data(self, cfg: TrainConfig) -> TaskData:
        from hippos.data.mnist import MnistSequences

        splits = [MnistSequences(s, cfg.data_dir, permuted=self.permuted) for s in ("train", "val", "test")]
        return TaskData(*splits, extra={"d_input": 1, "n_classes": 10})
