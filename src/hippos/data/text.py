"""Character-level language modeling data: a vocabulary, a text corpus, and windows of it.

The small-scale stand-in for the H3 language modeling experiments (arXiv 2212.14052 §5):
next-character prediction, scored in bits per character.

* ``CharVocab``: the distinct characters of a text, sorted by code point, id = position;
  saved and loaded as JSON so that a checkpoint can decode what its model writes.
* ``load_text(path)``: a UTF-8 file read exactly as stored (no newline translation).
* ``tinyshakespeare(data_dir)``: ``<data_dir>/tinyshakespeare/input.txt``, checked against
  its SHA-256 and size (``TINYSHAKESPEARE``, from that directory's ``SOURCE.md``).
* ``split_train_val_test(text, val_fraction, test_fraction)``: three contiguous parts in order,
  train, val, test; the defaults (0.05, 0.05) keep the first 90% for training, as nanoGPT's split of
  the same file (``int(0.9 * 1,115,394)`` = 1,003,854), and cut its last 10% (nanoGPT's val) in two.
  ``test_fraction = 0``: no test text (the two-way split of runs made before there was one).
  ``split_text(text, val_fraction)``: that two-way split, the first 90% and the last 10%.
* ``TextWindows(ids, seq_len)``: every window ``x = ids[i : i+L]``, ``y = ids[i+1 : i+L+1]``;
  ``RandomWindowSampler`` draws batches of window starts (batch ``b`` a pure function of
  ``(seed, b)``, so a resumed run sees the same batches); ``SequentialWindowSampler`` walks
  non-overlapping windows ``0, L, 2L, ...`` once, for evaluation.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hippos.data.idx import file_sha256

__all__ = [
    "TextDataConfig",
    "ENV_VAR",
    "TINYSHAKESPEARE",
    "CharVocab",
    "RandomWindowSampler",
    "SequentialWindowSampler",
    "StreamWindowSampler",
    "TextWindows",
    "bits_per_char",
    "load_text",
    "split_text",
    "split_train_val_test",
    "tinyshakespeare",
    "verify_checksum",
]


@dataclass
class TextDataConfig:
    """The data section of the ``charlm`` task: character-level text."""

    path: str | None = None  # a UTF-8 text file; none: <data_dir>/tinyshakespeare/input.txt
    seq_len: int = 256  # characters per training window
    val_fraction: float = 0.05  # the validation text: this fraction of the characters, just before the test text
    test_fraction: float = 0.05  # the test text: the last fraction of the characters; 0: none (test = val)
    steps_per_epoch: int = 500  # training batches between two validations
    carry_state: bool = False  # truncated BPTT: rows are contiguous streams, the state carried (detached) across batches
    kv_memory: int = 0  # with carry_state: keys/values an attention layer carries to the next window (0: none)


ENV_VAR = "HIPPOS_DATA"

#: ``tinyshakespeare/input.txt``: (SHA-256, size in bytes), from ``data/tinyshakespeare/SOURCE.md``.
TINYSHAKESPEARE: tuple[str, int] = ("86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1115394)

_VOCAB_FORMAT = "hippos.CharVocab"


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


# ----------------------------------------------------------------------------- vocabulary


class CharVocab:
    """Characters <-> ids: ``chars[i]`` has id ``i``.

    ``CharVocab.from_text(text)`` takes the distinct characters sorted by code point.
    ``encode(str) -> i64(N)``, ``decode(ids) -> str``; ``to_json``/``from_json`` (and
    ``save``/``load`` for a file) round-trip exactly.
    """

    def __init__(self, chars: str):
        if not isinstance(chars, str) or not chars:
            raise ValueError(f"chars must be a non-empty string, got {chars!r}")
        if len(set(chars)) != len(chars):
            dup = next(c for c in chars if chars.count(c) > 1)
            raise ValueError(f"chars must be distinct, {dup!r} appears {chars.count(dup)} times")
        self.chars = chars
        self._index = {c: i for i, c in enumerate(chars)}
        self._codes = np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32)
        self._order = np.argsort(self._codes, kind="stable")

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        if not isinstance(text, str) or not text:
            raise ValueError("cannot build a vocabulary from an empty text")
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, CharVocab) and other.chars == self.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} chars)"

    def encode(self, text: str) -> torch.Tensor:
        """``i64(N)`` ids of the N characters of ``text``; ``ValueError`` names a character not in the vocabulary."""
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        sorted_codes = self._codes[self._order]
        pos = np.searchsorted(sorted_codes, codes)
        pos = np.minimum(pos, len(sorted_codes) - 1)
        ok = sorted_codes[pos] == codes
        if not ok.all():
            i = int(np.argmin(ok))
            raise ValueError(f"character {text[i]!r} at position {i} is not in the vocabulary ({len(self)} chars)")
        return torch.from_numpy(self._order[pos].astype(np.int64))

    def decode(self, ids) -> str:
        """The text of a sequence of ids (list, array or 1-d tensor)."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        n = len(self.chars)
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"token ids must be integers in 0 .. {n - 1}, got {i!r}")
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"format": _VOCAB_FORMAT, "version": 1, "chars": self.chars}, ensure_ascii=True)

    @classmethod
    def from_json(cls, s: str) -> CharVocab:
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise ValueError(f"not a CharVocab JSON: {e}") from None
        if not isinstance(d, dict) or d.get("format") != _VOCAB_FORMAT or not isinstance(d.get("chars"), str):
            raise ValueError(f"not a CharVocab JSON (expected {{'format': {_VOCAB_FORMAT!r}, 'chars': ...}})")
        if d.get("version") != 1:
            raise ValueError(f"unsupported CharVocab version {d.get('version')!r} (this hippos reads version 1)")
        return cls(d["chars"])

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharVocab:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file {str(path)!r} does not exist")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{str(path)!r}: {e}") from None


