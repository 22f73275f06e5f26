"""The H3 synthetic language tasks: Associative Recall and Induction Head.

H3 (arXiv 2212.14052) §3.1 and Table 2; the sequence format follows the generators of the
authors' code (HazyResearch/safari ``src/dataloaders/synthetics.py``, ``copy_method``
``assoc_recall`` and ``induction_head`` with ``num_keys = 1``, ``induction_len = 1``,
``allow_dot = False``). Token ids, the random stream and the deduplication are ours; see
``docs/data.md`` for the differences.

Vocabulary (``Vocab``, ``vocab_size`` tokens in all): ``n = vocab_size - 2`` ordinary tokens
with ids ``0 .. n-1`` (named ``"0" .. "n-1"``), then the two specials ``=>`` (id ``n``, the
query / copy prefix) and ``.`` (id ``n+1``, the "no answer" token, part of the vocabulary but
never generated, as in the reference with ``allow_dot = False``).

* **Associative Recall** (``vocab_size`` 10, ``seq_len`` 20). Keys are the first
  ``n // 2`` ordinary tokens, values the other ``n - n // 2``. Each example draws a fresh map
  key -> value (each key an independent uniform value, so two keys may share a value), then
  ``seq_len / 2`` keys uniformly with replacement, each followed by its value, then ``=>`` and a
  query key drawn uniformly among the *distinct* keys that appeared; the answer is its value.
  Full sequence ``k1 v1 k2 v2 ... => q v(q)``: ``seq_len + 3`` tokens.
* **Induction Head** (``vocab_size`` 20, ``seq_len`` 30). ``seq_len`` uniform ordinary
  tokens; one position ``p`` uniform in ``0 .. seq_len - 3`` is overwritten with ``=>``; the
  token after it, ``x``, is the answer; the sequence ends with ``=>`` then ``x``. Full
  sequence: ``seq_len + 2`` tokens, ``=>`` exactly twice.

Inputs and targets are the full sequence shifted for next-token training:
``inputs = full[:, :-1]``, ``targets = full[:, 1:]``, so ``targets[:, t] = inputs[:, t+1]``
for every ``t`` but the last, and ``targets[:, -1]`` is the answer (the last input token is
the query key for AR, ``=>`` for IH). The loss is taken on all positions; the metric is the
accuracy on the last one (``last_token_accuracy``). Input lengths: ``seq_len + 2`` (AR, 22)
and ``seq_len + 1`` (IH, 31), as in the reference.

Every set of examples is the first ``n`` *distinct* input sequences of one random stream,
a pure function of (task, ``vocab_size``, ``seq_len``, ``seed``), drawn in fixed chunks so
that ``f(n)`` is a prefix of ``f(m)`` for ``n < m``; ``make_synthetic_splits`` takes the first
5000 as train and the next 500 as test, so no example is in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "SyntheticDataConfig",
    "TASKS",
    "SyntheticTask",
    "TokenSequences",
    "Vocab",
    "associative_recall",
    "induction_head",
    "last_token_accuracy",
    "make_synthetic_splits",
    "n_distinct",
]


@dataclass
class SyntheticDataConfig:
    """The data section of the H3 synthetic tasks ``ar`` and ``ih`` (the trainer's view of :class:`SyntheticTask`)."""

    vocab_size: int = 10  # all tokens, the specials => and . included
    seq_len: int = 20  # the generator's length (AR: counts keys and values; inputs are seq_len + 2)
    n_train: int = 5000
    n_test: int = 500  # the test split also serves as the validation split (the reference has none)
    seed: int = 0  # the examples (not the training seed)


COPY_PREFIX = "=>"
NOOP = "."

# Candidates are drawn this many at a time, whatever n is: the stream of candidates, hence
# the first n distinct ones, does not depend on n.
_CHUNK = 1024
_TASK_STREAM = {"associative_recall": 0, "induction_head": 1}


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class Vocab:
    """Token ids of a synthetic task: ``size`` tokens, the last two the specials ``=>`` and ``.``.

    ``n_ordinary = size - 2`` ordinary tokens have ids ``0 .. n_ordinary - 1`` and names
    ``"0", "1", ...``; ``copy_prefix`` (``=>``) is ``size - 2`` and ``noop`` (``.``) ``size - 1``.
    For Associative Recall ``keys`` are the first ``n_ordinary // 2`` ordinary ids and
    ``values`` the rest.
    """

    size: int

    def __post_init__(self):
        _check_int("vocab size", self.size, 3)

    @property
    def n_ordinary(self) -> int:
        return self.size - 2

    @property
    def copy_prefix(self) -> int:
        """Id of ``=>``."""
        return self.size - 2

    @property
    def noop(self) -> int:
        """Id of ``.`` (never generated: every query has an answer)."""
        return self.size - 1

    @property
    def keys(self) -> range:
        return range(self.n_ordinary // 2)

    @property
    def values(self) -> range:
        return range(self.n_ordinary // 2, self.n_ordinary)

    @property
    def tokens(self) -> tuple[str, ...]:
        """Token names indexed by id."""
        return tuple(str(i) for i in range(self.n_ordinary)) + (COPY_PREFIX, NOOP)

    def __len__(self) -> int:
        return self.size

    def encode(self, text: str) -> list[int]:
        """Ids of a space-separated string of token names (``"0 4 => 0"``)."""
        index = {t: i for i, t in enumerate(self.tokens)}
        try:
            return [index[t] for t in text.split()]
        except KeyError as e:
            raise ValueError(f"unknown token {e.args[0]!r} (vocabulary: {' '.join(self.tokens)})") from None

    def decode(self, ids) -> str:
        """Space-separated token names of a sequence of ids (list, array or 1-d tensor)."""
        ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        bad = [i for i in ids if not 0 <= i < self.size]
        if bad:
            raise ValueError(f"token ids must be in 0 .. {self.size - 1}, got {bad[0]}")
        names = self.tokens
        return " ".join(names[i] for i in ids)


# ----------------------------------------------------------------------------- validation


def _check_ar(vocab_size, seq_len) -> tuple[int, int]:
    vocab_size = _check_int("vocab_size", vocab_size, 4)  # at least one key and one value
    seq_len = _check_int("seq_len", seq_len, 2)
    if seq_len % 2:
        raise ValueError(f"associative recall: seq_len counts (key, value) pairs, so it must be even, got {seq_len}")
    return vocab_size, seq_len


def _check_ih(vocab_size, seq_len) -> tuple[int, int]:
    vocab_size = _check_int("vocab_size", vocab_size, 3)  # at least one ordinary token
    seq_len = _check_int("seq_len", seq_len, 3)  # the trigger at 0 .. seq_len-3 needs seq_len >= 3
    return vocab_size, seq_len


def n_distinct(task: str, vocab_size: int, seq_len: int) -> int:
    """The number of distinct examples the task can produce (an exact count, a Python int).

    AR with K keys, V values, p = seq_len/2 pairs: ``sum_d C(K,d) surj(p,d) V^d d`` (key
    sequences with d distinct keys, a value for each, d choices of query). IH with T ordinary
    tokens: ``(seq_len - 2) T^(seq_len - 1)`` (trigger position, the other tokens).
    """
    if task == "associative_recall":
        vocab_size, seq_len = _check_ar(vocab_size, seq_len)
        v = Vocab(vocab_size)
        K, V, p = len(v.keys), len(v.values), seq_len // 2
        total = 0
        for d in range(1, min(K, p) + 1):
            surj = sum((-1) ** j * math.comb(d, j) * (d - j) ** p for j in range(d + 1))
            total += math.comb(K, d) * surj * V**d * d
        return total
    if task == "induction_head":
        vocab_size, seq_len = _check_ih(vocab_size, seq_len)
        return (seq_len - 2) * (vocab_size - 2) ** (seq_len - 1)
    raise ValueError(f"unknown synthetic task {task!r} (tasks: {', '.join(_TASK_STREAM)})")


# ----------------------------------------------------------------------------- generators


def _ar_chunk(rng: np.random.Generator, vocab: Vocab, seq_len: int) -> np.ndarray:
    """``_CHUNK`` full AR sequences ``i64(C seq_len+3)``."""
    K, V, p = len(vocab.keys), len(vocab.values), seq_len // 2
    keys = rng.integers(0, K, size=(_CHUNK, p))  # key index of each pair
    kv = rng.integers(0, V, size=(_CHUNK, K))  # this example's map: key index -> value index
    present = np.zeros((_CHUNK, K), dtype=bool)
    np.put_along_axis(present, keys, True, axis=1)
    r = rng.integers(0, present.sum(1))  # uniform among the distinct keys present
    query = np.argmax(present & (np.cumsum(present, 1) == (r + 1)[:, None]), axis=1)
    rows = np.arange(_CHUNK)[:, None]
    full = np.empty((_CHUNK, 2 * p + 3), dtype=np.int64)
    full[:, 0 : 2 * p : 2] = vocab.keys.start + keys
    full[:, 1 : 2 * p : 2] = vocab.values.start + kv[rows, keys]
    full[:, 2 * p] = vocab.copy_prefix
    full[:, 2 * p + 1] = vocab.keys.start + query
    full[:, 2 * p + 2] = vocab.values.start + kv[np.arange(_CHUNK), query]
    return full


def _ih_chunk(rng: np.random.Generator, vocab: Vocab, seq_len: int) -> np.ndarray:
    """``_CHUNK`` full IH sequences ``i64(C seq_len+2)``."""
    full = np.empty((_CHUNK, seq_len + 2), dtype=np.int64)
    full[:, :seq_len] = rng.integers(0, vocab.n_ordinary, size=(_CHUNK, seq_len))
    pos = rng.integers(0, seq_len - 2, size=_CHUNK)  # trigger at 0 .. seq_len-3
    rows = np.arange(_CHUNK)
    full[rows, pos] = vocab.copy_prefix
    full[:, seq_len] = vocab.copy_prefix
    full[:, seq_len + 1] = full[rows, pos + 1]
    return full


def _generate(task: str, n_examples, vocab_size: int, seq_len: int, seed) -> tuple[torch.Tensor, torch.Tensor]:
    n = _check_int("n_examples", n_examples, 1)
    seed = _check_int("seed", seed, 0)
    capacity = n_distinct(task, vocab_size, seq_len)  # validates vocab_size and seq_len
    if capacity < n:
        raise ValueError(
            f"{task} with vocab_size={vocab_size}, seq_len={seq_len} has only {capacity} distinct examples, "
            f"{n} requested: increase vocab_size or seq_len"
        )
    vocab = Vocab(vocab_size)
    chunk = _ar_chunk if task == "associative_recall" else _ih_chunk
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _TASK_STREAM[task]])))
    seen: set[bytes] = set()
    kept: list[np.ndarray] = []
    max_draws = 64 * n + 64 * _CHUNK  # rejection sampling slows down near capacity: give up cleanly
    drawn = 0
    while len(kept) < n:
        if drawn >= max_draws:
            raise ValueError(
                f"{task} with vocab_size={vocab_size}, seq_len={seq_len}: only {len(kept)} distinct examples "
                f"after {drawn} draws, {n} requested (capacity {capacity}): increase vocab_size or seq_len"
            )
        full = chunk(rng, vocab, seq_len)
        drawn += _CHUNK
        for row in full:
            key = row[:-1].tobytes()  # the input determines the answer
            if key not in seen:
                seen.add(key)
                kept.append(row)
                if len(kept) == n:
                    break
    full = torch.from_numpy(np.stack(kept))
    return full[:, :-1].contiguous(), full[:, 1:].contiguous()


