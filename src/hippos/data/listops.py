"""Long Range Arena ListOps, generated: nested MIN/MAX/MED/SM expressions over digits, 10 classes.

LRA: Tay et al. 2021, "Long Range Arena: A Benchmark for Efficient Transformers" (arXiv
2011.04006), task "ListOps"; tokenisation as in S4 (Gu et al., arXiv 2111.00396). Written from
the specification in ``LRA-GENERATORS.md`` (section "ListOps generator"), not from LRA's code.

**Expressions.** A tree is a leaf, a digit ``0..9`` (an ``int``), or an operator node
``(op, (a1, ..., ak))`` with ``op`` one of ``[MIN [MAX [MED [SM`` and ``k`` children. Its value:

* ``[MIN``, ``[MAX``: min and max of the arguments;
* ``[MED``: ``int(numpy.median(args))``; with an even count, the floor of the mean of the two
  middle values (computed exactly, without numpy, in ``tree_value``);
* ``[SM``: ``sum(args) % 10``.

The label is the value of the root (10 classes).

**Random tree** (``generate_tree``, the root at ``depth = 1``). At a node with
``depth < max_depth`` draw ``r ~ U[0, 1)``; at ``depth == max_depth`` take ``r = 1``. If
``r > VALUE_P = 0.25`` the node is a leaf, a uniform digit. Otherwise it is an operator node:
operator uniform over the 4, ``k`` uniform in ``2..max_args`` (10), each child a tree at
``depth + 1``. The **length** is 1 for a leaf and ``2 + sum(children)`` for an operator (its
token and ``]``): the number of tokens once the parentheses are dropped.

**Set** (``generate_listops``). Draw trees from one stream; keep a tree if
``min_length < length < max_length`` (500 and 2000, both strict) and it is not an exact
duplicate of one kept; stop at ``n``. The order is the order of first appearance (LRA iterates
a Python ``set``, whose order is arbitrary; the trees are i.i.d., so either order is a random
order). ``generate_listops(n)`` is therefore a prefix of ``generate_listops(m)`` for ``n < m``,
and ``load_listops`` splits one list of ``n_train + n_val + n_test`` unique trees in order
(train, then val, then test): the splits are disjoint.

**String form** (LRA's TSV ``Source`` column). An operator with arguments ``a1..ak`` is the
nested pairs ``((...((op, a1), a2)..., ak), ])``, each pair printed ``( x y )``:
``( ( ( [MAX 2 ) 9 ) ] )`` for ``MAX(2, 9)``.

**Tokens** (S4's convention). Drop ``(`` and ``)``, map ``]`` to ``X``, split on whitespace,
append ``<eos>`` (no BOS). Vocabulary ``VOCAB`` (18 ids, in this order): ``<pad> <unk> <eos>
[MIN [MAX [MED [SM 0 .. 9 X``. An example of generator length ``ℓ`` is ``ℓ + 1`` ids,
``502 .. 2000`` at the defaults (S4 pads to ``l_max = 2048``).

**Determinism.** A set is a pure function of its arguments: the stream is numpy PCG64 seeded by
``SeedSequence([seed, STREAM_ID])``, read as ``U[0, 1)`` floats in blocks (``UniformStream``;
a scalar numpy draw costs ~0.5 µs, as much as the rest of a node); a digit is ``int(10 u)``,
``k`` is ``2 + int((max_args - 1) u)``, the operator ``int(4 u)``.

**Measured** (this machine: 2 cores shared with two training runs; one process, seed 0, the
defaults):

* speed: ~560-570 kept examples/s (``n`` = 2,000: 3.5 s; ``n`` = 20,000 through
  ``load_listops``: 35 s, read back from the cache in 0.02 s). 8.3% of drawn trees fall in
  ``500 < ℓ < 2000`` and 75% are single leaves. The 100,000 of the task's default took 4 min 36 s
  in the first ``hippos lra --tasks listops`` (2-core CPU shared with three training runs;
  docs/lra.md), once;
* length ``ℓ`` (n = 20,000): min 501, 10% 574, median 952, 90% 1643, max 1999, mean 1033
  (n = 2,000: min 501, median 975, max 1999);
* labels, % of n = 20,000 for 0..9: 16.7 9.3 7.7 8.3 9.0 8.5 8.0 7.0 8.6 17.0 (n = 2,000:
  17.2 8.6 7.8 7.6 9.4 8.2 7.6 7.4 9.4 17.0): MIN and MAX pull toward 0 and 9.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from hippos.data.gen_cache import cached_arrays

__all__ = [
    "EOS",
    "OPERATORS",
    "SPLITS",
    "STREAM_ID",
    "VALUE_P",
    "VOCAB",
    "ListOpsDataConfig",
    "UniformStream",
    "detokenize",
    "generate_listops",
    "generate_tree",
    "load_listops",
    "tokenize",
    "tree_to_string",
    "tree_value",
]

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
VALUE_P = 0.25  # an operator node when r <= VALUE_P (below max_depth), else a leaf
VOCAB = ("<pad>", "<unk>", "<eos>", *OPERATORS, *(str(d) for d in range(10)), "X")
EOS = VOCAB.index("<eos>")
SPLITS = ("train", "val", "test")
#: Mixed into every seed, so this stream differs from other generators seeded with the same integer.
STREAM_ID = 0x115705
_VERSION = 1  # of the cached arrays: bump when the stream, the set or the tokens change

_ID = {tok: i for i, tok in enumerate(VOCAB)}
_X = _ID["X"]
_DIGIT0 = _ID["0"]
_MAX_MISSES = 1_000_000  # draws in a row without a new kept tree: the settings cannot make n


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


class UniformStream:
    """``U[0, 1)`` floats from a numpy ``Generator``, drawn ``block`` at a time: ``u = stream()``."""

    def __init__(self, rng: np.random.Generator, block: int = 8192):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self.rng, self.block = rng, _check_int("block", block, 1)
        self._buf: list[float] = []
        self._i = 0

    def __call__(self) -> float:
        if self._i == len(self._buf):
            self._buf, self._i = self.rng.random(self.block).tolist(), 0
        self._i += 1
        return self._buf[self._i - 1]


def _grow(u: UniformStream, depth: int, max_depth: int, max_args: int):
    r = u() if depth < max_depth else 1.0
    if r > VALUE_P:
        return int(10 * u()), 1
    op = OPERATORS[int(4 * u())]
    children, length = [], 2
    for _ in range(2 + int((max_args - 1) * u())):
        child, n = _grow(u, depth + 1, max_depth, max_args)
        children.append(child)
        length += n
    return (op, tuple(children)), length


def generate_tree(rng: np.random.Generator | UniformStream, depth: int = 1, max_depth: int = 10, max_args: int = 10):
    """One random tree and its length ``(tree, length)``, the tree's root at ``depth``.

    ``tree`` is an ``int`` 0..9 or ``(op, (child, ...))`` (nested tuples: hashable). A bare
    ``Generator`` is wrapped in a fresh ``UniformStream`` (one block drawn per call); pass one
    ``UniformStream`` to draw many trees from a stream.
    """
    max_depth = _check_int("max_depth", max_depth, 1)
    max_args = _check_int("max_args", max_args, 2)
    depth = _check_int("depth", depth, 1)
    if depth > max_depth:
        raise ValueError(f"depth must be <= max_depth ({max_depth}), got {depth}")
    u = rng if isinstance(rng, UniformStream) else UniformStream(rng)
    return _grow(u, depth, max_depth, max_args)


def _node(tree) -> tuple[str, tuple]:
    if (isinstance(tree, tuple) and len(tree) == 2 and tree[0] in OPERATORS and isinstance(tree[1], (tuple, list))
            and len(tree[1]) >= 1):
        return tree
    raise ValueError(f"a tree is a digit 0..9 or (op, (child, ...)) with op in {OPERATORS}, got {tree!r:.80}")


def _is_leaf(tree) -> bool:
    if isinstance(tree, (int, np.integer)) and not isinstance(tree, bool):
        if not 0 <= tree <= 9:
            raise ValueError(f"a leaf is a digit 0..9, got {tree}")
        return True
    return False


def tree_to_string(tree) -> str:
    """LRA's string form: ``( ( ( [MAX 2 ) 9 ) ] )`` for ``("[MAX", (2, 9))``."""
    if _is_leaf(tree):
        return str(int(tree))
    op, children = _node(tree)
    # ((...((op, a1), a2)..., ak), ]) : k + 1 pairs opened before op
    return "( " * (len(children) + 1) + op + "".join(f" {tree_to_string(c)} )" for c in children) + " ] )"


