"""A disk cache for generated datasets (ListOps, Pathfinder): made once, checked on every load.

A generated set is a pure function of its parameters (seed included). ``cached_arrays(name,
params, build)`` keeps it under ``<cache root>/<name>-<12 hex digits of the parameters' hash>/``::

    params.json    the parameters, as given (sorted keys), and the array names
    arrays.npz     the arrays ``build()`` returned (uncompressed npz)
    SHA256SUMS     the SHA-256 of arrays.npz, checked on every load

A folder whose checksum or parameters disagree is an error naming the folder (never silently
regenerated over: delete it to rebuild). Writes go to a temporary folder renamed into place, so
an interrupted generation leaves nothing half-written behind. The cache root is ``cache_dir`` if
given, else ``$HIPPOS_CACHE``, else ``~/.cache/hippos``: never the repository, never the shared
read-only data folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hippos.data.idx import file_sha256

__all__ = ["CACHE_ENV", "cache_root", "cached_arrays", "params_key"]

CACHE_ENV = "HIPPOS_CACHE"
_PARAMS, _ARRAYS, _SUMS = "params.json", "arrays.npz", "SHA256SUMS"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$HIPPOS_CACHE``, else ``~/.cache/hippos`` (created on first write)."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV, "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hippos"


def _canonical(params: dict) -> str:
    try:
        return json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"generator parameters must be JSON numbers, strings, lists and dicts: {e}") from None


def params_key(params: dict) -> str:
    """The first 12 hex digits of the SHA-256 of the parameters' canonical JSON."""
    return hashlib.sha256(_canonical(params).encode()).hexdigest()[:12]


def _load(folder: Path, params: dict) -> dict[str, np.ndarray]:
    try:
        meta = json.loads((folder / _PARAMS).read_text())
        sums = (folder / _SUMS).read_text().split()
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"generated set {str(folder)!r} is damaged ({e}); delete the folder to generate it again") from None
    if _canonical(meta.get("params")) != _canonical(params):
        raise ValueError(f"generated set {str(folder)!r} was made with other parameters (a hash collision or an edited "
                         "params.json); delete the folder to generate it again")
    digest = file_sha256(folder / _ARRAYS) if (folder / _ARRAYS).is_file() else "missing"
    if not sums or digest != sums[0]:
        raise ValueError(f"generated set {str(folder / _ARRAYS)!r} does not match its SHA256SUMS ({digest[:16]}... vs "
                         f"{(sums or ['none'])[0][:16]}...); delete the folder to generate it again")
    with np.load(folder / _ARRAYS, allow_pickle=False) as z:
        return {k: z[k] for k in meta["arrays"]}


def cached_arrays(name: str, params: dict, build: Callable[[], dict[str, np.ndarray]],
                  cache_dir: str | os.PathLike | None = None, log: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """The arrays of the generated set ``name`` with ``params``: read from the cache, or made by
    ``build()`` (which must be a pure function of ``params``), saved, then returned.

    ``log`` (e.g. ``print``) hears where a set is generated and, when it is done, how long it took.
    """
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"generated set name must be letters, digits, '-' or '_', got {name!r}")
    folder = cache_root(cache_dir) / f"{name}-{params_key(params)}"
    if folder.exists():
        return _load(folder, params)
    if log is not None:
        log(f"generating {name} ({_canonical(params)}) into {folder}")
    t0 = time.perf_counter()
    arrays = build()
    if log is not None:
        log(f"generated {name} in {time.perf_counter() - t0:.0f} s")
    if not isinstance(arrays, dict) or not all(isinstance(v, np.ndarray) for v in arrays.values()):
        raise TypeError(f"build() must return a dict of numpy arrays, got {type(arrays).__name__}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        np.savez(tmp / _ARRAYS, **arrays)
        (tmp / _PARAMS).write_text(json.dumps({"name": name, "params": params, "arrays": list(arrays)}, indent=1,
                                              sort_keys=True) + "\n")
        (tmp / _SUMS).write_text(f"{file_sha256(tmp / _ARRAYS)}  {_ARRAYS}\n")
        try:
            tmp.rename(folder)
        except OSError:  # another process finished the same set first: use theirs
            if not folder.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _load(folder, params)
