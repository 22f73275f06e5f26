"""The language-model tasks in the trainer: objectives, configs, checkpoints, bitwise resume, charlm."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from hippos.cli import main
from hippos.models.lm import lm_block
from hippos.models.lm_config import LMConfig
from hippos.train import build_model, default_config, get_task
from hippos.train import checkpoint as ckpt_io
from hippos.train import config as C
from hippos.train.objectives import BITS_PER_CHAR, LAST_TOKEN
from hippos.train.optim import lr_factor
from hippos.train.registry import config_from_dict
from hippos.train.task import Task

# 64 examples / batch 16 = 4 steps per epoch; embedding dropout on, so resuming must restore the RNG.
TINY_AR = ["ar", "--data.n_train=64", "--data.n_test=32", "--batch_size=16", "--epochs=2", "--model.d_model=8",
           "--model.d_state=8", "--model.shift_state=4", "--log_every=1", "--tensorboard=false", "--lr=3e-3"]
TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60))  # ~3K chars


def tiny_charlm(path):
    return ["charlm", f"--data.path={path}", "--data.seq_len=16", "--data.steps_per_epoch=3", "--batch_size=4",
            "--epochs=2", "--model.d_model=8", "--model.d_state=8", "--model.shift_state=4", "--warmup_steps=1",
            "--log_every=1", "--tensorboard=false", "--model.embed_dropout=0.1"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text(TEXT)
    return p


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("samples_per_s", "elapsed_s")} for r in csv.DictReader(f)]


def _same_weights(a_dir, b_dir):
    a, b = (load_file(d / "checkpoint" / "model.safetensors") for d in (a_dir, b_dir))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- objectives


class _Fixed(nn.Module):
    """A stand-in LM returning fixed logits (and a state slot, as LanguageModel does)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, tokens):
        return self.logits, None


def test_lm_loss_is_on_all_positions_and_the_metric_reads_the_last_token():
    B, L, V = 5, 7, 6
    logits = torch.randn(B, L, V)
    y = torch.randint(0, V, (B, L))
    r = LAST_TOKEN.loss_and_metrics(_Fixed(logits), torch.zeros(B, L, dtype=torch.long), y)
    torch.testing.assert_close(r.loss, F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)))
    assert r.n == B and r.loss_sum == pytest.approx(r.loss.item() * B)
    assert r.correct == (logits[:, -1].argmax(-1) == y[:, -1]).sum().item()
    # the metric reads the last position only: right everywhere else, wrong there -> 0
    y2 = logits.argmax(-1)
    y2[:, -1] = (y2[:, -1] + 1) % V
    assert LAST_TOKEN.loss_and_metrics(_Fixed(logits), y2, y2).correct == 0
    y2[:, -1] = logits[:, -1].argmax(-1)
    y2[:, 0] = (y2[:, 0] + 1) % V
    assert LAST_TOKEN.loss_and_metrics(_Fixed(logits), y2, y2).correct == B
    # bits per character: the same loss, in bits; acc over all positions
    r = BITS_PER_CHAR.loss_and_metrics(_Fixed(logits), y, y)
    s = BITS_PER_CHAR.summary(r.loss.item(), r.correct / r.n)
    assert s["bpc"] == pytest.approx(r.loss.item() / math.log(2))
    assert r.correct == pytest.approx((logits.argmax(-1) == y).float().mean(1).sum().item())
    assert BITS_PER_CHAR.better({"loss": 1.0, "acc": 0.0}, 0.9, 1.1) and not BITS_PER_CHAR.better({"loss": 1.2, "acc": 1.0}, 0.0, 1.1)


def test_linear_and_cosine_schedules_with_warmup_fraction():
    total, warm = 100, 10
    assert lr_factor(0, total, warm, 0.0, "linear") == pytest.approx(1 / 11)
    assert lr_factor(warm, total, warm, 0.0, "linear") == 1.0
    assert lr_factor(55, total, warm, 0.0, "linear") == pytest.approx(0.5)
    assert lr_factor(55, total, warm, 0.0, "cosine") == pytest.approx(0.5)
    assert lr_factor(32, total, warm, 0.0, "linear") == pytest.approx(1 - 22 / 90)
    assert lr_factor(32, total, warm, 0.0, "linear") < lr_factor(32, total, warm, 0.0, "cosine")  # first half
    assert lr_factor(100, total, warm, 0.1, "linear") == pytest.approx(0.1)
    assert lr_factor(99, total, warm, 0.0, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, total, warm, 0.0, "step")
    with pytest.raises(ValueError, match="warmup_fraction"):
        C.validate(C.apply_overrides(default_config("ar"), [("warmup_steps", "5")]))


