"""The generated-set cache: made once, read back equal, checked, never silently rebuilt."""

import numpy as np
import pytest

from hippos.data.gen_cache import cache_root, cached_arrays, params_key


def test_made_once_then_read_back(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(6, dtype=np.int16).reshape(2, 3), "y": np.array([1, 0])}

    a = cached_arrays("toy", {"n": 2, "seed": 0}, build, cache_dir=tmp_path)
    b = cached_arrays("toy", {"seed": 0, "n": 2}, build, cache_dir=tmp_path)  # key order does not matter
    assert calls == [1]
    for k in ("x", "y"):
        np.testing.assert_array_equal(a[k], b[k])
    assert b["x"].dtype == np.int16
    folders = [p.name for p in tmp_path.iterdir()]
    assert folders == [f"toy-{params_key({'n': 2, 'seed': 0})}"]  # no temporary folder left behind
    cached_arrays("toy", {"n": 2, "seed": 1}, build, cache_dir=tmp_path)
    assert calls == [1, 1]  # other parameters: another set


def test_damaged_set_is_refused(tmp_path):
    cached_arrays("toy", {"n": 1}, lambda: {"x": np.zeros(3)}, cache_dir=tmp_path)
    (folder,) = tmp_path.iterdir()
    with open(folder / "arrays.npz", "r+b") as f:
        f.seek(-5, 2)
        f.write(b"xxxxx")
    with pytest.raises(ValueError, match="does not match its SHA256SUMS"):
        cached_arrays("toy", {"n": 1}, lambda: {"x": np.zeros(3)}, cache_dir=tmp_path)


def test_cache_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPPOS_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert cache_root(tmp_path / "d") == tmp_path / "d"
    with pytest.raises(TypeError, match="JSON"):
        params_key({"x": object()})
