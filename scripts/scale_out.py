"""Training throughput of one task on this machine: 1 process against 2 (``torchrun``, gloo), and
float32 against bfloat16 / float16 autocast, each a real ``hippos train`` run of a few steps.

    python scripts/scale_out.py --data_dir ../shared/data [--task smnist] [--steps 40] [--out DIR]

Each arm is a fresh ``hippos train TASK --max_steps=STEPS`` (the same global batch, seed and
model); its speed is the median ``samples_per_s`` of the ``metrics.csv`` training rows after the
first (warm-up) window. Prints a Markdown table with the machine, torch version and commit. Take
it with nothing else running: the arms share the cores with whatever else does.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

#: name -> (processes, threads per process, precision)
ARMS = {
    "1 process × 1 thread, float32": (1, 1, "32"),
    "1 process × 2 threads, float32": (1, 2, "32"),
    "2 processes × 1 thread (torchrun, gloo), float32": (2, 1, "32"),
    "1 process × 2 threads, bf16 autocast": (1, 2, "bf16"),
    "1 process × 2 threads, fp16 autocast + GradScaler": (1, 2, "16"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_arm(task: str, procs: int, threads: int, precision: str, steps: int, log_every: int, out: Path,
            data_dir: str | None) -> float:
    """samples/s of one ``hippos train`` run (median over the logged windows after the first)."""
    args = ["train", task, f"--max_steps={steps}", f"--log_every={log_every}", f"--num_threads={threads}",
            f"--precision={precision}", "--tensorboard=false", "--no-progress", "--force", f"--out_dir={out}"]
    if data_dir:
        args.append(f"--data_dir={data_dir}")
    launch = [sys.executable, "-m", "hippos"] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}", f"--master_port={_free_port()}",
        "-m", "hippos"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    p = subprocess.run([*launch, *args], env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(launch + args)} failed:\n{p.stderr[-3000:]}")
    with open(out / "metrics.csv", newline="") as f:
        rows = [float(r["samples_per_s"]) for r in csv.DictReader(f) if r["split"] == "train" and r["samples_per_s"]]
    if len(rows) < 2:
        raise SystemExit(f"{out}: {len(rows)} logged windows; raise --steps or lower --log_every")
    return statistics.median(rows[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="smnist")
    ap.add_argument("--data_dir", default=os.environ.get("HIPPOS_DATA"))
    ap.add_argument("--steps", type=int, default=40, help="training steps per arm")
    ap.add_argument("--log_every", type=int, default=8, help="steps per measured window")
    ap.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    ap.add_argument("--arms", default=None, help="comma-separated indices into the arm list (default: all)")
    args = ap.parse_args()
    arms = list(ARMS.items())
    if args.arms:
        arms = [arms[int(i)] for i in args.arms.split(",")]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent, check=False).stdout.strip() or "?"
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        results = []
        for i, (name, (procs, threads, precision)) in enumerate(arms):
            t0 = time.perf_counter()
            sps = run_arm(args.task, procs, threads, precision, args.steps, args.log_every, root / f"arm{i}",
                          args.data_dir)
            results.append((name, sps))
            print(f"[{i + 1}/{len(arms)}] {name}: {sps:.1f} samples/s ({time.perf_counter() - t0:.0f} s)", flush=True)
    base = results[0][1]
    print(f"\n`hippos train {args.task}` (its default model and global batch), median samples/s over "
          f"{args.steps} steps after a warm-up window; {os.cpu_count()} CPUs ({platform.machine()}), torch "
          f"{torch.__version__}, commit {commit}, {time.strftime('%Y-%m-%d')}\n")
    print("| arm | samples/s | × the first |\n|---|---|---|")
    for name, sps in results:
        print(f"| {name} | {sps:.1f} | {sps / base:.2f} |")


if __name__ == "__main__":
    main()
