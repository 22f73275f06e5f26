"""The ``hippos`` command line: ``hippos hippo | train | eval | synthetics | generate | speech | lra | bench``.

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
import warnings

from hippos.cli import bench, compare, hippo, lm, lra, speech
from hippos.cli import train as train_commands
from hippos.cli.options import Parser, UsageError

__all__ = ["UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from hippos import __version__

    parser = Parser(prog="hippos", description="Structured state space models: HiPPO, S4, S4D, H3.")
    parser.add_argument("--version", action="version", version=f"hippos {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in (hippo, train_commands, lm, speech, lra, compare, bench):  # help order
        module.add_parser(sub)
    return parser


def _warnings_as_lines(command: str) -> None:
    """On the command line a warning is one line, ``hippos CMD: warning: ...``, each text once
    (the library's ``warnings.warn`` stays a normal warning for Python callers)."""
    seen = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text not in seen:
            seen.add(text)
            print(f"hippos {command}: warning: {text}", file=file or sys.stderr)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest:  # free ``--data.KEY=VALUE`` overrides: eval (data moved since training), speech, lra (lra: more keys)
        prefixes, names = getattr(args, "override_prefixes", ("--data.",)), getattr(args, "override_names", ())
        free = (lambda t: not t.startswith("-") or t.startswith(prefixes) or t.split("=", 1)[0] in names)  # (dashed)
        if not hasattr(args, "data_overrides") or not all(free(t) for t in rest):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.data_overrides = rest
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():  # restored after: in-process callers keep their warning display
            _warnings_as_lines(args.command)
            return int(args.func(args) or 0)
    except (UsageError, ValueError, TypeError, OSError) as e:  # OSError: a full disk, a read-only run, ...
        if os.environ.get("HIPPOS_DEBUG"):
            raise
        print(f"hippos {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C; Terminated (SIGTERM, saved at a step boundary) is one too
        terminated = type(e).__name__ == "Terminated"
        print(f"hippos {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
