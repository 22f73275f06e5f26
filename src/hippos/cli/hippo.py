"""``hippos hippo``: the HiPPO reconstruction demo (``hippos.demos.reconstruction``)."""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

from hippos.cli.options import positive_float, positive_int
from hippos.data.signals import bandlimited_noise
from hippos.demos.reconstruction import plot_reconstruction, run_reconstruction
from hippos.discretize import METHODS
from hippos.hippo import MEASURES

__all__ = ["add_parser"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "hippo",
        help="HiPPO demo: online projection of band-limited noise and its reconstruction (PNG + MSE table)",
        description="Feed seeded band-limited white noise on [0, 1] through the HiPPO recurrence of a "
        "measure, rebuild the signal from the final state, print the MSE and write a PNG.",
    )
    p.add_argument("--measure", choices=MEASURES, default="legs", help="HiPPO measure (default: legs)")
    p.add_argument("--all-measures", action="store_true", help="run every measure, one plot panel each")
    p.add_argument("--N", type=positive_int, default=64, help="state size / polynomial degree (default: 64)")
    p.add_argument("--length", type=positive_int, default=2000, help="number of samples on [0, 1] (default: 2000)")
    p.add_argument("--bandwidth", type=positive_float, default=10.0, help="highest frequency of the noise, cycles per unit time (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the signal (default: 0)")
    p.add_argument("--theta", type=positive_float, default=None, help="time scale of the translated measures (default: 1 for legt/fout, 0.1 for lagt)")
    p.add_argument("--method", choices=tuple(METHODS), default="zoh", help="discretization (default: zoh, exact for held samples)")
    p.add_argument("--out", type=Path, default=Path("hippo_reconstruction.png"), help="PNG file to write; its folder is created if missing (default: ./hippo_reconstruction.png)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.length < 2:
        raise ValueError("--length must be at least 2")
    _check_out(args.out)  # before the projection, which can take minutes at large N
    u = bandlimited_noise(args.length, args.bandwidth, seed=args.seed)
    measures = MEASURES if args.all_measures else (args.measure,)
    results = [run_reconstruction(u, m, args.N, args.theta, args.method) for m in measures]
    print(f"band-limited noise: {args.length} samples on [0, 1], bandwidth {args.bandwidth:g}, seed {args.seed}; discretization {args.method}")
    print("| measure | N | θ | window | MSE | seconds |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.measure} | {r.N} | {r.theta:g} | [{r.window[0]:g}, {r.window[1]:g}] | {r.mse:.3e} | {r.seconds:.2f} |")
    title = f"HiPPO online reconstruction: {args.length} samples, bandwidth {args.bandwidth:g}, seed {args.seed}, {args.method}"
    try:
        plot_reconstruction(u, results, args.out, title)  # leaves no temporary file when it fails
    except OSError as e:
        raise ValueError(f"cannot write --out {args.out}: {e.strerror or e}") from e
    print(f"wrote {args.out}")
    return 0


def _check_out(path: Path) -> None:
    """``--out`` names a file in a writable folder, which is created if missing (as ``hippos
    train`` creates its out_dir)."""
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory; give a file name, e.g. --out {path / 'hippo_reconstruction.png'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the folder of --out {path}: {e.strerror or e}") from e
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"cannot write --out {path}: {os.strerror(errno.EACCES)} ({path.parent})")