def _median_floor(args: list[int]) -> int:
    """``int(numpy.median(args))`` for digits: the middle value, or floor of the middle two's mean."""
    s = sorted(args)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) // 2


_APPLY: dict[str, Callable[[list[int]], int]] = {
    "[MIN": min,
    "[MAX": max,
    "[MED": _median_floor,
    "[SM": lambda a: sum(a) % 10,
}


def tree_value(tree) -> int:
    """The value of a tree, 0..9 (the label of its example)."""
    if _is_leaf(tree):
        return int(tree)
    op, children = _node(tree)
    return _APPLY[op]([tree_value(c) for c in children])


def _emit(tree, out: list[int]) -> None:
    """Append the token ids of ``tree`` (no EOS) to ``out``."""
    if isinstance(tree, int):
        out.append(_DIGIT0 + tree)
        return
    op, children = tree
    out.append(_ID[op])
    for c in children:
        _emit(c, out)
    out.append(_X)


def tokenize(s: str) -> np.ndarray:
    """Token ids ``u8(ℓ + 1)`` of a string form: parentheses dropped, ``]`` as ``X``, EOS appended."""
    if not isinstance(s, str):
        raise TypeError(f"expected a string, got {type(s).__name__}")
    words = s.replace("(", " ").replace(")", " ").replace("]", "X").split()
    try:
        ids = [_ID[w] for w in words]
    except KeyError as e:
        raise ValueError(f"token {e.args[0]!r} is not in the ListOps vocabulary {VOCAB}") from None
    ids.append(EOS)
    return np.array(ids, dtype=np.uint8)


