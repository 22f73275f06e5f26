"""The speech tasks (``audio``, ``fsdd``): masked pooling over padded clips, the sampling-rate
convention and its path to every SSM kernel, and the CLI (train two steps on generated tones,
``hippos eval RUN --rate 0.5``), all on tiny models and generated WAVs."""

from __future__ import annotations

import copy
import hashlib
import json
import math

import numpy as np
import pytest
import torch

from hippos.cli import main
from hippos.data.audio import Clips, clips_dataset, write_wav
from hippos.kernels.base import SSMKernel
from hippos.layers.s4 import S4
from hippos.models.cnn import AudioModelConfig, build_audio_model
from hippos.train.tasks.audio import AtRate

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread

SMALL = ["--model.d_model=8", "--model.n_layers=1", "--model.d_state=8", "--batch_size=4", "--tensorboard=false",
         "--no-progress", "--num_threads=1"]
CNN = ["--model.kind=cnn", "--model.cnn_channels=[4,8]", "--model.cnn_kernel=7"]


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _tiny(kind="ssm", mode="diag", bidirectional=True, n_layers=2) -> AudioModelConfig:
    return AudioModelConfig(d_input=1, n_classes=3, d_model=8, n_layers=n_layers, d_state=8, mode=mode,
                            bidirectional=bidirectional, kind=kind, cnn_channels=[4, 8, 8], cnn_kernel=7, l_max=64)


def _double_dt(model: torch.nn.Module) -> int:
    """Add log 2 to every SSM kernel's log Δ (Δ doubled) in place; return how many kernels."""
    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SSMKernel):
                m.log_dt.add_(math.log(2.0))
                n += 1
    return n


