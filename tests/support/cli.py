"""The real `s1mig` command line, run from the repository root in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """The real `s1mig` command line, in a child process with this environment."""
    proc = subprocess.run(
        [sys.executable, "-m", "s1mig.cli", *args], capture_output=True, text=True, env=dict(os.environ), cwd=REPO
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"s1mig {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def airflow_home_locked() -> bool:
    """Whether a `s1mig run` holds the Airflow home of this S1MIG_HOME (its lock file)."""
    from s1mig.airflow_run import file_locked

    return file_locked(Path(os.environ["S1MIG_HOME"]) / "airflow" / ".dags-test.lock")


def last_line_of_python(code: str, one_process_run: bool) -> str:
    """The last line `code` prints in a fresh Python, with run_tasks.ONE_PROCESS_RUN_ENV
    set as `s1mig run` sets it for its `airflow dags test`, or unset."""
    from s1mig import run_tasks

    env = {k: v for k, v in os.environ.items() if k != run_tasks.ONE_PROCESS_RUN_ENV}
    if one_process_run:
        env[run_tasks.ONE_PROCESS_RUN_ENV] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]