def detokenize(ids) -> str:
    """The tokens of ``ids`` up to the first EOS, ``<pad>`` dropped, ``X`` written ``]``, space-separated."""
    a = np.asarray(ids)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"expected a 1-D integer array of token ids, got {a.dtype} of shape {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= len(VOCAB)):
        raise ValueError(f"token ids must be in 0..{len(VOCAB) - 1}, got {a.min()}..{a.max()}")
    words = []
    for i in a.tolist():
        if i == EOS:
            break
        if i != 0:
            words.append("]" if i == _X else VOCAB[i])
    return " ".join(words)


def _max_length(max_depth: int, max_args: int) -> int:
    length = 1  # a leaf at max_depth
    for _ in range(max_depth - 1):
        length = 2 + max_args * length
    return length


def _check_set(n, seed, min_length, max_length, max_depth, max_args) -> tuple[int, ...]:
    n, seed = _check_int("n", n, 1), _check_int("seed", seed, 0)
    min_length, max_depth = _check_int("min_length", min_length, 0), _check_int("max_depth", max_depth, 1)
    max_args = _check_int("max_args", max_args, 2)
    max_length = _check_int("max_length", max_length, min_length + 2)  # some length strictly between
    longest = _max_length(max_depth, max_args)
    if min_length >= longest:
        raise ValueError(f"min_length must be below the longest possible tree ({longest} for max_depth {max_depth} "
                         f"and max_args {max_args}), got {min_length}")
    return n, seed, min_length, max_length, max_depth, max_args


def _unique_trees(n, seed, min_length, max_length, max_depth, max_args, progress) -> Iterator[tuple[object, bytes]]:
    """The first ``n`` distinct kept trees of the stream of ``seed``, each with its token ids (no EOS)."""
    u = UniformStream(np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, STREAM_ID]))))
    # Dedup by the token ids: one-to-one with the tree (prefix notation closed by X) and ~20x
    # smaller in memory than the nested tuples (~1 kB per tree instead of ~20 kB).
    seen: dict[bytes, None] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="listops", unit="ex", mininterval=1.0, dynamic_ncols=True, disable=None)  # None: not into a log file
    misses = 0
    try:
        while len(seen) < n:
            tree, length = _grow(u, 1, max_depth, max_args)
            if min_length < length < max_length:
                ids: list[int] = []
                _emit(tree, ids)
                key = bytes(ids)
                if key not in seen:
                    seen[key] = None
                    misses = 0
                    if bar is not None:
                        bar.update(1)
                    yield tree, key
                    continue
            misses += 1
            if misses >= _MAX_MISSES:
                raise RuntimeError(f"no new tree with {min_length} < length < {max_length} in {_MAX_MISSES} draws "
                                   f"after {len(seen)} of {n}: too few distinct trees for these settings")
    finally:
        if bar is not None:
            bar.close()


