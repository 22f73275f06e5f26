"""idx files (LeCun's MNIST format) of any content, and SHA-256 checks of data files.

An idx file is big-endian: the magic ``0x00 0x00 <type> <ndim>``, then ``ndim`` uint32 sizes,
then the data, C order. Types: ``0x08`` u8, ``0x09`` i8, ``0x0B`` i16, ``0x0C`` i32,
``0x0D`` f32, ``0x0E`` f64. Files may be gzip-compressed (recognised by their first bytes,
whatever their name). Used by ``hippos.data.mnist`` and ``hippos.data.user_classify``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "check_sha256", "file_sha256", "is_idx_file", "read_idx"]

#: idx type code -> numpy dtype (big-endian, as stored).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (as stored, compressed or not), 64 lowercase hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_digest_text(expected) -> str:
    if not isinstance(expected, str) or not _HEX64.fullmatch(expected.strip()):
        raise ValueError(f"a SHA-256 must be 64 hex digits, got {expected!r}")
    return expected.strip().lower()


def _mismatch(path, digest: str, expected: str) -> ValueError:
    return ValueError(
        f"{str(path)!r} does not match the given SHA-256: got {digest[:16]}..., expected {expected[:16]}..."
    )


def check_sha256(path: str | os.PathLike, expected: str) -> Path:
    """Check that the file at ``path`` has the SHA-256 ``expected`` (64 hex digits); return the path.

    ``FileNotFoundError`` naming a missing file; ``ValueError`` naming the file and the first
    16 hex digits of both digests on a mismatch.
    """
    expected = _check_digest_text(expected)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    digest = file_sha256(path)
    if digest != expected:
        raise _mismatch(path, digest, expected)
    return path


def _open_maybe_gzip(path: Path):
    with open(path, "rb") as f:
        gz = f.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gz else open(path, "rb")


def is_idx_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` (gzip or not) starts with a valid idx header: magic, known type, ndim >= 1."""
    path = Path(path)
    try:
        with _open_maybe_gzip(path) as f:
            head = f.read(4)
    except (OSError, EOFError, zlib.error):
        return False
    return len(head) == 4 and head[0] == 0 and head[1] == 0 and head[2] in IDX_DTYPES and head[3] >= 1


def read_idx(path: str | os.PathLike, sha256: str | None = None) -> np.ndarray:
    """Parse an idx file (gzip-compressed or not) into a numpy array in native byte order.

    Returns an array of the file's shape ``(s_0, ..., s_{ndim-1})`` and dtype (u8, i8, i16,
    i32, f32 or f64), writable (a copy, not a view of the file's bytes). With ``sha256``
    (64 hex digits) the file's bytes, as stored, are checked first. The magic, the type, the
    dimensions and the data length are validated; ``ValueError`` names the file otherwise,
    ``FileNotFoundError`` a missing one.
    """
    path = Path(path)
    expected = None if sha256 is None else _check_digest_text(sha256)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no such idx file: {str(path)!r}") from None
    except OSError as e:
        raise ValueError(f"cannot read idx file {str(path)!r}: {e}") from None
    if expected is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != expected:
            raise _mismatch(path, digest, expected)
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"cannot read idx file {str(path)!r} (broken gzip: {e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{str(path)!r} is not an idx file (bad magic {raw[:4].hex() or 'empty'})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES or ndim < 1:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise ValueError(
            f"{str(path)!r}: unsupported idx type 0x{code:02x} with {ndim} dimensions "
            f"(expected a type in {known}, ndim >= 1)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{str(path)!r}: truncated idx header ({len(raw)} bytes, {ndim} dimensions need {header})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_DTYPES[code]
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected_bytes:
        raise ValueError(
            f"{str(path)!r}: idx header says shape {shape} ({expected_bytes} bytes of data), "
            f"file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