@pytest.mark.parametrize("kind,mode", [("ssm", "diag"), ("ssm", "dplr"), ("cnn", None)])
def test_padded_and_unpadded_clips_give_the_same_logits(kind, mode):
    model = build_audio_model(_tiny(kind, mode or "diag"))
    if kind == "cnn":  # BatchNorm running statistics that are not the identity
        model.train()
        model(torch.randn(4, 90, 1), lengths=torch.tensor([90, 70, 50, 33]))
    model.eval()
    a, b = torch.randn(1, 50, 1), torch.randn(1, 81, 1)
    batch = torch.cat([torch.cat([a, 7 * torch.randn(1, 31, 1)], 1), b])  # garbage after a's end: masked away
    lengths = torch.tensor([50, 81])
    for rate in ((1.0, 0.5) if kind == "ssm" else (1.0,)):
        m = AtRate(model, rate) if kind == "ssm" else model
        with torch.no_grad():
            alone_a, alone_b = m(a)[0], m(b)[0]
            both = m(batch, lengths=lengths)[0]
        torch.testing.assert_close(both[0], alone_a[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(both[1], alone_b[0], rtol=1e-4, atol=1e-5)


def test_cnn_batchnorm_statistics_ignore_padding():
    model = build_audio_model(_tiny("cnn"))
    a = torch.randn(1, 40, 1)
    m1, m2 = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    out1 = m1(a)[0]
    out2 = m2(torch.cat([a, torch.randn(1, 24, 1)], 1), lengths=torch.tensor([40]))[0]
    torch.testing.assert_close(out2, out1, rtol=1e-4, atol=1e-5)
    for n1, n2 in zip(m1.norms, m2.norms):
        torch.testing.assert_close(n2.running_mean, n1.running_mean)
        torch.testing.assert_close(n2.running_var, n1.running_var)


def test_rate_half_is_every_kernel_at_doubled_step():
    """``rate=0.5`` (half as many samples per second) == the same model with Δ doubled in every kernel,
    the anti-causal ones of the bidirectional layers included (S4D: Δ enters only through log Δ)."""
    model = build_audio_model(_tiny("ssm", "diag", bidirectional=True)).eval()
    x = torch.randn(3, 40, 1)
    with torch.no_grad():
        got = AtRate(model, 0.5)(x, lengths=torch.tensor([40, 31, 12]))[0]
        ref = copy.deepcopy(model)
        assert _double_dt(ref) == 4  # 2 layers x (causal + anti-causal kernel)
        want = ref(x, lengths=torch.tensor([40, 31, 12]))[0]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert (model(x)[0] - want).abs().max() > 1e-3  # rate 1 is another model


def test_rate_reaches_every_s4_dplr_kernel(monkeypatch):
    model = build_audio_model(_tiny("ssm", "dplr", bidirectional=True)).eval()
    seen = []
    for m in model.modules():
        if isinstance(m, SSMKernel):
            forward = m.forward
            monkeypatch.setattr(m, "forward", lambda L, rate=1.0, f=forward: (seen.append(rate), f(L, rate=rate))[1])
    with torch.no_grad():
        AtRate(model, 0.5)(torch.randn(2, 30, 1))
    assert seen == [0.5] * 4


def test_rate_convention_sees_the_same_continuous_signal():
    """A smooth signal sampled at 8 kHz and every second sample of it (4 kHz): the layer at ``rate=0.5``
    on the 4 kHz samples gives (nearly) every second output of the layer on the 8 kHz samples; the
    inverse convention (``rate=2``, Δ halved) does not."""
    torch.manual_seed(1)
    layer = S4(d_model=4, d_state=16, mode="diag", dt_min=0.01, dt_max=0.05, output="linear").double().eval()
    t = torch.arange(2000, dtype=torch.float64)
    u = (torch.sin(2 * math.pi * t / 400) + 0.5 * torch.sin(2 * math.pi * t / 250 + 1.0))[None, :, None].repeat(1, 1, 4)
    with torch.no_grad():
        full = layer(u)[0][:, ::2]
        half = layer(u[:, ::2], rate=0.5)[0]
        wrong = layer(u[:, ::2], rate=2.0)[0]
        unscaled = layer(u[:, ::2])[0]
    err, err_wrong, err_unscaled = (((y - full).norm() / full.norm()).item() for y in (half, wrong, unscaled))
    assert err < 0.05 and err_wrong > 0.3 and err_unscaled > 0.2, (err, err_wrong, err_unscaled)  # measured: 1.6%, 103%, 75%


# ----------------------------------------------------------------------------- through the CLI


def _tones(root, per_class: int = 8, sr: int = 8000):
    rng = np.random.default_rng(0)
    for label, freq in (("low", 300.0), ("high", 1500.0)):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            n = int(rng.integers(120, 300))
            x = 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / sr + rng.uniform(0, 6)) + 0.02 * rng.standard_normal(n)
            write_wav(root / label / f"{label}{i}.wav", x, sr)
    return root


def test_audio_task_trains_two_steps_and_evaluates_at_half_rate(tmp_path, capsys):
    from hippos.cli.train import load_run
    from hippos.train.loop import evaluate

    data, out = _tones(tmp_path / "rec"), tmp_path / "run"
    assert main(["train", "audio", f"--data.path={data}", *SMALL, "--max_steps=2", f"--out-dir={out}"]) == 0
    assert _last_json(capsys)["step"] == 2
    info = json.loads((out / "audio.json").read_text())
    assert info["sample_rate"] == 8000 and info["classes"] == ["high", "low"] and info["splits"]["test"]["n"] == 2
    assert json.loads((out / "config.json").read_text())["data"]["sample_rate"] == 8000  # what it was trained at

    assert main(["eval", str(out), "--rate", "0.5"]) == 0
    got = _last_json(capsys)
    assert (got["rate"], got["sample_rate"], got["resample"], got["dt_scale"], got["n"]) == (0.5, 4000.0, "poly", 2.0, 2)

    assert main(["eval", str(out), "--rate", "0.5", "--resample", "decimate", "--split", "train"]) == 0
    got = _last_json(capsys)
    # the same by hand: the clips decimated (x[::2]), normalized per clip, and every kernel's Δ doubled
    model, cfg, task, loaded, *_ = load_run(out)
    clips = loaded.extra["clips"].train
    ds = clips_dataset(Clips([x[::2] for x in clips.x], clips.y, clips.names), cfg.data.normalize)
    ref = copy.deepcopy(model)
    assert _double_dt(ref) == 2
    want = evaluate(ref, ds, cfg, torch.device("cpu"), task)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5) and got["acc"] == want["acc"] and got["n"] == 12

    assert main(["eval", str(out), "--rate", "2", "--resample", "decimate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1/k" in err[0]


def test_cnn_kind_trains_and_reads_resampled_audio(tmp_path, capsys):
    data, out = _tones(tmp_path / "rec"), tmp_path / "cnn"
    assert main(["train", "audio", f"--data.path={data}", *SMALL, *CNN, "--max_steps=2", f"--out-dir={out}"]) == 0
    assert _last_json(capsys)["n_params"] == 1 * 4 * 7 + 4 + 4 * 8 * 3 + 8 + 2 * (4 + 8) + 8 * 2 + 2
    assert main(["eval", str(out), "--rate", "2", "--resample", "linear"]) == 0
    got = _last_json(capsys)
    assert got["sample_rate"] == 16000.0 and got["dt_scale"] is None
    assert main(["train", "audio", f"--data.path={data}", *SMALL, "--model.kind=rnn", f"--out-dir={tmp_path / 'x'}"]) == 2
    assert "model.kind" in capsys.readouterr().err


def _fake_fsdd(root, digits=(0, 1), speakers=("jackson", "theo"), indices=range(7)):
    names = []
    (root / "recordings").mkdir(parents=True)
    for d in digits:
        for s in speakers:
            for k in indices:
                n = f"recordings/{d}_{s}_{k}.wav"
                write_wav(root / n, 0.4 * np.sin(2 * np.pi * 400 * (d + 1) * np.arange(100 + 9 * k) / 8000), 8000)
                names.append(n)
    lines = [f"{hashlib.sha256((root / n).read_bytes()).hexdigest()}  {n}" for n in sorted(names)]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return root


def test_fsdd_task_on_a_fake_fsdd_and_a_changed_recording(tmp_path, capsys):
    fsdd, out = _fake_fsdd(tmp_path / "fsdd"), tmp_path / "run"
    args = ["train", "fsdd", f"--data.path={fsdd}", "--data.sums_sha256=none", *SMALL, "--max_steps=2"]
    assert main([*args, f"--out-dir={out}"]) == 0
    info = json.loads((out / "audio.json").read_text())
    assert info["classes"] == [0, 1] and info["splits"]["test"]["n"] == 2 * 2 * 5
    assert info["splits"]["train"]["n"] + info["splits"]["val"]["n"] == 2 * 2 * 2
    assert main([*args, "--data.split=speaker", f"--out-dir={tmp_path / 'spk'}"]) == 0
    assert json.loads((tmp_path / "spk" / "audio.json").read_text())["splits"]["test"]["n"] == 2 * 7  # theo's clips
    capsys.readouterr()

    write_wav(fsdd / "recordings" / "1_theo_2.wav", np.zeros(100 + 18), 8000)
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1_theo_2.wav" in err[0] and "SHA256SUMS" in err[0]


def _rows(run_dir):
    import csv

    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("samples_per_s", "elapsed_s")} for r in csv.DictReader(f)]


