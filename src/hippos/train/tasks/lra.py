"""The Long Range Arena tasks (LRA, arXiv 2011.04006; S4 arXiv 2111.00396 Table 4), at CPU scale.

=================  ==========================================================================
``listops``        ListOps, generated (``hippos.data.listops``): 10 classes, 501-2,000 tokens
``lra-text``       IMDB reviews as bytes (``hippos.data.imdb``): 2 classes, up to 4,096 bytes
``pathfinder``     Pathfinder-32, generated (``hippos.data.pathfinder``): 2 classes, 1,024 pixels
``lra-image``      grayscale CIFAR-10, 4,000-image subset (``hippos.data.cifar``): 10 classes, 1,024 pixels
=================  ==========================================================================

**Models** (REFERENCE.md §4, the S4 repo's ``configs/experiment/lra/*``; every S4 LRA config is
DPLR with LegS init, rank 1, Δ log-uniform in [1e-3, 1e-1], BatchNorm, GLU output, mean pooling
over the valid steps, bidirectional, AdamW with warmup then cosine, A and B at lr 1e-3 without
weight decay): the same shapes here, scaled to a 2-core CPU: 4 layers × H 64 (the reference: 6 ×
256, Image 6 × 512) and a few epochs (the reference: 20-200); Pathfinder generates 50,000 images
by default (LRA: 200,000, ``--data.n_train=160000 --data.n_val=20000 --data.n_test=20000``). ListOps and Text keep the reference's **N 4** with Δ trained at the global
learning rate (``model.dt_lr``); Pathfinder and Image keep N 64. ``--model.mode=diag`` gives S4D;
``--model.mixer=attention`` the Transformer baseline (``lra_transformer``: learned positions,
bidirectional fused attention with the padding masked, LayerNorm, an MLP per block).

Variable-length inputs (ListOps, Text) are batched by length buckets with their ``lengths``:
the S4 layers zero the padding, BatchNorm takes its statistics over the valid steps and the
pooling averages the valid steps only, so a sequence's logits do not depend on its batch.
"""

from __future__ import annotations

import dataclasses

from hippos.train.config import TrainConfig, require
from hippos.train.task import ClassificationTask, TaskData

__all__ = ["LRA_TASKS", "ImageLraTask", "ListOpsTask", "PathfinderTask", "TextLraTask", "lra_transformer"]


def _s4_config(task: str, data, *, d_model: int, n_layers: int, d_state: int, prenorm: bool, lr: float,
               batch_size: int, epochs: int, dt_lr_global: bool, dropout: float = 0.0) -> TrainConfig:
    """The S4 LRA setup of REFERENCE.md §4 at the given size."""
    cfg = TrainConfig(task=task, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.05, warmup_fraction=0.05,
                      schedule="cosine", grad_clip=1.0, log_every=25)
    cfg.data = data
    m = cfg.model
    m.d_model, m.n_layers, m.d_state = d_model, n_layers, d_state
    m.mode, m.init, m.dt_min, m.dt_max = "dplr", "legs", 1e-3, 1e-1
    m.norm, m.prenorm, m.bidirectional, m.pool, m.output = "batch", prenorm, True, "mean", "glu"
    m.dropout, m.tie_dropout = dropout, dropout > 0
    m.dt_lr = lr if dt_lr_global else None
    return cfg


def lra_transformer(cfg: TrainConfig) -> list[tuple[str, str]]:
    """The overrides that turn an LRA task's S4 config into its Transformer baseline: the same
    depth and width, self-attention (4 heads, bidirectional, learned positions) and an MLP of
    2 × d_model per block, pre-LayerNorm, lr 1e-3 (a Transformer diverges at S4's 0.01). The task's
    dropout stays on the residual branches; the attention probabilities get none
    (``model.attn_dropout=0``): torch's CPU ``scaled_dot_product_attention`` has no fused kernel
    with dropout and falls back to writing out the L × L matrix, several times slower per layer."""
    return [("model.mixer", "attention"), ("model.n_heads", "4"), ("model.mlp_expand", "2"), ("model.norm", "layer"),
            ("model.prenorm", "true"), ("lr", "1e-3"), ("model.dt_lr", "none"), ("model.attn_dropout", "0")]


class _LraTask(ClassificationTask):
    """The common part: ``fit_config`` sets the input kind and the longest sequence."""

    def fit_config(self, cfg: TrainConfig, data: TaskData) -> TrainConfig:
        m = cfg.model
        cfg.model = dataclasses.replace(m, d_input=1, n_classes=int(data.extra["n_classes"]),
                                        vocab_size=int(data.extra.get("vocab_size", 0)), l_max=int(data.extra["l_max"]))
        return cfg