# ----------------------------------------------------------------------------- configs


def test_lm_task_defaults_follow_the_h3_setups():
    for name, vocab, seq_len, epochs, schedule in (("ar", 10, 20, 200, "linear"), ("ih", 20, 30, 400, "cosine")):
        cfg = default_config(name)
        m = cfg.model
        assert isinstance(m, LMConfig) and (m.d_model, m.n_layers, m.mlp_expand, m.embed_dropout) == (32, 2, 4, 0.1)
        assert (m.mixer, m.d_state, m.head_dim, m.n_heads, m.attn_pos) == ("h3", 64, 1, 1, "learned")
        assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.grad_clip) == (5e-4, 0.1, 32, 0.0)
        assert (cfg.epochs, cfg.schedule, cfg.warmup_fraction) == (epochs, schedule, 0.1)
        assert (cfg.data.vocab_size, cfg.data.seq_len, cfg.data.n_train, cfg.data.n_test) == (vocab, seq_len, 5000, 500)
    s4d = C.apply_overrides(default_config("ar"), [("model.mixer", "s4d")]).model
    assert s4d.ssm_options() == ("inv", "zoh")
    # the paper's S4D baseline (safari's standalone S4D, postact=None): SSM -> GELU -> Linear, no GLU gate
    mixer = lm_block(dataclasses.replace(s4d, vocab_size=12), "s4d").mixer
    assert not mixer.glu and mixer.output.out_features == s4d.d_model


def test_model_section_is_typed_by_the_task(tmp_path):
    ar = C.apply_overrides(default_config("ar"), [("model.mixer", "attention"), ("model.attn_layers", "[1]")])
    assert ar.model.mixer == "attention" and ar.model.attn_layers == (1,)
    with pytest.raises(ValueError, match="unknown config key 'model.pool'"):
        C.apply_overrides(default_config("ar"), [("model.pool", "mean")])
    with pytest.raises(ValueError, match="did you mean 'model.mixer'"):
        C.apply_overrides(default_config("ar"), [("model.mixr", "s4d")])
    with pytest.raises(ValueError, match="unknown config key 'model.attn_layers'"):
        C.apply_overrides(default_config("delay"), [("model.attn_layers", "[1]")])
    with pytest.raises(TypeError, match="integer"):
        C.apply_overrides(default_config("ih"), [("data.seq_len", "x")])
    C.save_config(ar, tmp_path / "c.json")
    back = config_from_dict(C.load_config(tmp_path / "c.json"))
    assert isinstance(back.model, LMConfig) and back == config_from_dict(json.loads(json.dumps(C.config_to_dict(ar))))
    assert "model.mixer" in C.all_keys(ar) and "data.steps_per_epoch" in C.all_keys(default_config("charlm"))


