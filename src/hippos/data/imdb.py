"""IMDB movie reviews as byte sequences: the Long Range Arena "Text" task (LRA, arXiv 2011.04006 §3.3).

The labelled part of aclImdb (Maas et al. 2011): 25,000 training and 25,000 test reviews, half
positive (rating 7-10, label 1), half negative (1-4, label 0), read from
``<data_dir>/imdb/aclImdb-labeled.tar.xz`` (SHA-256 checked; ``../shared/data/imdb/SOURCE.md``).

**Encoding.** The raw UTF-8 bytes of each review, ``<br />`` tags and all (LRA's
``ByteTextEncoder``): token id = byte + 1, 0 is padding, so the vocabulary has 257 ids and
``decode(encode(text)) == text`` for any text. LRA truncates at 4,096 bytes (``max_length``).
Reviews are 32 to 13,704 bytes long, median 971, mean 1,310; 2.8% exceed 4,096 bytes, and the
mean after the cut is 1,284 bytes: with length buckets an epoch costs about a third of
4,096-step padding.

**Splits.** LRA validates on the test split itself; here a validation split of ``val_size``
reviews is held out of the training split instead (a seeded choice, balanced by label), so the
test accuracy reported is never the one that picked the checkpoint.

Reading the archive (105 MB of tar through xz) takes ~5 s; the encoded reviews are cached as a
generated set (:mod:`hippos.data.gen_cache`, keyed by the archive's SHA-256) and load in well
under a second afterwards.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hippos.data.gen_cache import cached_arrays
from hippos.data.mnist import resolve_data_dir, verify_file

__all__ = [
    "IMDB_FILE",
    "IMDB_SHA256",
    "VOCAB_SIZE",
    "ImdbDataConfig",
    "decode",
    "encode",
    "imdb_path",
    "load_imdb",
    "read_imdb",
]

IMDB_FILE = "aclImdb-labeled.tar.xz"
IMDB_SHA256 = "9f74a6a987b758b541e5b0f49512cc237a8191d4cabef820fc712ed841048ae9"
IMDB_SIZE = 18_653_840
#: Byte b is token b + 1; 0 pads.
VOCAB_SIZE = 257
_REVIEW = re.compile(r"aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")


@dataclass
class ImdbDataConfig:
    """The data section of ``lra-text``."""

    max_length: int = 4096  # bytes kept from the start of each review (LRA: 4,096)
    val_size: int = 2500  # reviews held out of the training split for validation (half of each label)
    n_train: int | None = None  # use only this many training reviews (a seeded, label-balanced choice); None: all 22,500
    n_test: int | None = None  # test on only this many reviews (a seeded, label-balanced choice); None: all 25,000
    cache_dir: str | None = None  # where the encoded reviews are cached (None: $HIPPOS_CACHE or ~/.cache/hippos)


def encode(text: str | bytes) -> np.ndarray:
    """``u16(n_bytes)``: the UTF-8 bytes of ``text``, each + 1."""
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return np.frombuffer(raw, dtype=np.uint8).astype(np.uint16) + 1


def decode(ids) -> str:
    """The text of token ids (padding, id 0, dropped); bytes that are not UTF-8 are replaced."""
    ids = np.asarray(ids).astype(np.int64).reshape(-1)
    ids = ids[ids != 0]
    if ids.size and (ids.min() < 1 or ids.max() >= VOCAB_SIZE):
        raise ValueError(f"byte token ids must be in [0, {VOCAB_SIZE}), got {ids.min()} .. {ids.max()}")
    return (ids - 1).astype(np.uint8).tobytes().decode("utf-8", errors="replace")


def imdb_path(data_dir: str | os.PathLike | None = None) -> Path:
    """``<data_dir>/imdb/aclImdb-labeled.tar.xz`` (``data_dir`` or ``$HIPPOS_DATA``), checked."""
    path = resolve_data_dir(data_dir) / "imdb" / IMDB_FILE
    if not path.is_file():
        raise FileNotFoundError(f"missing {str(path)!r}: the labelled IMDB reviews (see ../shared/data/imdb/SOURCE.md)")
    try:
        return verify_file(path, IMDB_SHA256, IMDB_SIZE)
    except ValueError as e:
        raise ValueError(str(e).replace("is not the MNIST file", "is not the labelled IMDB archive")) from None


def read_imdb(path: str | os.PathLike) -> dict[str, tuple[list[bytes], np.ndarray]]:
    """``{"train": (reviews, labels), "test": ...}`` from the archive, in archive order (sorted
    names: neg then pos); ``labels: u8(n)``, 1 = positive."""
    out: dict[str, tuple[list[bytes], list[int]]] = {"train": ([], []), "test": ([], [])}
    with tarfile.open(path, "r:xz") as tar:
        for member in tar:
            m = _REVIEW.search(member.name)
            if m is None or not member.isfile():
                continue
            texts, labels = out[m.group(1)]
            texts.append(tar.extractfile(member).read())
            labels.append(1 if m.group(2) == "pos" else 0)
    for split, (texts, _) in out.items():
        if len(texts) != 25_000:
            raise ValueError(f"{str(path)!r}: expected 25,000 {split} reviews, found {len(texts)}")
    return {k: (t, np.asarray(y, dtype=np.uint8)) for k, (t, y) in out.items()}


def _encoded_set(path: Path) -> dict[str, np.ndarray]:
    """Both splits as ``{split}_bytes u8(T)``, ``{split}_offsets i64(n+1)``, ``{split}_labels u8(n)``."""
    arrays = {}
    for split, (texts, labels) in read_imdb(path).items():
        lengths = np.array([len(t) for t in texts], dtype=np.int64)
        arrays[f"{split}_bytes"] = np.frombuffer(b"".join(texts), dtype=np.uint8).copy()
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum(lengths)])
        arrays[f"{split}_labels"] = labels
    return arrays


def load_imdb(cfg: ImdbDataConfig, data_dir: str | os.PathLike | None = None, log: Callable[[str], None] | None = None,
              seed: int = 0):
    """``{"train", "val", "test"}`` -> :class:`hippos.data.tokens.TokenSequences` of byte ids (``x:
    long(B L)``, ``y``, ``lengths``), each review cut at ``cfg.max_length`` bytes. The validation
    reviews are ``cfg.val_size`` training reviews (half of each label) chosen by ``seed``."""
    from hippos.data.tokens import TokenSequences

    if cfg.max_length < 1:
        raise ValueError(f"data.max_length must be >= 1, got {cfg.max_length}")
    if not 0 <= cfg.val_size <= 12_500 or cfg.val_size % 2:
        raise ValueError(f"data.val_size must be an even number in 0 .. 12500, got {cfg.val_size}")
    path = imdb_path(data_dir)
    z = cached_arrays("imdb-bytes", {"sha256": IMDB_SHA256, "version": 1}, lambda: _encoded_set(path),
                      cache_dir=cfg.cache_dir, log=log)

    def split(name: str, idx: np.ndarray | None = None):
        data, off, y = z[f"{name}_bytes"], z[f"{name}_offsets"], z[f"{name}_labels"]
        if idx is not None:  # a subset: gather its reviews back to back
            lengths = off[idx + 1] - off[idx]
            rows = np.concatenate([np.arange(off[i], off[i + 1]) for i in idx]) if len(idx) else np.zeros(0, np.int64)
            data, off, y = data[rows], np.concatenate([[0], np.cumsum(lengths)]), y[idx]
        return TokenSequences(data.astype(np.int16) + 1, off, y, VOCAB_SIZE, max_length=cfg.max_length)

    for name in ("n_train", "n_test"):
        v = getattr(cfg, name)
        if v is not None and (v < 2 or v % 2):
            raise ValueError(f"data.{name} must be an even number >= 2 or none, got {v}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0x1DB])))

    def balanced(idx: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
        """``k`` of ``idx`` (k/2 of each label), sorted."""
        per = [idx[y[idx] == c] for c in (0, 1)]
        if k // 2 > min(len(p) for p in per):
            raise ValueError(f"asked for {k} reviews, {k // 2} of each label, from {len(idx)}")
        return np.sort(np.concatenate([rng.choice(p, k // 2, replace=False) for p in per]))

    y, y_test = z["train_labels"], z["test_labels"]
    val = balanced(np.arange(len(y)), y, cfg.val_size)
    train = np.setdiff1d(np.arange(len(y)), val)
    if cfg.n_train is not None:
        train = balanced(train, y, cfg.n_train)
    test = None if cfg.n_test is None else balanced(np.arange(len(y_test)), y_test, cfg.n_test)
    return {"train": split("train", train), "val": split("train", val), "test": split("test", test)}
