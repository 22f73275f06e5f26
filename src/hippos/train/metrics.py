"""``metrics.csv`` (and TensorBoard): one row per log interval, validation, test.

Columns ``METRICS_FIELDS``; ``acc`` is empty for a task without an accuracy (regression). On
resume the rows past the checkpoint's step (and the test rows) are dropped first, so a resumed
run's file equals the uninterrupted run's.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

__all__ = ["METRICS_FIELDS", "MetricsLog"]

METRICS_FIELDS = ("step", "epoch", "split", "loss", "acc", "lr", "samples_per_s", "elapsed_s")


def _num(v, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


class MetricsLog:
    """Appends rows to ``path`` (and to TensorBoard in ``tb_dir`` when installed and asked for)."""

    def __init__(self, path: Path, keep_until_step: int | None, tb_dir: Path | None = None):
        self.path = Path(path)
        if keep_until_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until_step and not r["split"].startswith("test")]
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, METRICS_FIELDS)
                w.writeheader()
                w.writerows(rows)
            os.replace(tmp, self.path)
        if not self.path.exists():
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(METRICS_FIELDS)
        self.tb = None
        if tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception:  # tensorboard not installed: CSV and PNG only
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(str(tb_dir), purge_step=keep_until_step or None)

    def write(self, step: int, epoch: float | None, split: str, loss: float, acc: float | None, lr=None, sps=None,
              elapsed=None) -> None:
        row = [step, _num(epoch, ".4f"), split, _num(loss, ".6g"), _num(acc, ".6g"), _num(lr, ".6g"), _num(sps, ".1f"),
               _num(elapsed, ".1f")]
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(row)
        if self.tb is not None:
            self.tb.add_scalar(f"{split}/loss", loss, step)
            if acc is not None:
                self.tb.add_scalar(f"{split}/acc", acc, step)
            if lr is not None:
                self.tb.add_scalar("train/lr", lr, step)
            if sps is not None and split == "train":
                self.tb.add_scalar("train/samples_per_s", sps, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
