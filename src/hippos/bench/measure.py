"""Run one measurement in a fresh Python process, so peak memory is that run's alone.

Peak memory on the CPU is read from the kernel: after the module and its input are built, the
process's peak resident set (``VmHWM``) is reset through ``/proc/self/clear_refs``; the extra
peak is ``VmHWM`` after the measured runs minus the resident set before them. Each
configuration runs in its own subprocess (``python -m hippos.bench.measure JSON``), which
prints one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

__all__ = ["current_rss_bytes", "peak_rss_bytes", "reset_peak_rss", "run_isolated", "timed"]


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """``VmHWM`` from ``/proc/self/status`` (falls back to ``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run_isolated(job: dict, timeout: float = 900.0) -> dict:
    """Run ``job`` (see :func:`hippos.bench.worker.run_job`) in a subprocess; returns its JSON or an error record."""
    cmd = [sys.executable, "-m", "hippos.bench.worker", json.dumps(job)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**job, "error": tail[:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])
