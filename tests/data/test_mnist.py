"""MNIST idx parsing, checksums, the psMNIST permutation, and (once) the real files."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct

import numpy as np
import pytest
import torch

from hippos.data import mnist


def _idx_bytes(a: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(">u1" if code == 8 else ">i4").tobytes()


@pytest.mark.parametrize("compressed", [True, False])
def test_read_idx_roundtrip(tmp_path, compressed):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x.idx3-ubyte.gz" if compressed else "x.idx3-ubyte")
    data = _idx_bytes(a)
    path.write_bytes(gzip.compress(data) if compressed else data)
    out = mnist.read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, a)
    out[0, 0, 0] = 7  # a writable copy, not a view of the file's bytes


def test_read_idx_int32_labels(tmp_path):
    a = np.array([5, -1, 70000], dtype=np.int32)
    path = tmp_path / "l.idx1"
    path.write_bytes(_idx_bytes(a, code=0x0C))
    out = mnist.read_idx(path)
    np.testing.assert_array_equal(out, a)
    assert out.dtype.byteorder in ("=", "|") or out.dtype.isnative


@pytest.mark.parametrize(
    "raw,fragment",
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"\x00\x00", "bad magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"\x00\x00", "unsupported idx type"),
        (b"\x00\x00\x08\x02" + struct.pack(">I", 2), "truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x00\x00", "shape (3,)"),
        (b"", "bad magic"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path, raw, fragment):
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="bad.idx") as e:
        mnist.read_idx(path)
    assert fragment in str(e.value)


def test_read_idx_rejects_broken_gzip(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 4) + b"abcd")[:-6])
    with pytest.raises(ValueError, match="broken.gz"):
        mnist.read_idx(path)


def test_verify_file_checks_and_caches(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    good = hashlib.sha256(b"hello").hexdigest()
    calls = []
    real = mnist._sha256
    monkeypatch.setattr(mnist, "_sha256", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(mnist, "_verified", set())
    assert mnist.verify_file(path, good, 5) == path
    mnist.verify_file(path, good, 5)
    assert len(calls) == 1  # hashed once per process
    path.write_bytes(b"hellO")  # same size, new content and mtime: hashed again
    os.utime(path, ns=(1, 1))
    with pytest.raises(ValueError, match=r"f\.bin' is not the MNIST file \(SHA-256 differs: got [0-9a-f]{16}\.\.\., expected"):
        mnist.verify_file(path, good, 5)
    assert len(calls) == 2
    with pytest.raises(ValueError, match=r"f\.bin' is not the MNIST file \(size differs: 5 bytes, expected 6\).*hippos train classify"):
        mnist.verify_file(path, good, 6)
    with pytest.raises(FileNotFoundError, match="missing data file .*nope.gz"):
        mnist.verify_file(tmp_path / "nope.gz", good)


def test_checksum_mismatch_names_the_file(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    for name, (_, size) in mnist.FILES.items():
        (d / name).write_bytes(b"\x00" * size)  # right sizes, wrong bytes
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz' is not the MNIST file \(SHA-256 differs") as e:
        mnist.load_split("test", tmp_path)
    assert "hippos train classify --data.format=idx --data.path=... --data.labels_path=..." in str(e.value)


def test_other_idx_file_vs_truncated_download(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "_verified", set())
    full = gzip.compress(_idx_bytes(np.arange(4000, dtype=np.uint32).astype(np.uint8)))
    other = tmp_path / "other" / "train-labels-idx1-ubyte.gz"  # a complete idx file, just not MNIST's
    other.parent.mkdir()
    other.write_bytes(full)
    with pytest.raises(ValueError, match="is not the MNIST file .size differs"):
        mnist.verify_file(other, "0" * 64, len(full) + 100)
    cut = tmp_path / "train-labels-idx1-ubyte.gz"  # the same stream cut off: an interrupted download
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match=r"is incomplete \(\d+ bytes of \d+; its gzip stream ends early\).*download_mnist"):
        mnist.verify_file(cut, "0" * 64, len(full))
    cut.write_bytes(b"")
    with pytest.raises(ValueError, match="is incomplete"):
        mnist.verify_file(cut, "0" * 64, len(full))


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="missing data file .*train-images-idx3-ubyte.gz"):
        mnist.load_split("val", tmp_path)
    monkeypatch.delenv("HIPPOS_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="--data-dir.*HIPPOS_DATA"):
        mnist.resolve_data_dir(None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mnist.resolve_data_dir(tmp_path / "absent")
    with pytest.raises(ValueError, match="split"):
        mnist.load_split("dev", tmp_path)


def test_permutation_is_a_fixed_bijection():
    p = mnist.permutation()
    assert p.dtype == np.int64 and p.shape == (784,)
    np.testing.assert_array_equal(np.sort(p), np.arange(784))
    # pinned: a trained psMNIST model depends on these exact values (SplitMix64 Fisher-Yates, seed 0)
    assert p[:8].tolist() == [484, 411, 326, 479, 169, 18, 364, 604]
    assert p[-4:].tolist() == [14, 349, 351, 751]
    np.testing.assert_array_equal(p, mnist.permutation(784, mnist.PERMUTATION_SEED))
    assert (p != np.arange(784)).mean() > 0.99
    assert not np.array_equal(p, mnist.permutation(784, seed=1))


def test_real_mnist(data_dir):
    """The shared files: checksums, splits, sequence layout, psMNIST = the permutation."""
    if not (data_dir / "mnist").is_dir():
        pytest.skip("no mnist in the shared data")
    images, labels = mnist.load_split("test", data_dir)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).min() > 850
    val = mnist.MnistSequences("val", data_dir)
    assert len(val) == mnist.N_VAL
    x, y = val[torch.arange(3)]
    assert x.shape == (3, 784, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() == 1.0
    train_images, _ = mnist.load_split("train", data_dir)
    assert len(train_images) == 60000 - mnist.N_VAL
    # val is the tail of the training file
    np.testing.assert_array_equal(val.pixels[0].numpy(), mnist.read_idx(data_dir / "mnist" / "train-images-idx3-ubyte.gz")[55000].reshape(-1))
    pval = mnist.MnistSequences("val", data_dir, permuted=True)
    torch.testing.assert_close(pval[0][0], x[0][torch.from_numpy(mnist.permutation())], rtol=0, atol=0)
