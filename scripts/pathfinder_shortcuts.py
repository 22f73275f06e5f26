"""How far a Pathfinder model gets without following any path: a classifier on the distance
between the two markers alone (one threshold, fitted on the first images, scored on the rest).

    python scripts/pathfinder_shortcuts.py [--contour-lengths 6,9,14] [--n 1500] [--seed 0]

Image i is image i of the set ``--seed`` (the training split of ``hippos train pathfinder``),
and the markers' positions come from the generator itself (``generate_image``'s ``marked``), so
this is the best such rule can do on that set, an upper line for "learned nothing of the path".
"""

from __future__ import annotations

import argparse

import numpy as np


def marker_distances(n: int, seed: int, params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(f64(n), u8(n), i64(n 2 2))``: distance in pixels between the two markers of images
    0..n-1, their labels, the markers' (y, x)."""
    from hippos.data.pathfinder import set_image

    dist, labels, marked = np.empty(n), np.empty(n, dtype=np.uint8), np.empty((n, 2, 2), dtype=np.int64)
    for i in range(n):
        _, labels[i], info = set_image(seed, i, params)
        marked[i] = info["marked"]
        (y0, x0), (y1, x1) = marked[i]
        dist[i] = np.hypot(y0 - y1, x0 - x1)
    return dist, labels, marked


def best_threshold(dist: np.ndarray, labels: np.ndarray) -> tuple[float, bool, float]:
    """The rule ``label = 1 iff dist >= t`` (or ``< t``) most accurate on these: ``(t, at_least, acc)``."""
    best = (0.0, True, -1.0)
    for t in np.unique(dist):
        for at_least in (True, False):
            acc = float(np.mean(((dist >= t) if at_least else (dist < t)) == labels))
            if acc > best[2]:
                best = (float(t), at_least, acc)
    return best


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contour-lengths", default="6,9,14", help="comma-separated: 6 easy, 9, 14 hard (LRA)")
    p.add_argument("--resolution", type=int, default=32, choices=[32, 64, 128])
    p.add_argument("--n", type=int, default=1500, help="images per set; the first two thirds fit the threshold")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.n < 30:
        p.error("--n must be >= 30")
    from hippos.data.pathfinder import preset

    fit = 2 * args.n // 3
    print(f"Pathfinder {args.resolution} px, set seed {args.seed}: marker distance alone, threshold fitted on images "
          f"0-{fit - 1}, scored on {fit}-{args.n - 1}")
    print("| contour length | mean distance, label 1 / 0 (px) | rule | accuracy (fit) | accuracy (held out) |")
    print("|---|---|---|---|---|")
    for c in (int(s) for s in args.contour_lengths.split(",")):
        dist, labels, _ = marker_distances(args.n, args.seed, preset(args.resolution, c))
        t, at_least, acc_fit = best_threshold(dist[:fit], labels[:fit])
        held = (dist[fit:] >= t) if at_least else (dist[fit:] < t)
        acc = float(np.mean(held == labels[fit:]))
        print(f"| {c} | {dist[labels == 1].mean():.1f} / {dist[labels == 0].mean():.1f} | 1 iff distance "
              f"{'>=' if at_least else '<'} {t:.1f} | {100 * acc_fit:.1f} | {100 * acc:.1f} |")


if __name__ == "__main__":
    main()