def associative_recall(
    n_examples: int, vocab_size: int = 10, seq_len: int = 20, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_examples`` distinct Associative Recall examples: ``inputs, targets: i64(n seq_len+2)``.

    ``inputs = k1 v1 ... k_p v_p => q`` (p = seq_len/2 pairs, ``q`` one of the keys seen),
    ``targets[:, t] = inputs[:, t+1]`` and ``targets[:, -1] = v(q)``. Ids from ``Vocab(vocab_size)``.
    """
    return _generate("associative_recall", n_examples, vocab_size, seq_len, seed)


def induction_head(
    n_examples: int, vocab_size: int = 20, seq_len: int = 30, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_examples`` distinct Induction Head examples: ``inputs, targets: i64(n seq_len+1)``.

    ``inputs`` = ``seq_len`` random ordinary tokens with one ``=>`` at ``p <= seq_len - 3``,
    then ``=>``; ``targets[:, t] = inputs[:, t+1]`` and ``targets[:, -1] = inputs[:, p+1]``.
    """
    return _generate("induction_head", n_examples, vocab_size, seq_len, seed)


# ----------------------------------------------------------------------------- tasks and splits


@dataclass(frozen=True)
class SyntheticTask:
    """One task setup: which generator, its vocabulary and length, and the split sizes."""

    name: str
    vocab_size: int
    seq_len: int
    n_train: int = 5000
    n_test: int = 500

    def __post_init__(self):
        if self.name not in _TASK_STREAM:
            raise ValueError(f"unknown synthetic task {self.name!r} (tasks: {', '.join(_TASK_STREAM)})")
        _check_int("n_train", self.n_train, 1)
        _check_int("n_test", self.n_test, 0)
        n_distinct(self.name, self.vocab_size, self.seq_len)  # validates vocab_size and seq_len

    @property
    def vocab(self) -> Vocab:
        return Vocab(self.vocab_size)

    @property
    def input_len(self) -> int:
        """Length of ``inputs`` and ``targets``: ``seq_len + 2`` (AR) or ``seq_len + 1`` (IH)."""
        return self.seq_len + (2 if self.name == "associative_recall" else 1)

    def generate(self, n_examples: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        f = associative_recall if self.name == "associative_recall" else induction_head
        return f(n_examples, self.vocab_size, self.seq_len, seed)


#: The H3 Table 2 setups (safari configs ``vocab_size_10`` and ``induction_head``).
TASKS: dict[str, SyntheticTask] = {
    "associative_recall": SyntheticTask("associative_recall", vocab_size=10, seq_len=20),
    "induction_head": SyntheticTask("induction_head", vocab_size=20, seq_len=30),
}


class TokenSequences(torch.utils.data.Dataset):
    """In-memory ``(inputs: i64(n L), targets: i64(n L))``, fetched a batch at a time: ``ds[indices]``."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, vocab: Vocab | None = None):
        if inputs.dim() != 2 or inputs.shape != targets.shape:
            raise ValueError(
                f"expected inputs and targets of one shape (n, L), got {tuple(inputs.shape)} and {tuple(targets.shape)}"
            )
        if inputs.dtype != torch.long or targets.dtype != torch.long:
            raise TypeError(f"expected int64 token ids, got {inputs.dtype} and {targets.dtype}")
        self.inputs, self.targets, self.vocab = inputs, targets, vocab

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index):
        return self.inputs[index], self.targets[index]


def make_synthetic_splits(task: str | SyntheticTask, seed: int = 0) -> dict[str, TokenSequences]:
    """``{"train": ..., "test": ...}``: the first ``n_train`` distinct examples of the seed's stream, then the next ``n_test``.

    ``task`` is a name in ``TASKS`` (5000 / 500, the H3 setups) or a ``SyntheticTask``.
    No example is in both splits; the result is a pure function of the task and ``seed``.
    """
    if isinstance(task, str):
        if task not in TASKS:
            raise ValueError(f"unknown synthetic task {task!r} (tasks: {', '.join(TASKS)})")
        task = TASKS[task]
    elif not isinstance(task, SyntheticTask):
        raise TypeError(f"task must be a task name or a SyntheticTask, got {type(task).__name__}")
    x, y = task.generate(task.n_train + task.n_test, seed)
    k = task.n_train
    return {"train": TokenSequences(x[:k], y[:k], task.vocab), "test": TokenSequences(x[k:], y[k:], task.vocab)}


def last_token_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of examples whose last-position argmax equals the last target.

    ``logits: r(n L V)``, ``targets: i64(n L)``; only ``[:, -1]`` is read (the H3 test metric).
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError("logits and targets must be tensors")
    if logits.dim() != 3 or targets.dim() != 2 or logits.shape[:2] != targets.shape:
        raise ValueError(
            f"expected logits (n, L, V) and targets (n, L), got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if targets.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"targets must hold integer token ids, got {targets.dtype}")
    if len(targets) == 0:
        raise ValueError("no examples: accuracy of an empty batch is undefined")
    pred = logits[:, -1].argmax(-1)
    return (pred == targets[:, -1].to(pred.device)).double().mean().item()
