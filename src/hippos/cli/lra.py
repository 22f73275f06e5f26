"""``hippos lra``: the Long Range Arena table at CPU scale (S4, S4D and a Transformer on ListOps,
Text, Pathfinder and Image), printed beside the S4 paper's numbers.

    hippos lra [--out-dir DIR] [--tasks listops,lra-text,pathfinder,lra-image] [--models s4,s4d,transformer]
               [--epochs N] [--max-steps N] [--smoke] [--seed S] [--data-dir DIR] [--device DEV]
               [--num-threads N] [--no-progress] [--data.KEY=VALUE ...] [--model.KEY=VALUE ...]
               [--lr=X] [--warmup_fraction=X] ...   (the optimizer keys of LRA_TRAIN_KEYS)

One resumable run per (task, model) in ``OUT_DIR/<task>-<model>``; rerunning skips what is done
and resumes what was cut (``hippos.experiments.lra``, docs/lra.md).
"""

from __future__ import annotations

import argparse
import sys

from hippos.cli.options import dashed, nonneg_int, positive_int
from hippos.cli.speech import _names

__all__ = ["add_parser", "run_lra_command"]


def run_lra_command(args: argparse.Namespace) -> int:
    from hippos.experiments.lra import run_lra
    from hippos.train.config import parse_override_args
    from hippos.train.loop import line_printer

    overrides = parse_override_args(list(args.data_overrides))
    progress = not args.no_progress and sys.stderr.isatty()
    run_lra(args.tasks, args.models, args.out_dir, echo=line_printer(progress), epochs=args.epochs, smoke=args.smoke,
            seed=args.seed, data_dir=args.data_dir, device=args.device, num_threads=args.num_threads,
            max_steps=args.max_steps, overrides=overrides)
    return 0


def add_parser(subparsers) -> None:
    from hippos.experiments.lra import MODELS, TASKS

    s = subparsers.add_parser(
        "lra",
        help="Long Range Arena at CPU scale: train S4, S4D and a Transformer on ListOps, Text, Pathfinder, Image; print the table",
        description="Train S4, S4D and a Transformer baseline on the LRA tasks (hippos train listops | lra-text | "
        "pathfinder | lra-image, their defaults), one resumable run each in OUT_DIR/<task>-<model>, and write the "
        "table of test accuracies beside the S4 paper's (OUT_DIR/lra.md) and one figure per task with its models side by "
        "side (OUT_DIR/<task>.png). Rerunning skips finished runs and resumes "
        "cut ones. --data.KEY=VALUE sets a data key in every task that has it (e.g. --data.n_train=20000); "
        "--model.KEY=VALUE a model key and --lr, --weight_decay, --warmup_fraction, --warmup_steps, --schedule, "
        "--min_lr_ratio, --grad_clip, --batch_size=VALUE a training key, in every arm (e.g. a variant in its own "
        "--out-dir: --model.b_clip=2, --model.dt_min=1e-4, --model.norm=layer, --lr=0.01).",
    )
    s.add_argument("--out-dir", metavar="DIR", default="runs/lra", help="where the runs and the table go (default: runs/lra)")
    s.add_argument("--tasks", metavar="LIST", type=_names(TASKS), default=list(TASKS),
                   help="comma-separated: listops, lra-text, pathfinder, lra-image (default: all)")
    s.add_argument("--models", metavar="LIST", type=_names(MODELS), default=list(MODELS),
                   help="comma-separated: s4, s4d, transformer (default: all)")
    s.add_argument("--epochs", metavar="N", type=positive_int, default=None, help="epochs per run (default: each task's for S4 and S4D; the Transformer's give it at least S4's "
                   "training time: hippos.experiments.lra.TRANSFORMER_EPOCHS)")
    s.add_argument("--max-steps", metavar="N", type=positive_int, default=None,
                   help="stop each run after N steps in all (resumable: rerun without it to finish)")
    s.add_argument("--smoke", action="store_true", help="tiny models on tiny data for one epoch: checks that everything runs")
    s.add_argument("--seed", metavar="S", type=nonneg_int, default=0, help="training seed (default 0)")
    s.add_argument("--data-dir", metavar="DIR", default=None, help="data root holding imdb/ and cifar10-subset/ (default: $HIPPOS_DATA)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    s.add_argument("--num-threads", metavar="N", type=nonneg_int, default=None, help="torch threads per run (default: torch's)")
    s.add_argument("--no-progress", action="store_true", help="plain lines (no tqdm)")
    from hippos.experiments.lra import LRA_TRAIN_KEYS

    s.set_defaults(func=run_lra_command, data_overrides=[], override_prefixes=("--data.", "--model."),
                   override_names=tuple(dashed(f"--{k}") for k in LRA_TRAIN_KEYS))
