"""How exact is a float32 forward at L = 2^22? S4D and H3 against a float64 state-passing reference.

Each layer (small width: the error is per channel, so H does not matter) runs the same random
input of L steps twice: in float32 with state passing in chunks of ``--chunk`` (what a user gets),
and in float64 with the same weights, also by state passing (the one-pass float64 FFT at 2^22
would need ~10 GB; every chunked forward is tied to the one-pass one in float64 by
tests/layers/test_chunked_forward.py). Printed: the largest error over 4,096-step slices at the
start, the middle and the end, relative to the largest output there, for Δ = 1e-4 and 1e-1 (the
ends of the default Δ range; H3's diagonal SSM is initialized with both ends, as in its paper).

    python scripts/long_accuracy.py              # L 2^22 (a few minutes on 2 cores)
    python scripts/long_accuracy.py --log2-L 18  # quicker
"""

from __future__ import annotations

import argparse
import sys

import torch


def _layers(kind: str, dt: float, width: int):
    from hippos.layers import H3, S4

    torch.manual_seed(0)
    if kind == "s4d":
        make = lambda: S4(d_model=width, d_state=64, mode="diag", dt_min=dt, dt_max=dt, chunk_size=None)
    else:
        make = lambda: H3(d_model=width, d_state=64, dt_min=dt, dt_max=dt, chunk_size=None)
    f32 = make().requires_grad_(False)
    f64 = make().requires_grad_(False)
    f64.load_state_dict(f32.state_dict())
    return f32, f64.double()


def relative_errors(kind: str, dt: float, L: int, chunk: int, width: int = 4, slice_len: int = 4096) -> list[float]:
    f32, f64 = _layers(kind, dt, width)
    u = torch.randn(1, L, width, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        y32, _ = f32(u, chunk_size=chunk)
        y64, _ = f64(u.double(), chunk_size=chunk)
    out = []
    for a in (0, L // 2, L - slice_len):
        ref = y64[:, a : a + slice_len]
        out.append(((y32[:, a : a + slice_len].double() - ref).abs().max() / ref.abs().max()).item())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--log2-L", type=int, default=22)
    p.add_argument("--chunk", type=int, default=1 << 16)
    p.add_argument("--width", type=int, default=4)
    args = p.parse_args(argv)
    L = 1 << args.log2_L
    print(f"L 2^{args.log2_L} = {L:,}, chunks of {args.chunk:,}, width {args.width}; error relative to the largest output of each slice")
    print("| layer | Δ | start | middle | end |")
    print("|---|---|---|---|---|")
    for kind in ("s4d", "h3"):
        for dt in (1e-4, 1e-1):
            e = relative_errors(kind, dt, L, args.chunk, args.width)
            print(f"| {kind} | {dt:g} | " + " | ".join(f"{x:.1e}" for x in e) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
