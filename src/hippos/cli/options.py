"""What the sub-commands share: the user-error class, the argparse parser class and value types.

One flag spelling: options are written with dashes (``--data-dir``, ``--out-dir``); the
underscore spelling of the same option (``--data_dir``, as the config keys are named) is
accepted everywhere as an alias, so ``hippos train --out-dir=X`` and ``hippos eval --data_dir=X``
both work.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["Parser", "UsageError", "dashed", "nonneg_int", "positive_int", "positive_float"]


class UsageError(Exception):
    """A mistake in what the user asked for: printed as one line, exit code 2."""


def dashed(token: str) -> str:
    """``--data_dir=x_y`` -> ``--data-dir=x_y``: the option name's underscores become dashes."""
    if not token.startswith("--"):
        return token
    name, eq, value = token.partition("=")
    return name.replace("_", "-") + eq + value


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) and underscore spellings of options accepted."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        import sys

        args = sys.argv[1:] if args is None else list(args)
        if self.prefix_chars == "-":  # ``hippos train`` (prefix "+") parses its own options
            args = [dashed(a) for a in args]
        return super().parse_known_args(args, namespace)


def _int_at_least(text: str, low: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {v}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1)


def nonneg_int(text: str) -> int:
    """An integer >= 0 (a layer index, a count that may be zero)."""
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    """A finite number > 0 (``nan`` and ``inf`` are refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return v
