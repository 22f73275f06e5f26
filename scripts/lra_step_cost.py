"""What one training step of each LRA arm costs: the basis of the Transformer's budget in
``hippos lra`` (``hippos.experiments.lra.TRANSFORMER_EPOCHS``).

    python scripts/lra_step_cost.py [--tasks listops,lra-text,pathfinder,lra-image] [--models s4,transformer,s4d]
                                    [--steps 12] [--out-dir /tmp/lra-step-cost]

Each (task, model) arm is the ``hippos lra`` arm itself (:func:`hippos.experiments.lra.arm_config`:
the same data, model and batch size), trained with one thread; the arms of a task see the same
batches (the same seed), so the variable-length tasks compare like with like. The time is CPU
time: a run of ``--steps`` steps minus a run of 2, so it holds on a machine shared with other
work. Prints a table: CPU seconds per step, the ratio to S4, one epoch's time (what one thread
of an idle core would take), and the Transformer's epochs that match the S4 arm's default
training time (rounded up). Data comes from ``$HIPPOS_CACHE`` / ``$HIPPOS_DATA`` as in
``hippos lra`` (generated on first use).
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path


def step_cost(task: str, model: str, steps: int, out_dir: str) -> tuple[float, int, int]:
    """``(CPU seconds per step, steps per epoch, default epochs)`` of one arm: the CPU time of a
    run of ``steps`` steps minus that of a run of 2 (loading the data, building the model and the
    first steps cancel), so other work on the machine does not enter."""
    from hippos.experiments.lra import arm_config
    from hippos.train import default_config, train

    cpu = []
    for n in (2, steps):
        cfg = arm_config(task, model, out_dir, num_threads=1, max_steps=n)
        cfg.log_every = 1
        t = time.process_time()
        train(cfg, force=True, progress=False)
        cpu.append(time.process_time() - t)
    with open(Path(cfg.out_dir) / "metrics.csv") as f:
        last = [r for r in csv.DictReader(f) if r["split"] == "train"][-1]
    steps_per_epoch = round(int(last["step"]) / float(last["epoch"]))
    return (cpu[1] - cpu[0]) / (steps - 2), steps_per_epoch, default_config(task).epochs


def main() -> None:
    from hippos.experiments.lra import MODELS, TASKS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--models", default="s4,transformer,s4d")
    p.add_argument("--steps", type=int, default=12, help="steps per arm (the first two are not timed)")
    p.add_argument("--out-dir", default="/tmp/lra-step-cost")
    args = p.parse_args()
    if args.steps < 4:
        p.error("--steps must be >= 4")
    models = args.models.split(",")
    for m in models:
        if m not in MODELS:
            p.error(f"unknown model {m!r}")
    print("| task | model | CPU s/step | × S4 | one epoch | Transformer epochs for S4's time |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks.split(","):
        cost = {m: step_cost(task, m, args.steps, args.out_dir) for m in models}
        s4 = cost.get("s4")
        for m, (sec, per_epoch, epochs) in cost.items():
            ratio = f"{sec / s4[0]:.2f}" if s4 else "—"
            match = f"{math.ceil(s4[2] * s4[0] / sec)}" if s4 and m == "transformer" else ""
            print(f"| {task} | {m} | {sec:.2f} | {ratio} | {sec * per_epoch / 60:.0f} min | {match} |", flush=True)


if __name__ == "__main__":
    main()
