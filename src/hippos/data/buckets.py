"""Variable-length sequences: a padded-batch dataset, a per-feature normalizer, length buckets.

* ``VarLenSequences``: ``n`` sequences ``(L_i, d)`` stored back to back in one float32 array
  (no padding kept in memory); ``ds[indices]`` builds one zero-padded batch
  ``(x: f32(B L d), y: i64(B), lengths: i64(B))`` with ``L = max(lengths)`` of that batch.
* ``Normalizer``: per-feature mean and standard deviation over the valid steps (never the
  padding), JSON-able, applied inside the dataset so that padding stays exactly 0.
* ``LengthBucketBatches``: index batches of sequences of similar length (little padding),
  a pure function of ``(seed, epoch)``; ``start`` resumes mid-epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["BUCKET_BATCHES", "LengthBucketBatches", "Normalizer", "VarLenSequences"]

#: Sequences are sorted by length within chunks of this many batches of a shuffled epoch.
BUCKET_BATCHES = 50

_NORMALIZER_FORMAT = "hippos.Normalizer"
_BUCKET_STREAM = 0x6275636B  # "buck": the sampler's own stream of random numbers


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _as_sequence(a, i: int) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"x: sequence {i} must hold real numbers, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"x: sequence {i} must have shape (L,) or (L, d), got {a.shape}")
    if len(a) == 0:
        raise ValueError(f"x: sequence {i} is empty (every sequence needs at least one step)")
    return a


class VarLenSequences(torch.utils.data.Dataset):
    """``n`` labelled sequences of lengths ``L_i``, fetched a zero-padded batch at a time.

    ``x``: a list of arrays ``(L_i,)`` or ``(L_i, d)`` (any real dtype), or one array
    ``(n, L)`` / ``(n, L, d)``, padded when ``lengths`` (``(n,)``, ``1 <= lengths[i] <= L``) says
    that only ``x[i, :lengths[i]]`` is valid. ``y``: ``(n,)`` integer labels. Values must be
    finite on the valid steps. Stored as ``values: f32(T d)`` with ``T = sum(L_i)``,
    ``offsets: i64(n+1)``, ``y: i64(n)`` (tensors) and ``lengths: int64(n)`` (numpy).

    ``ds[indices]`` (a 1-D LongTensor or list) -> ``(x: f32(B L d), y: i64(B), lengths: i64(B))``
    with ``L`` the longest of the batch and ``x[b, lengths[b]:] == 0``; an integer index gives
    ``(x: f32(L_i d), y, length)``. With a ``normalizer`` the valid steps are normalized.
    """

    def __init__(self, x, y, lengths=None, normalizer: Normalizer | None = None):
        y = np.asarray(y)
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError(f"y must be a 1-D integer array, got {y.dtype} {y.shape}")
        if isinstance(x, np.ndarray) and x.dtype != object:
            if x.dtype.kind not in "biuf":
                raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
            if x.ndim == 2:
                x = x[:, :, None]
            if x.ndim != 3:
                raise ValueError(f"x must have shape (n, L) or (n, L, d), got {x.shape}")
            n, L, d = x.shape
            if lengths is None:
                lengths = np.full(n, L, dtype=np.int64)
            lengths = np.asarray(lengths)
            if lengths.shape != (n,) or lengths.dtype.kind not in "iu":
                raise ValueError(
                    f"lengths must be {n} integers (one per sequence of x), got {lengths.dtype} {lengths.shape}"
                )
            lengths = lengths.astype(np.int64)
            if n and (lengths.min() < 1 or lengths.max() > L):
                bad = int(np.flatnonzero((lengths < 1) | (lengths > L))[0])
                raise ValueError(
                    f"lengths must be in 1 .. {L} (the padded length), got lengths[{bad}] = {lengths[bad]}"
                )
            if (lengths == L).all():
                values = x.reshape(n * L, d)
            else:
                values = x[np.arange(L)[None, :] < lengths[:, None]]  # (T, d): the valid steps, in order
        else:
            if lengths is not None:
                raise ValueError("lengths is only for a padded array x, not for a list of sequences")
            seqs = [_as_sequence(a, i) for i, a in enumerate(x)]
            n = len(seqs)
            d = seqs[0].shape[1] if seqs else 1
            for i, s in enumerate(seqs):
                if s.shape[1] != d:
                    raise ValueError(
                        f"x: every sequence needs the same number of features d; "
                        f"sequence 0 has {d}, sequence {i} has {s.shape[1]}"
                    )
            lengths = np.array([len(s) for s in seqs], dtype=np.int64)
            values = np.concatenate(seqs).astype(np.float32, copy=False) if seqs else np.zeros((0, d), np.float32)
        if len(y) != n:
            raise ValueError(f"x holds {n} sequences but y holds {len(y)} labels")
        values = np.ascontiguousarray(values, dtype=np.float32)  # (T, d)
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            t = int(np.argmin(finite))
            i = int(np.searchsorted(np.cumsum(lengths), t, side="right"))
            step = t - int(lengths[:i].sum())
            raise ValueError(
                f"x holds a non-finite value (NaN or inf, or too large for float32): sequence {i}, step {step}"
            )
        self._set(torch.from_numpy(values), lengths, torch.from_numpy(y.astype(np.int64)), normalizer)

    def _set(self, values: torch.Tensor, lengths: np.ndarray, y: torch.Tensor, normalizer) -> None:
        self.values = values  # (T, d) float32
        self.lengths = lengths  # (n,) int64, numpy
        self._lengths_t = torch.from_numpy(lengths)
        self.offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)  # (n+1,)
        torch.cumsum(self._lengths_t, 0, out=self.offsets[1:])
        self.y = y  # (n,) int64
        self.normalizer = normalizer

    @property
    def d(self) -> int:
        """Features per step."""
        return self.values.shape[1]

    @property
    def normalizer(self) -> Normalizer | None:
        return self._normalizer

    @normalizer.setter
    def normalizer(self, norm: Normalizer | None) -> None:
        if norm is not None:
            if not isinstance(norm, Normalizer):
                raise TypeError(f"normalizer must be a Normalizer or None, got {type(norm).__name__}")
            if len(norm.mean) != self.d:
                raise ValueError(f"normalizer is for {len(norm.mean)} features, the data have d = {self.d}")
        self._normalizer = norm

    def subset(self, indices) -> VarLenSequences:
        """The sequences at ``indices`` (in that order), with the same normalizer."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"indices must be in 0 .. {len(self) - 1}, got {idx.min()} .. {idx.max()}")
        lengths = self.lengths[idx]  # (m,)
        firsts = np.cumsum(lengths) - lengths  # where each sequence starts in the subset
        rows = np.arange(int(lengths.sum())) + np.repeat(self.offsets.numpy()[idx] - firsts, lengths)  # (T',)
        out = VarLenSequences.__new__(VarLenSequences)
        out._set(self.values[torch.from_numpy(rows)], lengths, self.y[torch.from_numpy(idx)], self.normalizer)
        return out

    def __len__(self) -> int:
        return len(self.lengths)

    def _gather(self, idx: torch.Tensor, normalize: bool):
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"indices must be in 0 .. {len(self) - 1}, got {int(idx.min())} .. {int(idx.max())}")
        lengths = self._lengths_t[idx]  # (B,)
        L = int(lengths.max()) if len(idx) else 0
        steps = torch.arange(L)
        valid = steps[None, :] < lengths[:, None]  # (B, L)
        pos = torch.where(valid, self.offsets[idx][:, None] + steps, 0)  # (B, L) rows of values
        x = self.values[pos]  # (B, L, d)
        if normalize and self._normalizer is not None:
            x = self._normalizer(x)
        return x.masked_fill_(~valid[..., None], 0.0), self.y[idx], lengths

    def __getitem__(self, index):
        idx = torch.as_tensor(index, dtype=torch.long)
        if idx.dim() == 0:
            x, y, lengths = self._gather(idx[None], normalize=True)
            return x[0], y[0], lengths[0]
        if idx.dim() != 1:
            raise IndexError(f"index must be an integer or a 1-D batch of indices, got shape {tuple(idx.shape)}")
        return self._gather(idx, normalize=True)


