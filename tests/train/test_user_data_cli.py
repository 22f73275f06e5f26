"""Your own data through the CLI: ``hippos train classify`` (npz, idx, CSV, variable lengths) and
``hippos train forecast``, each trained, evaluated and resumed as a user would."""

from __future__ import annotations

import csv
import gzip
import json
import struct

import numpy as np
import pytest
import torch

from hippos.cli import main
from hippos.models import ModelConfig, SequenceClassifier

SMALL = ["--model.d_model=16", "--model.n_layers=2", "--model.d_state=16", "--tensorboard=false", "--no-progress",
         "--num_threads=1"]


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("samples_per_s", "elapsed_s")} for r in csv.DictReader(f)]


def _early_step_npz(path, n=600, L=64, seed=0):
    """The label is the sign of step 3 (of 64, all else noise): only memory of an early step solves it."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, L)).astype(np.float32)
    y = rng.integers(0, 2, n)
    x[:, 3] = np.where(y == 1, 2.0, -2.0) + 0.1 * rng.standard_normal(n)
    np.savez(path, x=x, y=y * 7 + 3)  # labels 3 and 10: mapped to classes 0 and 1
    return path


def test_classify_npz_learns_an_early_step_and_its_run_evaluates_and_resumes(tmp_path, capsys):
    data = _early_step_npz(tmp_path / "early.npz")
    args = ["train", "classify", f"--data.path={data}", *SMALL, "--epochs=12", "--batch_size=32", "--lr=1e-2",
            "--model.dropout=0", "--log_every=5"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*args, f"--out-dir={full}"]) == 0
    results = _last_json(capsys)
    assert results["step"] == 12 * 15  # 480 training examples / 32
    assert results["test_acc"] >= 0.9, results  # chance is 0.5
    assert json.loads((full / "classes.json").read_text()) == {"classes": [3, 10]}
    assert set(json.loads((full / "normalizer.json").read_text())) >= {"mean", "std"}
    saved = json.loads((full / "config.json").read_text())
    assert saved["model"]["d_input"] == 1 and saved["model"]["n_classes"] == 2 and saved["data"]["path"] == str(data)

    threads = torch.get_num_threads()
    assert main(["eval", str(full)]) == 0  # the run's num_threads=1 holds for the command only
    assert torch.get_num_threads() == threads
    got = _last_json(capsys)
    assert got["acc"] == results["test_acc"] and got["n"] == 60

    assert main([*args, f"--out-dir={cut}", "--max_steps=40"]) == 0
    assert main(["train", "--resume", str(cut), "--no-progress"]) == 0
    assert _rows(cut) == _rows(full)  # a cut-and-resumed run is the uninterrupted one, bit for bit


def test_classify_refuses_a_changed_data_file_on_eval(tmp_path, capsys):
    data = _early_step_npz(tmp_path / "d.npz", n=80)
    out = tmp_path / "run"
    assert main(["train", "classify", f"--data.path={data}", *SMALL, "--max_steps=1", f"--out-dir={out}"]) == 0
    _early_step_npz(data, n=80, seed=1)  # other values: other normalization statistics
    capsys.readouterr()
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "normalizer.json" in err[0] and "no longer matches" in err[0]


def _write_idx(path, array: np.ndarray, gz: bool) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def test_classify_idx_files_of_any_content_without_a_checksum(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90).astype(np.uint8)
    images = (rng.integers(0, 40, (90, 5, 6)) + 60 * y[:, None, None]).astype(np.uint8)  # 30-pixel sequences
    _write_idx(tmp_path / "images-idx3-ubyte.gz", images, gz=True)
    _write_idx(tmp_path / "labels-idx1-ubyte", y, gz=False)
    out = tmp_path / "run"
    assert main(["train", "classify", "--data.format=idx", f"--data.path={tmp_path / 'images-idx3-ubyte.gz'}",
                 f"--data.labels_path={tmp_path / 'labels-idx1-ubyte'}", *SMALL, "--epochs=1", "--batch_size=16",
                 f"--out-dir={out}"]) == 0
    results = _last_json(capsys)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["d_input"] == 1 and cfg["model"]["n_classes"] == 3 and cfg["model"]["l_max"] == 30
    assert results["complete"] and results["step"] == 5  # 72 training images / 16
    assert main(["eval", str(out), "--split", "val"]) == 0
    assert _last_json(capsys)["n"] == 9


def test_classify_csv_with_ragged_rows_and_a_named_label_column(tmp_path, capsys):
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(60):
        label = int(rng.integers(0, 2))
        n = int(rng.integers(4, 13))
        rows.append([f"{label}"] + [f"{v:.3f}" for v in rng.standard_normal(n) + label])
    f = tmp_path / "seqs.csv"
    width = max(len(r) for r in rows) - 1
    f.write_text("digit," + ",".join(f"t{i}" for i in range(width)) + "\n"
                 + "".join(",".join(r + [""] * (width + 1 - len(r))) + "\n" for r in rows))
    out = tmp_path / "run"
    assert main(["train", "classify", f"--data.path={f}", "--data.label_column=digit", *SMALL, "--epochs=2",
                 "--batch_size=8", f"--out-dir={out}"]) == 0
    assert _last_json(capsys)["complete"]
    assert json.loads((out / "config.json").read_text())["model"]["l_max"] == 12
    assert main(["eval", str(out)]) == 0


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_batches_with_lengths_equal_each_sequence_alone(bidirectional):
    """Variable lengths: a padded batch with ``lengths`` (masked pooling, padding zeroed before every
    convolution) gives each sequence the logits it gets alone, unpadded."""
    torch.manual_seed(0)
    cfg = ModelConfig(d_input=2, n_classes=3, d_model=8, n_layers=2, d_state=8, mode="diag", bidirectional=bidirectional)
    model = SequenceClassifier(cfg).double().eval()
    lengths = torch.tensor([5, 11, 2, 8])
    x = torch.randn(4, 11, 2, dtype=torch.float64)
    x[torch.arange(11)[None, :] >= lengths[:, None]] = 123.0  # whatever sits in the padding must not matter
    with torch.no_grad():
        batched, _ = model(x, lengths=lengths)
        alone = torch.cat([model(x[i : i + 1, : int(n)])[0] for i, n in enumerate(lengths)])
    torch.testing.assert_close(batched, alone, rtol=1e-10, atol=1e-10)


def test_forecast_beats_seasonal_naive_and_eval_prints_the_baselines(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "forecast", "--epochs=8", "--data.synth_length=600", "--data.window=96", "--no-progress",
                 "--tensorboard=false", "--num_threads=1", f"--out-dir={out}"]) == 0
    results = _last_json(capsys)
    m = results["test_extra"]
    assert m["horizon"] == 24 and m["context"] == 96
    assert m["rmse"] < m["seasonal_naive_rmse"] < m["last_value_rmse"], m
    assert main(["eval", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("| seasonal naive (period 12) |") for line in lines)
    got = json.loads(lines[-1])
    assert got["extra"]["rmse"] == pytest.approx(m["rmse"], rel=1e-6)