def test_speech_table_resumes_a_cut_run_and_skips_finished_ones(tmp_path, capsys):
    from hippos.experiments.speech import arm_config
    from hippos.train.loop import train

    fsdd, out = _fake_fsdd(tmp_path / "fsdd", indices=range(9)), tmp_path / "speech"
    data = [("data.path", str(fsdd)), ("data.sums_sha256", "none")]
    cut = arm_config("s4d", "official", out, epochs=2, smoke=True, num_threads=1, overrides=data)
    cut.max_steps = 1  # a run cut after its first epoch (one step per epoch here)
    train(cut, progress=False, log=lambda msg: None)
    args = ["speech", "--smoke", "--epochs", "2", "--models", "s4d,cnn", "--splits", "official", "--out-dir", str(out),
            f"--data.path={fsdd}", "--data.sums_sha256=none", "--no-progress", "--num-threads", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "official-s4d: resuming" in text and "official-cnn: training" in text
    table = (out / "speech.md").read_text()
    assert "| official | S4D |" in table and "| official | CNN |" in table and "98.32" in table
    summary = json.loads((out / "speech.json").read_text())
    assert [(r["model"], r["epochs"]) for r in summary["runs"]] == [("s4d", 2), ("cnn", 2)]
    assert set(summary["runs"][0]["acc"]) == {"1×", "0.5× decimate", "0.5× poly", "2× poly"}

    whole = arm_config("s4d", "official", tmp_path / "whole", epochs=2, smoke=True, num_threads=1, overrides=data)
    train(whole, progress=False, log=lambda msg: None)
    assert _rows(out / "official-s4d") == _rows(tmp_path / "whole" / "official-s4d")  # resumed == uninterrupted

    assert main(args) == 0
    assert capsys.readouterr().out.count("already trained") == 2
    assert main([*args, "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another config (seed" in err[0]


def test_rate_is_refused_for_a_task_without_audio(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((20, 16)).astype(np.float32), y=rng.integers(0, 2, 20))
    out = tmp_path / "run"
    assert main(["train", "classify", f"--data.path={tmp_path / 'd.npz'}", *SMALL, "--max_steps=1", f"--out-dir={out}"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--rate", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "audio tasks" in err[0] and "'classify'" in err[0]
