"""Mixed precision (``--precision bf16 | 16``) on the CPU: the run trains with finite losses, the
weights (SSM parameters included) stay float32 in memory and in the checkpoint, the forward
really runs in 16 bits, float16's gradient scaler is checkpointed, and a cut run resumes to the
uninterrupted result, bit for bit."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from hippos.cli import main
from hippos.train.precision import autocast

TINY = ["--data.length=64", "--data.bits=4", "--data.bit_length=4", "--data.n_train=48", "--data.n_val=16",
        "--data.n_test=16", "--batch_size=16", "--epochs=2", "--model.d_model=8", "--model.n_layers=2",
        "--model.d_state=8", "--warmup_steps=2", "--log_every=1", "--tensorboard=false", "--lr=1e-2", "--num_threads=1"]


def _losses(run) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_trains_in_16_bits_with_float32_weights(precision, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "delay", *TINY, f"--precision={precision}", "--model.mode=dplr", "--model.init=legs", f"--out_dir={out}"]) == 0
    losses = _losses(out)
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    weights = load_file(out / "checkpoint" / "model.safetensors")
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
    assert any("log_dt" in k for k in weights)  # the SSM parameters among them
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert ("grad_scaler" in state) == (precision == "16")
    if precision == "16":
        assert state["grad_scaler"]["scale"] > 0
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and 0 <= results["test_acc"] <= 1


def test_autocast_runs_the_projections_in_16_bits_and_the_kernel_in_32():
    from hippos.layers.s4 import S4

    layer = S4(8, d_state=8, mode="diag")
    u = torch.randn(2, 32, 8)
    seen = {}
    def hook(module, args, out) -> None:  # returns None: the output is left as it is
        seen["kernel"] = out.dtype

    layer.kernel.register_forward_hook(hook)
    with autocast("bf16", torch.device("cpu")):
        y, _ = layer(u)
    assert y.dtype == torch.bfloat16 and seen["kernel"] == torch.float32
    with autocast("32", torch.device("cpu")):
        assert layer(u)[0].dtype == torch.float32


@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_resume_is_bitwise(precision, tmp_path):
    args = ["train", "delay", *TINY, f"--precision={precision}"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*args, f"--out_dir={full}"]) == 0
    assert main([*args, "--max_steps=4", f"--out_dir={cut}"]) == 0
    assert main(["train", "--resume", str(cut)]) == 0
    a, b = (load_file(d / "checkpoint" / "model.safetensors") for d in (full, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(full) == _losses(cut)


def test_precision_is_checked(capsys):
    assert main(["train", "delay", "--precision=8"]) == 2
    assert "precision" in capsys.readouterr().err


def test_accumulated_micro_batches_give_the_batch_gradient(tmp_path):
    """``--accumulate 3``: the batch of 16 run as 6 + 5 + 5 rows, gradients added up, trains the model
    one batch does (to float32 rounding); with carried state it is refused."""
    one, three = tmp_path / "one", tmp_path / "three"
    args = ["train", "delay", *TINY, "--model.norm=layer"]
    assert main([*args, f"--out_dir={one}"]) == 0
    assert main([*args, "--accumulate=3", f"--out_dir={three}"]) == 0
    a, b = (load_file(d / "checkpoint" / "model.safetensors") for d in (one, three))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6)
    la, lb = _losses(one), _losses(three)
    assert len(la) == len(lb) and max(abs(x - y) for x, y in zip(la, lb)) < 1e-4


def test_accumulate_with_carried_state_is_refused(tmp_path, capsys, data_dir):
    assert main(["train", "charlm", "--data.carry_state=true", "--accumulate=2", f"--out_dir={tmp_path / 'r'}",
                 f"--data_dir={data_dir}"]) == 2
    assert "accumulate > 1 does not go with data.carry_state=true" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything was written
