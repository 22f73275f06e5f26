"""The LRA tasks as a user runs them: each trains two steps from the CLI on a tiny preset, ``hippos lra``
writes its table and skips finished arms on a rerun; the byte-level IMDB encoding round-trips, the
CIFAR subset reads as SOURCE.md says, token batches pad and cut as documented, and a non-finite
gradient skips its update instead of poisoning the weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hippos.cli import main
from hippos.data.tokens import TokenSequences
from hippos.train import loop

TINY = ["--max_steps=2", "--batch_size=4", "--model.d_model=8", "--model.n_layers=1", "--model.n_heads=2",
        "--num_threads=1", "--tensorboard=false"]
TINY_DATA = {
    "listops": ["--data.n_train=16", "--data.n_val=4", "--data.n_test=4", "--data.min_length=20", "--data.max_length=80"],
    "lra-text": ["--data.max_length=256", "--data.n_train=16", "--data.val_size=4", "--data.n_test=4"],
    "pathfinder": ["--data.n_train=12", "--data.n_val=4", "--data.n_test=4"],
    "lra-image": ["--data.n_train=16", "--data.val_size=4", "--data.n_test=4"],
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("hippos-cache")


@pytest.fixture(autouse=True)
def _env(cache, data_dir, monkeypatch):
    """Generated sets in a cache of this module's own; the real IMDB and CIFAR files from the shared data."""
    monkeypatch.setenv("HIPPOS_CACHE", str(cache))
    monkeypatch.setenv("HIPPOS_DATA", str(data_dir))


@pytest.mark.parametrize("task", list(TINY_DATA))
@pytest.mark.parametrize("model", ["s4", "transformer"])
def test_task_trains_two_steps_from_the_cli(task, model, tmp_path, capsys):
    extra = ["--model.mixer=attention", "--model.mlp_expand=2", "--model.norm=layer", "--model.dt_lr=none"] \
        if model == "transformer" else []
    out = tmp_path / "run"
    assert main(["train", task, *TINY, *TINY_DATA[task], *extra, f"--out_dir={out}"]) == 0
    assert "a constant answer (the commonest label) scores " in capsys.readouterr().out  # the floor to beat
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 2
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["mixer"] == ("attention" if model == "transformer" else "ssm")
    assert cfg["model"]["vocab_size"] == {"listops": 18, "lra-text": 257}.get(task, 0)
    assert cfg["model"]["bidirectional"] and cfg["model"]["pool"] == "mean"


def test_lra_command_table_and_rerun(tmp_path, capsys):
    out = tmp_path / "lra"
    args = ["lra", "--smoke", "--tasks", "listops", "--models", "s4,transformer", "--out-dir", str(out), "--no-progress",
            "--num-threads", "1"]
    assert main(args) == 0
    summary = json.loads((out / "lra.json").read_text())
    assert [(r["task"], r["model"], r["complete"]) for r in summary["runs"]] == [("listops", "s4", True),
                                                                                  ("listops", "transformer", True)]
    md = (out / "lra.md").read_text()
    assert "| ListOps | S4 |" in md and "| 59.6 |" in md and "| 36.4 |" in md and "| cpu |" in md
    assert (out / "listops-s4" / "curves.png").is_file() and (out / "listops.png").is_file()  # the per-task figure
    capsys.readouterr()
    assert main(args) == 0  # the rerun trains nothing
    assert capsys.readouterr().out.count("already trained") == 2


def test_token_batches_pad_and_cut():
    tokens = np.array([3, 4, 5, 6, 7, 8, 9], dtype=np.uint8)
    ds = TokenSequences(tokens, [0, 2, 7], [1, 0], vocab_size=10, max_length=4)
    x, y, lengths = ds[torch.tensor([1, 0])]
    assert x.tolist() == [[5, 6, 7, 8], [3, 4, 0, 0]] and lengths.tolist() == [4, 2] and y.tolist() == [0, 1]
    assert ds[0][0].tolist() == [3, 4]
    assert ds.lengths.tolist() == [2, 4]  # what the length-bucket sampler reads
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 5\)"):
        TokenSequences(tokens, [0, 2, 7], [1, 0], vocab_size=5)
    with pytest.raises(ValueError, match="is empty"):
        TokenSequences(tokens, [0, 0, 7], [1, 0], vocab_size=10)


def test_imdb_bytes_round_trip():
    from hippos.data.imdb import VOCAB_SIZE, decode, encode

    text = "Déjà vu <br /><br />a 10/10 film — ☺ naïve"
    ids = encode(text)
    assert len(ids) == len(text.encode("utf-8")) and ids.min() >= 1 and ids.max() < VOCAB_SIZE
    assert decode(ids) == text
    assert decode(np.concatenate([ids, np.zeros(5, dtype=ids.dtype)])) == text  # padding dropped


