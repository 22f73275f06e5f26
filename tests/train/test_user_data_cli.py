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


def test_a_relative_data_path_is_recorded_absolute_and_eval_takes_moved_data(tmp_path, capsys, monkeypatch):
    where = tmp_path / "data"
    where.mkdir()
    _early_step_npz(where / "d.npz", n=80)
    monkeypatch.chdir(where)
    out = tmp_path / "run"
    assert main(["train", "classify", "--data.path=d.npz", *SMALL, "--max_steps=2", f"--out-dir={out}"]) == 0
    assert json.loads((out / "config.json").read_text())["data"]["path"] == str(where / "d.npz")
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(out)]) == 0  # from another directory
    acc = _last_json(capsys)["acc"]

    moved = tmp_path / "moved.npz"
    (where / "d.npz").rename(moved)
    assert main(["eval", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["eval", str(out), f"--data.path={moved}"]) == 0
    assert _last_json(capsys)["acc"] == acc
    assert main(["eval", str(out), "--data.path", str(moved)]) == 0  # the spaced spelling
    assert _last_json(capsys)["acc"] == acc


def test_eval_takes_only_data_keys(tmp_path, capsys):
    data = _early_step_npz(tmp_path / "d.npz", n=80)
    out = tmp_path / "run"
    assert main(["train", "classify", f"--data.path={data}", *SMALL, "--max_steps=1", f"--out-dir={out}"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["eval", str(out), "--lr=3"])
    assert e.value.code == 2 and "unrecognized arguments: --lr=3" in capsys.readouterr().err
    assert main(["eval", str(out), "--data.pth=x"]) == 2
    assert "unknown config key 'data.pth'; did you mean 'data.path'" in capsys.readouterr().err


def test_force_starts_over_in_a_run_with_artifacts_and_keeps_foreign_files(tmp_path, capsys):
    data = _early_step_npz(tmp_path / "d.npz", n=80)
    out = tmp_path / "run"
    args = ["train", "classify", f"--data.path={data}", *SMALL, "--max_steps=1", f"--out-dir={out}"]
    assert main(args) == 0
    assert json.loads((out / ".artifacts.json").read_text()) == ["classes.json", "normalizer.json"]
    assert main([*args, "--force"]) == 0  # its own classes.json / normalizer.json are not "foreign"
    # a forecast run over it: the classify artifacts are the old run's own, removed by --force
    assert main(["train", "forecast", "--data.synth_length=300", "--data.window=32", "--max_steps=1", "--no-progress",
                 "--tensorboard=false", f"--out-dir={out}", "--force"]) == 0
    assert not (out / "classes.json").exists() and (out / "forecast.json").exists()
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main([*args, "--force"]) == 2
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").read_text() == "mine"


def test_bad_labels_and_cells_are_named_once(tmp_path, capsys):
    f = tmp_path / "fl.npz"
    np.savez(f, x=np.zeros((5, 4)), y=np.array([0, 1, 0, 1, 1.5]))
    assert main(["train", "classify", f"--data.path={f}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"hippos train: error: {str(f)!r} (x, y): labels must be integers, got 1.5 at position 4"

    c = tmp_path / "s.csv"
    c.write_text("label,a,b,c\n0,1,2,3\n1,1,nan,3\n0,4,5,6\n1,1,1,1\n")
    assert main(["train", "classify", f"--data.path={c}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{str(c)!r} row 3, column 'b': 'nan' is not a finite float32 number"), err
    c.write_text("label,a,b,c\n0,1,2,3\n1,1,1e39,3\n0,4,5,6\n1,1,1,1\n")
    assert main(["train", "classify", f"--data.path={c}"]) == 2
    assert "column 'b': '1e39' is not a finite float32 number" in capsys.readouterr().err


def test_test_file_checksums(tmp_path, capsys):
    from hippos.data.idx import file_sha256

    data = _early_step_npz(tmp_path / "d.npz", n=80)
    test = _early_step_npz(tmp_path / "t.npz", n=20, seed=3)
    args = ["train", "classify", f"--data.path={data}", f"--data.test_path={test}", *SMALL, "--max_steps=1"]
    assert main([*args, f"--out-dir={tmp_path / 'a'}", f"--data.test_sha256={file_sha256(test)}"]) == 0
    capsys.readouterr()
    assert main([*args, f"--out-dir={tmp_path / 'b'}", "--data.test_sha256=" + "0" * 64]) == 2
    assert "does not match the given SHA-256" in capsys.readouterr().err
    assert main(["train", "classify", f"--data.path={data}", "--data.test_sha256=" + "0" * 64]) == 2
    assert "--data.test_sha256 checks --data.test_path, which is not set" in capsys.readouterr().err


def test_a_rollout_context_past_the_window_is_one_warning_line_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "forecast", "--data.synth_length=400", "--data.window=32", "--data.context=48", "--max_steps=1",
                 "--no-progress", "--tensorboard=false", f"--out-dir={out}"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    want = ("hippos train: warning: rollout context 48 is longer than the training window 32: the model never saw "
            "such states and its errors may grow (docs/forecasting.md, 'Known traps')")
    assert err == [want]
