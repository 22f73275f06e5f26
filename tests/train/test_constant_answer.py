"""The floor a classifier must beat: the accuracy of always answering the commonest label, read
from a dataset's labels and printed when a classification run starts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hippos.cli import main
from hippos.data.pathfinder import PathfinderDataConfig, load_pathfinder
from hippos.train.objectives import constant_answer_acc


class _Labelled:
    def __init__(self, labels, name="y", n=None):
        setattr(self, name, labels)
        self.n = len(labels) if n is None else n

    def __len__(self):
        return self.n


@pytest.mark.parametrize(("labels", "want"), [
    (torch.tensor([0, 1, 1, 0]), 0.5),
    (torch.tensor([9, 0, 9, 9]), 0.75),
    (np.array([-3, -3, 2], dtype=np.int64), 2 / 3),  # any integers, not only 0..C-1
    (np.array([7], dtype=np.uint8), 1.0),
])
def test_share_of_the_commonest_label(labels, want):
    assert constant_answer_acc(_Labelled(labels)) == pytest.approx(want)
    assert constant_answer_acc(_Labelled(labels, name="labels")) == pytest.approx(want)  # MNIST's attribute


@pytest.mark.parametrize("ds", [
    _Labelled(torch.tensor([0.5, 1.5])),  # regression targets
    _Labelled(torch.tensor([[0, 1], [1, 0]])),  # per-token labels
    _Labelled(torch.tensor([0, 1, 1]), n=5),  # labels that are not one per example
    _Labelled(torch.tensor([], dtype=torch.long)),
    object(),  # keeps its labels some other way
])
def test_no_floor_where_the_labels_are_not_one_integer_per_example(ds):
    assert constant_answer_acc(ds) is None


def test_the_run_prints_the_floor_of_its_own_splits(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HIPPOS_CACHE", str(tmp_path / "cache"))
    sizes = {"n_train": 12, "n_val": 7, "n_test": 9}
    assert main(["train", "pathfinder", *[f"--data.{k}={v}" for k, v in sizes.items()], "--max_steps=1",
                 "--batch_size=4", "--model.d_model=8", "--model.n_layers=1", "--num_threads=1",
                 "--tensorboard=false", f"--out_dir={tmp_path / 'run'}"]) == 0
    sets = load_pathfinder(PathfinderDataConfig(**sizes, cache_dir=str(tmp_path / "cache")))
    floor = {k: np.bincount(y).max() / len(y) for k, (_, y) in sets.items()}  # counted here, independently
    assert (f"a constant answer (the commonest label) scores {100 * floor['val']:.2f}% on val, "
            f"{100 * floor['test']:.2f}% on test") in capsys.readouterr().out
    for split in ("val", "test"):  # and hippos eval, beside the run's accuracy
        assert main(["eval", str(tmp_path / "run"), "--split", split]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert f"a constant answer (the commonest label) scores {100 * floor[split]:.2f}% on {split}" in lines
        assert json.loads(lines[-1])["constant_answer_acc"] == pytest.approx(floor[split])
