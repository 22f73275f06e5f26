"""User data for `hippos train classify`: npz / csv / idx loaders, checks, splits, padding,
the normalizer and length-bucketed batches. All files are written to tmp_path."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct

import numpy as np
import pytest
import torch

from hippos.data.user_classify import (
    ClassificationData,
    ClassifyDataConfig,
    LengthBucketBatches,
    Normalizer,
    VarLenSequences,
    load_classification,
    read_idx,
    resolve_format,
    split_indices,
)

_IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def write_idx(path, a: np.ndarray, code: int = 0x08, gz: bool = False):
    raw = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(_IDX_CODES[code]).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(**kw) -> ClassificationData:
    return load_classification(ClassifyDataConfig(**{k: str(v) if hasattr(v, "is_file") else v for k, v in kw.items()}))


def all_of(data: ClassificationData):
    """Every (x valid steps, y) of the three splits, unnormalized order-free view: sorted rows."""
    out = []
    for ds in (data.train, data.val, data.test):
        for i in range(len(ds)):
            x, y, n = ds[i]
            out.append((x[:n].numpy(), int(y)))
    return out


# ----------------------------------------------------------------------------- npz


def test_npz_fixed_length(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(50, 12, 2)).astype(np.float32)
    y = np.arange(50) % 4
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load(path=tmp_path / "d.npz", normalize="none")
    assert (len(data.train), len(data.val), len(data.test)) == (40, 5, 5)
    assert data.d_input == 2 and data.n_classes == 4 and data.classes == [0, 1, 2, 3] and data.max_length == 12
    assert data.normalizer is None
    xb, yb, lb = data.train[torch.arange(3)]
    assert xb.shape == (3, 12, 2) and xb.dtype == torch.float32 and yb.dtype == torch.int64 and lb.tolist() == [12] * 3
    # every sequence lands in exactly one split with its label
    seen = sorted((float(s[0, 0]), y) for s, y in all_of(data))
    assert seen == sorted((float(a), int(b)) for a, b in zip(x[:, 0, 0], y))
    # 2-D x: one feature
    np.savez(tmp_path / "e.npz", x=x[..., 0], y=y)
    assert load(path=tmp_path / "e.npz").d_input == 1


def test_npz_with_lengths_ignores_padding(tmp_path):
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 16, size=30)
    x = rng.normal(size=(30, 15, 1)).astype(np.float32)
    x[np.arange(15)[None, :] >= lengths[:, None]] = np.nan  # padding may hold anything
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(30) % 2, lengths=lengths)
    data = load(path=tmp_path / "d.npz", normalize="none", val_fraction=0.2, test_fraction=0.2)
    got = sorted((int(n), float(s[0, 0])) for s, _ in all_of(data) for n in [len(s)])
    assert got == sorted((int(n), float(a)) for n, a in zip(lengths, x[:, 0, 0]))
    assert data.max_length == lengths.max()
    np.savez(tmp_path / "bad.npz", x=x, y=np.arange(30) % 2, lengths=lengths + 1)
    with pytest.raises(ValueError, match=r"bad\.npz.*lengths must be in 1 \.\. 15"):
        load(path=tmp_path / "bad.npz")


def test_npz_variable_length_list(tmp_path):
    rng = np.random.default_rng(2)
    seqs = np.empty(40, dtype=object)
    for i in range(40):
        seqs[i] = rng.normal(size=(int(rng.integers(1, 25)), 3)).astype(np.float32)
    np.savez(tmp_path / "v.npz", x=seqs, y=np.arange(40) % 3)
    data = load(path=tmp_path / "v.npz", normalize="none")
    assert data.d_input == 3 and data.max_length == max(len(s) for s in seqs)
    by_first = {float(s[0, 0]): s for s in seqs}
    for s, _ in all_of(data):
        np.testing.assert_allclose(s, by_first[float(s[0, 0])], rtol=1e-6)
    bad = np.empty(2, dtype=object)
    bad[0], bad[1] = np.zeros((3, 2)), np.zeros((3, 1))
    np.savez(tmp_path / "bad.npz", x=bad, y=[0, 1])
    with pytest.raises(ValueError, match="same number of features"):
        load(path=tmp_path / "bad.npz")


def test_npz_test_arrays(tmp_path):
    rng = np.random.default_rng(3)
    x, xt = rng.normal(size=(30, 8)), rng.normal(size=(7, 8))
    np.savez(tmp_path / "t.npz", x=x, y=np.arange(30) % 3, x_test=xt, y_test=np.arange(7) % 3)
    data = load(path=tmp_path / "t.npz", normalize="none", val_fraction=0.2, test_fraction=0.5)
    assert (len(data.train), len(data.val), len(data.test)) == (24, 6, 7)  # test_fraction unused
    np.testing.assert_allclose(data.test[torch.arange(7)][0][..., 0].numpy(), xt, rtol=1e-6)  # file order kept
    np.savez(tmp_path / "u.npz", x=x, y=np.arange(30) % 3, x_test=xt, y_test=np.full(7, 5))
    with pytest.raises(ValueError, match=r"test labels \[5\] never occur in the training data"):
        load(path=tmp_path / "u.npz")
    np.savez(tmp_path / "w.npz", x=x, y=np.arange(30) % 3, x_test=xt)
    with pytest.raises(ValueError, match="x_test and y_test go together"):
        load(path=tmp_path / "w.npz")
    # or a second npz as --data.test_path
    np.savez(tmp_path / "only.npz", x=x, y=np.arange(30) % 3)
    np.savez(tmp_path / "test.npz", x=xt, y=np.arange(7) % 3)
    assert len(load(path=tmp_path / "only.npz", test_path=tmp_path / "test.npz").test) == 7


# ----------------------------------------------------------------------------- csv, idx


def test_csv_ragged_rows_and_label_column(tmp_path):
    text = "t0,t1,cls,t2,t3\n1,2,7,3,4\n5,6,3,,\n9,,3\n\n1.5,2.5,7,3.5,\n-1,-2,7,-3,-4\n"
    (tmp_path / "d.csv").write_text(text)
    data = load(path=tmp_path / "d.csv", label_column="cls", normalize="none", val_fraction=0.0, test_fraction=0.25)
    assert data.classes == [3, 7] and data.d_input == 1 and data.max_length == 4
    got = sorted((tuple(s[:, 0].tolist()), data.classes[y]) for s, y in all_of(data))
    assert got == sorted([((1, 2, 3, 4), 7), ((5, 6), 3), ((9,), 3), ((1.5, 2.5, 3.5), 7), ((-1, -2, -3, -4), 7)])
    (tmp_path / "d.tsv").write_text(text.replace(",", "\t"))
    assert len(all_of(load(path=tmp_path / "d.tsv", label_column="cls", val_fraction=0.0, test_fraction=0.25))) == 5
    with pytest.raises(ValueError, match=r"no column 'label' in the header \(columns: 't0', 't1', 'cls'"):
        load(path=tmp_path / "d.csv")
    (tmp_path / "d.bin").write_bytes(b"PK\x03\x04\x89\xff\xfe")
    (tmp_path / "gap.csv").write_text("label,a,b,c\n1,1,,3\n0,1,2,3\n")
    with pytest.raises(ValueError, match=r"gap\.csv' row 2, column 'b': an empty cell before the last value"):
        load(path=tmp_path / "gap.csv")
    (tmp_path / "word.csv").write_text("label,a\n1,x\n0,2\n")
    with pytest.raises(ValueError, match=r"row 2, column 'a': 'x' is not a number"):
        load(path=tmp_path / "word.csv")
    with pytest.raises(ValueError, match=r"cannot read .*d\.bin' as csv text"):
        load(path=tmp_path / "d.bin", format="csv")  # not text
    (tmp_path / "lab.csv").write_text("label,a\ncat,1\n0,2\n")
    with pytest.raises(ValueError, match="labels must be integers, got 'cat'"):
        load(path=tmp_path / "lab.csv")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_and_labels(tmp_path, gz):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(20, 4, 5), dtype=np.uint8)
    labels = (np.arange(20) % 3).astype(np.uint8)
    ext = ".gz" if gz else ""
    xi = write_idx(tmp_path / f"img-idx3-ubyte{ext}", images, gz=gz)
    yi = write_idx(tmp_path / f"lab-idx1-ubyte{ext}", labels, gz=gz)
    assert resolve_format(xi) == "idx"  # no idx suffix: recognised by the header
    data = load(path=xi, labels_path=yi, normalize="none", val_fraction=0.25, test_fraction=0.25)
    assert data.d_input == 1 and data.max_length == 20 and data.classes == [0, 1, 2]
    x, y, n = data.test[0]
    i = int(np.flatnonzero((images.reshape(20, 20) == x[:, 0].numpy()).all(1))[0])  # pixel by pixel, row-major
    assert int(y) == labels[i] and int(n) == 20
    load(path=xi, labels_path=yi, sha256=sha(xi), labels_sha256=sha(yi).upper())
    msg = rf"img-idx3-ubyte{ext}' does not match the given SHA-256: got {sha(xi)[:16]}\.\.\., expected {'0' * 16}\.\.\."
    with pytest.raises(ValueError, match=msg):
        load(path=xi, labels_path=yi, sha256="0" * 64)
    with pytest.raises(ValueError, match=r"lab-idx1-ubyte.*does not match the given SHA-256"):
        load(path=xi, labels_path=yi, labels_sha256="a" * 64)
    with pytest.raises(ValueError, match="64 hex digits"):
        load(path=xi, labels_path=yi, sha256="abc")
    with pytest.raises(ValueError, match="idx data need --data.labels_path"):
        load(path=xi)
    # separate test files
    t = load(path=xi, labels_path=yi, test_path=xi, test_labels_path=yi, val_fraction=0.5)
    assert len(t.test) == 20 and len(t.train) == 10
    with pytest.raises(ValueError, match="both --data.test_path and --data.test_labels_path"):
        load(path=xi, labels_path=yi, test_path=xi)


@pytest.mark.parametrize("code", sorted(_IDX_CODES))
def test_read_idx_every_dtype(tmp_path, code):
    a = (np.arange(24).reshape(2, 3, 4) - 5) * (1.5 if code >= 0x0D else 1)
    out = read_idx(write_idx(tmp_path / "a.idx", a, code))
    assert out.shape == (2, 3, 4) and out.dtype == np.dtype(_IDX_CODES[code]).newbyteorder("=")
    np.testing.assert_array_equal(out, a.astype(_IDX_CODES[code]))


def test_label_remapping(tmp_path):
    y = np.array([9, 3, 7, 3, 9, 7] * 5)
    x = np.repeat(y[:, None].astype(np.float64), 4, axis=1)  # each sequence carries its label
    np.savez(tmp_path / "d.npz", x=x, y=y.astype(np.float32))  # integral floats are labels too
    data = load(path=tmp_path / "d.npz", normalize="none")
    assert data.classes == [3, 7, 9] and data.n_classes == 3
    for s, c in all_of(data):
        assert data.classes[c] == s[0, 0]


def test_bad_inputs(tmp_path):
    x = np.zeros((10, 5))
    cases = {
        "nan.npz": (dict(x=np.where(np.arange(5) == 3, np.nan, x), y=np.arange(10) % 2), ValueError, r"non-finite.*step 3"),
        "n.npz": (dict(x=x, y=np.arange(9) % 2), ValueError, r"n\.npz.*10 sequences but y holds 9 labels"),
        "one.npz": (dict(x=x, y=np.ones(10)), ValueError, r"at least 2 classes, every label is 1"),
        "frac.npz": (dict(x=x, y=np.arange(10) / 3), ValueError, r"labels must be integers"),
        "noy.npz": (dict(x=x), ValueError, r"no array 'y' \(arrays: x\)"),
    }
    for name, (arrays, exc, msg) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(exc, match=msg):
            load(path=tmp_path / name)
    (tmp_path / "d.bin").write_bytes(b"hello world")
    with pytest.raises(ValueError, match=r"cannot tell the format of .*d\.bin.*npz, csv, tsv or idx"):
        load(path=tmp_path / "d.bin")
    with pytest.raises(ValueError, match="--data.format must be one of"):
        load(path=tmp_path / "d.bin", format="parquet")
    with pytest.raises(FileNotFoundError, match=r"--data.path: no such file .*absent\.npz"):
        load(path=tmp_path / "absent.npz")
    with pytest.raises(ValueError, match=r"give --data.path=FILE \(.npz, .csv or idx\)"):
        load()
    np.savez(tmp_path / "ok.npz", x=np.ones((10, 5)), y=np.arange(10) % 2)
    with pytest.raises(FileNotFoundError, match=r"--data.test_path: no such file .*nope\.npz"):
        load(path=tmp_path / "ok.npz", test_path=tmp_path / "nope.npz")
    with pytest.raises(ValueError, match=r"sequence 0 has 5 steps, more than --data.max_length=4"):
        load(path=tmp_path / "ok.npz", max_length=4)
    with pytest.raises(ValueError, match="labels_path is only read for idx data"):
        load(path=tmp_path / "ok.npz", labels_path=tmp_path / "ok.npz")
    with pytest.raises(ValueError, match="does not match the given SHA-256"):
        load(path=tmp_path / "ok.npz", sha256="f" * 64)
    assert load(path=tmp_path / "ok.npz", sha256=sha(tmp_path / "ok.npz"), max_length=5).max_length == 5


# ----------------------------------------------------------------------------- dataset, normalizer


def test_varlen_padding_and_lengths():
    seqs = [np.full((n, 2), n, dtype=np.float64) for n in (3, 1, 5)]
    ds = VarLenSequences(seqs, [0, 1, 0])
    assert len(ds) == 3 and ds.lengths.dtype == np.int64 and ds.lengths.tolist() == [3, 1, 5]
    x, y, n = ds[torch.tensor([1, 0])]
    assert x.shape == (2, 3, 2) and n.tolist() == [1, 3] and y.tolist() == [1, 0]
    assert x[0, 0].tolist() == [1, 1] and (x[0, 1:] == 0).all() and (x[1] == 3).all()
    x, y, n = ds[[2, 1, 0]]
    assert x.shape == (3, 5, 2) and int(x.abs().sum()) == 5 * 5 * 2 + 1 * 2 + 3 * 3 * 2
    assert ds[2][0].shape == (5, 2)
    sub = ds.subset([2, 0])
    assert sub.lengths.tolist() == [5, 3] and sub[0][0].shape == (5, 2) and (sub[1][0] == 3).all()
    padded = VarLenSequences(np.ones((2, 4)), [0, 1], lengths=[2, 4])
    assert padded[0][0].shape == (2, 1) and padded[[0]][0].shape == (1, 2, 1)
    with pytest.raises(IndexError):
        ds[[3]]


def test_normalizer_matches_numpy_on_valid_steps(tmp_path):
    rng = np.random.default_rng(5)
    seqs = [rng.normal([1.0, -4.0, 7.0], [2.0, 0.5, 0.0], size=(int(rng.integers(1, 30)), 3)) for _ in range(60)]
    ds = VarLenSequences(seqs, np.arange(60) % 2)
    norm = Normalizer.fit(ds)
    valid = np.concatenate(seqs).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(norm.mean, valid.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(norm.std[:2], valid.std(0)[:2], rtol=1e-12)
    assert norm.std[2] == 1.0  # constant feature: std floored to 1
    back = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(back.mean, norm.mean)
    np.testing.assert_array_equal(back.std, norm.std)
    ds.normalizer = back
    x, _, n = ds[torch.arange(60)]
    mask = torch.arange(x.shape[1])[None, :] < n[:, None]
    assert (x[~mask] == 0).all()  # padding stays 0
    z = x[mask].double().numpy()
    np.testing.assert_allclose(z[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, :2].std(0), 1, atol=1e-5)
    with pytest.raises(ValueError, match="not a saved Normalizer"):
        Normalizer.from_dict({"mean": [0.0]})
    # load_classification fits on the training split only
    np.savez(tmp_path / "d.npz", x=np.arange(100, dtype=np.float64)[:, None] * np.ones(4), y=np.arange(100) % 2)
    data = load(path=tmp_path / "d.npz")
    train_idx = np.sort((data.train.values[data.train.offsets[:-1], 0]).numpy())
    assert data.normalizer.mean[0] == pytest.approx(train_idx.mean()) and data.train.normalizer is data.test.normalizer


# ----------------------------------------------------------------------------- batches, splits


def test_length_bucket_batches():
    rng = np.random.default_rng(6)
    lengths = np.minimum(rng.lognormal(3.0, 1.2, size=2003).astype(np.int64) + 1, 5000)  # skewed
    s = LengthBucketBatches(lengths, 16, seed=3, epoch=1)
    batches = list(s)
    assert len(s) == len(batches) == 126 and all(b.dtype == torch.long for b in batches)
    assert sorted(torch.cat(batches).tolist()) == list(range(2003))  # every index once
    again = list(LengthBucketBatches(lengths, 16, seed=3, epoch=1))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    other = list(LengthBucketBatches(lengths, 16, seed=3, epoch=2))
    assert not all(torch.equal(a, b) for a, b in zip(batches, other))
    resumed = list(LengthBucketBatches(lengths, 16, seed=3, epoch=1, start=100))
    assert len(resumed) == len(LengthBucketBatches(lengths, 16, 3, 1, start=100)) == 26
    assert all(torch.equal(a, b) for a, b in zip(batches[100:], resumed))

    def ratio(bs):
        return np.mean([lengths[b.numpy()].max() / lengths[b.numpy()].min() for b in bs])

    random_batches = [torch.from_numpy(p) for p in np.array_split(rng.permutation(2003), 126)]
    assert ratio(batches) < 1.5 and ratio(random_batches) > 10
    ev = list(LengthBucketBatches(lengths, 16, seed=0, epoch=0, shuffle=False))
    assert torch.equal(torch.cat(ev), torch.from_numpy(np.argsort(lengths, kind="stable")))
    assert all(torch.equal(a, b) for a, b in zip(ev, LengthBucketBatches(lengths, 16, seed=9, epoch=5, shuffle=False)))
    assert list(LengthBucketBatches(lengths, 16, 0, 0, start=500)) == []


def test_seeded_splits_are_deterministic(tmp_path):
    a = split_indices(100, 0.1, 0.2, seed=0)
    assert [len(p) for p in a] == [70, 10, 20]
    assert sorted(np.concatenate(a).tolist()) == list(range(100))
    assert all(np.array_equal(p, q) for p, q in zip(a, split_indices(100, 0.1, 0.2, seed=0)))
    assert not np.array_equal(a[2], split_indices(100, 0.1, 0.2, seed=1)[2])
    with pytest.raises(ValueError, match="no training sequence"):
        split_indices(3, 0.5, 0.5, seed=0)
    rng = np.random.default_rng(7)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(50, 6)), y=np.arange(50) % 5)
    one, two = load(path=tmp_path / "d.npz", split_seed=4), load(path=tmp_path / "d.npz", split_seed=4)
    for s1, s2 in zip((one.train, one.val, one.test), (two.train, two.val, two.test)):
        assert torch.equal(s1.values, s2.values) and torch.equal(s1.y, s2.y)
    three = load(path=tmp_path / "d.npz", split_seed=5)
    assert not torch.equal(one.test.values, three.test.values)
