"""Sequence classification from the user's own files: the data side of ``hippos train classify``.

``load_classification(cfg)`` reads one file of labelled sequences (and optionally a separate
test file), checks it, maps the labels to ``0..C-1`` and splits it into train / val / test
``VarLenSequences`` (``ds[indices] -> (x: f32(B L d), y: i64(B), lengths: i64(B))``).

Formats (``--data.format``, ``auto`` picks by suffix, else by an idx header):

* ``npz``: ``x`` of shape ``(n, L)`` or ``(n, L, d)`` (real numbers), or a 1-D object array
  of ``(L_i,)`` / ``(L_i, d)`` arrays for variable lengths (numpy stores those pickled: load
  only files you trust); ``y`` ``(n,)`` integers; optional ``lengths`` ``(n,)``: ``x`` is
  padded and only ``x[i, :lengths[i]]`` is valid; optional ``x_test``, ``y_test``,
  ``lengths_test`` (the test split), or a second npz with ``x``, ``y`` as ``--data.test_path``.
* ``csv`` / ``tsv``: a header row, one sequence per row; the column named ``label_column``
  holds the label, every other column is a time step, in order (``d = 1``); empty trailing
  cells (or a shorter row) end a shorter sequence.
* ``idx``: the sequences from ``path``: ``(n, L)`` -> ``(n, L, 1)``; ``(n, A, B, ...)`` is
  read pixel by pixel, row-major, as ``(n, A*B*..., 1)`` (like sequential MNIST; values as
  stored, e.g. 0..255); the labels ``(n,)`` from the idx file ``labels_path``.

Labels are any integers; ``classes`` (sorted) holds the original label of each class index.
Without test data, ``test_fraction`` of the sequences are held out for the test split; then
``val_fraction`` for validation; the split is a pure function of ``split_seed``. The
``standard`` normalizer's statistics come from the training split only.
"""

from __future__ import annotations

import csv
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hippos.data.buckets import LengthBucketBatches, Normalizer, VarLenSequences
from hippos.data.idx import check_sha256, is_idx_file, read_idx

__all__ = [
    "FORMATS",
    "ClassificationData",
    "ClassifyDataConfig",
    "LengthBucketBatches",
    "Normalizer",
    "VarLenSequences",
    "load_classification",
    "read_idx",
    "resolve_format",
    "split_indices",
]

#: Values of ``--data.format``.
FORMATS = ("auto", "npz", "csv", "tsv", "idx")
NORMALIZE = ("standard", "none")
_SPLIT_STREAM = 0x73706C74  # "splt"


@dataclass
class ClassifyDataConfig:
    """The ``data`` section of ``hippos train classify`` (``--data.key=value``)."""

    path: str | None = None  # the data file (.npz, .csv/.tsv or idx); required
    format: str = "auto"  # auto | npz | csv | tsv | idx
    labels_path: str | None = None  # idx: the labels idx file (required for idx)
    test_path: str | None = None  # optional test data, same format (npz: or x_test/y_test in path)
    test_labels_path: str | None = None  # idx: the test labels idx file
    label_column: str = "label"  # csv: the label column's name in the header
    sha256: str | None = None  # checked against path when given
    labels_sha256: str | None = None  # idx: checked against labels_path when given
    test_sha256: str | None = None  # checked against test_path when given
    test_labels_sha256: str | None = None  # idx: checked against test_labels_path when given
    val_fraction: float = 0.1  # of the training file, held out for validation
    test_fraction: float = 0.1  # of the training file, held out for test when no test data
    split_seed: int = 0
    normalize: str = "standard"  # standard (per-feature mean/std of the train split) | none
    max_length: int | None = None  # refuse longer sequences; None: no limit


@dataclass
class ClassificationData:
    """Datasets and what a classifier needs to know about them."""

    train: VarLenSequences
    val: VarLenSequences
    test: VarLenSequences
    d_input: int  # features per step, d
    n_classes: int  # C
    classes: list  # the user's label of class index 0..C-1 (sorted ints)
    max_length: int  # the longest sequence over all splits
    normalizer: Normalizer | None  # applied inside the three datasets already


