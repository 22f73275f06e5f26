"""The console script sets THP_MEM_ALLOC_ENABLE before torch is imported (torch reads it once)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = r"""
import builtins, os, sys
seen = {}
real_import = builtins.__import__
def spy(name, *a, **k):
    if name == "torch" and "thp" not in seen:
        seen["thp"] = os.environ.get("THP_MEM_ALLOC_ENABLE")
    return real_import(name, *a, **k)
builtins.__import__ = spy
import hippos_entry
sys.argv = ["hippos", "--version"]
try:
    hippos_entry.main()
except SystemExit:
    pass
print("torch saw", seen.get("thp"))
"""


@pytest.mark.parametrize(("user", "expected"), [(None, "1"), ("0", "0")])
def test_console_script_sets_thp_before_torch(user, expected):
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if user is not None:
        env["THP_MEM_ALLOC_ENABLE"] = user  # the user's choice wins
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True).stdout
    assert f"torch saw {expected}" in out, out


def test_bench_workers_get_the_allocator_they_ask_for(monkeypatch):
    from hippos.bench import measure

    seen = []

    class Done:
        returncode, stdout, stderr = 0, '{"ok": 1}\n', ""

    monkeypatch.setattr(measure.subprocess, "run", lambda cmd, **kw: seen.append(kw["env"].get("THP_MEM_ALLOC_ENABLE")) or Done())
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "1")  # as inside the `hippos` command
    for allocator in ("thp", "system", "cached"):
        measure.run_isolated({"what": "layer", "allocator": allocator})
    assert seen == ["1", "0", "0"]
