"""Does hippos compute the same function on a GPU? Each layer runs in float32 on the GPU and in
float64 on the CPU (the same weights), forward and backward; the relative errors
‖gpu − cpu64‖ / ‖cpu64‖ of the output and of every parameter's gradient must be float32
round-off. Then, on the GPU alone: S4's recurrent step equals its convolution, and chunked
calls that carry the state equal one call on the whole sequence (state passing).

    python scripts/gpu_check.py [--device cuda] [--length 2048]

Prints one line per check and a last line ``gpu_check: N passed, M failed``; exit status 1 if
any failed. Needs a CUDA device (the CPU suite covers the same properties in float64:
tests/layers, tests/kernels, tests/test_views.py).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch

TOL_FWD = 1e-4  # float32 against float64: far above round-off (1e-6 to 1e-5), far below a wrong result
TOL_GRAD = 1e-3
H = 32  # the width of every checked layer


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def first(out):
    return out[0] if isinstance(out, tuple) else out


def layers(L: int):
    from hippos.layers import H3, S4, MultiHeadAttention

    yield "S4 (DPLR, LegS)", S4(H, 64, mode="dplr", l_max=L)
    yield "S4 bidirectional", S4(H, 64, mode="dplr", l_max=L, bidirectional=True)
    yield "S4D (diag)", S4(H, 64, mode="diag", l_max=L)
    yield "H3", H3(H, d_state=64, head_dim=8)
    yield "attention (causal)", MultiHeadAttention(H, 4, max_len=L, pos="learned")


def parity(name: str, layer: torch.nn.Module, L: int, device: str) -> list[tuple[str, float, float]]:
    """Forward and gradients: float32 on ``device`` against float64 on the CPU."""
    torch.manual_seed(1)
    ref = copy.deepcopy(layer).double()
    dev = copy.deepcopy(layer).float().to(device)
    u = torch.randn(2, L, H, dtype=torch.float64)
    y_ref = first(ref(u.clone().requires_grad_(True)))
    y_dev = first(dev(u.float().to(device)))
    g = torch.randn_like(y_ref)
    (y_ref * g).sum().backward()
    (y_dev * g.float().to(device)).sum().backward()
    out = [(f"{name}: forward", rel(y_dev, y_ref), TOL_FWD)]
    worst, which = 0.0, ""
    for (n, p_ref), (_, p_dev) in zip(ref.named_parameters(), dev.named_parameters()):
        if p_ref.grad is None or p_ref.grad.norm() == 0:
            continue
        e = rel(torch.view_as_complex(p_dev.grad) if p_dev.grad.is_complex() else p_dev.grad, p_ref.grad)
        if e > worst:
            worst, which = e, n
    out.append((f"{name}: worst gradient ({which})", worst, TOL_GRAD))
    return out


def step_equals_conv(device: str) -> tuple[str, float, float]:
    from hippos.layers import S4

    torch.manual_seed(2)
    layer = S4(16, 64, mode="dplr", l_max=256).to(device)
    u = torch.randn(2, 256, 16, device=device)
    with torch.no_grad():
        y = first(layer(u))
        state, params, ys = layer.default_state(2), layer.setup_step(), []
        for t in range(u.shape[1]):
            y_t, state = layer.step(u[:, t], state, params)
            ys.append(y_t)
    return f"S4 step == convolution ({device}, float32)", rel(torch.stack(ys, 1), y), TOL_FWD


def chunked_equals_one_pass(device: str, L: int) -> tuple[str, float, float]:
    from hippos.layers import S4

    torch.manual_seed(3)
    layer = S4(16, 64, mode="diag", l_max=L).to(device)
    u = torch.randn(2, L, 16, device=device)
    with torch.no_grad():
        y = first(layer(u, chunk_size=None))
        state, parts = layer.default_state(2), []
        for c in u.split(L // 8, dim=1):
            y_c, state = layer(c, state=state, chunk_size=None)
            parts.append(y_c)
    return f"S4D chunked (8 chunks, state carried) == one pass ({device})", rel(torch.cat(parts, 1), y), TOL_FWD


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--length", type=int, default=2048)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
    print(f"gpu_check on {name}, torch {torch.__version__}, L = {args.length}")
    t0 = time.perf_counter()
    rows = []
    checks = [lambda n=n, m=m: parity(n, m, args.length, args.device) for n, m in layers(args.length)]
    checks += [lambda: [step_equals_conv(args.device)], lambda: [chunked_equals_one_pass(args.device, args.length)]]
    for check in checks:
        try:
            rows += check()
        except Exception as e:  # noqa: BLE001 -- report and go on: one broken layer must not hide the others
            rows.append((f"error: {type(e).__name__}: {e}", float("nan"), 0.0))
    failed = 0
    for what, err, tol in rows:
        ok = err <= tol  # NaN fails
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {err:9.2e} (tol {tol:.0e})  {what}")
    print(f"gpu_check: {len(rows) - failed} passed, {failed} failed ({time.perf_counter() - t0:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
