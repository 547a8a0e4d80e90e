"""Run the s1mig_daily DAG through Airflow itself (`airflow dags test`), with its home
under $S1MIG_HOME/airflow, and report progress and the one-line reason of a failure."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from s1mig import config, db

DAG_ID = "s1mig_daily"
TASKS = ("land", "dbt_build", "reconciliation_gate", "export", "run_summary", "restate_later_dates")


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


def _airflow() -> str:
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
        proc = subprocess.run([_airflow(), "db", "migrate"], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        marker.touch()


_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\w+)")
# a lease message in Airflow's log line: "<time> [info     ] <message> [s1mig.lease] loc=lease.py:123"
_LEASE_LINE = re.compile(
    r"((?:waiting for the warehouse|the warehouse was left by a run).*?)(?:\s+\[[\w.]+\]\s+loc=\S+.*)?$"
)


class AirflowHomeBusy(Exception):
    """Another `s1mig run` uses this Airflow home and did not finish within the wait."""


@contextmanager
def _one_dag_test(home: Path, report_date: dt.date, echo: Callable[[str], None]) -> Iterator[IO[str]]:
    """One `airflow dags test` at a time per Airflow home ($S1MIG_HOME/airflow): a second one
    for the same date would clear the first's task instances in the shared metadata
    database and crash it. Waits like the warehouse lease (S1MIG_LEASE_WAIT), naming the
    run that holds the home. The lock is inherited by `airflow dags test`, so it is held
    until that process ends too, and the kernel releases it when they die."""
    from s1mig import lease

    wait = lease.wait_seconds()
    started = time.monotonic()
    last_shown = None
    with open(home / ".dags-test.lock", "a+") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another `s1mig run`"
                waited = time.monotonic() - started
                if waited >= wait:
                    raise AirflowHomeBusy(
                        f"the Airflow home {home} is in use by {holder}; gave up after waiting {waited:.0f} s "
                        f"(S1MIG_LEASE_WAIT={wait:g}): run again when it has finished"
                    ) from None
                if last_shown is None or time.monotonic() - last_shown >= lease.PROGRESS_SECONDS:
                    last_shown = time.monotonic()
                    echo(f"  {lease.WAITING} the Airflow home is in use by {holder}; waited {waited:.0f} of {wait:g} s")
                time.sleep(min(lease.POLL_SECONDS, max(wait - waited, 0.05)))
        fh.seek(0)
        fh.truncate()
        since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        fh.write(f"`s1mig run` for {report_date} (pid {os.getpid()}, since {since})")
        fh.flush()
        yield fh


def run_dag(
    report_date: dt.date, landing: Path, out: Path, echo: Callable[[str], None] = print, skip: tuple[str, ...] = ()
) -> tuple[bool, str, Path]:
    """Run the DAG for one date. Returns (ok, reason, log file). Tasks in `skip` are
    marked successful without running (e.g. re-run only the gate and the export)."""
    unknown = set(skip) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(sorted(unknown))}; tasks are {', '.join(TASKS)}")
    if "export" in skip:  # nothing exported: nothing to summarise
        skip = (*skip, "run_summary", "restate_later_dates")
    url = db.warehouse_url()
    env = airflow_env(url)
    ensure_airflow_db(env, echo)
    logs = config.home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    log_file = logs / f"run-{report_date.isoformat()}-{stamp}.log"
    error_file = logs / f"run-{report_date.isoformat()}-{stamp}.error"
    env["S1MIG_ERROR_FILE"] = str(error_file)
    notice_file = logs / f"run-{report_date.isoformat()}-{stamp}.notices"
    env["S1MIG_NOTICE_FILE"] = str(notice_file)
    conf = {"report_date": report_date.isoformat(), "landing": str(landing.resolve()), "out": str(out.resolve())}
    cmd = [_airflow(), "dags", "test", DAG_ID, report_date.isoformat(), "-c", json.dumps(conf)]
    if skip:
        cmd += ["--mark-success-pattern", "^(" + "|".join(skip) + ")$"]
    seen: set[str] = set()
    started = time.monotonic()
    with ExitStack() as stack:
        try:
            lock = stack.enter_context(_one_dag_test(Path(env["AIRFLOW_HOME"]), report_date, echo))
        except AirflowHomeBusy as busy:
            log_file.write_text(f"{busy}\n")
            return False, str(busy), log_file
        with (
            open(log_file, "w") as log,
            subprocess.Popen(
                cmd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                pass_fds=(lock.fileno(),),  # `airflow dags test` holds the home's lock while it runs
            ) as proc,
        ):
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                match = _TASK_START.search(line)
                if match and match.group(1) not in seen:
                    seen.add(match.group(1))
                    echo(f"  [{time.monotonic() - started:6.1f}s] {report_date} {match.group(1)} ...")
                lease_line = _LEASE_LINE.search(line)
                if lease_line:  # another run holds the warehouse: say who, while waiting
                    echo(f"  [{time.monotonic() - started:6.1f}s] {report_date} {lease_line.group(1).strip()}")
    if notice_file.exists():
        for line in notice_file.read_text().splitlines():
            echo(f"  {line}")
    reason = error_file.read_text().strip().splitlines()[0] if error_file.exists() else ""
    ok = proc.returncode == 0 and not reason and ("export" in skip or _export_done(out, report_date))
    if not ok and not reason:
        reason = (
            f"DAG run failed (exit code {proc.returncode})"
            if proc.returncode
            else "the DAG run ended without exporting (no task ran: is the date before the DAG's start_date?)"
        )
    return ok, reason, log_file


def _export_done(out: Path, report_date: dt.date) -> bool:
    return (out / report_date.isoformat() / "manifest.json").is_file()
