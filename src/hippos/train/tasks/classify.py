"""``classify``: sequence classification from the user's own file (``hippos.data.user_classify``).

``hippos train classify --data.path=FILE``: ``.npz`` (``x``, ``y``, optional ``lengths``,
``x_test``/``y_test``), CSV (one sequence per row, a label column) or idx files of any content
(``--data.format=idx --data.labels_path=...``). Variable-length sequences are padded per batch,
batched by length buckets and masked (``lengths``). The run keeps ``normalizer.json`` (the
input statistics of the training split) and ``classes.json`` (the user's label of each class
index); resume and eval check that the data still gives the same ones.

The default model is a small S4D classifier (4 blocks, H 64, N 64, pre-LayerNorm, mean pooling
over the valid steps), causal; ``--model.bidirectional=true`` lets every step see the whole
sequence (often better for classification, as the S4 LRA configs).
"""

from __future__ import annotations

import json

from hippos.data.user_classify import ClassifyDataConfig
from hippos.train.config import TrainConfig, require
from hippos.train.task import ClassificationTask, TaskData

__all__ = ["CLASSES", "NORMALIZER", "ClassifyTask"]

NORMALIZER, CLASSES = "normalizer.json", "classes.json"


class ClassifyTask(ClassificationTask):
    name = "classify"
    description = "sequence classification from your own file: --data.path=FILE (.npz, .csv, idx)"

    def defaults(self) -> TrainConfig:
        cfg = TrainConfig(task="classify", epochs=20, batch_size=32, lr=4e-3, weight_decay=0.01, warmup_fraction=0.05,
                          grad_clip=1.0, log_every=25)
        cfg.data = ClassifyDataConfig()
        m = cfg.model
        m.d_model, m.n_layers, m.d_state = 64, 4, 64
        m.mode, m.init = "diag", "legs"
        m.dropout, m.prenorm, m.norm, m.pool = 0.1, True, "layer", "mean"
        return cfg

    def check(self, cfg: TrainConfig) -> None:
        super().check(cfg)
        d = cfg.data
        require(cfg, 0 <= d.val_fraction < 1, "data.val_fraction", "in [0, 1)")
        require(cfg, 0 <= d.test_fraction < 1, "data.test_fraction", "in [0, 1)")
        require(cfg, d.max_length is None or d.max_length >= 1, "data.max_length", ">= 1 or none")

    def load_data(self, cfg: TrainConfig) -> TaskData:
        from hippos.data.user_classify import load_classification

        data = load_classification(cfg.data)
        artifacts = {CLASSES: json.dumps({"classes": list(data.classes)}) + "\n"}
        if data.normalizer is not None:
            artifacts[NORMALIZER] = json.dumps(data.normalizer.to_dict(), indent=1) + "\n"
        return TaskData(data.train, data.val, data.test, artifacts=artifacts,
                        extra={"d_input": data.d_input, "n_classes": data.n_classes, "max_length": data.max_length,
                               "classes": data.classes})

    def fit_config(self, cfg: TrainConfig, data: TaskData) -> TrainConfig:
        cfg = super().fit_config(cfg, data)
        cfg.model.l_max = int(data.extra["max_length"])  # the DPLR kernel is set up for the longest sequence
        return cfg
