"""The process one benchmark job runs in: ``python -m hippos.bench.worker JOB_JSON`` prints its
result as one JSON line (started by :func:`hippos.bench.measure.run_isolated`, so every
configuration gets a fresh process: its peak memory is its own). To time another hippos tree
(``--baseline``) this file runs as a script with that tree first on ``PYTHONPATH``."""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time

from hippos.bench.measure import (
    current_rss_bytes,
    peak_rss_bytes,
    reset_peak_rss,
    timed,
)

__all__ = ["run_job"]


def _train_module():
    """:mod:`hippos.bench.train`; loaded from this file's folder when this file runs as a script
    with another hippos tree on ``PYTHONPATH`` (``run_isolated(..., baseline=...)``), which may lack it."""
    if __name__ != "__main__":
        from hippos.bench import train

        return train
    import importlib.util
    import os

    spec = importlib.util.spec_from_file_location("_hippos_bench_train", os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_job(job: dict) -> dict:
    """Build and time one job (``what``: generate, layer, long, step or train) in this process."""
    import torch

    torch.manual_seed(0)
    if job["what"] == "train":  # a whole training step; times itself (wall and CPU time) and its memory
        return _train_module().run_train_job(job)
    if job["what"] in ("layer", "step", "long"):
        if job.get("allocator") == "cached":
            _train_module().cache_freed_memory()
        if job.get("threads"):
            torch.set_num_threads(job["threads"])
    if job["what"] == "generate":  # times its own phases (prefill, decode) and memory
        from hippos.bench.generate import run_generate_job

        return run_generate_job(job)
    if job["what"] == "layer":
        from hippos.bench.layer import build_layer_job

        fn, meta = build_layer_job(job)
    elif job["what"] == "long":
        from hippos.bench.long import build_long_job

        fn, meta = build_long_job(job)
    else:
        from hippos.bench.step import build_step_job

        fn, meta = build_step_job(job)
    gc.collect()
    reset = reset_peak_rss()
    base = current_rss_bytes()
    fn()  # warm-up (kernel-length growth, allocator); its peak counts as for any real use
    cpu = time.process_time()
    times = timed(fn, job.get("repeats", 3), warmup=0)
    cpu = (time.process_time() - cpu) / len(times)  # mean CPU time: steadier than wall time on a busy machine
    peak = peak_rss_bytes()
    return {
        **job,
        **meta,
        "median_s": statistics.median(times),
        "cpu_s": cpu,
        "times_s": times,
        "extra_peak_bytes": max(0, peak - base),
        "peak_is_exact": reset,
    }


if __name__ == "__main__":
    print(json.dumps(run_job(json.loads(sys.argv[1]))))
