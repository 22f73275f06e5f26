"""scripts/gpu_check.py (run on a lent GPU: docs/lra.md) also runs on the CPU: float32 against
float64 there, so CI checks that the script itself works and that its tolerances hold."""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_passes_in_float32_on_the_cpu(capsys):
    assert _load().main(["--device", "cpu", "--length", "256"]) == 0
    out = capsys.readouterr().out
    assert "12 passed, 0 failed" in out


class _Float32Bug(torch.nn.Module):
    """A layer whose float32 path drifts from its float64 one by 1e-3: what a device bug looks like."""

    d_model = 32

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(32, 32)

    def forward(self, u):
        y = self.lin(u)
        return y * (1 + 1e-3) if y.dtype == torch.float32 else y


def test_gpu_check_fails_a_drifting_layer(monkeypatch, capsys):
    gc = _load()
    monkeypatch.setattr(gc, "layers", lambda L: iter([("drifting", _Float32Bug())]))
    assert gc.main(["--device", "cpu", "--length", "64"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "drifting: forward" in out and "2 passed, 2 failed" in out  # its forward and gradient


def test_gpu_check_refuses_a_missing_cuda_device():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert _load().main(["--device", "cuda"]) == 2
