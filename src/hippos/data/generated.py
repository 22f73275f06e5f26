"""Generated sequence classification, no data files: the ``delay`` task (delayed pattern recall).

A test of long memory in the spirit of the HiPPO/LSSL memory tasks (HiPPO arXiv 2008.07669
§4; LSSL arXiv 2110.13985): a short pattern appears once, early, in a long noisy sequence,
and the class must be read out at the *last* step, so the model has to keep what it saw for
at least half the sequence.

Task ``delay(length L, bits b, bit_length s, n_classes C, noise σ)``:

* C fixed codewords of b bits (±1), pairwise as far apart in Hamming distance as the
  greedy choice from ``TEMPLATE_SEED`` allows (≥ 3 for C = 10, b = 8); the pattern of a
  class holds each bit for s steps, so it is P = b·s steps long (64 by default);
* an example of class c is Gaussian noise ``σ·ε`` of length L with the pattern of c added
  at a start drawn uniformly from ``0 .. L/2 - P`` (so it ends in the first half);
* ``x: f32(L 1)``, ``y = c``; classes are balanced in expectation.

With a readout of the last step (``pool="last"``), a model whose memory is shorter than L/2
is at chance (1/C): it must detect the pattern wherever it is, then hold the answer. Every
split is a pure function of (``seed``, split name): ``train``, ``val`` and ``test`` use
different streams (numpy PCG64), and nothing depends on the training seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "DelayDataConfig","SPLITS", "TEMPLATE_SEED", "TensorSequences", "codewords", "delay", "delay_patterns"]


@dataclass
class DelayDataConfig:
    """The data section of the ``delay`` task: the arguments of :func:`delay` (``n_classes`` is
    the model's)."""

    length: int = 512  # sequence length L
    bits: int = 8  # the class patterns are codewords of this many ±1 bits ...
    bit_length: int = 8  # ... each held this many steps
    noise: float = 0.2  # standard deviation of the Gaussian background
    n_train: int = 8000
    n_val: int = 1000
    n_test: int = 1000
    seed: int = 0


SPLITS = ("train", "val", "test")

#: Seed of the choice of codewords: part of the task's definition.
TEMPLATE_SEED = 1234


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def codewords(n_classes: int, bits: int) -> np.ndarray:
    """``n_classes`` distinct codewords ``i8(C b)`` of ±1, greedily spread in Hamming distance.

    The 2^b words are visited in an order fixed by ``TEMPLATE_SEED``; a word is kept if it is
    at distance ≥ d from those kept, starting from d = b // 2 and lowering d until C are found.
    """
    n_classes, bits = _check_int("n_classes", n_classes, 2), _check_int("bits", bits, 1)
    if n_classes > 2**bits:
        raise ValueError(f"{n_classes} classes need at least {int(np.ceil(np.log2(n_classes)))} bits, got {bits}")
    words = np.random.Generator(np.random.PCG64(TEMPLATE_SEED)).permutation(2**bits)
    table = (words[:, None] >> np.arange(bits)) & 1  # (2^b, b) in {0, 1}
    for d in range(max(bits // 2, 1), 0, -1):
        kept: list[np.ndarray] = []
        for w in table:
            if all(int((w != k).sum()) >= d for k in kept):
                kept.append(w)
                if len(kept) == n_classes:
                    return (np.stack(kept) * 2 - 1).astype(np.int8)
    raise AssertionError("unreachable: d = 1 accepts every distinct word")  # pragma: no cover


def delay_patterns(n_classes: int, bits: int = 8, bit_length: int = 8) -> np.ndarray:
    """The C patterns ``f32(C P)``, ``P = bits · bit_length``: each codeword bit held ``bit_length`` steps."""
    bit_length = _check_int("bit_length", bit_length, 1)
    return np.repeat(codewords(n_classes, bits), bit_length, axis=1).astype(np.float32)


def delay(
    split: str,
    n: int,
    length: int = 512,
    bits: int = 8,
    bit_length: int = 8,
    n_classes: int = 10,
    noise: float = 0.2,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples of the delayed-recall task: ``x: f32(n L 1)``, ``y: i64(n)``.

    The pattern of class ``y`` (see ``delay_patterns``) is added to noise ``N(0, noise²)``
    at a start drawn uniformly from ``0 .. length//2 - P``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    n = _check_int("n", n, 1)
    length = _check_int("length", length, 2)
    seed = _check_int("seed", seed, 0)
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    T = delay_patterns(n_classes, bits, bit_length)  # (C, P)
    P = T.shape[1]
    if P > length // 2:
        raise ValueError(f"the pattern ({bits} bits x {bit_length} steps = {P}) must fit in the first half of length {length}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, SPLITS.index(split)])))
    y = rng.integers(0, n_classes, size=n)
    start = rng.integers(0, length // 2 - P + 1, size=n)
    x = (noise * rng.standard_normal((n, length))).astype(np.float32)
    x[np.arange(n)[:, None], start[:, None] + np.arange(P)] += T[y]
    return torch.from_numpy(x).unsqueeze(-1), torch.from_numpy(y.astype(np.int64))


class TensorSequences(torch.utils.data.Dataset):
    """In-memory ``(x: f32(n L d), y: i64(n))``, fetched a batch at a time: ``ds[indices]``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if x.dim() != 3 or y.dim() != 1 or len(x) != len(y):
            raise ValueError(f"expected x (n, L, d) and y (n,), got {tuple(x.shape)} and {tuple(y.shape)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index):
        return self.x[index], self.y[index]
