"""``hippos hippo``: online HiPPO projection of band-limited white noise and its reconstruction.

HiPPO (arXiv 2008.07669 §5, "function approximation"): the signal is fed sample by sample
through the recurrence of each measure; from the final state alone the signal is rebuilt on the
measure's window and compared with the truth. Prints one MSE row per measure, writes a PNG.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hippos.projection import project, reconstruct, window

__all__ = ["Reconstruction", "plot_reconstruction", "run_reconstruction"]

#: Default time scale of each measure for a signal of unit duration: the translated Legendre
#: and Fourier windows cover the whole record; LagT's exponential memory is shorter, since N
#: Laguerre polynomials resolve only a few oscillations per unit of its time scale.
DEFAULT_THETA = {"legs": 1.0, "legt": 1.0, "lagt": 0.1, "fout": 1.0}


@dataclass
class Reconstruction:
    measure: str
    N: int
    theta: float
    window: tuple[float, float]
    mse: float
    seconds: float
    s: torch.Tensor  # (S) evaluation times in the window
    u_hat: torch.Tensor  # (S) reconstruction from the final state


def run_reconstruction(
    u: torch.Tensor, measure: str, N: int, theta: float | None = None, method: str = "zoh"
) -> Reconstruction:
    """Project ``u: f64(L)`` (samples of a unit-duration signal) and rebuild it from the last state.

    The error is measured at the midpoints ``(k + ½)Δ`` of the held samples inside the window.
    """
    L = u.shape[-1]
    dt = 1.0 / L
    theta = DEFAULT_THETA[measure] if theta is None else theta
    t0 = time.perf_counter()
    c = project(u, measure, N, dt=dt, theta=theta, method=method)  # (L N)
    seconds = time.perf_counter() - t0
    a, b = window(measure, 1.0, theta)
    s = (torch.arange(L, dtype=torch.float64) + 0.5) * dt
    inside = s >= a - 1e-12
    u_hat = reconstruct(c[-1], measure, s[inside], 1.0, theta)
    mse = float(((u_hat - u[inside]) ** 2).mean())
    return Reconstruction(measure, N, theta, (max(a, 0.0), b), mse, seconds, s[inside], u_hat)


def plot_reconstruction(u: torch.Tensor, results: list[Reconstruction], path: Path, title: str) -> None:
    """Write one panel per result to the PNG ``path`` (its folder created if missing), through a
    temporary file beside it that is removed if anything fails."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise RuntimeError("the plot needs matplotlib: pip install 'hippos[plot]'") from e
    L = u.shape[-1]
    t = (torch.arange(L, dtype=torch.float64) + 0.5) / L
    fig, axes = plt.subplots(len(results), 1, figsize=(10, 2.4 * len(results) + 0.6), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], results):
        ax.axvspan(*r.window, color="tab:blue", alpha=0.06, lw=0)
        ax.plot(t, u, color="0.55", lw=1.0, label="signal")
        ax.plot(r.s, r.u_hat, color="tab:red", lw=1.1, label="reconstruction from the final state")
        ax.set_ylabel(r.measure)
        ax.set_title(f"{r.measure}  N={r.N}  θ={r.theta:g}  window [{r.window[0]:g}, {r.window[1]:g}]  MSE={r.mse:.3g}", fontsize=9)
        lim = 1.3 * float(u.abs().max())
        ax.set_ylim(-lim, lim)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("time")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, dpi=110)
        tmp.replace(path)  # atomic: ``path`` is the old file or the whole new one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