def resolve_format(path: str | Path, fmt: str = "auto") -> str:
    """``npz``, ``csv``, ``tsv`` or ``idx``: ``fmt`` itself, or for ``auto`` the one of the file."""
    if fmt not in FORMATS:
        raise ValueError(f"--data.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt != "auto":
        return fmt
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    if is_idx_file(path):
        return "idx"
    raise ValueError(
        f"cannot tell the format of {str(path)!r} (suffix {suffix or 'none'!r}, no idx header): supported are "
        ".npz, .csv/.tsv and idx files (gzip or not); set --data.format=npz, csv, tsv or idx"
    )


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """``(train, val, test)`` indices of ``0..n-1``, disjoint, each sorted; a pure function of the arguments.

    A permutation from numpy PCG64 (``SeedSequence([seed, const])``); its first
    ``round(n * test_fraction)`` entries are the test split, the next ``round(n * val_fraction)``
    the validation split (at least 1 each when the fraction is > 0), the rest training.
    """
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
            raise ValueError(f"--data.{name} must be a number in [0, 1), got {f!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--data.split_seed must be an integer >= 0, got {seed!r}")
    count = [0 if f == 0 else max(1, math.floor(n * f + 0.5)) for f in (test_fraction, val_fraction)]
    if n - sum(count) < 1:
        raise ValueError(
            f"{n} sequences are too few for val_fraction={val_fraction} and test_fraction={test_fraction}: "
            "no training sequence is left"
        )
    perm = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _SPLIT_STREAM]))).permutation(n)
    n_test, n_val = count
    return np.sort(perm[n_test + n_val :]), np.sort(perm[n_test : n_test + n_val]), np.sort(perm[:n_test])


# ----------------------------------------------------------------------------- readers


