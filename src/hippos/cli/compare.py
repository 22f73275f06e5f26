"""``hippos compare``: training runs side by side (a sweep's arms, the same model on two machines).

    hippos compare RUN_DIR [RUN_DIR ...] [--labels A,B,...] [--out FIG.png] [--title T]

Prints a markdown table (what each run's config changes from the others, epochs, steps, where
its training loss left its start, best validation and test accuracy, train time) and, with
``--out``, writes the runs' curves in one figure (``hippos.experiments.compare``).
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run_compare_command"]


def run_compare_command(args: argparse.Namespace) -> int:
    from hippos.experiments.compare import compare_runs

    labels = [t.strip() for t in args.labels.split(",")] if args.labels else None
    md, png = compare_runs(args.runs, labels, args.out, args.title)
    print(md, end="")
    if args.out is not None:
        print(f"figure: {png}" if png else "figure: not written (no matplotlib, or no metrics rows)")
    return 0


def add_parser(subparsers) -> None:
    s = subparsers.add_parser(
        "compare",
        help="training runs side by side: what each changes, how far it got, its accuracies (table + figure)",
        description="Compare training runs (folders written by hippos train / hippos lra): a markdown table of what "
        "each run's config changes from the others, epochs and steps, the epoch where its training loss first left "
        "its start, its last epoch's training loss, best validation and test accuracy and train time; with --out, "
        "the runs' training loss and validation accuracy against the epoch in one figure.",
    )
    s.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (each with config.json and metrics.csv)")
    s.add_argument("--labels", metavar="LIST", default=None, help="comma-separated names for the runs (default: folder names)")
    s.add_argument("--out", metavar="FIG.png", default=None, help="write the figure here")
    s.add_argument("--title", default="", help="figure title (default: the task)")
    s.set_defaults(func=run_compare_command)
