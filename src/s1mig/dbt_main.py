"""`python -m s1mig.dbt_main <dbt arguments>`: dbt's own command line (what the `dbt`
script runs), with the order of its nodes set by s1mig.dbt_schedule, and the times of the
nodes it ran kept for the next command's order. s1mig runs dbt through this module."""

from __future__ import annotations

import os
from pathlib import Path

from s1mig import dbt_schedule


def record_node_times() -> None:
    """Keep the last command's node times (its run_results.json, in the target directory
    beside the times file that $S1MIG_DBT_NODE_TIMES names; s1mig.dbt.dbt_command)."""
    times = os.environ.get(dbt_schedule.TIMES_ENV)
    if times:
        dbt_schedule.record(Path(times).parent / "target" / "run_results.json", Path(times))


def main() -> None:
    from dbt.cli.main import cli

    dbt_schedule.install()
    try:
        cli(prog_name="dbt")  # exits with dbt's own exit code, as the `dbt` script does
    finally:
        record_node_times()


if __name__ == "__main__":
    main()