class ListOpsTask(_LraTask):
    name = "listops"
    description = "LRA ListOps, generated (10 classes, 501-2000 tokens): S4 N 4 vs Transformer"

    def defaults(self) -> TrainConfig:
        from hippos.data.listops import ListOpsDataConfig

        # reference: 6 x 256 x N 4, post-norm, lr 0.01, batch 32, 40 epochs of 96,000
        return _s4_config("listops", ListOpsDataConfig(), d_model=64, n_layers=4, d_state=4, prenorm=False, lr=0.01,
                          batch_size=32, epochs=2, dt_lr_global=True)

    def load_data(self, cfg: TrainConfig) -> TaskData:
        from hippos.data.listops import VOCAB, load_listops
        from hippos.data.tokens import TokenSequences

        sets = load_listops(cfg.data, log=print)
        ds = {k: TokenSequences(t, o, y, len(VOCAB)) for k, (t, o, y) in sets.items()}
        return TaskData(ds["train"], ds["val"], ds["test"],
                        extra={"n_classes": 10, "vocab_size": len(VOCAB), "l_max": cfg.data.max_length + 1})


class TextLraTask(_LraTask):
    name = "lra-text"
    description = "LRA Text: IMDB reviews as bytes (2 classes, up to 4096 bytes): S4 N 4 vs Transformer"

    def defaults(self) -> TrainConfig:
        from hippos.data.imdb import ImdbDataConfig

        # reference: 6 x 256 x N 4, pre-norm, lr 0.01, batch 16, 32 epochs of 25,000
        return _s4_config("lra-text", ImdbDataConfig(), d_model=64, n_layers=4, d_state=4, prenorm=True, lr=0.01,
                          batch_size=16, epochs=5, dt_lr_global=True)

    def check(self, cfg: TrainConfig) -> None:
        super().check(cfg)
        require(cfg, cfg.data.max_length >= 1, "data.max_length", ">= 1")

    def load_data(self, cfg: TrainConfig) -> TaskData:
        from hippos.data.imdb import VOCAB_SIZE, load_imdb

        ds = load_imdb(cfg.data, data_dir=cfg.data_dir, log=print)
        return TaskData(ds["train"], ds["val"], ds["test"],
                        extra={"n_classes": 2, "vocab_size": VOCAB_SIZE, "l_max": cfg.data.max_length})


class PathfinderTask(_LraTask):
    name = "pathfinder"
    description = "LRA Pathfinder-32, generated (2 classes, 1024 pixels): S4 N 64 vs Transformer"

    def defaults(self) -> TrainConfig:
        from hippos.data.pathfinder import PathfinderDataConfig

        # reference: 6 x 256 x N 64, pre-norm, lr 0.004, batch 64, 200 epochs of 160,000. The CPU preset
        # generates 50,000 images (LRA: --data.n_train=160000 --data.n_val=20000 --data.n_test=20000)
        return _s4_config("pathfinder", PathfinderDataConfig(n_train=40_000, n_val=5_000, n_test=5_000), d_model=64,
                          n_layers=4, d_state=64, prenorm=True, lr=0.004, batch_size=64, epochs=10, dt_lr_global=False)

    def check(self, cfg: TrainConfig) -> None:
        from hippos.data.tokens import AUGMENTS

        super().check(cfg)
        require(cfg, cfg.data.augment in AUGMENTS, "data.augment", f"one of {', '.join(map(repr, AUGMENTS))}")

    def load_data(self, cfg: TrainConfig) -> TaskData:
        from hippos.data.pathfinder import load_pathfinder
        from hippos.data.tokens import PixelSequences

        sets = load_pathfinder(cfg.data, log=print)
        # augment (data.augment) the training images only: validation and test stay as generated
        ds = {k: PixelSequences(x, y, augment=cfg.data.augment if k == "train" else "none") for k, (x, y) in sets.items()}
        return TaskData(ds["train"], ds["val"], ds["test"],
                        extra={"n_classes": 2, "l_max": cfg.data.resolution**2})


class ImageLraTask(_LraTask):
    name = "lra-image"
    description = "LRA Image: grayscale CIFAR-10, 4,000-image subset (10 classes, 1024 pixels): a partial stand-in"

    def defaults(self) -> TrainConfig:
        from hippos.data.cifar import CifarDataConfig

        # reference: 6 x 512 x N 64, post-norm, dropout 0.1, lr 0.01, batch 50, 200 epochs of 45,000
        return _s4_config("lra-image", CifarDataConfig(), d_model=64, n_layers=4, d_state=64, prenorm=False, lr=0.01,
                          batch_size=50, epochs=50, dt_lr_global=False, dropout=0.1)

    def load_data(self, cfg: TrainConfig) -> TaskData:
        from hippos.data.cifar import load_cifar_gray

        ds = load_cifar_gray(cfg.data, data_dir=cfg.data_dir)
        return TaskData(ds["train"], ds["val"], ds["test"], extra={"n_classes": 10, "l_max": 1024})


LRA_TASKS = (ListOpsTask(), TextLraTask(), PathfinderTask(), ImageLraTask())
