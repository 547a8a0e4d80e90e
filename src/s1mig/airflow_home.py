"""The Airflow home of this warehouse ($S1MIG_HOME/airflow): the environment every Airflow
command of s1mig runs with, the Airflow executable of this venv, and the metadata
database's migration."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from s1mig import config, db
from s1mig.errors import S1migError


def airflow_env(url: str) -> dict[str, str]:
    home = config.home() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(db.warehouse_env(url))
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(config.dags_dir()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
            "S1MIG_HOME": str(config.home()),
            "S1MIG_PROJECT_DIR": str(config.project_dir()),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PYTHONUNBUFFERED": "1",
            # a failed task fails the run at once: `airflow dags test` would wait out the retry delay
            "S1MIG_TASK_RETRIES": "0",
            # the lease records the run as started by the CLI, all its tasks in one process
            "S1MIG_RUN_ORIGIN": "cli",
        }
    )
    return env


def airflow_exe() -> str:
    exe = Path(sys.executable).with_name("airflow")
    return str(exe) if exe.exists() else "airflow"


def ensure_airflow_db(env: dict[str, str], echo: Callable[[str], None]) -> None:
    """`airflow db migrate` once per Airflow version (serialised by a lock file)."""
    home = Path(env["AIRFLOW_HOME"])
    from importlib.metadata import version

    marker = home / f".migrated-{version('apache-airflow')}"
    with open(home / ".migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return
        echo("preparing Airflow metadata database (first run only)...")
        proc = subprocess.run([airflow_exe(), "db", "migrate"], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            out = home / "db-migrate.log"
            out.write_text(proc.stdout + proc.stderr)
            raise S1migError(f"airflow db migrate failed (exit code {proc.returncode}): its output is in {out}")
        marker.touch()
