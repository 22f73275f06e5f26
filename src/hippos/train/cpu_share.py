"""A note for the log when a CPU run's threads would share cores with other work.

torch's CPU ops run on an OpenMP pool of ``torch.get_num_threads()`` threads (default: one per
core) whose threads wait for each other at every op. When other jobs already keep cores busy,
those waits stretch to whole scheduler slices: two ``hippos train pathfinder`` runs at once on a
2-core machine, each with torch's default 2 threads, took 10-18 s a step; with
``--num_threads=1`` each, 0.9 s (docs/training.md, "Threads"). Nothing is changed for the user;
the trainer prints the note so the cause of a slow run is on its first lines.
"""

from __future__ import annotations

import os

#: a 1-minute load average at or above this counts as other work on the machine (a run's own data
#: loading adds less than 1 before its first step)
BUSY_LOAD = 1.0


def shared_cpu_hint(threads: int, load: float, cores: int) -> str | None:
    """The note when ``threads`` torch threads plus ``load`` (1-minute load average) oversubscribe
    ``cores``; None when they fit or the run has a single thread."""
    if threads <= 1 or load < BUSY_LOAD or threads + load <= cores + 0.25:
        return None
    return (f"note: the CPU is busy (load {load:.1f} on {cores} cores) and this run uses {threads} threads; "
            f"threads that share cores with other jobs can run 10x slower. Running several jobs at once: "
            f"give each --num_threads=1 (docs/training.md, Threads)")


def machine_hint(threads: int) -> str | None:
    """``shared_cpu_hint`` for this machine now (None where the load average is not available)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return shared_cpu_hint(threads, load, cores)
