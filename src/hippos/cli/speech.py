"""``hippos speech``: the raw-speech table (S4, S4D and a CNN on FSDD, evaluated at 1×, 0.5× and 2×).

    hippos speech [--out-dir DIR] [--models s4,s4d,cnn] [--splits official,speaker] [--epochs N] [--smoke]
                  [--seed S] [--data-dir DIR] [--device DEV] [--num-threads N] [--no-progress]
                  [--data.KEY=VALUE ...]            (e.g. --data.sample_rate=4000: train at 4 kHz)

One resumable run per (split, model) in ``OUT_DIR/<split>-<model>``; rerunning skips what is done
and resumes what was cut (``hippos.experiments.speech``, docs/speech.md).
"""

from __future__ import annotations

import argparse
import sys

from hippos.cli.options import nonneg_int, positive_int

__all__ = ["add_parser", "run_speech_command"]


def _names(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        if not names or any(n not in allowed for n in names):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}, got {text!r}")
        return list(dict.fromkeys(names))

    return parse


def run_speech_command(args: argparse.Namespace) -> int:
    from hippos.experiments.speech import run_speech
    from hippos.train.config import parse_override_args
    from hippos.train.loop import line_printer

    overrides = parse_override_args(list(args.data_overrides))
    progress = not args.no_progress and sys.stderr.isatty()

    run_speech(args.models, args.splits, args.out_dir, echo=line_printer(progress), epochs=args.epochs, smoke=args.smoke, seed=args.seed,
               data_dir=args.data_dir, device=args.device, num_threads=args.num_threads, overrides=overrides)
    return 0


def add_parser(subparsers) -> None:
    from hippos.experiments.speech import MODELS, SPLITS

    s = subparsers.add_parser(
        "speech",
        help="raw speech (FSDD): train S4, S4D and a CNN, evaluate at 1x, 0.5x and 2x the sampling rate; print the table",
        description="Train S4, S4D and a raw-audio CNN (about 134K parameters each) on FSDD spoken digits (hippos train "
        "fsdd: the official split and one speaker held out), one resumable run each in OUT_DIR/<split>-<model>, then "
        "evaluate each run's final weights at 1x, 0.5x (decimate and poly) and 2x the training sample rate (SSMs with "
        "their step rescaled, zero-shot) and write the table beside the S4 paper's (OUT_DIR/speech.md). Rerunning "
        "skips finished runs and evaluations and resumes cut runs. --data.KEY=VALUE sets the fsdd data section "
        "(e.g. --data.sample_rate=4000, --data.path=FOLDER).",
    )
    s.add_argument("--out-dir", metavar="DIR", default="runs/speech", help="where the runs and the table go (default: runs/speech)")
    s.add_argument("--models", metavar="LIST", type=_names(MODELS), default=list(MODELS), help="comma-separated: s4, s4d, cnn (default: all)")
    s.add_argument("--splits", metavar="LIST", type=_names(SPLITS), default=list(SPLITS),
                   help="comma-separated: official (index 0-4 test), speaker (theo held out) (default: both)")
    s.add_argument("--epochs", metavar="N", type=positive_int, default=None, help="epochs per run (default: the fsdd task's, 20)")
    s.add_argument("--smoke", action="store_true", help="one epoch of tiny models: checks that everything runs (minutes)")
    s.add_argument("--seed", metavar="S", type=nonneg_int, default=0, help="training seed (default 0)")
    s.add_argument("--data-dir", metavar="DIR", default=None, help="data root holding fsdd/ (default: $HIPPOS_DATA)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    s.add_argument("--num-threads", metavar="N", type=nonneg_int, default=None, help="torch threads per run (default: the task's, 0 = torch's)")
    s.add_argument("--no-progress", action="store_true", help="plain lines (no tqdm)")
    s.set_defaults(func=run_speech_command, data_overrides=[])
