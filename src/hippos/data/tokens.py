"""Compact sequence datasets fetched a padded batch at a time: token ids and image pixels.

* ``TokenSequences``: ``n`` token sequences of lengths ``L_i`` stored back to back as small
  integers (ListOps symbols, the bytes of a review); ``ds[indices]`` gives
  ``(x: long(B L), y: long(B), lengths: long(B))`` with ``L`` the batch's longest sequence and
  ``x[b, lengths[b]:] == pad_id``. Its ``lengths`` attribute makes the trainer batch by length
  buckets, so a 200-byte review does not cost 4,096 steps.
* ``PixelSequences``: images ``u8(n S S)`` kept as bytes, read row-major as
  ``x: f32(B S·S 1)`` scaled to ``[-1, 1]`` (``(p/255 - 0.5)/0.5``, the S4 LRA loaders'
  normalization), ``y: long(B)``: Pathfinder and grayscale CIFAR.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["AUGMENTS", "PixelSequences", "TokenSequences"]


class TokenSequences(torch.utils.data.Dataset):
    """``tokens: int(T)`` back to back, ``offsets: int(n+1)`` (sequence i is
    ``tokens[offsets[i]:offsets[i+1]]``), ``y: int(n)``; sequences longer than ``max_length`` keep
    their first ``max_length`` tokens (the LRA truncation). Every token must be in
    ``[0, vocab_size)`` and every sequence non-empty; ``pad_id`` fills the batch past each end."""

    def __init__(self, tokens, offsets, y, vocab_size: int, max_length: int | None = None, pad_id: int = 0):
        tokens, offsets, y = np.asarray(tokens), np.asarray(offsets, dtype=np.int64), np.asarray(y)
        if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
            raise ValueError(f"tokens must be a 1-D integer array, got {tokens.dtype} {tokens.shape}")
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(tokens):
            raise ValueError(f"offsets must run from 0 to len(tokens) = {len(tokens)}, got {offsets[:3]} ... {offsets[-1:]}")
        lengths = np.diff(offsets)  # (n,)
        if (lengths < 1).any():
            raise ValueError(f"sequence {int(np.argmax(lengths < 1))} is empty (every sequence needs a token)")
        if y.shape != lengths.shape or y.dtype.kind not in "iu":
            raise ValueError(f"y must hold {len(lengths)} integer labels, got {y.dtype} {y.shape}")
        if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
            raise ValueError(f"token ids must be in [0, {vocab_size}), got {int(tokens.min())} .. {int(tokens.max())}")
        if max_length is not None:
            if max_length < 1:
                raise ValueError(f"max_length must be >= 1 or None, got {max_length}")
            lengths = np.minimum(lengths, max_length)
        self.tokens = torch.from_numpy(tokens.astype(np.int16 if vocab_size <= 32767 else np.int64))  # (T,)
        self.starts = torch.from_numpy(offsets[:-1].copy())  # (n,)
        self.lengths = lengths.astype(np.int64)  # (n,) numpy: read by the length-bucket sampler
        self._lengths_t = torch.from_numpy(self.lengths)
        self.y = torch.from_numpy(y.astype(np.int64))
        self.vocab_size, self.pad_id = int(vocab_size), int(pad_id)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index):
        idx = torch.as_tensor(index, dtype=torch.long)
        if idx.dim() == 0:
            x, y, lengths = self[idx[None]]
            return x[0, : int(lengths[0])], y[0], lengths[0]
        if idx.dim() != 1:
            raise IndexError(f"index must be an integer or a 1-D batch of indices, got shape {tuple(idx.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"indices must be in 0 .. {len(self) - 1}, got {int(idx.min())} .. {int(idx.max())}")
        lengths = self._lengths_t[idx]  # (B,)
        L = int(lengths.max()) if len(idx) else 0
        steps = torch.arange(L)
        valid = steps[None, :] < lengths[:, None]  # (B L)
        pos = torch.where(valid, self.starts[idx][:, None] + steps, 0)  # (B L) into tokens
        x = self.tokens[pos].long().masked_fill_(~valid, self.pad_id)  # (B L)
        return x, self.y[idx], lengths


#: ``PixelSequences(augment=...)``: none, or each image drawn in a random one of its 8 symmetries
#: (flips and quarter turns: the dihedral group of the square)
AUGMENTS = ("none", "dihedral")


class PixelSequences(torch.utils.data.Dataset):
    """``images: u8(n S S)`` and ``y: int(n)`` -> ``ds[indices] = (x: f32(B S·S 1), y: long(B))``,
    pixels row-major, scaled to ``[-1, 1]``. Kept in memory as bytes (160,000 32×32 images:
    164 MB).

    ``augment="dihedral"``: every read draws, per image, one of the square's 8 symmetries
    (transpose, then flip rows, then flip columns, each with probability 1/2; torch's global RNG,
    which a checkpoint restores) and applies it before flattening: for a label that the
    symmetries keep (Pathfinder's "the markers are connected"), 8 images for each one stored.
    """

    def __init__(self, images, y, augment: str = "none"):
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
        self.augment = augment
        images, y = np.asarray(images), np.asarray(y)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (n, S, S), got {images.dtype} {images.shape}")
        if y.shape != (len(images),) or y.dtype.kind not in "iu":
            raise ValueError(f"y must hold {len(images)} integer labels, got {y.dtype} {y.shape}")
        self.pixels = torch.from_numpy(np.ascontiguousarray(images.reshape(len(images), -1)))  # (n, S·S) uint8
        self.y = torch.from_numpy(y.astype(np.int64))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index):
        pixels = self.pixels[index]  # (B, S·S) or (S·S,) uint8
        if self.augment == "dihedral":
            pixels = _dihedral(pixels)
        x = pixels.to(torch.float32).div_(127.5).sub_(1.0).unsqueeze(-1)  # (B, S·S, 1) in [-1, 1]
        return x, self.y[index]


def _dihedral(pixels: torch.Tensor) -> torch.Tensor:
    """``u8(..., S·S)`` row-major square images, each in a random one of its 8 symmetries."""
    shape = pixels.shape
    S = math.isqrt(shape[-1])
    if S * S != shape[-1]:
        raise ValueError(f"dihedral augmentation needs square images, got {shape[-1]} pixels")
    img = pixels.reshape(-1, S, S)  # (B, S, S)
    t, fr, fc = (torch.rand(3, img.shape[0]) < 0.5).unbind(0)  # (B,) each: transpose, flip rows, flip columns
    img = torch.where(t[:, None, None], img.transpose(1, 2), img)
    img = torch.where(fr[:, None, None], img.flip(1), img)
    img = torch.where(fc[:, None, None], img.flip(2), img)
    return img.reshape(shape)
