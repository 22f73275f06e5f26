"""Generated Pathfinder (LRA): format, determinism, labels checked on re-rendered snakes, the cache."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

import hippos.data.pathfinder as pf
from hippos.data.pathfinder import (
    PRESETS,
    PathfinderDataConfig,
    PathfinderParams,
    generate_image,
    generate_pathfinder,
    load_pathfinder,
    preset,
    set_image,
    total_num_paddles,
)

P32 = PRESETS[32]
N = 200  # images in the shared set (about 5 s at 32 px)


def image_rng(seed: int, i: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, i])))


@pytest.fixture(scope="module")
def set200():
    return generate_pathfinder(N, seed=0)


@pytest.fixture(scope="module")
def debug_images():
    """(label, image, info) of images 0..49 of the set with seed 7, as generate_pathfinder draws them."""
    out = []
    for i in range(50):
        rng = image_rng(7, i)
        label = int(rng.integers(2))
        img, info = generate_image(rng, P32, label)
        out.append((label, img, info))
    return out


# ---------------------------------------------------------------- geometry, re-derived here

def translate(q, theta, d):
    return math.ceil(q[0] + d * math.sin(theta)), math.ceil(q[1] + d * math.cos(theta))


def snake_path(paddles, L):
    """The polyline of a snake through its dashes: the first paddle runs outward from the origin
    tip, the others are drawn back from their head (see generate_image)."""
    pts = []
    for k, (y, x, theta) in enumerate(paddles):
        a, b = (y, x), translate((y, x), theta, L)
        pts += [a, b] if k == 0 else [b, a]
    return pts


K = 4  # re-rendering scale: snakes kept >= ~1 px apart stay apart as 1-px lines


def render(paths, S=32):
    """1-px polylines at scale K, each gap between dashes bridged: bool (K·S, K·S)."""
    im = Image.new("L", (K * S, K * S), 0)
    draw = ImageDraw.Draw(im)
    for pts in paths:
        draw.line([(x * K + K // 2, y * K + K // 2) for y, x in pts], fill=255, width=1)
    return np.asarray(im) > 0


def component(mask, q):
    comp, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    return comp, comp[q[0] * K + K // 2, q[1] * K + K // 2]


# ---------------------------------------------------------------- parameters

def test_presets_follow_the_lra_table():
    assert preset() == P32 == PathfinderParams()
    assert (P32.window_size, P32.padding, P32.antialias_scale, P32.paddle_margin_list, P32.seed_distance) == (
        32, 1, 2, (1,), 7)
    assert (P32.marker_radius, P32.paddle_length, P32.paddle_thickness, P32.continuity) == (1.5, 2, 0.5, 1.0)
    assert (P32.distractor_length, P32.num_distractor_snakes, P32.snake_contrast_list,
            P32.paddle_contrast_list) == (4, 5, (2.0,), (0.75,))
    p64, p128 = PRESETS[64], PRESETS[128]
    assert (p64.seed_distance, p64.marker_radius, p64.paddle_length, p64.paddle_thickness, p64.continuity,
            p64.num_distractor_snakes, p64.snake_contrast_list) == (12, 2.5, 5, 1.0, 1.8, 5, (0.8,))
    assert (p128.paddle_margin_list, p128.seed_distance, p128.marker_radius, p128.paddle_thickness,
            p128.num_distractor_snakes, p128.snake_contrast_list) == ((2, 3), 20, 3.0, 1.5, 8, (0.9,))
    for res in PRESETS:
        assert preset(res) == PRESETS[res] and PRESETS[res].contour_length == 14
    easy, mid = preset(32, 6), preset(32, 9)
    assert (easy.contour_length, easy.distractor_length, easy.num_distractor_snakes) == (6, 2, 10)
    assert (mid.contour_length, mid.distractor_length, mid.num_distractor_snakes) == (9, 3, 6)
    assert [total_num_paddles(m) for m in (1, 2, 3, 4)] == [756, 374, 224, 150]
    assert json.loads(json.dumps(P32.to_dict()))["paddle_margin_list"] == [1]


@pytest.mark.parametrize(
    "call,fragment",
    [
        (lambda: PathfinderParams(paddle_thickness=0.3), "integer"),
        (lambda: PathfinderParams(padding=-1), "padding"),
        (lambda: PathfinderParams(paddle_margin_list=[]), "paddle_margin_list"),
        (lambda: PathfinderParams(paddle_margin_list=[1.5]), "paddle_margin_list"),
        (lambda: PathfinderParams(seed_distance=15), "seed_distance"),
        (lambda: PathfinderParams(continuity=float("nan")), "continuity"),
        (lambda: preset(48), "resolution"),
        (lambda: preset(32, 2), "contour_length"),
        (lambda: generate_image(image_rng(0, 0), P32, 2), "label"),
        (lambda: generate_pathfinder(0), "n must"),
        (lambda: generate_pathfinder(4, workers=0), "workers"),
        (lambda: load_pathfinder(PathfinderDataConfig(n_train=-1)), "n_train"),
    ],
)
def test_bad_arguments_are_named(call, fragment):
    with pytest.raises(ValueError, match=fragment):
        call()


# ---------------------------------------------------------------- the set

def test_format_full_range_and_labels(set200):
    x, y = set200
    assert x.dtype == np.uint8 and x.shape == (N, 32, 32)
    assert y.dtype == np.uint8 and y.shape == (N,) and set(np.unique(y)) == {0, 1}
    assert (x.reshape(N, -1).min(1) == 0).all() and (x.reshape(N, -1).max(1) == 255).all()


def test_labels_are_balanced(set200):
    frac = set200[1].mean()
    assert abs(frac - 0.5) <= 4 * math.sqrt(0.25 / N), frac


def test_deterministic_and_prefix_stable(set200):
    x, y = set200
    x20, y20 = generate_pathfinder(20, seed=0)
    np.testing.assert_array_equal(x20, x[:20])
    np.testing.assert_array_equal(y20, y[:20])
    xs, ys = generate_pathfinder(6, seed=0, start=150, progress=True)  # any slice of the range
    np.testing.assert_array_equal(xs, x[150:156])
    np.testing.assert_array_equal(ys, y[150:156])
    assert not np.array_equal(generate_pathfinder(3, seed=1)[0], x[:3])


def test_workers_give_the_same_set(set200):
    x, y = generate_pathfinder(6, seed=0, workers=2)  # processes started with spawn
    np.testing.assert_array_equal(x, set200[0][:6])
    np.testing.assert_array_equal(y, set200[1][:6])


def test_unguarded_script_with_workers_gets_a_clear_error(tmp_path):
    # spawn imports the calling script again in each worker: without the main guard the workers
    # die trying to start processes of their own, and the error says what to do
    script = tmp_path / "unguarded.py"
    script.write_text("from hippos.data.pathfinder import generate_pathfinder\n"
                      "generate_pathfinder(2, workers=2)\n")
    out = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: a Pathfinder worker process died (workers=2)")
    assert 'if __name__ == "__main__":' in last


def test_images_are_cluttered(set200):
    # The targets alone light ~10% of the pixels; distractor snakes and single paddles fill the
    # image until < 1% is free: measured 0.67 .. 0.80 lit (mean 0.73) on 200 images.
    lit = (set200[0] > 0).reshape(N, -1).mean(1)
    assert lit.min() > 0.55 and lit.mean() > 0.65, (lit.min(), lit.mean())


# ---------------------------------------------------------------- labels and markers on the geometry

def test_debug_info_describes_the_set_images():
    x, y = generate_pathfinder(4, seed=7)
    for i in range(4):
        rng = image_rng(7, i)
        label = int(rng.integers(2))
        img, info = generate_image(rng, P32, label)
        assert label == y[i] == info["label"]
        np.testing.assert_array_equal(img, x[i])
        img2, label2, info2 = set_image(7, i, P32)  # the public form of the same draws
        assert label2 == label and info2["marked"] == info["marked"]
        np.testing.assert_array_equal(img2, x[i])


def test_markers_sit_on_the_snake_ends(debug_images):
    L = P32.paddle_length
    for label, img, info in debug_images:
        paths = [snake_path(s, L) for s in info["target_paddles"]]
        assert [len(s) for s in info["target_paddles"]] == [P32.contour_length] * 2
        o = info["o"]
        assert tuple(info["marked"][0]) == paths[o][0] == tuple(info["origin_tips"][o])
        end = paths[o if label == 1 else 1 - o][-1]
        assert math.dist(info["marked"][1], end) == 0  # the terminal tip: the last paddle's head
        for q in info["marked"]:  # a marker is the brightest thing in the image
            assert img[q] == 255
        for s in info["target_paddles"]:  # the target dashes are drawn, bright
            assert min(img[y, x] for y, x, _ in s) > 100


def test_label_by_flood_fill_on_the_rerendered_targets(debug_images):
    L = P32.paddle_length
    touching = 0
    for label, _, info in debug_images:
        paths = [snake_path(s, L) for s in info["target_paddles"]]
        m0, m1 = info["marked"]
        on = []  # per snake: (component of marker 0, component of marker 1) in that snake alone
        for pts in paths:
            comp, c0 = component(render([pts]), m0)
            on.append((c0, comp[m1[0] * K + K // 2, m1[1] * K + K // 2]))
        joined = [c0 > 0 and c0 == c1 for c0, c1 in on]
        if label == 1:
            assert joined == [info["o"] == 0, info["o"] == 1], on
        else:  # each marker on its own snake, none joining both
            assert not any(joined), on
            assert sum(c0 > 0 for c0, _ in on) == 1 and sum(c1 > 0 for _, c1 in on) == 1, on
            assert [c0 > 0 for c0, _ in on] != [c1 > 0 for _, c1 in on], on
        both = render(paths)
        comp, c0 = component(both, m0)
        touching += comp.max() == 1
        if label == 1:
            assert c0 > 0 and comp[m1[0] * K + K // 2, m1[1] * K + K // 2] == c0
    # The fit rule max(mask + paddle_mask) < 1.8 leaks at m = 1 (a line pixel 1.0 plus a
    # Lanczos-blurred mask edge 0.6..0.78): the two targets' polylines meet in ~13% of images
    # (measured on 300), through a 2-px gap between dashes or dashes 0.7 px apart.
    assert touching <= 0.3 * len(debug_images), touching


def test_origin_tips_are_seed_distance_apart(debug_images):
    sd = P32.seed_distance
    for _, _, info in debug_images:
        a, b = info["origin_tips"]
        assert abs(math.dist(a, b) - sd) <= math.sqrt(0.5), (a, b)
        assert all(2 * sd <= v < P32.window_size - 2 * sd for v in a)  # A's tail: inside the 2·sd border


def test_snakes_turn_less_than_the_continuity_allows(debug_images):
    limit = math.pi / (2 * P32.continuity)
    for _, _, info in debug_images:
        for s in info["target_paddles"]:
            heading = [s[0][2]] + [th + math.pi for _, _, th in s[1:]]  # the later ones point back
            for a, b in itertools.pairwise(heading):
                assert abs((b - a + math.pi) % (2 * math.pi) - math.pi) <= limit + 1e-9


@pytest.mark.parametrize("resolution", [64, 128])
def test_larger_presets_draw(resolution):
    p = preset(resolution, 6)  # easy: fast enough for a test
    img, info = generate_image(image_rng(0, 1), p, 0)
    assert img.shape == (resolution, resolution) and img.dtype == np.uint8
    assert info["margin"] in p.paddle_margin_list and all(img[q] > 200 for q in info["marked"])


# ---------------------------------------------------------------- the cache

def test_load_pathfinder_caches_and_splits(tmp_path, monkeypatch):
    cfg = PathfinderDataConfig(n_train=6, n_val=2, n_test=3, seed=2, cache_dir=str(tmp_path))
    first = load_pathfinder(cfg)
    x, y = generate_pathfinder(11, seed=2)
    for name, (a, b) in (("train", (0, 6)), ("val", (6, 8)), ("test", (8, 11))):
        xi, yi = first[name]
        assert xi.dtype == np.uint8 and yi.dtype == np.int64
        np.testing.assert_array_equal(xi, x[a:b])
        np.testing.assert_array_equal(yi, y[a:b])
    (folder,) = tmp_path.iterdir()
    saved = json.loads((folder / "params.json").read_text())["params"]
    assert saved["version"] == 1 and saved["n_val"] == 2 and "workers" not in saved

    def boom(*args, **kwargs):
        raise AssertionError("regenerated a cached set")

    monkeypatch.setattr(pf, "generate_pathfinder", boom)
    for again in (cfg, dataclasses.replace(cfg, workers=2)):  # workers do not change the set
        second = load_pathfinder(again)
        for name in first:
            np.testing.assert_array_equal(second[name][0], first[name][0])
            np.testing.assert_array_equal(second[name][1], first[name][1])
    with pytest.raises(AssertionError, match="regenerated"):
        load_pathfinder(dataclasses.replace(cfg, seed=3))
