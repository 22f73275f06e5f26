"""Time ``fft_conv`` (real-FFT backward) against ``fft_conv_reference`` (autograd through torch.fft).

Forward + backward of ``y = K̄ * u + D u`` with gradients for u and K, median of ``--repeats``
runs after one warm-up, both in this process, interleaved; prints a Markdown table with the
ratio. Shapes ``B,L,H``: the sMNIST model's (50, 784, 128) and the layer benchmark's
(8, 4096, 256) by default.

    python scripts/bench_fftconv.py [--shapes 50,784,128 8,4096,256] [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from hippos.ops.fftconv import fft_conv, fft_conv_reference


def time_once(f, u, K, D) -> float:
    t = time.perf_counter()
    y = f(u, K, D)
    y.backward(torch.ones_like(y))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["50,784,128", "8,4096,256"], help="B,L,H triples")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print("| B, L, H | autograd through torch.fft (s) | fft_conv (s) | time ratio |")
    print("|---|---|---|---|")
    for shape in args.shapes:
        B, L, H = (int(x) for x in shape.split(","))
        u = torch.randn(B, L, H, requires_grad=True)
        K = (torch.randn(H, L) / L).requires_grad_()
        D = torch.randn(H, requires_grad=True)
        times = {fft_conv_reference: [], fft_conv: []}
        for f in times:
            time_once(f, u, K, D)  # warm-up
        for _ in range(args.repeats):
            for f in times:
                times[f].append(time_once(f, u, K, D))
        ref, fast = (statistics.median(times[f]) for f in (fft_conv_reference, fft_conv))
        print(f"| {B}, {L}, {H} | {ref:.3f} | {fast:.3f} | {fast / ref:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
