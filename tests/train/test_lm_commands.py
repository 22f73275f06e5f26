"""``hippos eval`` on LM runs, ``hippos generate`` (streaming, errors) and ``hippos synthetics``."""

from __future__ import annotations

import argparse
import json
import re

import pytest
import torch

from hippos.cli import main
from hippos.cli.lm import load_lm_run, run_generate
from hippos.experiments import synthetics
from hippos.train.loop import train

TINY_AR = ["ar", "--data.n_train=64", "--data.n_test=32", "--batch_size=16", "--epochs=2", "--model.d_model=8",
           "--model.d_state=8", "--model.shift_state=4", "--tensorboard=false", "--lr=3e-3"]
TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60))


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One finished ar run, one charlm run (2 steps) and one classifier run, shared by the tests."""
    root = tmp_path_factory.mktemp("runs")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        (root / "corpus.txt").write_text(TEXT)
        assert main(["train", *TINY_AR, f"--out_dir={root / 'ar'}"]) == 0
        assert main(["train", "charlm", f"--data.path={root / 'corpus.txt'}", "--data.seq_len=16", "--batch_size=4",
                     "--data.steps_per_epoch=2", "--epochs=1", "--model.d_model=8", "--model.d_state=8",
                     "--model.shift_state=4", "--tensorboard=false", f"--out_dir={root / 'charlm'}"]) == 0
        assert main(["train", "--data.length=16", "--data.bits=4", "--data.bit_length=2", "--data.n_train=8",
                     "--data.n_val=4", "--data.n_test=4", "--batch_size=4", "--epochs=1", "--model.d_model=4",
                     "--model.n_layers=1", "--model.d_state=4", "--tensorboard=false", f"--out_dir={root / 'delay'}"]) == 0
    finally:
        torch.set_num_threads(before)
    return root


def _one_line_error(capsys, argv, fragment):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and "Traceback" not in err[0], err


def test_eval_on_lm_runs(runs, capsys):
    results = json.loads((runs / "ar" / "results.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(runs / "ar")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    got = json.loads(lines[-1])
    assert "last-token acc" in lines[0] and got["n"] == 32 and got["step"] == 8
    assert got["acc"] == results["test_acc"] and got["loss"] == pytest.approx(results["test_loss"], rel=1e-6)
    assert main(["eval", str(runs / "ar"), "--split", "train"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 64
    assert main(["eval", str(runs / "charlm"), "--weights", "best"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["bpc"] == pytest.approx(json.loads((runs / "charlm" / "results.json").read_text())["test_bpc"], rel=1e-6)


class _Recorder:
    """A stdout that records what was written before each flush."""

    def __init__(self):
        self.chunks, self.flushed = [], []

    def write(self, s):
        self.chunks.append(s)

    def flush(self):
        self.flushed.append(len(self.chunks))


def _args(run_dir, prompt, **kw):
    base = {"run_dir": str(run_dir), "prompt": prompt, "max_new_tokens": None, "temperature": 1.0, "top_k": None,
            "top_p": None, "seed": None, "prefill_chunk": None, "weights": "last", "device": None, "no_echo": False}
    return argparse.Namespace(**{**base, **kw})


def test_generate_streams_the_greedy_continuation(runs, capsys):
    model, vocab, _ = load_lm_run(runs / "charlm")
    prompt = "the quick"
    expected = model.generate(vocab.encode(prompt)[None], 12, temperature=0)[0]
    capsys.readouterr()
    assert main(["generate", str(runs / "charlm"), "--prompt", prompt, "--max-new-tokens", "12", "--temperature", "0",
                 "--prefill-chunk", "4"]) == 0
    captured = capsys.readouterr()
    assert captured.out == vocab.decode(expected) + "\n"  # the text only; the speeds go to stderr
    assert re.fullmatch(r"prefill: 9 tokens in [0-9.]+ s \([0-9,]+ tokens/s\); decode: 11 tokens in [0-9.]+ s \([0-9,]+ tokens/s\)\n", captured.err)
    assert main(["generate", str(runs / "charlm"), "--prompt", prompt, "--max-new-tokens", "12", "--temperature", "0",
                 "--decode", "reference"]) == 0
    assert capsys.readouterr().out == vocab.decode(expected) + "\n"
    assert main(["generate", str(runs / "charlm"), "--prompt", prompt, "--max-new-tokens", "12", "--temperature", "0",
                 "--dtype", "bfloat16"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(prompt) and len(captured.out) == len(prompt) + 12 + 1 and "decode: 11 tokens" in captured.err
    out = _Recorder()
    assert run_generate(_args(runs / "charlm", prompt, max_new_tokens=12, top_k=1, no_echo=True), out) == 0
    assert "".join(out.chunks) == vocab.decode(expected[len(prompt):]) + "\n"
    assert len(out.chunks) == 13 and out.flushed == list(range(1, 14))  # one write and one flush per token

    # a synthetic run: space-separated tokens, one new token by default
    model, vocab, _ = load_lm_run(runs / "ar")
    prompt = "0 4 1 5 2 6 3 7 0 4 1 5 2 6 3 7 0 4 1 5 => 2"
    expected = model.generate(torch.tensor([vocab.encode(prompt)]), 1, temperature=0)[0]
    assert main(["generate", str(runs / "ar"), "--prompt", prompt, "--temperature=0"]) == 0
    assert capsys.readouterr().out == vocab.decode(expected) + "\n"
    # seeded sampling is reproducible
    outs = []
    for _ in range(2):
        assert main(["generate", str(runs / "charlm"), "--prompt", "line", "--seed", "3", "--top-p", "0.9",
                     "--max-new-tokens", "20"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and outs[0].startswith("line") and len(outs[0]) == 4 + 20 + 1


def test_generate_errors_are_one_line(runs, tmp_path, capsys):
    _one_line_error(capsys, ["generate", str(tmp_path / "nothing"), "--prompt", "a"], "does not exist")
    _one_line_error(capsys, ["generate", str(tmp_path), "--prompt", "a"], "not a hippos run")
    _one_line_error(capsys, ["generate", str(runs / "charlm"), "--prompt", "the Ωuick"], "'Ω' at position 4")
    _one_line_error(capsys, ["generate", str(runs / "charlm"), "--prompt", ""], "prompt is empty")
    _one_line_error(capsys, ["generate", str(runs / "ar"), "--prompt", "0 4 =>  x"], "unknown token 'x'")
    _one_line_error(capsys, ["generate", str(runs / "charlm"), "--prompt", "a", "--temperature", "-1"], "temperature")
    _one_line_error(capsys, ["generate", str(runs / "delay"), "--prompt", "a"], "a classifier")
    _one_line_error(capsys, ["generate", str(runs / "charlm"), "--prompt", "a", "--top-p", "2"], "top_p")


def test_synthetics_writes_the_table_and_resumes(tmp_path, capsys):
    tiny = ["--tasks", "ar", "--models", "h3", "--max-epochs", "2", "--n-train", "64", "--n-test", "32", "--no-progress"]
    out = tmp_path / "syn"
    # an interrupted table: the run stopped after 3 steps (as a kill after a checkpoint leaves it)
    cfg = synthetics.synthetic_config("ar", "h3", out, max_epochs=2, n_train=64, n_test=32)
    cfg.max_steps = 3
    assert train(cfg, progress=False, log=lambda m: None)["step"] == 3
    capsys.readouterr()
    assert main(["synthetics", *tiny, "--out-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ar-h3: test acc" in text and "| Associative Recall | 25.0 |" in text and "(99.8)" in text
    summary = json.loads((out / "synthetics.json").read_text())
    (run,) = summary["runs"]
    assert (run["task"], run["model"], run["epochs"], run["n_test"]) == ("ar", "h3", 2, 32)
    assert (out / "synthetics.md").read_text().startswith("# H3 synthetic tasks")
    # the resumed run ends where an uninterrupted one does
    ref = synthetics.synthetic_config("ar", "h3", tmp_path / "ref", max_epochs=2, n_train=64, n_test=32)
    assert train(ref, progress=False, log=lambda m: None)["test_acc"] == run["test_acc"] / 100

    assert main(["synthetics", *tiny, "--out-dir", str(out)]) == 0  # finished: skipped
    assert "[already done]" in capsys.readouterr().out
    _one_line_error(capsys, ["synthetics", *tiny[:-5], "--n-train", "48", "--n-test", "32", "--out-dir", str(out)],
                    "another config (data.n_train: 64 there, 48 asked)")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # argparse's own one-line error
        main(["synthetics", "--models", "h3,gss"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--models" in err[0]


def test_synthetics_jobs_run_at_once_with_the_same_results(tmp_path, capsys):
    tiny = ["--tasks", "ar", "--models", "h3,attention", "--max-epochs", "1", "--n-train", "64", "--n-test", "32",
            "--no-progress"]
    assert main(["synthetics", *tiny, "--jobs", "2", "--out-dir", str(tmp_path / "par")]) == 0
    assert main(["synthetics", *tiny, "--out-dir", str(tmp_path / "seq")]) == 0
    text = capsys.readouterr().out
    assert "(2 runs at once)" in text
    par, seq = (json.loads((tmp_path / d / "synthetics.json").read_text())["runs"] for d in ("par", "seq"))
    assert [(r["task"], r["model"]) for r in par] == [("ar", "h3"), ("ar", "attention")]  # table order, not finish order
    assert [r["test_acc"] for r in par] == [r["test_acc"] for r in seq]
    log = (tmp_path / "par" / "synthetics.log").read_text()
    assert "[ar-h3] == fresh" in log and "[ar-attention] == fresh" in log
    with pytest.raises(SystemExit) as e:  # argparse's own one-line error
        main(["synthetics", *tiny, "--jobs", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--jobs" in err[0]


def test_synthetics_seeds_one_run_each_and_the_table_gathers_them(tmp_path, capsys):
    tiny = ["--tasks", "ar", "--models", "attention", "--max-epochs", "1", "--n-train", "64", "--n-test", "32",
            "--no-progress", "--out-dir", str(tmp_path)]
    assert main(["synthetics", *tiny, "--seeds", "0,1"]) == 0
    first = json.loads((tmp_path / "synthetics.json").read_text())["runs"]
    assert [(r["seed"], r["run_dir"]) for r in first] == [(0, str(tmp_path / "ar-attention")), (1, str(tmp_path / "ar-attention-seed1"))]
    assert json.loads((tmp_path / "ar-attention-seed1" / "config.json").read_text())["seed"] == 1
    w0, w1 = (load_lm_run(tmp_path / d)[0].state_dict() for d in ("ar-attention", "ar-attention-seed1"))
    assert not torch.equal(w0["embedding.weight"], w1["embedding.weight"])  # another init
    # a later invocation with another seed: the table shows the three, in seed order
    capsys.readouterr()
    assert main(["synthetics", *tiny, "--seed", "2"]) == 0
    out = capsys.readouterr().out
    runs = json.loads((tmp_path / "synthetics.json").read_text())["runs"]
    assert [r["seed"] for r in runs] == [0, 1, 2] and runs[:2] == first
    cell = " · ".join(f"{r['test_acc']:.1f}" for r in runs) + " (100.0)"
    assert f"| Associative Recall | 25.0 | {cell} |" in out
    assert "one per training seed, in seed order: Attention on Associative Recall: seeds 0, 1, 2 (mean" in out
    # a seed run of another config in the same directory is not this table's
    assert main(["synthetics", *tiny[:4], "--max-epochs", "2", *tiny[6:10], "--out-dir", str(tmp_path / "other"), "--seeds", "3"]) == 0
    (tmp_path / "other" / "ar-attention-seed3").rename(tmp_path / "ar-attention-seed3")
    assert main(["synthetics", *tiny]) == 0
    assert [r["seed"] for r in json.loads((tmp_path / "synthetics.json").read_text())["runs"]] == [0, 1, 2]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["synthetics", *tiny, "--seeds", "1,x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--seeds" in err[0]


def test_plan_run_ignores_attention_options_of_an_attention_free_model(tmp_path):
    """A run of an SSM-only model is the same run whatever the attention options say (it reads
    none of them); for an attention model they are part of the config."""
    for model in ("h3", "attention"):
        cfg = synthetics.synthetic_config("ar", model, tmp_path, max_epochs=1, n_train=64, n_test=32)
        cfg.max_steps = 1
        train(cfg, progress=False, log=lambda m: None)
        assert synthetics.plan_run(cfg) == "resume"
        cfg.model.attn_dropout, cfg.model.n_heads = 0.0, 2
        if model == "h3":
            assert synthetics.plan_run(cfg) == "resume"
        else:
            with pytest.raises(ValueError, match=r"another config \(model.attn_dropout: 0.1 there, 0.0 asked\)"):
                synthetics.plan_run(cfg)


def test_seconds_per_epoch_is_the_median_so_a_paused_epoch_does_not_move_it(tmp_path):
    f = tmp_path / "metrics.csv"
    f.write_text("step,epoch,split,loss,acc,lr,samples_per_s,elapsed_s\n"
                 "1,0.5,train,1,0,0.1,10,1.0\n"
                 "2,1.0000,val,1,0,,10,2.0\n"   # epoch 1: 2 s
                 "4,2.0000,val,1,0,,10,4.5\n"   # epoch 2: 2.5 s
                 "6,3.0000,val,1,0,,10,604.5\n"  # epoch 3: paused for 10 minutes
                 "6,3.0000,val,1,0,,10,604.5\n"  # repeated by a resume: counted once
                 "8,4.0000,val,1,0,,10,607.0\n")  # epoch 4: 2.5 s
    assert synthetics.median_epoch_seconds(f, fallback=-1.0) == 2.5  # total / epochs would say 151.75
    assert synthetics.median_epoch_seconds(tmp_path / "none.csv", fallback=-1.0) == -1.0


def test_plan_run_reads_a_run_saved_before_a_key_existed(tmp_path):
    """A run whose config.json predates a config key (saved by an older hippos) is the same run when
    the key is asked at its default: the experiment commands resume it, as ``--resume`` would."""
    cfg = synthetics.synthetic_config("ar", "h3", tmp_path, max_epochs=1, n_train=64, n_test=32)
    cfg.max_steps = 1
    train(cfg, progress=False, log=lambda m: None)
    path = tmp_path / "ar-h3" / "config.json"
    saved = json.loads(path.read_text())
    assert saved.pop("accumulate") == 1 and saved.pop("precision") == "32"
    path.write_text(json.dumps(saved))
    assert synthetics.plan_run(cfg) == "resume"
    cfg.accumulate = 2  # not the default the old run trained with
    with pytest.raises(ValueError, match=r"another config \(accumulate: 1 there, 2 asked\)"):
        synthetics.plan_run(cfg)