def test_imdb_splits_from_the_archive(cache):
    from hippos.data.imdb import ImdbDataConfig, decode, load_imdb

    sets = load_imdb(ImdbDataConfig(max_length=64, n_test=100, cache_dir=str(cache)))
    assert (len(sets["train"]), len(sets["val"]), len(sets["test"])) == (22_500, 2_500, 100)
    for ds in sets.values():
        assert ds.y.float().mean() == 0.5  # balanced by construction
        assert ds.lengths.max() == 64
    # SOURCE.md: train/pos/0_9.txt begins "Bromwell High is a cartoon comedy"; val and train are disjoint
    heads = {decode(sets[s][i][0])[:33] for s in ("train", "val") for i in np.flatnonzero(sets[s].y.numpy() == 1)[:20000]}
    assert "Bromwell High is a cartoon comedy" in heads
    full = load_imdb(ImdbDataConfig(max_length=100_000, cache_dir=str(cache)))
    assert max(full["train"].lengths.max(), full["val"].lengths.max()) == 13_704


def test_cifar_subset_reads_as_documented():
    from hippos.data.cifar import (
        CifarDataConfig,
        load_cifar_gray,
        read_cifar_subset,
        to_gray,
    )

    sets = read_cifar_subset()
    (xtr, ytr), (xte, yte) = sets["train"], sets["test"]
    assert xtr.shape == (4000, 32, 32, 3) and xte.shape == (1000, 32, 32, 3)
    assert ytr[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3] and yte[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    px = xtr[5, 7, 11].astype(float)
    assert to_gray(xtr[5:6])[0, 7, 11] == round(0.2989 * px[0] + 0.5870 * px[1] + 0.1140 * px[2])
    ds = load_cifar_gray(CifarDataConfig(val_size=400))
    x, _ = ds["train"][torch.arange(3)]
    assert x.shape == (3, 1024, 1) and x.min() >= -1 and x.max() <= 1 and len(ds["val"]) == 400


def test_non_finite_gradient_skips_the_update(tmp_path, monkeypatch, capsys):
    """A NaN gradient (the reference's ListOps failure mode) is skipped, not applied: the run goes
    on with finite weights; ten in a row stop it as diverged."""
    from hippos.train.objectives import Objective

    real = Objective.loss_and_metrics
    calls = {"n": 0}

    def poisoned(self, *a, **k):
        r = real(self, *a, **k)
        calls["n"] += 1
        if calls["n"] in poison:
            r.loss.register_hook(lambda g: g * float("nan"))
        return r

    monkeypatch.setattr(Objective, "loss_and_metrics", poisoned)
    poison = {2}
    out = tmp_path / "run"
    args = ["train", "listops", *TINY, "--max_steps=4", *TINY_DATA["listops"], f"--out_dir={out}"]
    assert main(args) == 0
    assert "step 2: non-finite gradient norm (nan), update skipped (1 in a row)" in capsys.readouterr().out
    from safetensors.torch import load_file

    assert all(torch.isfinite(v).all() for v in load_file(out / "checkpoint" / "model.safetensors").values())
    poison = set(range(1, 100))
    monkeypatch.setattr(loop, "MAX_BAD_GRADS", 3)
    assert main([*args[:-1], f"--out_dir={tmp_path / 'run2'}"]) == 2
    assert "training diverged: 3 non-finite gradients in a row" in capsys.readouterr().err


def test_transformer_arm_budget():
    """The table's Transformer: its epochs (a time budget), no attention-probability dropout, the
    S4 arm's data and width; ``--epochs`` still sets every arm."""
    from hippos.experiments.lra import TASKS, TRANSFORMER_EPOCHS, arm_config

    for task in TASKS:
        s4, tr = arm_config(task, "s4", "/tmp/x"), arm_config(task, "transformer", "/tmp/x")
        assert tr.epochs == TRANSFORMER_EPOCHS[task] <= s4.epochs
        assert tr.model.mixer == "attention" and tr.model.attn_dropout == 0.0 and tr.model.dropout == s4.model.dropout
        assert (tr.data, tr.batch_size, tr.model.d_model, tr.model.n_layers) == (s4.data, s4.batch_size, s4.model.d_model,
                                                                                  s4.model.n_layers)
        assert arm_config(task, "transformer", "/tmp/x", epochs=7).epochs == 7
        assert arm_config(task, "s4d", "/tmp/x").epochs == s4.epochs


def test_lra_variant_keys_reach_every_arm_and_the_table(tmp_path, capsys):
    """``hippos lra --model.KEY=V --lr=V``: a variant of the whole table in its own out-dir (what the
    Pathfinder sweeps ran); a key outside data.* / model.* / the optimizer keys is refused."""
    from hippos.experiments.lra import arm_config

    out = tmp_path / "lra"
    args = ["lra", "--smoke", "--tasks", "pathfinder", "--models", "s4,transformer", "--out-dir", str(out),
            "--no-progress", "--num-threads", "1", "--model.b_clip=2", "--lr=0.02", "--warmup_fraction=0.1"]
    assert main(args) == 0
    for model in ("s4", "transformer"):
        cfg = json.loads((out / f"pathfinder-{model}" / "config.json").read_text())
        assert (cfg["model"]["b_clip"], cfg["lr"], cfg["warmup_fraction"]) == (2.0, 0.02, 0.1)
    assert "`--model.b_clip=2` `--lr=0.02` `--warmup_fraction=0.1`" in (out / "lra.md").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["lra", "--smoke", "--out-dir", str(out), "--seed_x=1"])
    assert stop.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not 'seed'"):
        arm_config("pathfinder", "s4", out, overrides=[("seed", "3")])
