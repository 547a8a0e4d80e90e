"""Run the s1mig_daily DAG through Airflow itself (`airflow dags test`), with its home
under $S1MIG_HOME/airflow, and report progress and the one-line reason of a failure.

Faults (docs/operations.md, "Stopping a run, and when it fails"):
* the warehouse is checked before Airflow starts: an unreachable server fails within
  S1MIG_CONNECT_TIMEOUT seconds with one line naming it (DatabaseUnreachable);
* tasks never retry under `s1mig run` (S1MIG_TASK_RETRIES=0), so a failure ends the run at
  once; its reason is our one-line error (S1MIG_ERROR_FILE), else the failed task and its
  exception read from Airflow's output, said as a database fault when the server is gone;
* every run has its own log file, also when two start in the same second;
* stopped (SIGINT, SIGTERM, SIGHUP: errors.Stopped) or failing unexpectedly, the run stops
  everything it started: every process descending from this one in its session
  (`airflow dags test`, dbt, their children; this process is their subreaper, so none
  escapes to init when its parent dies first) is frozen, then killed; the warehouse lease
  their run held is released."""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import fcntl
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

import psycopg

from s1mig import airflow_home, config, db, run_tasks
from s1mig.errors import ConfigInvalid, DatabaseUnreachable, S1migError, Stopped

log = logging.getLogger(__name__)

DAG_ID = "s1mig_daily"
# the tasks `--skip` may name, in order (s1mig.run_tasks); take_lease (setup) and release_lease
# (teardown) always run, wait_for_drop is skipped with land, release and publish with export
TASKS = run_tasks.LEASED
ALL_TASKS = run_tasks.ALL
_ALWAYS = {  # why a task of ALL_TASKS cannot be named in --skip
    "take_lease": "always runs (the run's hold on the warehouse)",
    "release_lease": "always runs (the run's hold on the warehouse)",
    "wait_for_drop": "is skipped with land (--skip land)",
    "release": "runs after every export (nothing leaves without its release); skip export to skip it",
    "publish": "runs after every export (nothing leaves without its release); skip export to skip it",
}
STOP_WAIT = 10.0  # seconds the processes of a stopped run may take to be gone


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


def check_skip(skip: tuple[str, ...]) -> None:
    """An unknown task name in --skip is one line naming the tasks that can be skipped."""
    unknown = [t for t in skip if t not in TASKS]
    if not unknown:
        return
    takes = f"the tasks --skip takes are {', '.join(TASKS)}"
    always = [t for t in unknown if t in ALL_TASKS]
    if always:
        raise S1migError(f"--skip: {always[0]} {_ALWAYS[always[0]]}; {takes}")
    raise S1migError(f"--skip: unknown task {', '.join(map(repr, unknown))}; {takes}")


def check_gate_before_export(skip: tuple[str, ...]) -> None:
    """Nothing leaves without the reconciliation gate: skipping the gate skips the export."""
    if "reconciliation_gate" in skip and "export" not in skip:
        raise S1migError(
            "--skip: the export never runs without the reconciliation gate; skip export too "
            "(--skip reconciliation_gate,export), or re-run the gate and the export with --skip land,dbt_build"
        )


def check_four_eyes(skip: tuple[str, ...]) -> None:
    """`s1mig run` (`airflow dags test`, no API server) cannot be answered: with four-eyes
    release on, a run that exports is refused before it starts."""
    from s1mig import release

    if release.four_eyes() and "export" not in skip:
        raise S1migError(
            f"four-eyes release is on ({release.FOUR_EYES_ENV}=true): `s1mig run` cannot wait for an approval; "
            "run the date with `s1mig serve` and `s1mig trigger`, then `s1mig approve` it "
            f"(or run with {release.FOUR_EYES_ENV}=false)"
        )


def new_log_file(logs: Path, report_date: dt.date) -> Path:
    """A log file of its own for this run: run-<D>-<time>.log, created exclusively, with
    -2, -3, ... when another run of D started in the same second. Its .error and .notices
    files share its name."""
    base = f"run-{report_date.isoformat()}-{time.strftime('%Y%m%dT%H%M%S')}"
    for n in range(1, 10_000):
        path = logs / (f"{base}.log" if n == 1 else f"{base}-{n}.log")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return path
    raise S1migError(f"cannot create a log file {base}*.log in {logs}: 9,999 exist")


def check_deadline_plugin() -> None:
    """With the release deadline on, s1mig's Airflow plugin must be installed: the scheduler
    (or `airflow dags test`) finds the deadline reference only through it, and could not
    otherwise read the DAG's deadline (ConfigInvalid saying what to do)."""
    from importlib.metadata import entry_points

    from s1mig import notify

    try:
        wanted = bool(notify.recipients()) and notify.deadline_time_of_day() is not None
    except ValueError as err:
        raise ConfigInvalid(str(err)) from None
    if wanted and not any(ep.value.startswith("s1mig.airflow_plugin") for ep in entry_points(group="airflow.plugins")):
        raise ConfigInvalid(
            "the release deadline (S1MIG_NOTIFY_TO is set) needs s1mig's Airflow plugin, which is not installed:"
            " install s1mig with pip (make install) or set S1MIG_RELEASE_DEADLINE=off"
        )


