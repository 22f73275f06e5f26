"""``PixelSequences(augment="dihedral")``: every image read is one of the 8 symmetries of its
stored square (checked against numpy's rot90 / flips, an independent construction), all 8
occur, labels and scaling are untouched, and the Pathfinder task augments its training split
only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hippos.cli import main
from hippos.data.tokens import PixelSequences


def _symmetries(img: np.ndarray) -> list[np.ndarray]:
    """The dihedral group of the square on one image: 4 quarter turns, each with and without a flip."""
    turns = [np.rot90(img, k) for k in range(4)]
    return turns + [np.fliplr(t) for t in turns]


def test_each_read_is_one_of_the_eight_symmetries_and_all_occur():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 5, 5), dtype=np.uint8)  # asymmetric: the 8 images differ
    y = np.arange(6) % 2
    ds = PixelSequences(images, y, augment="dihedral")
    plain = PixelSequences(images, y)
    torch.manual_seed(0)
    seen = {i: set() for i in range(6)}
    for _ in range(60):
        x, labels = ds[torch.arange(6)]
        assert x.shape == (6, 25, 1) and x.dtype == torch.float32
        assert torch.equal(labels, torch.as_tensor(y))
        for i in range(6):
            img = ((x[i, :, 0] + 1) * 127.5).round().to(torch.uint8).numpy().reshape(5, 5)
            matches = [k for k, s in enumerate(_symmetries(images[i])) if np.array_equal(img, s)]
            assert len(matches) == 1, "not a symmetry of the stored image"
            seen[i].add(matches[0])
    assert all(len(s) == 8 for s in seen.values())  # 60 draws: each of the 8 shows up
    x, _ = plain[torch.arange(6)]  # no augmentation: the stored pixels, row-major
    torch.testing.assert_close(x[..., 0], torch.as_tensor(images.reshape(6, 25), dtype=torch.float32) / 127.5 - 1)
    with pytest.raises(ValueError, match="augment"):
        PixelSequences(images, y, augment="rot90")


def test_augmentation_follows_the_global_rng():
    images = np.random.default_rng(1).integers(0, 256, size=(4, 6, 6), dtype=np.uint8)
    ds = PixelSequences(images, np.zeros(4, dtype=np.int64), augment="dihedral")
    torch.manual_seed(3)
    a = ds[torch.arange(4)][0]
    torch.manual_seed(3)
    assert torch.equal(ds[torch.arange(4)][0], a)  # a restored RNG (a resumed run) reads the same batch


def test_pathfinder_task_augments_training_images_only(tmp_path, monkeypatch):
    from hippos.train import default_config, get_task
    from hippos.train.config import apply_overrides

    monkeypatch.setenv("HIPPOS_CACHE", str(tmp_path / "cache"))
    cfg = apply_overrides(default_config("pathfinder"), [("data.n_train", "4"), ("data.n_val", "2"),
                                                          ("data.n_test", "2"), ("data.augment", "dihedral")])
    data = get_task("pathfinder").load_data(cfg)
    assert (data.train.augment, data.val.augment, data.test.augment) == ("dihedral", "none", "none")
    out = tmp_path / "run"
    assert main(["train", "pathfinder", "--data.n_train=4", "--data.n_val=2", "--data.n_test=2", "--data.augment=dihedral",
                 "--max_steps=1", "--batch_size=2", "--model.d_model=8", "--model.n_layers=1", "--num_threads=1",
                 "--tensorboard=false", f"--out_dir={out}"]) == 0
    assert json.loads((out / "config.json").read_text())["data"]["augment"] == "dihedral"
