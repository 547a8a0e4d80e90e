"""`s1mig serve`, `trigger`, `approve`, `reject`: the DAG as a daily service (issue 16)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Adds this module's subcommands to the `s1mig` parser."""