def preflight(url: str) -> None:
    """The warehouse answers (DatabaseUnreachable naming it, within S1MIG_CONNECT_TIMEOUT,
    before Airflow starts), stopped runs' statements will not outlive them, and the release
    deadline's plugin is there when the deadline is on."""
    check_deadline_plugin()
    db.check_reachable(url)
    try:
        with db.connect(url, autocommit=True) as conn:
            db.ensure_database_settings(conn)
    except DatabaseUnreachable:
        raise
    except psycopg.Error as err:  # a setting we could not make is no reason not to run
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        log.warning("warehouse settings not checked: %s", first)


def run_dag(
    report_date: dt.date, landing: Path, out: Path, echo: Callable[[str], None] = print, skip: tuple[str, ...] = ()
) -> tuple[bool, str, Path]:
    """Run the DAG for one date. Returns (ok, reason, log file). Tasks in `skip` are
    marked successful without running (e.g. re-run only the gate and the export).
    Raises DatabaseUnreachable before starting Airflow when the warehouse does not answer;
    Stopped (after stopping everything it started) when the command is stopped."""
    check_skip(skip)
    check_gate_before_export(skip)
    check_four_eyes(skip)
    if "land" in skip:  # the drop is not read: no need to wait for it
        skip = (*skip, "wait_for_drop")
    if "export" in skip:  # nothing exported: nothing to summarise, release or publish
        skip = (*skip, "run_summary", "restate_later_dates", "release", "publish")
    url = db.warehouse_url()
    preflight(url)
    env = airflow_home.airflow_env(url)
    become_subreaper()  # before any child: nothing it starts escapes a stop
    airflow_home.ensure_airflow_db(env, echo)
    logs = config.home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = new_log_file(logs, report_date)
    error_file = log_file.with_suffix(".error")
    env["S1MIG_ERROR_FILE"] = str(error_file)
    notice_file = log_file.with_suffix(".notices")
    env["S1MIG_NOTICE_FILE"] = str(notice_file)
    env[run_tasks.ONE_PROCESS_RUN_ENV] = "1"  # `airflow dags test` runs all the tasks of the run in one process
    conf = {"report_date": report_date.isoformat(), "landing": str(landing.resolve()), "out": str(out.resolve())}
    cmd = [airflow_home.airflow_exe(), "dags", "test", DAG_ID, report_date.isoformat(), "-c", json.dumps(conf)]
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
            open(log_file, "w") as log_fh,
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
            try:
                for line in proc.stdout:
                    log_fh.write(line)
                    match = _TASK_START.search(line)
                    if match and match.group(1) not in seen:
                        seen.add(match.group(1))
                        echo(f"  [{time.monotonic() - started:6.1f}s] {report_date} {match.group(1)} ...")
                    lease_line = _LEASE_LINE.search(line)
                    if lease_line:  # another run holds the warehouse: say who, while waiting
                        echo(f"  [{time.monotonic() - started:6.1f}s] {report_date} {lease_line.group(1).strip()}")
                proc.wait()
            except BaseException as exc:  # stopped (or broken): nothing it started outlives it
                pids = stop_descendants()
                released = release_lease_of(url, pids, exc.signame if isinstance(exc, Stopped) else type(exc).__name__)
                if isinstance(exc, Stopped):
                    log_fh.write(f"s1mig: stopped by {exc.signame}: {len(pids)} process(es) of the run killed\n")
                    exc.notes.append(
                        f"the run of {report_date} was stopped with the {len(pids)} process(es) it started"
                        + ("; its warehouse lease is released" if released else "")
                        + f" (log: {log_file})"
                    )
                raise
    _reap()  # orphans of the run that ended before it (this process is their subreaper)
    if notice_file.exists():
        for line in notice_file.read_text().splitlines():
            echo(f"  {line}")
    reason = error_file.read_text().strip().splitlines()[0] if error_file.exists() else ""
    ok = proc.returncode == 0 and not reason and ("export" in skip or _export_done(out, report_date))
    if not ok and not reason:
        reason = _reason_from_log(log_file, url)
    if not ok and not reason:
        reason = (
            f"DAG run failed (exit code {proc.returncode})"
            if proc.returncode
            else "the DAG run ended without exporting (no task ran: is the date before the DAG's start_date?)"
        )
    return ok, reason, log_file


# ----------------------------------------------------------------------------- why a run failed

_LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")  # a line of Airflow's log (not a traceback's)
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*): (.*)$")