def test_lm_config_errors_before_any_file(tmp_path, capsys, text_file):
    cases = [
        (TINY_AR + ["--model.mixer=rnn"], "LMConfig.mixer"),
        (TINY_AR + ["--model.vocab_size=12"], "does not match the data's vocabulary of 10"),
        (TINY_AR + ["--data.seq_len=7"], "even"),
        (tiny_charlm(text_file) + ["--data.seq_len=5000"], "too few"),
        (tiny_charlm(text_file.with_name("missing.txt")), "does not exist"),
        (tiny_charlm(text_file) + ["--data.test_fraction=1"], "data.test_fraction must be in [0, 1)"),
        (tiny_charlm(text_file) + ["--data.val_fraction=0.5", "--data.test_fraction=0.5"], "must be below 1"),
        (tiny_charlm(text_file) + ["--data.test_fraction=0.001"], "raise data.test_fraction"),
    ]
    for i, (args, fragment) in enumerate(cases):
        out = tmp_path / f"run{i}"
        capsys.readouterr()
        assert main(["train", *args, f"--out_dir={out}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err
        assert not out.exists()


# ----------------------------------------------------------------------------- runs


def test_two_step_ar_run_writes_a_checkpoint_that_reloads_exactly(tmp_path, monkeypatch):
    built = []
    real = Task.build_model
    monkeypatch.setattr(Task, "build_model", lambda self, cfg: built.append(real(self, cfg)) or built[-1])
    out = tmp_path / "run"
    assert main(["train", *TINY_AR, f"--out_dir={out}", "--max_steps=2"]) == 0
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["batch_in_epoch"] == 2
    cfg = config_from_dict(C.load_config(out / "config.json"))
    assert cfg.model.vocab_size == 10 and cfg.model.max_len is None  # resolved from the data; no attention
    fresh = build_model(cfg.model).eval()
    ckpt_io.load_weights(fresh, out / "checkpoint" / "model.safetensors")
    x, _ = get_task(cfg.task).load_data(cfg).test[torch.arange(8)]
    with torch.no_grad():
        torch.testing.assert_close(fresh(x)[0], built[0].eval()(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("mixer", ["h3", "attention"])
def test_ar_resume_after_a_cut_is_bitwise_identical(tmp_path, mixer):
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = [*TINY_AR, f"--model.mixer={mixer}"]
    assert main(["train", *args, f"--out_dir={full}"]) == 0
    assert main(["train", *args, f"--out_dir={cut}", "--max_steps=5"]) == 0  # mid epoch 2
    assert main(["train", "--resume", str(cut)]) == 0
    _same_weights(full, cut)
    assert _rows(full) == _rows(cut)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (full, cut))
    assert (ra["test_loss"], ra["test_acc"], ra["best_val_acc"]) == (rb["test_loss"], rb["test_acc"], rb["best_val_acc"])
    assert ra["step"] == 8 and 0 <= ra["test_acc"] <= 1
    if mixer == "attention":  # learned positions: the table is as long as the inputs
        assert config_from_dict(C.load_config(full / "config.json")).model.max_len == 22


def test_charlm_trains_evaluates_bpc_and_resumes_bitwise(tmp_path, text_file, capsys):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", *tiny_charlm(text_file), f"--out_dir={full}"]) == 0
    results = json.loads((full / "results.json").read_text())
    assert results["step"] == 6 and results["test_bpc"] == pytest.approx(results["test_loss"] / math.log(2))
    assert 0 < results["test_bpc"] < 8 and 0 < results["best_val_bpc"] < 8
    assert results["test_bpc"] != results["best_val_bpc"]  # another text (test = val before the test split)
    vocab = json.loads((full / "vocab.json").read_text())
    assert vocab["chars"] == "".join(sorted(set(TEXT)))
    cfg = config_from_dict(C.load_config(full / "config.json"))
    assert cfg.model.vocab_size == len(vocab["chars"])

    assert main(["train", *tiny_charlm(text_file), f"--out_dir={cut}", "--max_steps=2"]) == 0  # 2 steps
    assert json.loads((cut / "checkpoint" / "trainer_state.json").read_text())["step"] == 2
    assert main(["train", "--resume", str(cut)]) == 0
    _same_weights(full, cut)
    assert _rows(full) == _rows(cut)

    capsys.readouterr()
    assert main(["eval", str(full)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    got = json.loads(lines[-1])
    assert "bpc" in lines[0] and got["bpc"] == pytest.approx(results["test_bpc"], rel=1e-6)
    n_test = len(TEXT) - int(len(TEXT) * 0.95)
    assert got["n"] == (n_test - 1) // 16  # non-overlapping windows of the test text (the last 5%)
    assert "no test split" not in "".join(lines) and "no_test_split" not in results["test_extra"]
    # the test text read as one stream, state carried: the same number in results.json and eval
    extra = results["test_extra"]
    assert extra["stream_tokens"] == n_test - 1 and extra["stream_chunk"] == 16 and extra["kv_memory"] == 0
    assert 0 < extra["stream_bpc"] < 8 and got["extra"]["stream_bpc"] == pytest.approx(extra["stream_bpc"], rel=1e-9)
    assert any("read as one stream" in line for line in lines)

    # val is another text: the 5% before the test text; the last val row is the final weights on it
    assert main(["eval", str(full), "--split", "val"]) == 0
    val = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    n_val = int(len(TEXT) * 0.95) - int(len(TEXT) * 0.9)
    assert val["n"] == (n_val - 1) // 16 and val["bpc"] != got["bpc"]
    last_val = [r for r in _rows(full) if r["split"] == "val"][-1]
    assert float(last_val["loss"]) == pytest.approx(val["loss"], rel=1e-5)  # metrics.csv keeps 6 digits

    # a changed text (another vocabulary) is refused on resume and eval
    text_file.write_text(TEXT + "Z")
    capsys.readouterr()
    assert main(["eval", str(full)]) == 2
    assert "vocab.json" in capsys.readouterr().err


def test_charlm_splits_of_the_task_are_disjoint_contiguous_and_cover_the_text(text_file):
    cfg = C.apply_overrides(default_config("charlm"), [("data.path", str(text_file)), ("data.seq_len", "16")])
    assert (cfg.data.val_fraction, cfg.data.test_fraction) == (0.05, 0.05)
    data = get_task("charlm").load_data(cfg)
    vocab = data.train.vocab
    parts = [vocab.decode(ds.ids) for ds in (data.train, data.val, data.test)]
    assert "".join(parts) == TEXT and all(parts)  # in order, so contiguous and disjoint
    assert [len(p) for p in parts[:2]] == [int(len(TEXT) * 0.9), int(len(TEXT) * 0.95) - int(len(TEXT) * 0.9)]
    assert vocab.chars == "".join(sorted(set(TEXT)))  # the whole text's characters, as before the test split


def test_charlm_run_saved_before_the_test_split_keeps_its_split_and_resumes_bitwise(tmp_path, text_file, capsys):
    """An old charlm config.json has no data.test_fraction (and val_fraction 0.1): it is read
    as test_fraction=0 (test = val), trains, resumes and evaluates on the split it had."""
    from hippos.data.text import split_text
    from hippos.train.registry import upgrade_config_dict

    old_split = [*tiny_charlm(text_file), "--data.val_fraction=0.1", "--data.test_fraction=0"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    capsys.readouterr()
    assert main(["train", *old_split, f"--out_dir={full}"]) == 0
    assert "no test split in this run" in capsys.readouterr().out  # beside the "done: test ..." line
    results = json.loads((full / "results.json").read_text())
    assert {k: results["test_extra"][k] for k in ("no_test_split", "scored")} == {"no_test_split": True, "scored": "val"}

    assert main(["train", *old_split, f"--out_dir={cut}", "--max_steps=2"]) == 0
    saved = json.loads((cut / "config.json").read_text())
    del saved["data"]["test_fraction"]  # as written before the test split
    (cut / "config.json").write_text(json.dumps(saved))
    cfg = config_from_dict(saved)
    assert (cfg.data.val_fraction, cfg.data.test_fraction) == (0.1, 0.0)
    data = get_task("charlm").load_data(cfg)
    train, val = split_text(TEXT, 0.1)  # the two-way split of the old code
    assert data.test is data.val and data.train.vocab.decode(data.train.ids) == train
    assert data.val.vocab.decode(data.val.ids) == val
    assert main(["train", "--resume", str(cut)]) == 0
    _same_weights(full, cut)
    assert _rows(full) == _rows(cut)
    assert json.loads((cut / "config.json").read_text())["data"]["test_fraction"] == 0.0  # recorded from now on

    capsys.readouterr()
    assert main(["eval", str(cut)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2].startswith("no test split in this run") and json.loads(lines[-1])["bpc"] == pytest.approx(
        results["test_bpc"], rel=1e-6)

    # an old section without val_fraction gets the old default; new configs and other tasks are left alone
    bare = config_from_dict({"task": "charlm", "data": {"path": str(text_file)}})
    assert (bare.data.val_fraction, bare.data.test_fraction) == (0.1, 0.0)
    for task in ("charlm", "ar"):
        d = json.loads(json.dumps(C.config_to_dict(default_config(task))))
        assert upgrade_config_dict(d) == d
