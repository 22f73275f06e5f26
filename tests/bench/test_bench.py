"""Benchmarks run end to end at toy sizes, and the attention baselines agree with each other."""

from __future__ import annotations

import json

import pytest
import torch

from hippos.bench.transformer import transformer_layer
from hippos.cli import main


def test_fused_and_materialized_attention_agree():
    fused = transformer_layer(16, n_heads=4, attention="fused").double()
    mat = transformer_layer(16, n_heads=4, attention="materialized").double()
    mat.load_state_dict(fused.state_dict())
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    (y_fused, _), (y_mat, _) = fused(x), mat(x)
    torch.testing.assert_close(y_fused, y_mat)
    assert fused.mlp is not None and fused.mixer.impl == "fused" and mat.mixer.impl == "materialized"
    with pytest.raises(ValueError, match="fused"):
        transformer_layer(16, attention="flash")


def test_bench_layer_and_step_cli(tmp_path, capsys):
    out = tmp_path / "layer.json"
    rc = main(["bench", "layer", "--L", "64", "--batch", "1", "--d-model", "8", "--d-state", "4", "--repeats", "1", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())["results"]
    assert {r["kind"] for r in res} == {"s4", "s4d", "attn_fused", "attn_materialized"}
    assert all(r["median_s"] > 0 and r["extra_peak_bytes"] >= 0 for r in res)
    assert "| s4d | 64 |" in capsys.readouterr().out
    out = tmp_path / "step.json"
    rc = main(["bench", "step", "--batch", "2", "--d-model", "8", "--d-state", "4", "--steps", "8", "--repeats", "1", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())["results"]
    assert [r["tokens"] for r in res] == [16, 16]
