"""train/heap.py: varying-size frees fragment glibc's heap; trim_heap gives the pages back."""

from __future__ import annotations

import sys

import pytest
import torch

from hippos.train.heap import HeapTrimmer, _malloc_trim, trim_heap

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or _malloc_trim() is None,
                                reason="malloc_trim is glibc's")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _fragment(n: int = 40) -> tuple[list, float]:
    """Tensors of growing size, each freed with a small live one after it: none can be reused
    or returned by shrinking the heap's top. Returns the live ones and the MB freed."""
    big = torch.ones(30 * 2**18)  # 30 MB, mmapped; freeing it raises glibc's mmap threshold to 30 MB
    del big
    keep, freed = [], 0.0
    for i in range(n):
        a = torch.ones((2**20 + i * 2**16) // 4)  # 1 MB, 1.06 MB, ... (all below the threshold: heap)
        keep.append(torch.ones(16))
        freed += a.numel() * 4 / 2**20
        del a
    return keep, freed


def test_trim_heap_returns_fragmented_pages():
    trim_heap()
    keep, freed = _fragment()
    before = _rss_mb()
    assert trim_heap()
    after = _rss_mb()
    assert before - after >= 0.5 * freed, (before, after, freed)
    assert len(keep) == 40


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
