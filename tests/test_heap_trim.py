"""train/heap.py: varying-size frees fragment glibc's heap; trim_heap gives the pages back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hippos.train.heap import HeapTrimmer, _malloc_trim

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or _malloc_trim() is None,
                                reason="malloc_trim is glibc's")


PROBE = r"""
import torch
from hippos.train.heap import trim_heap


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


import ctypes
libc = ctypes.CDLL("libc.so.6")
# glibc's state after a large tensor has been freed, made deterministic: blocks below 32 MB come
# from the heap (M_MMAP_THRESHOLD = -3), and free() never shrinks its top (M_TRIM_THRESHOLD = -1)
assert libc.mallopt(-3, 32 << 20) and libc.mallopt(-1, 1 << 30)
trim_heap()
base = rss_mb()
keep, freed = [], 0.0
for i in range(40):  # growing sizes, each freed with a small live tensor after it: no reuse, no top to shrink
    a = torch.ones((2**20 + i * 2**16) // 4)  # 1 MB, 1.06 MB, ... (below the threshold: from the heap)
    keep.append(torch.ones(16))
    freed += a.numel() * 4 / 2**20
    del a
before = rss_mb()
released = trim_heap()
print(base, before, rss_mb(), freed, released)
"""


def test_trim_heap_returns_fragmented_pages():
    """In a fresh process (glibc's thresholds are process state that earlier tests move): pages
    of freed, fragmented heap blocks stay resident until trim_heap gives them back. Now and then
    (about one start in six here) the blocks land where they do not stay resident; such a start
    tests nothing and is retried."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(6):
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True).stdout
        base, before, after, freed, released = out.split()
        base, before, after, freed = float(base), float(before), float(after), float(freed)
        assert released == "True"
        if before - base >= 0.5 * freed:  # the freed blocks are resident: fragmented
            assert before - after >= 0.5 * freed, (base, before, after, freed)
            return
    pytest.skip("the freed blocks never stayed resident in six processes: nothing to trim")


def test_trimmer_waits_its_interval(monkeypatch):
    calls = []
    monkeypatch.setattr("hippos.train.heap.trim_heap", lambda: calls.append(1) or True)
    t = HeapTrimmer(every_s=3600)
    t.maybe()
    assert calls == []  # not yet
    t.now()
    assert calls == [1]
    HeapTrimmer(every_s=0).maybe()  # 0: never
    assert calls == [1]
    t = HeapTrimmer(every_s=1e-9)
    t.maybe()
    assert calls == [1, 1]
