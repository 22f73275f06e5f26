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
import statistics
import subprocess
import sys
import time

__all__ = ["current_rss_bytes", "peak_rss_bytes", "reset_peak_rss", "run_isolated", "run_rounds", "timed"]


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


def run_isolated(job: dict, timeout: float = 900.0, baseline: str | None = None) -> dict:
    """Run ``job`` (see :func:`hippos.bench.worker.run_job`) in a subprocess; returns its JSON or an error record.

    ``baseline``: the ``src`` folder of another hippos tree (a ``git worktree`` of an older
    commit), put first on ``PYTHONPATH`` so that the job times that tree's code; the worker is
    then this tree's ``worker.py`` run as a script (older trees lack the newer jobs and
    measurements; it needs only their public API, see :mod:`hippos.bench.train`). A job's
    ``threads`` is also passed as ``OMP_NUM_THREADS``, which any tree's torch starts with, and
    ``allocator="thp"`` as ``THP_MEM_ALLOC_ENABLE=1`` (torch's CPU allocator then backs
    allocations of 2 MB and more with transparent huge pages; ``"system"`` and ``"cached"`` set it
    to 0, whatever the calling process has).
    """
    cmd = [sys.executable, "-m", "hippos.bench.worker", json.dumps(job)]
    env = dict(os.environ)
    if job.get("threads"):
        env["OMP_NUM_THREADS"] = str(job["threads"])
    if job.get("allocator") in ("thp", "system", "cached"):  # read by torch's CPU allocator once, at its first allocation
        env["THP_MEM_ALLOC_ENABLE"] = "1" if job["allocator"] == "thp" else "0"  # not inherited from the `hippos` command
    if baseline is not None:
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py"), json.dumps(job)]
        rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([str(baseline)] + rest)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**job, "error": tail[:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_rounds(jobs: list[dict], baseline: str | None = None, rounds: int = 1, timeout: float = 900.0, progress=None) -> list[dict]:
    """Each job ``rounds`` times in fresh processes (with ``baseline``: as often in that tree too,
    alternating baseline, current, baseline, ... so that a drifting machine affects both alike).

    Returns one record per job (and tree, in job order, baseline first) with ``tree``
    (``"current"`` or ``"baseline"``), ``rounds_s`` (each round's ``median_s``) and the median over
    rounds in ``median_s``, likewise ``cpu_s`` when the worker measures it, and the largest
    ``extra_peak_bytes``; a job that failed in every round keeps its last error.
    """
    trees = [None] if baseline is None else [baseline, None]
    order = [(i, tree) for _ in range(rounds) for i in range(len(jobs)) for tree in trees]
    runs: dict = {}
    for i, tree in order if progress is None else progress(order):
        runs.setdefault((i, tree), []).append(run_isolated(jobs[i], timeout=timeout, baseline=tree))
    out = []
    for i in range(len(jobs)):
        for tree in trees:
            rs = runs[(i, tree)]
            ok = [r for r in rs if "median_s" in r]
            rec = dict(ok[0] if ok else rs[-1], tree="baseline" if tree else "current")
            if ok:
                rec["rounds_s"] = [r["median_s"] for r in ok]
                rec["median_s"] = statistics.median(rec["rounds_s"])
                if all("cpu_s" in r for r in ok):
                    rec["rounds_cpu_s"] = [r["cpu_s"] for r in ok]
                    rec["cpu_s"] = statistics.median(rec["rounds_cpu_s"])
                rec["extra_peak_bytes"] = max(r["extra_peak_bytes"] for r in ok)
            out.append(rec)
    return out