@dataclass(eq=False)
class Normalizer:
    """Per-feature standardization ``(x - mean) / std`` with ``mean, std: f64(d)``.

    ``Normalizer.fit(ds)`` takes both over the valid steps of a ``VarLenSequences`` (population
    std, ``ddof=0``); a std below ``min_std`` (a constant feature) becomes 1.
    ``to_dict``/``from_dict`` round-trip through JSON exactly.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.std = np.asarray(self.std, dtype=np.float64)
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape or len(self.mean) == 0:
            raise ValueError(
                "mean and std must be two 1-D arrays of the same length d >= 1, "
                f"got {self.mean.shape} and {self.std.shape}"
            )
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and (self.std > 0).all()):
            raise ValueError("mean must be finite and std finite and > 0")
        self._t = None

    @classmethod
    def fit(cls, ds: VarLenSequences, min_std: float = 1e-8) -> Normalizer:
        """Mean and std per feature over all valid steps of ``ds``, as stored (its own normalizer not applied).

        Computed in float64 over chunks of steps, merged exactly (Chan, Golub and LeVeque's update).
        """
        if not isinstance(ds, VarLenSequences):
            raise TypeError(f"Normalizer.fit needs a VarLenSequences, got {type(ds).__name__}")
        values = ds.values  # (T, d)
        if len(values) == 0:
            raise ValueError("cannot fit a normalizer on an empty dataset")
        count, mean, m2 = 0, np.zeros(ds.d), np.zeros(ds.d)
        rows = max(1, (1 << 22) // ds.d)
        for s in range(0, len(values), rows):
            c = values[s : s + rows].numpy().astype(np.float64)  # (rows, d)
            nb, mb = len(c), c.mean(axis=0)
            m2b = ((c - mb) ** 2).sum(axis=0)
            delta, total = mb - mean, count + nb
            mean = mean + delta * (nb / total)
            m2 = m2 + m2b + delta**2 * (count * nb / total)
            count = total
        std = np.sqrt(m2 / count)
        return cls(mean, np.where(std < min_std, 1.0, std))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x: f32(... d)`` -> ``(x - mean) / std``, same shape and dtype."""
        if self._t is None:
            self._t = (torch.from_numpy(self.mean).float(), torch.from_numpy(self.std).float())
        mean, std = self._t
        return (x - mean.to(x.device)) / std.to(x.device)

    def to_dict(self) -> dict:
        return {"format": _NORMALIZER_FORMAT, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        if not isinstance(d, dict) or d.get("format") != _NORMALIZER_FORMAT or "mean" not in d or "std" not in d:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(
                f"not a saved Normalizer: expected a dict with format {_NORMALIZER_FORMAT!r}, mean and std; got {got}"
            )
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))


