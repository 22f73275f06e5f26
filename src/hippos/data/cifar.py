"""Grayscale CIFAR-10 as pixel sequences: the Long Range Arena "Image" task (LRA, arXiv 2011.04006 §3.5),
on the partial copy in ``<data_dir>/cifar10-subset`` (``../shared/data/cifar10-subset/SOURCE.md``).

The folder holds 4,000 of the 50,000 training images (batches 0-3) and 1,000 of the 10,000 test
images (batch 50), as 1024 × 1000 RGB PNGs (row r of a PNG is one 32 × 32 × 3 image) and one
label per line in ``labels.txt`` (lines 0-49,999 training, 50,000-50,999 test). With 8% of the
training set this is a **partial stand-in** for LRA Image: accuracies are not comparable with the
paper's (S4 88.5%, Transformer 42.4%), only with each other.

Grayscale as LRA's ``tf.image.rgb_to_grayscale``: ``0.2989 R + 0.5870 G + 0.1140 B``, rounded to
uint8; the sequence is the 1,024 pixels row-major, 10 classes. The validation split is the last
``val_size`` of the 4,000 training images (the test images are never used to choose a model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hippos.data.mnist import resolve_data_dir, verify_file

__all__ = ["CIFAR_FILES", "GRAY_WEIGHTS", "CifarDataConfig", "cifar_dir", "load_cifar_gray", "read_cifar_subset", "to_gray"]

#: file -> (SHA-256, size in bytes), from SOURCE.md.
CIFAR_FILES = {
    "cifar10_batch_0.png": ("0614720d69293a033786d5fe2924c4e9a9b48874f19ca4627c4662a864ee9f2d", 2318456),
    "cifar10_batch_1.png": ("2927e26ea68602e34a7424826b76b7336ce36b8f6bcc2e9fce0c05568ff6b4c1", 2326379),
    "cifar10_batch_2.png": ("0b2759e307bb405bb1a6531f8a0f557eaec46d7546050612fdb836f0fa60eae0", 2312906),
    "cifar10_batch_3.png": ("a4530ff15c83886058a97c352f53f38be07d191de8f410e998e91786b5900a26", 2328590),
    "cifar10_batch_50.png": ("5cea9e8fb7933540a2236a4bb25c1ed3a8447f345c55ae659143a95a5d8dac5e", 2315890),
    "labels.txt": ("d4280d19d58ed014c6b7e62f77f7e473ab1cb2eb760c25558d2f7aa3e4f25981", 102000),
}
TRAIN_BATCHES, TEST_BATCHES = (0, 1, 2, 3), (50,)
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


@dataclass
class CifarDataConfig:
    """The data section of ``lra-image``."""

    val_size: int = 400  # the last this many of the 4,000 training images validate
    n_train: int | None = None  # train on only the first this many of the others; None: all 3,600
    n_test: int | None = None  # test on only the first this many of the 1,000 test images; None: all


def cifar_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return resolve_data_dir(data_dir) / "cifar10-subset"


def _verified(folder: Path, name: str) -> Path:
    sha, size = CIFAR_FILES[name]
    if not (folder / name).is_file():
        raise FileNotFoundError(f"missing {str(folder / name)!r} (the CIFAR-10 subset: see ../shared/data/cifar10-subset/SOURCE.md)")
    try:
        return verify_file(folder / name, sha, size)
    except ValueError as e:
        raise ValueError(str(e).replace("is not the MNIST file", "is not the CIFAR-10 subset's file")) from None


def read_cifar_subset(data_dir: str | os.PathLike | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images u8(4000 32 32 3), labels u8(4000)), "test": (u8(1000 32 32 3), u8(1000))}``."""
    from PIL import Image

    folder = cifar_dir(data_dir)
    labels = np.array(_verified(folder, "labels.txt").read_text().split(), dtype=np.uint8)  # (51000,)
    out = {}
    for split, batches in (("train", TRAIN_BATCHES), ("test", TEST_BATCHES)):
        images, ys = [], []
        for b in batches:
            with Image.open(_verified(folder, f"cifar10_batch_{b}.png")) as im:
                png = np.asarray(im.convert("RGB"))  # (1000, 1024, 3)
            images.append(png.reshape(1000, 32, 32, 3))
            g0 = 1000 * b  # global index of row 0 (the test batch 50 starts at line 50,000)
            ys.append(labels[g0 : g0 + 1000])
        out[split] = (np.concatenate(images), np.concatenate(ys))
    return out


def to_gray(images: np.ndarray) -> np.ndarray:
    """``u8(n 32 32 3) -> u8(n 32 32)``: ``0.2989 R + 0.5870 G + 0.1140 B``, rounded."""
    g = images.astype(np.float32) @ np.asarray(GRAY_WEIGHTS, dtype=np.float32)
    return np.clip(np.rint(g), 0, 255).astype(np.uint8)


def load_cifar_gray(cfg: CifarDataConfig, data_dir: str | os.PathLike | None = None):
    """``{"train", "val", "test"}`` -> :class:`hippos.data.tokens.PixelSequences` (``x: f32(B 1024 1)``)."""
    from hippos.data.tokens import PixelSequences

    if not 1 <= cfg.val_size < 4000:
        raise ValueError(f"data.val_size must be in 1 .. 3999, got {cfg.val_size}")
    sets = read_cifar_subset(data_dir)
    (xtr, ytr), (xte, yte) = sets["train"], sets["test"]
    xtr, xte = to_gray(xtr), to_gray(xte)
    n = len(ytr) - cfg.val_size
    k, t = (n if cfg.n_train is None else cfg.n_train), (len(yte) if cfg.n_test is None else cfg.n_test)
    if not (1 <= k <= n and 1 <= t <= len(yte)):
        raise ValueError(f"data.n_train must be in 1 .. {n} and data.n_test in 1 .. {len(yte)}, got {cfg.n_train}, {cfg.n_test}")
    return {"train": PixelSequences(xtr[:k], ytr[:k]), "val": PixelSequences(xtr[n:], ytr[n:]),
            "test": PixelSequences(xte[:t], yte[:t])}