def _exception(block: list[str]) -> str | None:
    """'Type: message' of the last exception of a traceback block (continuation lines joined)."""
    starts = [i for i, line in enumerate(block) if line.startswith("Traceback (most recent call last)")]
    for i in range(starts[-1] + 1 if starts else 0, len(block)):
        m = _EXCEPTION_LINE.match(block[i])
        if m:
            text = " ".join([m.group(2).strip(), *(line.strip() for line in block[i + 1 :] if line.strip())])
            return f"{m.group(1).rsplit('.', 1)[-1]}: {text}"[:800]
    return None


def failure_from_log(log_file: Path) -> tuple[str | None, str | None]:
    """(task, 'Type: message') of the first task that failed with an exception, read from
    Airflow's output; (None, None) when there is none."""
    task = failed = None
    block: list[str] | None = None
    with open(log_file, errors="replace") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if block is not None:
                if not _LOG_LINE.match(line):
                    block.append(line)
                    continue
                exc = _exception(block)
                if exc:
                    return failed, exc
                block = None
            match = _TASK_START.search(line)
            if match:
                task = match.group(1)
            if "Task failed with exception" in line:
                block, failed = [], task
    exc = _exception(block) if block else None
    return (failed, exc) if exc else (None, None)


def _reason_from_log(log_file: Path, url: str) -> str:
    """The failed task and its exception; a gone warehouse said as such, naming it."""
    task, exc = failure_from_log(log_file)
    if exc and exc.startswith("DatabaseUnreachable: "):
        return exc.removeprefix("DatabaseUnreachable: ")
    try:
        db.check_reachable(url)
    except DatabaseUnreachable as gone:
        return f"{gone}" + (f" (task {task} failed: {exc})" if exc else "")
    except Exception:  # noqa: BLE001 - the task's own error is the reason to give
        pass
    return f"task {task} failed: {exc}" if exc else ""


# ----------------------------------------------------------------------------- stopping a run

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Make this process the subreaper of everything it starts (Linux): a process whose
    parent dies first (dbt when `airflow dags test` is killed) is re-parented here, not to
    init, so a stop still finds it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def session_processes(sid: int) -> list[int]:
    """The live processes (not zombies) of session `sid`."""
    return [pid for pid, (_, session, state) in _processes().items() if session == sid and state not in ("Z", "X")]


def file_locked(path: Path) -> bool:
    """Whether another process holds an exclusive flock on `path` (created when missing)."""
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, state) of every process (Linux /proc)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[3]), fields[0])
    return table


def descendants(root: int | None = None) -> set[int]:
    """The live processes descending from `root` (default: this one) in its session: what
    it started. A process that left the session (the embedded PostgreSQL server detaches
    itself) is not part of the run, nor anything under it."""
    root = root or os.getpid()
    table = _processes()
    session = os.getsid(root)
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (parent, _, _) in table.items():
        children[parent].append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            _, sid, state = table[child]
            if child not in found and sid == session and state not in ("Z", "X"):
                found.add(child)
                todo.append(child)
    return found


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie or a dead process does not), read from /proc."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _reap() -> None:
    """Collect every finished child (our own and the orphans re-parented to us)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_descendants(wait: float = STOP_WAIT) -> set[int]:
    """Stop everything this process started: freeze each descendant (SIGSTOP: none can fork
    or hand its children to init while we look) until no new one appears, then SIGKILL them
    all and wait (at most `wait` seconds) until they are gone. Returns their pids."""
    frozen: set[int] = set()
    for _ in range(100):
        new = descendants() - frozen
        if not new:
            break
        for pid in new:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGSTOP)
        frozen |= new
    for pid in frozen:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while True:
        _reap()
        if not any(process_alive(pid) for pid in frozen) or time.monotonic() >= deadline:
            return frozen
        time.sleep(0.05)


def release_lease_of(url: str, pids: set[int], how: str) -> bool:
    """Release the warehouse lease when the run holding it was one of `pids` (all dead now)
    on this host; best effort, within a few seconds (the database may be the fault)."""
    from s1mig import lease

    if not pids:
        return False
    try:
        with db.connect(url, autocommit=True, connect_timeout=3) as conn:
            if db.scalar(conn, "select to_regclass('audit.run_lease') is null"):
                return False
            row = conn.execute(
                "select token, pid, host from audit.run_lease where lease = %s and released_at is null",
                (lease.LEASE,),
            ).fetchone()
        if row and row[0] and row[1] in pids and row[2] == socket.gethostname():
            quiet = logging.getLogger(lease.__name__)
            level = quiet.level
            quiet.setLevel(logging.WARNING)  # the stop's one line says it
            try:
                return lease.release(url, row[0], f"run stopped ({how})")
            finally:
                quiet.setLevel(level)
    except (psycopg.Error, S1migError):
        pass
    return False


def _export_done(out: Path, report_date: dt.date) -> bool:
    return (out / report_date.isoformat() / "manifest.json").is_file()