# ----------------------------------------------------------------------------- files


def load_text(path: str | os.PathLike) -> str:
    """The whole UTF-8 file as stored (``\\r\\n`` kept as is); clear errors for a missing or non-UTF-8 file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {str(path)!r} does not exist")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{str(path)!r} is not UTF-8 text (byte {e.start}: {raw[e.start : e.start + 1]!r})") from None


def verify_checksum(path: str | os.PathLike, sha256: str, size: int | None = None) -> Path:
    """Check that ``path`` exists and has the given size and SHA-256; return it.

    ``FileNotFoundError`` for a missing file, ``ValueError`` naming the file for a wrong size
    or checksum.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing data file {str(path)!r} (see docs/data.md for where to get it)")
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise ValueError(f"corrupt data file {str(path)!r}: {actual} bytes, expected {size}")
    digest = file_sha256(path)
    if digest != sha256:
        raise ValueError(f"corrupt data file {str(path)!r}: SHA-256 {digest[:16]}..., expected {sha256[:16]}...")
    return path


def _data_root(data_dir) -> Path:
    if data_dir is None or str(data_dir) == "":
        env = os.environ.get(ENV_VAR, "")
        if not env:
            raise FileNotFoundError(f"no data directory: pass data_dir or set ${ENV_VAR}")
        data_dir = env
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data directory {str(root)!r} does not exist")
    return root


def tinyshakespeare(data_dir: str | os.PathLike | None = None) -> str:
    """The Tiny Shakespeare text (1,115,394 ASCII characters, 65 distinct), checksum verified.

    Read from ``<data_dir>/tinyshakespeare/input.txt`` (``data_dir`` defaults to ``$HIPPOS_DATA``).
    """
    path = _data_root(data_dir) / "tinyshakespeare" / "input.txt"
    sha, size = TINYSHAKESPEARE
    return load_text(verify_checksum(path, sha, size))


def _check_fraction(name: str, v, lo_open: bool) -> float:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (0 < v if lo_open else 0 <= v) and v < 1
    if not ok:
        raise ValueError(f"{name} must be a number in {'(0' if lo_open else '[0'}, 1), got {v!r}")
    return float(v)


