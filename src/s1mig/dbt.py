"""Run dbt against the warehouse, with the environment that profiles.yml reads."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from s1mig import config, db
from s1mig.errors import DatabaseUnreachable, DbtFailed

log = logging.getLogger(__name__)


def dbt_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(db.warehouse_env(url))
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return env


def dbt_command(args: list[str]) -> list[str]:
    project = config.dbt_project_dir()
    work = config.home() / "dbt"
    exe = Path(sys.executable).with_name("dbt")
    return [
        str(exe) if exe.exists() else "dbt",
        *args,
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
    ]


def run_dbt(args: list[str], url: str | None = None, echo=print, extra_env: dict[str, str] | None = None) -> None:
    """Run a dbt command (with `extra_env` added to its environment), streaming its progress
    lines; raise DbtFailed on failure, or DatabaseUnreachable (naming the server) when the
    warehouse cannot be reached."""
    url = url or db.warehouse_url()
    with db.connect(url) as conn:
        db.ensure_bi_role(conn)
        db.ensure_database_settings(conn)
    cmd = dbt_command(args)
    log.info("running %s", " ".join(cmd))
    errors: list[str] = []
    database_errors: list[str] = []
    in_database_error = False
    fatal: list[str] = []  # dbt's "Encountered an error:" block: a failure before or outside the models
    in_fatal = False
    env = {**dbt_env(url), **(extra_env or {})}
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = _strip_ansi(line.rstrip("\n"))
            if echo:
                echo(line)
            message = _message(line)
            if message == "Encountered an error:":
                in_fatal = True
                continue
            if in_fatal:
                if message:
                    fatal.append(message)
                continue
            if re.search(r"\b(ERROR|FAIL)\b", line) and " of " in line:
                errors.append(message)
            elif message.startswith("Database Error in "):
                in_database_error = True
            elif not message:
                in_database_error = False
            elif in_database_error and not message.startswith(("compiled code at", "CONTEXT:")):
                database_errors.append(message)  # the database's message: the problem and where it lies
    if proc.returncode != 0:
        what = f"dbt {' '.join(args[:1])} failed"
        try:  # a dead or unreachable server is said as such, naming it, not as "exit code 2"
            db.check_reachable(url)
        except DatabaseUnreachable as err:
            raise DatabaseUnreachable(f"{what}: {err}") from None
        detail = "; ".join(errors[:5]) or " ".join(fatal[:6]) or f"exit code {proc.returncode}"
        if database_errors:
            detail += ": " + " ".join(database_errors[:10])
        raise DbtFailed(f"{what}: {detail} (log: {config.home() / 'dbt' / 'logs'})")


REPORT_DATE_ENV = "S1MIG_REPORT_DATE"


# The daily build leaves out dbt's unit tests, as dbt advises for production: their inputs
# are fixed in the project, so they say the same every day (about 1.3 s of every build).
# They run where the code changes: the test suite (tests/test_dbt_unit_tests.py) and
# `s1mig dbt test --select test_type:unit` by hand (docs/operations.md).
DAILY_BUILD = ("build", "--exclude-resource-type", "unit_test")


def build(report_date: dt.date, url: str | None = None, echo=print) -> None:
    """The daily `dbt build` (DAILY_BUILD) for report date D, given in the environment rather
    than as `--vars`: dbt then parses only what changed since the last build (partial
    parsing), not the whole project again for every new date (macros/report_date.sql)."""
    run_dbt(list(DAILY_BUILD), url, echo, extra_env={REPORT_DATE_ENV: report_date.isoformat()})


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TIME_PREFIX = re.compile(r"^\d{2}:\d{2}:\d{2}\s+")


def _message(line: str) -> str:
    """A dbt output line without its time prefix and indentation."""
    return _TIME_PREFIX.sub("", line).strip()


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)
