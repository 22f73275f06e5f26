"""MNIST as pixel sequences: sequential MNIST (sMNIST) and permuted sequential MNIST (psMNIST).

Setup of S4 (arXiv 2111.00396, Table 6) and LSSL (arXiv 2110.13985, Table 1): every 28x28
image is read row by row as a sequence of 784 scalar pixels scaled to [0, 1]
(``x: r(784 1)``); psMNIST applies one fixed permutation to the 784 time steps of every
image. The data are the original idx files (LeCun et al. 1998), read from a directory:

* ``load_split(split, data_dir)`` -> ``(images u8(n 28 28), labels u8(n))``, with
  ``split`` one of ``train`` (the first 55,000 training images), ``val`` (the last 5,000
  training images, held out) and ``test`` (the official 10,000 test images);
* ``MnistSequences`` -> a batched dataset of ``(x: f32(B 784 1), y: i64(B))``.

Files are checked against their SHA-256 (``FILES``) before they are parsed; nothing is
downloaded at run time. ``download_mnist(dest)`` fetches them for users with internet.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hippos.data.idx import file_sha256 as _sha256
from hippos.data.idx import read_idx

__all__ = [
    "MnistDataConfig",
    "FILES",
    "MIRRORS",
    "N_VAL",
    "PERMUTATION_SEED",
    "MnistSequences",
    "download_mnist",
    "load_split",
    "mnist_dir",
    "permutation",
    "read_idx",
    "resolve_data_dir",
    "verify_file",
]


@dataclass
class MnistDataConfig:
    """The data section of ``smnist`` / ``psmnist``: none. The files come from ``data_dir``
    (``<data_dir>/mnist``), the validation split is the last 5,000 training images, the
    permutation is fixed (``permutation()``)."""

#: The four idx files: name -> (SHA-256, size in bytes). Values from ``data/mnist/SOURCE.md``.
FILES: dict[str, tuple[str, int]] = {
    "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
}

#: Where ``download_mnist`` looks, in order (each serves the four original file names).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: Training images held out for validation: the last ``N_VAL`` of the 60,000.
N_VAL = 5000

#: Seed of the one fixed psMNIST permutation (see ``permutation``).
PERMUTATION_SEED = 0

ENV_VAR = "HIPPOS_DATA"

# (resolved path, size, mtime_ns) of files whose SHA-256 matched in this process.
_verified: set[tuple[str, int, int]] = set()


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root: ``data_dir`` if given, else ``$HIPPOS_DATA``; MNIST sits in ``<root>/mnist``."""
    if data_dir is None or str(data_dir) == "":
        env = os.environ.get(ENV_VAR, "")
        if not env:
            raise FileNotFoundError(
                f"no data directory: pass --data-dir DIR or set ${ENV_VAR} (MNIST is read from DIR/mnist)"
            )
        data_dir = env
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data directory {str(root)!r} does not exist")
    return root


def mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``<root>/mnist`` if it exists, else ``<root>`` itself when it holds the idx files."""
    root = resolve_data_dir(data_dir)
    sub = root / "mnist"
    if sub.is_dir() or not (root / next(iter(FILES))).exists():
        return sub
    return root


def verify_file(path: str | os.PathLike, sha256: str, size: int | None = None) -> Path:
    """Check that ``path`` exists and has the given SHA-256 (and size); return it.

    A file is hashed once per process: the result is remembered under (path, size, mtime),
    so a file replaced or touched since is hashed again. Raises ``FileNotFoundError`` for a
    missing file and ``ValueError`` naming the file for a wrong size or checksum: "is
    incomplete" for a shorter gzip stream cut off before its end (an interrupted download),
    else "is not the MNIST file", pointing at ``hippos train classify`` for other idx data.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"missing data file {str(path)!r} (get it with hippos.data.mnist.download_mnist or see docs/training.md)"
        ) from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _verified:
        return path
    if size is not None and st.st_size != size:
        if st.st_size < size and _cut_short(path):
            raise ValueError(
                f"{str(path)!r} is incomplete ({st.st_size} bytes of {size}; its gzip stream ends early): "
                "an interrupted download? fetch it again with hippos.data.mnist.download_mnist"
            )
        raise ValueError(_not_mnist(path, f"size differs: {st.st_size} bytes, expected {size}"))
    digest = _sha256(path)
    if digest != sha256:
        raise ValueError(_not_mnist(path, f"SHA-256 differs: got {digest[:16]}..., expected {sha256[:16]}..."))
    _verified.add(key)
    return path


def _not_mnist(path: Path, why: str) -> str:
    return (
        f"{str(path)!r} is not the MNIST file ({why}); for other idx data use "
        "`hippos train classify --data.format=idx --data.path=... --data.labels_path=...`"
    )