def split_train_val_test(text: str, val_fraction: float = 0.05, test_fraction: float = 0.05) -> tuple[str, str, str]:
    """``(train, val, test)``: three contiguous, disjoint parts of ``text``, in this order, that cover it.

    With N characters, test starts at ``int(N * (1 - test_fraction))`` and val at
    ``int(N * (1 - (val_fraction + test_fraction)))``. ``test_fraction = 0`` gives ``test = ""``
    (no test text; the train and val parts are then exactly those of ``split_text``).
    ``ValueError`` for fractions out of range or a text too short to give every part a character.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    val_fraction = _check_fraction("val_fraction", val_fraction, lo_open=True)
    test_fraction = _check_fraction("test_fraction", test_fraction, lo_open=False)
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be below 1 (something left to train on), "
                         f"got {val_fraction} + {test_fraction}")
    n = len(text)
    val_start = int(n * (1 - (val_fraction + test_fraction)))  # 0.05 + 0.05 == 0.1 exactly: int(0.9 * n), as before
    test_start = int(n * (1 - test_fraction))
    if val_start == 0 or test_start == val_start or (test_fraction > 0 and test_start == n):
        raise ValueError(f"a text of {n} characters is too short to split with val_fraction={val_fraction}, "
                         f"test_fraction={test_fraction}")
    return text[:val_start], text[val_start:test_start], text[test_start:]


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """``(train, val)``: the first ``int(len(text) * (1 - val_fraction))`` characters, then the rest
    (``split_train_val_test`` with no test text)."""
    train, val, _ = split_train_val_test(text, val_fraction, 0.0)
    return train, val


# ----------------------------------------------------------------------------- windows


class TextWindows(torch.utils.data.Dataset):
    """All windows of ``seq_len`` tokens: ``ds[i] = (ids[i : i+L], ids[i+1 : i+L+1])``.

    ``ids: i64(N)``; ``len(ds) = N - L`` window starts. ``ds[indices]`` with a 1-d tensor (or
    list) of starts gives ``x, y: i64(B L)``, so ``y`` is ``x`` shifted by one token.
    """

    def __init__(self, ids: torch.Tensor, seq_len: int):
        if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype != torch.long:
            got = f"{ids.dtype} {tuple(ids.shape)}" if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids must be a 1-d int64 tensor, got {got}")
        self.seq_len = _check_int("seq_len", seq_len, 1)
        if len(ids) < self.seq_len + 1:
            raise ValueError(f"{len(ids)} tokens are too few for one window of seq_len={seq_len} (need seq_len + 1)")
        self.ids = ids.contiguous()

    def __len__(self) -> int:
        return len(self.ids) - self.seq_len

    def __getitem__(self, index):
        starts = torch.as_tensor(index, dtype=torch.long)
        if starts.dim() > 1:
            raise IndexError(f"index must be an integer or a 1-d batch of starts, got shape {tuple(starts.shape)}")
        if starts.numel() and (int(starts.min()) < 0 or int(starts.max()) >= len(self)):
            raise IndexError(f"window starts must be in 0 .. {len(self) - 1}")
        offsets = torch.arange(self.seq_len + 1)
        w = self.ids[starts.unsqueeze(-1) + offsets]  # (B, L+1) or (L+1,)
        return w[..., :-1], w[..., 1:]


class RandomWindowSampler(torch.utils.data.Sampler):
    """``n_batches`` batches of ``batch_size`` window starts, uniform with replacement over ``0 .. n_windows-1``.

    Batch ``b`` depends only on ``(seed, b)``: ``start`` skips the first batches (resuming)
    and the rest are unchanged. Use with ``DataLoader(ds, sampler=..., batch_size=None)``.
    """

    def __init__(self, n_windows: int, batch_size: int, n_batches: int, seed: int = 0, start: int = 0):
        self.n_windows = _check_int("n_windows", n_windows, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.n_batches = _check_int("n_batches", n_batches, 0)
        self.seed = _check_int("seed", seed, 0)
        self.start = _check_int("start", start, 0)

    def batch(self, b: int) -> torch.Tensor:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, int(b), 0x7E47])))
        return torch.from_numpy(rng.integers(0, self.n_windows, size=self.batch_size))

    def __len__(self) -> int:
        return max(0, self.n_batches - self.start)

    def __iter__(self):
        for b in range(self.start, self.n_batches):
            yield self.batch(b)


class SequentialWindowSampler(torch.utils.data.Sampler):
    """Non-overlapping windows ``0, L, 2L, ...`` of a ``TextWindows``, in order, in batches.

    With N tokens there are ``(N - 1) // L`` windows: every token but the first is a target
    exactly once, except the last ``(N - 1) % L`` tokens (fewer than L), which are not scored.
    """

    def __init__(self, dataset: TextWindows, batch_size: int):
        self.batch_size = _check_int("batch_size", batch_size, 1)
        L = dataset.seq_len
        self.starts = torch.arange((len(dataset.ids) - 1) // L) * L

    def __len__(self) -> int:
        return math.ceil(len(self.starts) / self.batch_size)

    def __iter__(self):
        for i in range(0, len(self.starts), self.batch_size):
            yield self.starts[i : i + self.batch_size]


class StreamWindowSampler(torch.utils.data.Sampler):
    """Truncated backpropagation through time: the text as ``batch_size`` contiguous streams.

    The ``N`` tokens of a ``TextWindows`` (window length T) are cut into ``B = batch_size``
    streams of ``S = (N - 1 - T) // B`` targets each, read window by window: batch k of a pass
    holds window k of every stream, so row r of batch k+1 starts exactly where row r of batch k
    ended (the S4 reference's LM iterator, after Transformer-XL). A pass is ``K = S // T``
    batches; ``n_batches`` (default one pass) runs pass after pass. Pass p shifts every stream by
    an offset in ``[0, T)`` drawn from ``(seed, p)`` (pass 0: none), so the window boundaries of
    one pass are not those of the next; the T tokens set aside for it are why S has ``- T``.

    ``batch(b)`` is a pure function of ``(seed, b)``; ``resets(b)`` is True where batch b begins
    a pass (every row at the start of its stream: a carried state must start from zero).
    ``start`` skips the first batches (resuming) and ``resets_at(i)`` answers for the i-th batch
    the iteration yields. Use with ``DataLoader(ds, sampler=..., batch_size=None)``.
    """

    def __init__(self, dataset: TextWindows, batch_size: int, start: int = 0, n_batches: int | None = None,
                 seed: int = 0):
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.seq_len = dataset.seq_len
        self.stream_len = max(0, (len(dataset.ids) - 1 - self.seq_len) // self.batch_size)
        self.per_pass = self.stream_len // self.seq_len
        if self.per_pass < 1:
            raise ValueError(
                f"{len(dataset.ids)} tokens in {self.batch_size} streams give {self.stream_len} per stream, fewer than one "
                f"window of {self.seq_len}: lower batch_size or data.seq_len")
        self.n_batches = self.per_pass if n_batches is None else _check_int("n_batches", n_batches, 0)
        self.start = _check_int("start", start, 0)
        self.seed = _check_int("seed", seed, 0)

    def offset(self, p: int) -> int:
        """Where the streams of pass ``p`` begin: 0 for the first pass, then drawn from ``(seed, p)``."""
        if p == 0:
            return 0
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, int(p), 0x57E4])))
        return int(rng.integers(0, self.seq_len))

    def batch(self, b: int) -> torch.Tensor:
        """Window starts of batch ``b``: ``(B,)``, row r at ``offset(p) + r·S + k·T`` (pass p, window k)."""
        p, k = divmod(int(b), self.per_pass)
        return self.offset(p) + torch.arange(self.batch_size) * self.stream_len + k * self.seq_len

    def resets(self, b: int) -> bool:
        """Does batch ``b`` begin a pass (every row at the start of its stream)?"""
        return int(b) % self.per_pass == 0

    def resets_at(self, i: int) -> bool:
        """``resets`` of the i-th batch this sampler yields (batch ``start + i``)."""
        return self.resets(self.start + i)

    def __len__(self) -> int:
        return max(0, self.n_batches - self.start)

    def __iter__(self):
        for b in range(self.start, self.n_batches):
            yield self.batch(b)


def bits_per_char(loss_nats) -> float:
    """Cross-entropy per character in bits: ``loss / ln 2`` (``loss`` the mean natural-log loss)."""
    v = float(loss_nats.item() if isinstance(loss_nats, torch.Tensor) else loss_nats)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"loss must be a finite number >= 0 (nats), got {v!r}")
    return v / math.log(2)