class LengthBucketBatches(torch.utils.data.Sampler):
    """Index batches (``i64(B)``) of sequences of similar length; every index once per epoch.

    ``shuffle=True`` (training): permute ``0..n-1`` with numpy PCG64 seeded by
    ``SeedSequence([seed, epoch, const])``, sort by length (stable) within chunks of
    ``BUCKET_BATCHES * batch_size``, cut each chunk into batches, shuffle the batch order; a
    pure function of the arguments. ``shuffle=False`` (evaluation): sorted by length, no
    randomness. ``start`` skips the first ``start`` batches (a resumed epoch); ``len`` counts
    the batches from there, ``ceil(n / batch_size) - start``.
    """

    def __init__(self, lengths, batch_size: int, seed: int, epoch: int, start: int = 0, shuffle: bool = True):
        lengths = np.asarray(lengths)
        if lengths.ndim != 1 or (lengths.size and lengths.dtype.kind not in "iu"):
            raise ValueError(f"lengths must be a 1-D integer array, got {lengths.dtype} {lengths.shape}")
        self.lengths = lengths.astype(np.int64)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.seed = _check_int("seed", seed, 0)
        self.epoch = _check_int("epoch", epoch, 0)
        self.start = _check_int("start", start, 0)
        self.shuffle = bool(shuffle)

    @property
    def n_batches(self) -> int:
        """Batches in a whole epoch."""
        return math.ceil(len(self.lengths) / self.batch_size)

    def __len__(self) -> int:
        return max(0, self.n_batches - self.start)

    def batches(self) -> list[torch.Tensor]:
        """All batches of the epoch, in order (``start`` not applied)."""
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [torch.from_numpy(order[i : i + bs].copy()) for i in range(0, n, bs)]
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.epoch, _BUCKET_STREAM])))
        perm = rng.permutation(n)
        chunk = BUCKET_BATCHES * bs
        out = []
        for c in range(0, n, chunk):
            part = perm[c : c + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            out += [torch.from_numpy(part[i : i + bs].copy()) for i in range(0, len(part), bs)]
        return [out[j] for j in rng.permutation(len(out))]

    def __iter__(self):
        yield from self.batches()[self.start :]
