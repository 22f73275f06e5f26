"""``hippos bench generate`` end to end at toy size; parameter matching; state accounting."""

from __future__ import annotations

import dataclasses
import json

import pytest

from hippos.bench.generate import (
    build_configs,
    default_attn_layers,
    match_width,
    param_count,
)
from hippos.cli import main
from hippos.layers.attention import _grown
from hippos.models.lm_config import LMConfig


def test_default_attention_layers_follow_the_paper():
    assert default_attn_layers(24) == (8, 16)  # H3's 1.3B hybrid (benchmarks/, attn_layer_idx)
    assert default_attn_layers(8) == (2, 5)


@pytest.mark.parametrize("d_model, n_layers, n_heads", [(64, 6, 4), (96, 4, 2), (256, 8, 4)])
def test_transformer_width_matches_hybrid_parameter_count(d_model, n_layers, n_heads):
    cfgs = build_configs(d_model, n_layers, None, n_heads)
    nh, nt = cfgs["hybrid"]["params"], cfgs["transformer"]["params"]
    hybrid, trans = (LMConfig(**{**c["cfg"], "attn_layers": tuple(c["cfg"]["attn_layers"])}) for c in (cfgs["hybrid"], cfgs["transformer"]))
    assert (param_count(hybrid), param_count(trans)) == (nh, nt)  # the printed counts are the models' own
    assert hybrid.layer_mixers().count("attention") == 2 and set(trans.layer_mixers()) == {"attention"}
    assert trans.n_layers == n_layers and trans.d_model % n_heads == 0
    assert abs(nt - nh) / nh < 0.03
    for other in (trans.d_model - n_heads, trans.d_model + n_heads):  # no neighbouring width is closer
        assert abs(param_count(dataclasses.replace(trans, d_model=other)) - nh) >= abs(nt - nh)


def test_match_width_brackets_beyond_the_initial_range():
    base = LMConfig(d_model=8, n_layers=1, mixer="attention", n_heads=2)
    target = param_count(dataclasses.replace(base, d_model=200))
    assert match_width(target, base, multiple=2, hi=16) == (200, target)


def test_same_width_keeps_the_hybrid_width():
    cfgs = build_configs(32, 3, (1,), 2, match=False)
    assert cfgs["transformer"]["cfg"]["d_model"] == 32


def test_bench_generate_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "gen.json"
    d, n, attn, B, new, prompts = 16, 3, 1, 2, 3, (8, 12)
    argv = ["bench", "generate", "--d-model", str(d), "--n-layers", str(n), "--attn-layers", str(attn), "--n-heads", "2",
            "--batch", str(B), "--prompt-len", *map(str, prompts), "--new-tokens", str(new), "--repeats", "2",
            "--threads", "1", "--profile", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    res = json.loads(out.read_text())["results"]
    gen = [r for r in res if "prompt_len" in r]
    prof = [r for r in res if "context" in r]
    assert sorted((r["model"], r["prompt_len"]) for r in gen) == sorted((m, L) for m in ("hybrid", "transformer") for L in prompts)
    for r in gen:
        assert r["prefill_s"] > 0 and r["decode_s"] > 0 and len(r["times_s"]) == 2
        assert r["tokens_per_s"] == pytest.approx(B * new / r["total_s"])
        assert r["decode_tokens_per_s"] == pytest.approx(B * (new - 1) / r["decode_s"])
        T = r["prompt_len"] + new - 1  # tokens in the caches at the end: the last one is never fed back
        width, n_attn = r["cfg"]["d_model"], len(r["cfg"]["attn_layers"]) if r["model"] == "hybrid" else n
        # keys + values, float32, in the store preallocated by the prefill (room included; the 2 new
        # tokens fit in it, so it never regrows)
        cap = _grown(r["prompt_len"])
        assert T <= cap and r["state_kv_bytes"] == n_attn * 2 * B * cap * width * 4
        if r["model"] == "hybrid":  # per H3 layer: shift r(B d 64) + diag c(B d 1 32), constant
            assert r["state_ssm_bytes"] == (n - 1) * (B * d * 64 * 4 + B * d * 32 * 8)
        else:
            assert r["state_ssm_bytes"] == 0
    assert {r["model"] for r in prof} == {"hybrid", "transformer"} and all(r["step_ms"] > 0 for r in prof)
    hybrid_prof = next(r for r in prof if r["model"] == "hybrid")
    assert hybrid_prof["layers"] == {"mixer:attention": 1, "mixer:h3": 2}
    assert "| hybrid | " in text and "| 2 | 12 |" in text and "end-to-end hybrid/Transformer" in text
    assert "parameters (" in text and "where one decode step spends its time" in text


def test_bench_generate_rejects_a_bad_layer_index(capsys):
    assert main(["bench", "generate", "--n-layers", "3", "--attn-layers", "5", "--d-model", "8"]) == 2
    err = capsys.readouterr().err
    assert "attn_layers" in err and "Traceback" not in err


def test_generate_job_and_step_profile_for_both_decodes():
    """The fast decoder and the reference step: the same final state (read off the decoder for the
    fast one), and a step profile of each whose parts cover the mixers and the MLP."""
    from hippos.bench.generate import profile_step, run_generate_job

    cfg = build_configs(16, 3, (1,), 2)["hybrid"]
    job = {"what": "generate", "model": "hybrid", "cfg": cfg["cfg"], "params": cfg["params"], "batch": 2, "prompt_len": 70,
           "new_tokens": 5, "repeats": 1, "threads": 1, "allocator": "system"}  # fmt: skip
    fast, ref = run_generate_job({**job, "decode": "fast"}), run_generate_job({**job, "decode": "reference"})
    for key in ("state_kv_bytes", "state_ssm_bytes"):
        assert fast[key] == ref[key] > 0
    for decode in ("fast", "reference"):
        p = profile_step({**job, "context": 100, "decode": decode})
        assert set(p["parts_ms"]) == {"mixer:attention", "mixer:h3", "mlp", "rest"} and p["step_ms"] > 0
        assert p["layers"] == {"mixer:attention": 1, "mixer:h3": 2}
