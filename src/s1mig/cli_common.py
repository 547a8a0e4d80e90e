"""What every `s1mig` subcommand module shares: date arguments, one-line errors, lease progress."""

from __future__ import annotations

import argparse
import datetime as dt
import sys


def date_arg(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def err(message: str) -> int:
    print(f"s1mig: error: {message}", file=sys.stderr)
    return 1


def lease_echo(line: str) -> None:
    print(f"s1mig: {line}", file=sys.stderr, flush=True)
