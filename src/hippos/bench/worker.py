"""The process one benchmark job runs in: ``python -m hippos.bench.worker JOB_JSON`` prints its
result as one JSON line (started by :func:`hippos.bench.measure.run_isolated`, so every
configuration gets a fresh process: its peak memory is its own)."""

from __future__ import annotations

import gc
import json
import statistics
import sys

from hippos.bench.measure import (
    current_rss_bytes,
    peak_rss_bytes,
    reset_peak_rss,
    timed,
)

__all__ = ["run_job"]


def run_job(job: dict) -> dict:
    """Build and time one job (``what``: generate, layer or step) in this process."""
    import torch

    torch.manual_seed(0)
    if job["what"] == "generate":  # times its own phases (prefill, decode) and memory
        from hippos.bench.generate import run_generate_job

        return run_generate_job(job)
    if job["what"] == "layer":
        from hippos.bench.layer import build_layer_job

        fn, meta = build_layer_job(job)
    else:
        from hippos.bench.step import build_step_job

        fn, meta = build_step_job(job)
    gc.collect()
    reset = reset_peak_rss()
    base = current_rss_bytes()
    fn()  # warm-up (kernel-length growth, allocator); its peak counts as for any real use
    times = timed(fn, job.get("repeats", 3), warmup=0)
    peak = peak_rss_bytes()
    return {
        **job,
        **meta,
        "median_s": statistics.median(times),
        "times_s": times,
        "extra_peak_bytes": max(0, peak - base),
        "peak_is_exact": reset,
    }


if __name__ == "__main__":
    print(json.dumps(run_job(json.loads(sys.argv[1]))))
