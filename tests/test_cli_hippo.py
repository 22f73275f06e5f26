"""The ``hippos hippo`` demo as a user runs it."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hippos.cli import main


def test_demo_writes_png_and_prints_mse(tmp_path, capsys):
    out = tmp_path / "plots" / "rec.png"
    rc = main(["hippo", "--measure", "legt", "--N", "16", "--length", "300", "--out", str(out)])
    assert rc == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    row = [line for line in text.splitlines() if line.startswith("| legt |")]
    assert len(row) == 1
    mse = float(row[0].split("|")[5])
    assert 0 < mse < 0.5


def test_demo_all_measures(tmp_path, capsys):
    out = tmp_path / "all.png"
    assert main(["hippo", "--all-measures", "--N", "8", "--length", "200", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for m in ("legs", "legt", "lagt", "fout"):
        assert f"| {m} | 8 |" in text
    assert out.stat().st_size > 10_000


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--measure", "cheb"], "invalid choice"),
        (["--N", "0"], "--N"),
        (["--N", "x"], "--N"),
        (["--bandwidth", "nan"], "--bandwidth"),
        (["--theta", "inf"], "--theta"),
        (["--length", "1"], "--length"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(args, fragment, tmp_path):
    out = tmp_path / "never.png"
    proc = subprocess.run(
        [sys.executable, "-m", "hippos.cli", "hippo", *args, "--out", str(out)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hippos hippo: error: "), err
    return err[0]


def test_out_is_an_existing_directory(tmp_path, capsys):
    folder = tmp_path / "plots"
    folder.mkdir()
    assert main(["hippo", "--N", "4", "--length", "20", "--out", str(folder)]) == 2
    assert f"--out {folder} is a directory" in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["plots"]  # no plots.tmp.png left behind


def test_out_parent_is_created(tmp_path):
    out = tmp_path / "a" / "b" / "rec.png"
    assert main(["hippo", "--N", "4", "--length", "20", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.parent.iterdir()) == ["rec.png"]


def test_out_parent_is_a_file(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    out = tmp_path / "notes.txt" / "rec.png"
    assert main(["hippo", "--N", "4", "--length", "20", "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert str(out) in line and "File exists" in line


@pytest.mark.parametrize("sub", [(), ("new",)])
def test_out_in_a_read_only_folder(tmp_path, capsys, sub):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    out = ro.joinpath(*sub, "rec.png")
    try:
        if os.access(ro, os.W_OK):  # root (with CAP_DAC_OVERRIDE) writes there all the same
            pytest.skip("this user can write into a read-only folder")
        assert main(["hippo", "--N", "4", "--length", "20", "--out", str(out)]) == 2
        line = one_error_line(capsys)
        assert str(out) in line and "Permission denied" in line
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_failed_write_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    def disk_full(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fname))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", disk_full)
    out = tmp_path / "rec.png"
    out.write_bytes(b"old")
    assert main(["hippo", "--N", "4", "--length", "20", "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert f"cannot write --out {out}: No space left on device" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.png"] and out.read_bytes() == b"old"


def test_legs_memory_is_quadratic_in_N(tmp_path):
    # 64 steps' (N, N) matrices at once were 4 tensors of 0.5 GB at N = 1024 (peak 2.2 GB);
    # capped at 32 MB each, the whole command stays near its ~0.4 GB of imports.
    # The peak is the child's own VmHWM: its ru_maxrss would include the parent's RSS at fork (Linux
    # keeps the pre-exec high-water mark; peak_rss_bytes reads VmHWM), which after the training tests passes 1 GB by itself.
    code = (
        "from hippos.cli import main; from hippos.bench.measure import peak_rss_bytes; "
        f"rc = main(['hippo', '--N', '1024', '--length', '66', '--out', {str(tmp_path / 'rec.png')!r}]); "
        "print(rc, peak_rss_bytes() // 1024)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    rc, peak_kb = proc.stdout.split()[-2:]
    assert rc == "0", proc.stderr
    assert int(peak_kb) < 900_000, f"peak RSS {int(peak_kb) / 1e6:.2f} GB"