def generate_listops(n: int, seed: int, min_length: int = 500, max_length: int = 2000, max_depth: int = 10,
                     max_args: int = 10, progress: bool = False) -> list[tuple[str, int]]:
    """``n`` distinct examples ``(string form, label)``, in the order they were drawn.

    A pure function of its arguments; ``generate_listops(n)`` is a prefix of
    ``generate_listops(m)`` for ``n < m``. ``progress`` shows a tqdm bar.
    """
    args = _check_set(n, seed, min_length, max_length, max_depth, max_args)
    return [(tree_to_string(t), tree_value(t)) for t, _ in _unique_trees(*args, progress)]


@dataclass
class ListOpsDataConfig:
    """The data section of the ListOps task (LRA sizes by default); trees use max_depth and max_args 10."""

    n_train: int = 96000  # the first n_train distinct trees of the stream ...
    n_val: int = 2000  # ... the next n_val ...
    n_test: int = 2000  # ... and the next n_test (so the splits are disjoint)
    seed: int = 0  # the generator's seed (not the training seed)
    min_length: int = 500  # keep trees with min_length < length < max_length (strict), length
    max_length: int = 2000  # = tokens without EOS
    cache_dir: str | None = None  # the generated set's cache root (None: $HIPPOS_CACHE, else ~/.cache/hippos)

    def __post_init__(self):
        _check_int("n_train", self.n_train, 1)
        _check_int("n_val", self.n_val, 0)
        _check_int("n_test", self.n_test, 0)
        _check_set(1, self.seed, self.min_length, self.max_length, 10, 10)
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise ValueError(f"cache_dir must be a path or None, got {self.cache_dir!r}")


def _build(n, seed, min_length, max_length, max_depth, max_args, progress) -> dict[str, np.ndarray]:
    chunks, labels = [], []
    eos = bytes([EOS])
    for tree, key in _unique_trees(n, seed, min_length, max_length, max_depth, max_args, progress):
        chunks.append(key + eos)
        labels.append(tree_value(tree))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(c) for c in chunks], out=offsets[1:])
    return {"tokens": np.frombuffer(b"".join(chunks), dtype=np.uint8).copy(),  # (T_total,)
            "offsets": offsets,  # (n + 1,)
            "labels": np.array(labels, dtype=np.int64)}  # (n,)


def load_listops(cfg: ListOpsDataConfig, log: Callable[[str], None] | None = None
                 ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The splits ``{"train", "val", "test"}``, each ``(tokens u8(T), offsets i64(n+1), labels i64(n))``.

    Example ``i`` of a split is ``tokens[offsets[i]:offsets[i+1]]`` (EOS last) with label
    ``labels[i]``. The ``n_train + n_val + n_test`` trees are generated by one stream, once,
    and cached (``hippos.data.gen_cache``); ``log`` hears where, and a progress bar is shown
    while generating when ``log`` is given.
    """
    if not isinstance(cfg, ListOpsDataConfig):
        raise TypeError(f"cfg must be a ListOpsDataConfig, got {type(cfg).__name__}")
    cfg.__post_init__()  # fields may have been set after construction
    n = cfg.n_train + cfg.n_val + cfg.n_test
    params = {"n": n, "seed": cfg.seed, "min_length": cfg.min_length, "max_length": cfg.max_length,
              "max_depth": 10, "max_args": 10, "value_p": VALUE_P, "vocab": list(VOCAB), "version": _VERSION}
    arrays = cached_arrays("listops", params, lambda: _build(n, cfg.seed, cfg.min_length, cfg.max_length, 10, 10,
                                                             log is not None), cache_dir=cfg.cache_dir, log=log)
    tokens, offsets, labels = arrays["tokens"], arrays["offsets"], arrays["labels"]
    if len(offsets) != n + 1 or len(labels) != n or offsets[-1] != len(tokens):
        raise ValueError(f"cached ListOps arrays have inconsistent sizes for n = {n}; delete the cache folder")
    out, start = {}, 0
    for split, size in zip(SPLITS, (cfg.n_train, cfg.n_val, cfg.n_test)):
        lo, hi = offsets[start], offsets[start + size]
        out[split] = (tokens[lo:hi], offsets[start:start + size + 1] - lo, labels[start:start + size])
        start += size
    return out
