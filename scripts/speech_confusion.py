"""Where a speech classifier's test errors go: per-class accuracy and the largest confusions.

    python scripts/speech_confusion.py runs/speech/speaker-s4d [more runs ...] [--data_dir ../shared/data]

For each run (any ``hippos train fsdd`` / ``audio`` run directory): the final weights on the
run's test split at the training rate, the accuracy (equal to the run's own ``test_acc``), the
accuracy of every class and the five largest off-diagonal cells of the confusion matrix.
Prints, writes nothing; under a minute per run on a 2-core CPU.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def confusion(run_dir: str, data_dir: str | None = None, batch: int = 25) -> np.ndarray:
    """``(C, C)`` counts: row = true class, column = predicted, over the run's test split."""
    from hippos.cli.train import load_run

    model, cfg, _task, data, *_ = load_run(run_dir, data_dir=data_dir)
    ds = data.test
    n_classes = cfg.model.n_classes
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    with torch.no_grad():
        for i in range(0, len(ds), batch):
            x, y, *rest = ds[torch.arange(i, min(i + batch, len(ds)))]
            logits = model(x, lengths=rest[0])[0] if rest else model(x)[0]  # (B, C)
            np.add.at(cm, (y.numpy(), logits.argmax(-1).numpy()), 1)
    return cm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data_dir", default=None, help="where the run's data is now (default: as saved)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:
        cm = confusion(run, args.data_dir)
        per_class = cm.diagonal() / np.maximum(cm.sum(1), 1)
        off = cm - np.diag(cm.diagonal())
        top = [np.unravel_index(k, off.shape) for k in np.argsort(-off, axis=None, kind="stable")[:5] if off.flat[k]]
        print(f"{run}: test accuracy {100 * cm.trace() / cm.sum():.1f}% ({cm.trace()} of {cm.sum()})")
        print("  per class: " + "  ".join(f"{c}: {100 * a:.0f}%" for c, a in enumerate(per_class)))
        print("  largest confusions (true -> predicted): " + ", ".join(f"{a} -> {b}: {off[a, b]}" for a, b in top))


if __name__ == "__main__":
    main()
