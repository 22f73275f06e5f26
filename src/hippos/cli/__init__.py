"""The ``hippos`` command line: ``hippos hippo | train | eval | synthetics | generate | bench``.

Each sub-command lives in a module of this package exposing ``add_parser(subparsers)``; the
parser it adds sets ``func(args) -> int``. User mistakes raise :class:`UsageError` (or
``ValueError`` / ``TypeError`` / ``FileNotFoundError`` / ``OSError`` from a public entry point)
and become one line on stderr with exit code 2, never a traceback (set ``HIPPOS_DEBUG=1`` to
see it). Options are spelled with dashes; the underscore spelling is accepted too.
"""

from __future__ import annotations

import argparse
import os
import sys

from hippos.cli import bench, hippo, lm
from hippos.cli import train as train_commands
from hippos.cli.options import Parser, UsageError

__all__ = ["UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from hippos import __version__

    parser = Parser(prog="hippos", description="Structured state space models: HiPPO, S4, S4D, H3.")
    parser.add_argument("--version", action="version", version=f"hippos {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in (hippo, train_commands, lm, bench):  # help order
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, TypeError, FileNotFoundError) as e:
        if os.environ.get("HIPPOS_DEBUG"):
            raise
        print(f"hippos {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hippos {args.command}: interrupted", file=sys.stderr)
        return 130
