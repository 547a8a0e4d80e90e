"""Run dbt against the warehouse, with the environment that profiles.yml reads."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg import sql

from s1mig import config, db, dbt_main, dbt_schedule
from s1mig.errors import DatabaseUnreachable, DbtFailed

log = logging.getLogger(__name__)


def _work_dir() -> Path:
    """dbt's target and log directories, and the node times of s1mig.dbt_schedule."""
    return config.home() / "dbt"


def dbt_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(db.warehouse_env(url))
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    env[dbt_schedule.TIMES_ENV] = str(_work_dir() / "node_times.json")  # beside "target"
    return env


def dbt_program() -> list[str]:
    """dbt's command line, as s1mig runs it: the `dbt` script's own entry point, with the
    order of the nodes on dbt's threads set by s1mig.dbt_schedule (s1mig.dbt_main)."""
    return [sys.executable, "-m", "s1mig.dbt_main"]


def dbt_command(args: list[str]) -> list[str]:
    project = config.dbt_project_dir()
    work = _work_dir()
    return [
        *dbt_program(),
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


class _Output:
    """What a dbt command said, read line by line as dbt's console prints it: the failed
    nodes, the database's own messages, and dbt's "Encountered an error:" block (a failure
    before or outside the models)."""

    def __init__(self, echo) -> None:
        self.echo = echo
        self.errors: list[str] = []
        self.database_errors: list[str] = []
        self.fatal: list[str] = []
        self._in_database_error = False
        self._in_fatal = False

    def line(self, line: str) -> None:
        line = _strip_ansi(line.rstrip("\n"))
        if self.echo:
            self.echo(line)
        message = _message(line)
        if message == "Encountered an error:":
            self._in_fatal = True
            return
        if self._in_fatal:
            if message:
                self.fatal.append(message)
            return
        if re.search(r"\b(ERROR|FAIL)\b", line) and " of " in line:
            self.errors.append(message)
        elif message.startswith(("Database Error in ", "Compilation Error in ")):
            self._in_database_error = True
        elif not message:
            self._in_database_error = False
        elif self._in_database_error and not message.startswith(("compiled code at", "CONTEXT:", ">")):
            # the database's message (the problem and where it lies), or a model's own refusal
            # (exceptions.raise_compiler_error) without the macro call stack
            self.database_errors.append(message)

    def failed(self, args: list[str], url: str, exit_code: int) -> Exception:
        what = f"dbt {' '.join(args[:1])} failed"
        try:  # a dead or unreachable server is said as such, naming it, not as "exit code 2"
            db.check_reachable(url)
        except DatabaseUnreachable as err:
            return DatabaseUnreachable(f"{what}: {err}")
        detail = "; ".join(self.errors[:5]) or " ".join(self.fatal[:6]) or f"exit code {exit_code}"
        if self.database_errors:
            detail += ": " + " ".join(self.database_errors[:10])
        return DbtFailed(f"{what}: {detail} (log: {config.home() / 'dbt' / 'logs'})")


# Where dbt runs. In a child process by default: a DAG task builds once per process, and
# stopping the task stops dbt with it. Inside `in_this_process()` (the direct path and the
# tests, which build many times in one process) through dbt's programmatic API (dbtRunner)
# in this process: dbt is imported once, not at every build (about 2.4 s a build instead
# of 4.8 s on an idle machine; docs/performance.md item 18). The same dbt, project,
# profile, arguments, environment and log file; what dbt says is read from its events, as
# its console prints them.
_in_process = 0


@contextmanager
def in_this_process() -> Iterator[None]:
    """dbt commands run in this process while inside (nested: the outermost ends it)."""
    global _in_process
    _in_process += 1
    try:
        yield
    finally:
        _in_process -= 1


def run_dbt(args: list[str], url: str | None = None, echo=print, extra_env: dict[str, str] | None = None) -> None:
    """Run a dbt command (with `extra_env` added to its environment), streaming its progress
    lines; raise DbtFailed on failure, or DatabaseUnreachable (naming the server) when the
    warehouse cannot be reached."""
    url = url or db.warehouse_url()
    with db.connect(url) as conn:
        db.ensure_bi_role(conn)
        db.ensure_database_settings(conn)
    cmd = dbt_command(args)
    env = {**dbt_env(url), **(extra_env or {})}
    output = _Output(echo)
    if _in_process:
        log.info("running %s (in this process)", " ".join(cmd))
        exit_code = _run_here(cmd[len(dbt_program()) :], env, output)
    else:
        log.info("running %s", " ".join(cmd))
        out = subprocess.PIPE
        with subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                output.line(line)
        exit_code = proc.returncode
    if exit_code != 0:
        raise output.failed(args, url, exit_code)


_CONSOLE_LEVELS = frozenset({"info", "warn", "error"})  # what dbt's console prints by default


def _run_here(args: list[str], env: dict[str, str], output: _Output) -> int:
    """dbt `args` through dbtRunner in this process, with `env` as the environment meanwhile;
    its console-level events go to `output` instead of the console (the log file keeps
    everything, as from a child process). dbt's exit code: 0, 1 (a node failed), 2 (dbt
    itself failed: its error as the "Encountered an error:" block)."""
    from dbt.cli.main import dbtRunner

    def event(msg) -> None:
        if msg.info.level in _CONSOLE_LEVELS:
            for line in (msg.info.msg or "").split("\n"):
                output.line(line)

    saved = {name: os.environ.get(name) for name, value in env.items() if os.environ.get(name) != value}
    os.environ.update(env)  # `env` is this environment with the warehouse's and the caller's added
    dbt_schedule.install()
    try:
        result = dbtRunner(callbacks=[event]).invoke([*args, "--log-level", "none", "--log-level-file", "debug"])
        dbt_main.record_node_times()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if result.exception is not None:
        output.line("Encountered an error:")
        for line in str(result.exception).splitlines():
            output.line(line)
        return 2
    return 0 if result.success else 1


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
    vacuum_index_only_states(url)


# Report states that models read through their index alone (index-only scans: S1MIG-008 and
# the cohort counts read the responsibilities so). Such a scan visits the heap for every
# page not marked all-visible, and nothing marks them in time by itself: a state built whole
# is vacuumed by autovacuum while the build's later transactions still hold back what it may
# mark, and after that its daily moves (a few thousand rows of 15 million) never reach
# autovacuum's threshold. So the build's end vacuums them: the pages the day's move touched
# (about 0.1 s; the first time after a whole build, the whole table). skip_locked: a vacuum
# already at work on one (autovacuum's, say) is left to it.
INDEX_ONLY_STATES = (("intermediate", "int_installation_responsibilities_eod"),)


def vacuum_index_only_states(url: str | None = None) -> None:
    with db.connect(url, autocommit=True) as conn:
        for schema, table in INDEX_ONLY_STATES:
            if db.scalar(conn, "select to_regclass(%s) is not null", (f'"{schema}"."{table}"',)):
                started = time.monotonic()
                conn.execute(sql.SQL("vacuum (skip_locked) {}").format(sql.Identifier(schema, table)))
                log.info("vacuumed %s.%s for its index-only scans in %.1fs", schema, table, time.monotonic() - started)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TIME_PREFIX = re.compile(r"^\d{2}:\d{2}:\d{2}\s+")


def _message(line: str) -> str:
    """A dbt output line without its time prefix and indentation."""
    return _TIME_PREFIX.sub("", line).strip()


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)
