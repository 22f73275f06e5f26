"""hippos bench long: the command end to end (tiny), its stop rule, and the memory-flat property of
state passing measured in fresh processes at two lengths (issue 17)."""

from __future__ import annotations

import json

from hippos.bench.long import fit_slope
from hippos.bench.measure import run_isolated
from hippos.cli import main


def test_bench_long_runs_plots_and_stops_a_layer_past_its_budget(tmp_path, capsys):
    out, png = tmp_path / "long.json", tmp_path / "long.png"
    argv = ["bench", "long", "--layers", "s4d", "attn_fused", "--L-min", "8", "--L-max", "10", "--chunk", "128",
            "--d-model", "8", "--d-state", "8", "--threads", "1", "--time-budget", "1e-9", "--out", str(out), "--plot", str(png)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    res = json.loads(out.read_text())["results"]
    assert [(r["kind"], r["L"]) for r in res] == [("s4d", 256), ("attn_fused", 256)]  # each stops after its first L
    assert "stopped after L 2^8" in text and png.stat().st_size > 1000
    assert all(r["working_bytes"] == max(0, r["extra_peak_bytes"] - r["output_bytes"]) for r in res)

    # --keep: re-measure one layer, the other's rows from the earlier --out; other settings refused
    again = tmp_path / "again.json"
    argv2 = [a for a in argv if a != "attn_fused"]
    argv2[argv2.index(str(out))] = str(again)
    assert main([*argv2, "--keep", str(out)]) == 0
    merged = json.loads(again.read_text())["results"]
    assert [(r["kind"], r["L"]) for r in merged] == [("s4d", 256), ("attn_fused", 256)]
    assert merged[1] == res[1] and merged[0]["times_s"] != res[0]["times_s"]  # kept as it was / measured again
    assert "| attn_fused |" in capsys.readouterr().out
    assert main([*argv2, "--keep", str(out), "--d-model", "16"]) == 2
    assert "measured with" in capsys.readouterr().err


def test_state_passing_memory_is_flat_in_L():
    """Working memory (peak minus the output) of an S4D forward in chunks of 2^12 at L 2^14 and
    2^16: flat; the one-pass forward at 2^16 needs several times more (the check can tell)."""
    def working(kind, L):
        job = {"what": "long", "kind": kind, "L": L, "batch": 1, "d_model": 64, "d_state": 64, "chunk": 1 << 12,
               "mode": "forward", "repeats": 1, "threads": 1, "allocator": "system"}
        r = run_isolated(job, timeout=300)
        assert "error" not in r, r
        return r["extra_peak_bytes"] - r["output_bytes"]

    small, large, one_pass = working("s4d", 1 << 14), working("s4d", 1 << 16), working("s4d-onepass", 1 << 16)
    assert large <= 1.5 * small + (8 << 20), (small, large)
    assert one_pass >= 2 * large, (large, one_pass)


def test_fit_slope():
    assert abs(fit_slope([(2**k, 3.0 * 2**k) for k in range(16, 20)]) - 1.0) < 1e-12
    assert abs(fit_slope([(2**k, 4.0**k) for k in range(3)]) - 2.0) < 1e-12
    assert fit_slope([(1024, 1.0)]) is None