def _labels(y) -> np.ndarray:
    """Integer labels ``int64(n)``; integral floats are accepted. Errors name no file (callers do)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must have shape (n,), got {y.shape}")
    if y.dtype.kind in "iub":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        ok = np.isfinite(y) & (y == np.round(y))
        if ok.all():
            return y.astype(np.int64)
        i = int(np.argmin(ok))
        raise ValueError(f"labels must be integers, got {y[i].item()!r} at position {i}")
    raise TypeError(f"labels must be integers, got dtype {y.dtype}")


def _dataset(x, y, lengths, where: str) -> VarLenSequences:
    """``VarLenSequences`` whose every error is prefixed once by ``where``."""
    try:
        return VarLenSequences(x, _labels(y), lengths)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{where}: {e}") from None


def _npz_x(x: np.ndarray):
    if x.dtype != object:
        return x
    if x.ndim == 1:
        return list(x)  # variable length: (L_i,) or (L_i, d) arrays
    try:
        return x.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"x is an object array of shape {x.shape}: expected numbers or a 1-D array of sequences"
        ) from None


def _read_npz(path: Path, prefix: str = "") -> tuple[VarLenSequences, VarLenSequences | None]:
    """``(data, test or None)`` from ``x``, ``y``, ``lengths`` (and ``x_test``, ``y_test``, ``lengths_test``)."""
    where = repr(str(path))
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {where} as .npz: {e}") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{where} holds one array, not an .npz archive with arrays x and y (use np.savez)")

    def get(key):
        if key not in f.files:
            return None
        try:
            return f[key]
        except ValueError:  # an object array: numpy pickles those
            with np.load(path, allow_pickle=True) as g:
                return g[key]

    with f:
        for key in ("x", "y"):
            if key not in f.files:
                raise ValueError(f"{where} has no array {key!r} (arrays: {', '.join(f.files) or 'none'})")
        out = []
        for suffix in ("", "_test"):
            x, y, lengths = (get(k + suffix) for k in ("x", "y", "lengths"))
            if x is None and y is None and lengths is None:
                out.append(None)
                continue
            if x is None or y is None:
                raise ValueError(f"{where}: x{suffix} and y{suffix} go together, only one is there")
            try:
                x = _npz_x(x)
            except TypeError as e:
                raise TypeError(f"{where}: {e}") from None
            out.append(_dataset(x, y, lengths, f"{where} (x{suffix}, y{suffix})"))
    return out[0], out[1]


def _parse_label(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not v.is_integer():
        raise ValueError(f"{where}: labels must be integers, got {text!r}")
    return int(v)


def _read_csv(path: Path, label_column: str, delimiter: str) -> VarLenSequences:
    try:
        return _read_csv_rows(path, label_column, delimiter)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"cannot read {str(path)!r} as {'tsv' if delimiter == chr(9) else 'csv'} text: {e}") from None


def _read_csv_rows(path: Path, label_column: str, delimiter: str) -> VarLenSequences:
    where = repr(str(path))
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f, delimiter=delimiter)
        header = [h.strip() for h in next(rows, [])]
        if label_column not in header:
            hint = "; is the file delimited by " + repr(delimiter) + "?" if len(header) == 1 else ""
            shown = ", ".join(repr(h) for h in header[:8]) + (", ..." if len(header) > 8 else "")
            raise ValueError(
                f"{where}: no column {label_column!r} in the header (columns: {shown or 'none'}); "
                f"set --data.label_column{hint}"
            )
        if header.count(label_column) > 1:
            raise ValueError(f"{where}: the header names column {label_column!r} more than once")
        li = header.index(label_column)
        steps = [h for j, h in enumerate(header) if j != li]
        if not steps:
            raise ValueError(f"{where}: the header has only the label column, no time steps")
        seqs, labels = [], []
        for line, row in enumerate(rows, start=2):
            if not any(c.strip() for c in row):
                continue  # a blank line
            at = f"{where} row {line}"
            if len(row) > len(header):
                raise ValueError(f"{at} has {len(row)} cells, the header {len(header)}")
            label = row[li].strip() if li < len(row) else ""
            if not label:
                raise ValueError(f"{at}: no label in column {label_column!r}")
            cells = [c.strip() for j, c in enumerate(row) if j != li]
            while cells and not cells[-1]:
                cells.pop()
            if not cells:
                raise ValueError(f"{at}: no values, only a label")
            try:
                seq = np.array(cells, dtype=np.float64)
            except ValueError:
                j = next(j for j, c in enumerate(cells) if not _is_number(c))
                what = "an empty cell before the last value" if not cells[j] else f"{cells[j]!r} is not a number"
                raise ValueError(f"{at}, column {steps[j]!r}: {what}") from None
            bad = ~(np.abs(seq) <= _F32_MAX)  # NaN, inf, or too large for the float32 the model reads
            if bad.any():
                j = int(np.argmax(bad))
                raise ValueError(f"{at}, column {steps[j]!r}: {cells[j]!r} is not a finite float32 number")
            seqs.append(seq)
            labels.append(_parse_label(label, at))
    if not seqs:
        raise ValueError(f"{where}: no data rows after the header")
    return _dataset(seqs, np.array(labels, dtype=np.int64), None, where)


_F32_MAX = float(np.finfo(np.float32).max)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_idx_pair(path: Path, labels_path: Path, sha256=None, labels_sha256=None) -> VarLenSequences:
    x = read_idx(path, sha256)  # (n, ...)
    if x.ndim < 2:
        raise ValueError(f"{str(path)!r} holds shape {x.shape}: expected (n, L) sequences or (n, A, B, ...) images")
    y = read_idx(labels_path, labels_sha256)
    return _dataset(x.reshape(len(x), -1), y, None, f"{str(path)!r} with labels {str(labels_path)!r}")


# ----------------------------------------------------------------------------- load


def _file(cfg: ClassifyDataConfig, key: str) -> Path | None:
    value = getattr(cfg, key)
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--data.{key}: no such file {str(path)!r}")
    return path


def _check_fields(cfg: ClassifyDataConfig, fmt: str) -> None:
    if fmt != "idx":
        for key in ("labels_path", "test_labels_path", "labels_sha256", "test_labels_sha256"):
            if getattr(cfg, key) is not None:
                where = "in the array y" if fmt == "npz" else f"in the column {cfg.label_column!r}"
                raise ValueError(f"--data.{key} is only read for idx data; the labels of {fmt} data are {where}")
    if fmt not in ("csv", "tsv") and cfg.label_column != "label":
        raise ValueError(f"--data.label_column is only read for csv data, not {fmt}")
    if fmt == "idx":
        if cfg.labels_path is None:
            raise ValueError("idx data need --data.labels_path=FILE (the labels, an idx file of n integers)")
        if (cfg.test_path is None) != (cfg.test_labels_path is None):
            raise ValueError("idx test data need both --data.test_path and --data.test_labels_path")
    for key, of in (("test_sha256", "test_path"), ("test_labels_sha256", "test_labels_path")):
        if getattr(cfg, key) is not None and getattr(cfg, of) is None:
            raise ValueError(f"--data.{key} checks --data.{of}, which is not set")
    if cfg.normalize not in NORMALIZE:
        raise ValueError(f"--data.normalize must be one of {', '.join(NORMALIZE)}, got {cfg.normalize!r}")
    m = cfg.max_length
    if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
        raise ValueError(f"--data.max_length must be an integer >= 1 or none, got {m!r}")


def _check_length(ds: VarLenSequences, limit: int | None, where: str) -> None:
    if limit is None or not len(ds) or ds.lengths.max() <= limit:
        return
    longer = ds.lengths > limit
    i = int(np.argmax(longer))
    raise ValueError(
        f"{where}: sequence {i} has {ds.lengths[i]} steps, more than --data.max_length={limit} "
        f"({int(longer.sum())} of {len(ds)} sequences are longer, the longest {ds.lengths.max()}); "
        "raise --data.max_length or shorten the sequences"
    )


def _list(values, k: int = 10) -> str:
    values = [int(v) for v in values]
    return str(values[:k])[:-1] + (", ...]" if len(values) > k else "]")


def load_classification(cfg: ClassifyDataConfig, *, normalizer: Normalizer | None = None) -> ClassificationData:
    """Read, check, relabel, split and normalize the data that ``cfg`` names.

    Returns train / val / test ``VarLenSequences`` with labels ``0..C-1`` (``classes[c]`` the
    user's label of class ``c``), ``d_input``, ``n_classes``, ``max_length`` (the longest
    sequence) and the normalizer in use. ``normalizer``, when given (e.g. loaded from a run's
    ``normalizer.json`` with ``Normalizer.from_dict``), is used instead of fitting one.
    ``FileNotFoundError`` names a missing file; ``ValueError``/``TypeError`` every other
    problem (format, checksum, shapes, non-finite values, labels, lengths).
    """
    if not isinstance(cfg, ClassifyDataConfig):
        raise TypeError(f"cfg must be a ClassifyDataConfig, got {type(cfg).__name__}")
    if cfg.path is None:
        raise ValueError("no data: give --data.path=FILE (.npz, .csv or idx)")
    path = _file(cfg, "path")
    labels_path, test_path, test_labels_path = (_file(cfg, k) for k in ("labels_path", "test_path", "test_labels_path"))
    fmt = resolve_format(path, cfg.format)
    _check_fields(cfg, fmt)

    test = None
    if fmt == "idx":
        data = _read_idx_pair(path, labels_path, cfg.sha256, cfg.labels_sha256)
        if test_path is not None:
            test = _read_idx_pair(test_path, test_labels_path, cfg.test_sha256, cfg.test_labels_sha256)
    else:
        if cfg.sha256 is not None:
            check_sha256(path, cfg.sha256)
        if fmt == "npz":
            data, test = _read_npz(path)
            if test_path is not None:
                if cfg.test_sha256 is not None:
                    check_sha256(test_path, cfg.test_sha256)
                if test is not None:
                    raise ValueError(f"test data twice: {str(path)!r} has x_test/y_test and --data.test_path is set")
                test, extra = _read_npz(test_path)
                if extra is not None:
                    raise ValueError(
                        f"--data.test_path {str(test_path)!r}: give the test data as x, y (it has x_test too)"
                    )
        else:
            delimiter = "\t" if fmt == "tsv" else ","
            data = _read_csv(path, cfg.label_column, delimiter)
            if test_path is not None:
                if cfg.test_sha256 is not None:
                    check_sha256(test_path, cfg.test_sha256)
                test = _read_csv(test_path, cfg.label_column, delimiter)
    _check_length(data, cfg.max_length, repr(str(path)))
    if test is not None:
        _check_length(test, cfg.max_length, f"test data of {str(test_path or path)!r}")
        if test.d != data.d:
            raise ValueError(f"test sequences have d = {test.d} features per step, training sequences {data.d}")

    classes = np.unique(data.y.numpy())  # sorted
    if len(classes) < 2:
        raise ValueError(f"{str(path)!r}: classification needs at least 2 classes, every label is {int(classes[0])}")
    data.y = torch.from_numpy(np.searchsorted(classes, data.y.numpy()))
    if test is not None:
        unseen = np.setdiff1d(test.y.numpy(), classes)
        if len(unseen):
            raise ValueError(
                f"test labels {_list(unseen)} never occur in the training data (classes: {_list(classes)})"
            )
        test.y = torch.from_numpy(np.searchsorted(classes, test.y.numpy()))

    test_fraction = 0.0 if test is not None else cfg.test_fraction
    train_i, val_i, test_i = split_indices(len(data), cfg.val_fraction, test_fraction, cfg.split_seed)
    train, val = data.subset(train_i), data.subset(val_i)
    if test is None:
        test = data.subset(test_i)
    if normalizer is None and cfg.normalize == "standard":
        normalizer = Normalizer.fit(train)
    for ds in (train, val, test):
        ds.normalizer = normalizer
    lengths = [ds.lengths.max() for ds in (train, val, test) if len(ds)]
    return ClassificationData(
        train=train,
        val=val,
        test=test,
        d_input=data.d,
        n_classes=len(classes),
        classes=[int(c) for c in classes],
        max_length=int(max(lengths)),
        normalizer=normalizer,
    )
