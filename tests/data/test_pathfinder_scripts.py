"""scripts/pathfinder_examples.py (the figure of docs/lra.md) and scripts/pathfinder_shortcuts.py:
the images and markers they read are the set's own (the generator's draws for the training split)."""

import importlib.util
from pathlib import Path

import numpy as np

from hippos.data.pathfinder import generate_pathfinder, preset

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name: str = "pathfinder_examples"):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_first_of_each_label_are_the_sets_images():
    params = preset(32, 6)
    x, y, idx = _load().first_of_each_label(3, params, 2)
    assert list(y) == [1, 1, 0, 0]
    full_x, full_y = generate_pathfinder(int(idx.max()) + 1, 3, params)
    assert np.array_equal(full_x[idx], x) and np.array_equal(full_y[idx], y)
    for label in (1, 0):  # the first of their label: nothing of that label before them
        mine = idx[y == label]
        assert list(np.flatnonzero(full_y == label)[:2]) == list(mine)


def test_script_writes_the_figure(tmp_path, capsys):
    out = tmp_path / "pf.png"
    _load().main(["--contour-length", "6", "--per-label", "2", "--out", str(out)])
    assert out.stat().st_size > 1000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out


def test_marker_distances_are_those_of_the_sets_images():
    m = _load("pathfinder_shortcuts")
    params = preset(32, 6)
    dist, labels, marked = m.marker_distances(12, 5, params)
    x, y = generate_pathfinder(12, 5, params)
    assert np.array_equal(labels, y)  # the same draws as the set: its labels, so its images
    for img, d, ((y0, x0), (y1, x1)) in zip(x, dist, marked):
        assert img[y0, x0] >= 200 and img[y1, x1] >= 200  # a marker's centre is among the brightest pixels
        assert d == np.hypot(y0 - y1, x0 - x1) > 0


def test_best_threshold_finds_the_separating_rule():
    m = _load("pathfinder_shortcuts")
    dist = np.array([1.0, 2.0, 3.0, 10.0, 11.0, 12.0])
    assert m.best_threshold(dist, np.array([0, 0, 0, 1, 1, 1])) == (10.0, True, 1.0)
    assert m.best_threshold(dist, np.array([1, 1, 1, 0, 0, 0])) == (10.0, False, 1.0)
    _, _, acc = m.best_threshold(dist, np.array([1, 0, 1, 0, 1, 0]))
    assert acc < 1.0