def _cut_short(path: Path) -> bool:
    """Whether ``path`` is empty or a gzip stream that ends before its end marker (a partial download)."""
    if path.stat().st_size == 0:
        return True
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    except EOFError:
        return True
    except (OSError, ValueError, zlib.error):  # not gzip at all, or damaged inside: another file, not a cut-off one
        return False
    return False


def _load_pair(directory: Path, prefix: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for kind, ndim in (("images", 3), ("labels", 1)):
        name = f"{prefix}-{kind}-idx{ndim}-ubyte.gz"
        sha, size = FILES[name]
        a = read_idx(verify_file(directory / name, sha, size))
        if a.dtype != np.uint8 or a.ndim != ndim or a.shape[0] != n or (ndim == 3 and a.shape[1:] != (28, 28)):
            raise ValueError(f"{str(directory / name)!r}: unexpected contents {a.dtype} {a.shape}")
        arrays.append(a)
    images, labels = arrays
    if labels.max() > 9:
        raise ValueError(f"{str(directory)!r}: labels outside 0-9")
    return images, labels


def load_split(split: str, data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images u8(n 28 28), labels u8(n))`` of ``train`` (55,000), ``val`` (5,000) or ``test`` (10,000).

    ``val`` is the last ``N_VAL`` = 5,000 images of the official training file, ``train``
    the 55,000 before them; ``test`` is the official test set.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    directory = mnist_dir(data_dir)
    if split == "test":
        return _load_pair(directory, "t10k", 10000)
    images, labels = _load_pair(directory, "train", 60000)
    sl = slice(0, 60000 - N_VAL) if split == "train" else slice(60000 - N_VAL, None)
    return images[sl], labels[sl]


def _splitmix64(state: int) -> tuple[int, int]:
    state = (state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return state, z ^ (z >> 31)


def permutation(n: int = 784, seed: int = PERMUTATION_SEED) -> np.ndarray:
    """The fixed psMNIST permutation of ``n`` time steps: ``int64(n)``, a bijection of 0..n-1.

    A Fisher-Yates shuffle driven by SplitMix64 from ``seed``, written out here rather than
    taken from numpy or torch so that it never changes with a library version: a trained
    psMNIST model stays valid. Index ``i`` of the permuted sequence is pixel ``perm[i]``.
    """
    perm = list(range(n))
    state = int(seed) & 0xFFFFFFFFFFFFFFFF
    for i in range(n - 1, 0, -1):
        state, r = _splitmix64(state)
        j = r % (i + 1)  # modulo bias < 1e-16 for n = 784
        perm[i], perm[j] = perm[j], perm[i]
    return np.asarray(perm, dtype=np.int64)


class MnistSequences(torch.utils.data.Dataset):
    """Images as pixel sequences, fetched a batch at a time: ``ds[indices] -> (x, y)``.

    ``x: f32(B 784 1)`` pixels / 255 in row-major (or permuted) order, ``y: i64(B)``.
    An integer index gives one example, ``x: f32(784 1)``. Kept in memory as uint8 (47 MB).
    """

    def __init__(self, split: str, data_dir: str | os.PathLike | None = None, permuted: bool = False):
        images, labels = load_split(split, data_dir)
        pixels = torch.from_numpy(images.reshape(len(images), 784).copy())  # (n, 784) uint8
        if permuted:
            pixels = pixels[:, torch.from_numpy(permutation(784))]
        self.pixels = pixels.contiguous()
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.split = split

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        x = self.pixels[index].to(torch.float32).div_(255.0).unsqueeze(-1)  # (B, 784, 1)
        return x, self.labels[index]


def download_mnist(dest: str | os.PathLike, mirrors: tuple[str, ...] = MIRRORS) -> Path:
    """Download the four idx files into ``dest`` (created), verify them, return ``dest``.

    Tries each mirror in turn; a file already present with the right checksum is kept.
    Needs internet: the library never calls this by itself. Afterwards pass
    ``--data-dir`` the *parent* of ``dest`` when ``dest`` ends in ``mnist``, or ``dest``.
    """
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    for name, (sha, size) in FILES.items():
        target = dest / name
        if target.exists():
            try:
                verify_file(target, sha, size)
                continue
            except ValueError:
                pass
        errors = []
        for mirror in mirrors:
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.")
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(mirror + name, timeout=60) as resp:
                    shutil.copyfileobj(resp, out)
                verify_file(tmp, sha, size)
                os.replace(tmp, target)
                break
            except (OSError, ValueError) as e:
                errors.append(f"{mirror}: {e}")
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            raise OSError(f"could not download {name}: " + "; ".join(errors))
    return dest
