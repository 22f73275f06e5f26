"""Draw the first images of each label of a generated Pathfinder set: the figure docs/lra.md
shows (docs/img/pathfinder32.png, and the easy set of the curriculum, pathfinder32_easy.png).

    python scripts/pathfinder_examples.py --out docs/img/pathfinder32.png
    python scripts/pathfinder_examples.py --contour-length 6 --out docs/img/pathfinder32_easy.png

Image i of set ``--seed`` is the same image ``hippos train pathfinder`` trains on (its first
``n_train`` images are the training split), so these are training images of the default run
(or of ``--data.contour_length=6``).
"""

from __future__ import annotations

import argparse

import numpy as np

DIFFICULTY = {6: "easy", 9: "intermediate", 14: "LRA hard"}


def first_of_each_label(seed: int, params, per_label: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels and indices of the first ``per_label`` images of label 1, then of label 0."""
    from hippos.data.pathfinder import generate_pathfinder

    xs, ys, chunk = [], [], max(4 * per_label, 16)
    while True:  # more images until both labels have per_label (each image made once)
        x, y = generate_pathfinder(chunk, seed, params, start=sum(len(c) for c in ys))
        xs.append(x)
        ys.append(y)
        y = np.concatenate(ys)
        picked = [np.flatnonzero(y == label)[:per_label] for label in (1, 0)]
        if all(len(p) == per_label for p in picked):
            idx = np.concatenate(picked)
            return np.concatenate(xs)[idx], y[idx], idx


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=32, choices=[32, 64, 128])
    p.add_argument("--contour-length", type=int, default=14, help="paddles per target snake: 6 easy, 9, 14 hard (LRA)")
    p.add_argument("--seed", type=int, default=0, help="the set (the task's data.seed)")
    p.add_argument("--per-label", type=int, default=8)
    p.add_argument("--out", required=True, help="the figure (.png)")
    args = p.parse_args(argv)
    if args.per_label < 1:
        p.error("--per-label must be >= 1")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hippos.data.pathfinder import preset

    params = preset(args.resolution, args.contour_length)
    x, y, idx = first_of_each_label(args.seed, params, args.per_label)
    k = args.per_label
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k, 4.0), squeeze=False)
    for j, ax in enumerate(axes.flat):
        ax.imshow(x[j], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"label {int(y[j])} (#{int(idx[j])})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    what = DIFFICULTY.get(args.contour_length, "")
    fig.suptitle(f"Generated Pathfinder {args.resolution} px ({what + ', ' if what else ''}contour length "
                 f"{args.contour_length}), seed {args.seed}: top positive (markers on one snake), bottom negative",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}: images {', '.join(str(int(i)) for i in idx)}")


if __name__ == "__main__":
    main()
