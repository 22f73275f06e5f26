"""``--init_path``: a fresh run that starts from another run's weights (fine-tuning, a
curriculum): the weights it trains from are those, not a new init; a run directory means its
best weights; a missing path or a model that does not fit is refused before any training."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from hippos.cli import main
from hippos.train.rundir import init_weights_file

TINY = ["--data.length=64", "--data.bits=4", "--data.bit_length=4", "--data.n_train=32", "--data.n_val=16",
        "--data.n_test=16", "--batch_size=16", "--model.d_model=8", "--model.n_layers=1",
        "--model.d_state=8", "--tensorboard=false", "--num_threads=1"]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    run = tmp_path_factory.mktemp("init") / "source"
    assert main(["train", *TINY, "--epochs=2", "--lr=0.02", f"--out_dir={run}"]) == 0
    return run


def test_fresh_run_starts_from_the_given_weights(source, tmp_path):
    # AdamW moves every weight by about lr per step whatever the gradient: at lr 1e-9 two steps
    # leave the start within 1e-8, so the run's weights show where it started
    start = load_file(str(source / "best.safetensors"))
    tuned, fresh = tmp_path / "tuned", tmp_path / "fresh"
    common = ["--epochs=1", "--lr=1e-9", "--weight_decay=0"]
    assert main(["train", *TINY, *common, "--seed=1", f"--init_path={source}", f"--out_dir={tuned}"]) == 0
    assert main(["train", *TINY, *common, "--seed=1", f"--out_dir={fresh}"]) == 0
    assert _max_diff(load_file(str(tuned / "best.safetensors")), start) < 1e-7
    assert _max_diff(load_file(str(fresh / "best.safetensors")), start) > 1e-2  # a new init is far from it
    saved = json.loads((tuned / "config.json").read_text())
    assert saved["init_path"] == str(source.absolute())


def test_init_path_names_a_file_or_a_run(source, tmp_path):
    assert init_weights_file(source) == source / "best.safetensors"
    assert init_weights_file(source / "best.safetensors") == source / "best.safetensors"
    with pytest.raises(FileNotFoundError, match="init_path: no weights file"):
        init_weights_file(tmp_path / "nothing.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a hippos run directory"):
        init_weights_file(tmp_path / "empty")


def test_bad_init_path_is_refused_before_training(source, tmp_path, capsys):
    missing = tmp_path / "run-missing"
    assert main(["train", *TINY, "--epochs=1", f"--init_path={tmp_path / 'nope'}", f"--out_dir={missing}"]) != 0
    assert "init_path" in capsys.readouterr().err
    assert not (missing / "metrics.csv").exists()
    wider = tmp_path / "run-wider"  # d_model 16 against the source's 8
    assert main(["train", *TINY, "--model.d_model=16", "--epochs=1", f"--init_path={source}", f"--out_dir={wider}"]) != 0
    assert "size mismatch" in capsys.readouterr().err
    assert not (wider / "metrics.csv").exists()


def test_resume_keeps_its_checkpoint_not_the_init(source, tmp_path):
    # cut after 2 steps and resumed to 3 = 3 steps in one go: the resumed run continued from its
    # checkpoint (loading the init again would put it back 2 steps)
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    opts = [*TINY, "--epochs=2", "--lr=0.02", f"--init_path={source}"]
    assert main(["train", *opts, "--max_steps=2", f"--out_dir={cut}"]) == 0
    assert main(["train", "--resume", str(cut), "--max_steps=3"]) == 0
    assert main(["train", *opts, "--max_steps=3", f"--out_dir={whole}"]) == 0
    last = load_file(str(cut / "checkpoint" / "model.safetensors"))
    assert _max_diff(last, load_file(str(whole / "checkpoint" / "model.safetensors"))) < 1e-6
    assert _max_diff(last, load_file(str(source / "best.safetensors"))) > 1e-3  # 3 steps at lr 0.02 moved it
