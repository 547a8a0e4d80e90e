"""One run at a time per warehouse: the run lease (spec, "Runs, corrections and restatement").

The lease is one row of `audit.run_lease` in the warehouse itself, so every kind of run
that writes the warehouse meets it whatever started it: `s1mig run` / `backfill` (the
DAG under `airflow dags test`), a scheduler's DAG run, two schedulers with their own
metadata databases, `pipeline.run_direct`, and `s1mig land` / `s1mig dbt` by hand.

The row names the holding run: a token (new at every take: run ids are not unique
across Airflow metadata databases, and `airflow dags test` reuses `manual__<date>`),
its run id and report date, who started it (`cli`, `scheduler`, `direct`), the host,
pid and boot id of its process, when it was taken, its last heartbeat and when it
expires. Taking it is one transaction that locks the row (`select ... for update`):
of two runs that try at once, one takes it and the other sees the holder.

In the DAG a setup task (`take_lease`) takes it, waiting if another run holds it, and
passes the token on (XCom); every task confirms, before and after its work, that its
run still holds the lease and beats a heartbeat while it works; the teardown task
(`release_lease`) releases it whether the run succeeded or failed (a blocked gate, a
rejected drop). The direct path holds it around all its steps.

A run that dies (killed, crashed, its machine restarted) must leave nothing that blocks
the next one. Two signals tell a dead holder, checked by the run that wants the lease:

* The heartbeat. A holder renews `expires_at` (now + S1MIG_LEASE_EXPIRY, default 300 s)
  every few seconds while one of its tasks works and when a task ends (covering the gap
  to the next task); a task that fails and will be retried (a transient fault) extends
  it over the retry delay. A late drop is waited for before the lease (the DAG's
  wait_for_drop sensor), so a run waiting for its drop holds nothing. Past
  `expires_at` the lease is free. This works from any host, for every kind of holder.
* The holder's process, at once. `s1mig run` runs every task inside one process
  (`airflow dags test`), and a direct run is one process: such a lease records that its
  pid lives for the whole run. A run on the same host (same host name) that finds that
  process gone (or its pid reused: the process start time differs), or the host's boot
  id changed (a reboot), takes the lease at once. A scheduler's tasks run in processes
  that end between tasks, so a scheduler-held lease is judged by its heartbeat alone
  (and Airflow fails a task whose worker died, after which the teardown releases).

A PostgreSQL session advisory lock was the other candidate for quick death detection,
but no connection lives for a whole DAG run (each task is its own process; under a
scheduler, on any worker), so a lock free between two tasks would look like a dead
holder; and a session of a dead remote machine lingers on the server until TCP
keepalive gives up. The pid check is exact where it applies, the heartbeat everywhere.

Waiting is bounded: S1MIG_LEASE_WAIT seconds (default 3600; 0 = stop at once), with
a progress line naming the holder every 30 s, then one line naming it (LeaseBusy).
A task that finds another run took the lease after its own lapsed stops (LeaseLost):
what its earlier tasks built may have been replaced, so the date must be run again.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from s1mig import db
from s1mig.errors import S1migError

log = logging.getLogger(__name__)

LEASE = "warehouse"  # one lease per warehouse database
DDL_LOCK = 0x51_4D_4C_53  # advisory lock id: creating the lease table once
POLL_SECONDS = 2.0
PROGRESS_SECONDS = 30.0
DEFAULT_WAIT = 3600.0
DEFAULT_EXPIRY = 300.0
# what a waiting run logs; `s1mig run` finds these lines in Airflow's output and shows them
WAITING = "waiting for the warehouse:"

DDL = """
create schema if not exists audit;
create table if not exists audit.run_lease (
    lease text primary key,
    token text,
    run_id text,
    report_date date,
    started_by text,
    host text,
    pid integer,
    pid_started text,
    boot_id text,
    run_process boolean not null default false,
    acquired_at timestamptz,
    heartbeat_at timestamptz,
    expires_at timestamptz,
    released_at timestamptz,
    released_how text
)"""

_COLUMNS = (
    "token, run_id, report_date, started_by, host, pid, pid_started, boot_id, run_process, "
    "acquired_at, heartbeat_at, expires_at, released_at, now() as db_now"
)


class LeaseBusy(S1migError):
    """Another run holds the warehouse and did not let go within the wait."""


class LeaseLost(S1migError):
    """This run's lease lapsed and another run took the warehouse in between."""


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise S1migError(f"{name} must be a number of seconds, not {text!r}") from None
    if value < 0:
        raise S1migError(f"{name} must be 0 or more seconds, not {text!r}")
    return value


def wait_seconds() -> float:
    """How long a run waits for the lease (S1MIG_LEASE_WAIT, 0 = not at all)."""
    return _seconds("S1MIG_LEASE_WAIT", DEFAULT_WAIT)


def expiry_seconds() -> float:
    """How long a lease outlives its holder's last heartbeat (S1MIG_LEASE_EXPIRY)."""
    return max(_seconds("S1MIG_LEASE_EXPIRY", DEFAULT_EXPIRY), 1.0)


# ----------------------------------------------------------------------------- processes


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _process_alive(pid: int, started: str | None) -> bool:
    if Path("/proc/self/stat").exists():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: the heartbeat decides
        if fields[0] in ("Z", "X"):  # killed, waiting for its parent to collect it
            return False
        return not started or fields[19] == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Holder:
    """The run named in the lease row."""

    token: str | None
    run_id: str | None
    report_date: dt.date | None
    started_by: str | None
    host: str | None
    pid: int | None
    pid_started: str | None
    boot_id: str | None
    run_process: bool
    acquired_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    expires_at: dt.datetime | None
    released_at: dt.datetime | None
    db_now: dt.datetime

    def describe(self) -> str:
        since = self.acquired_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ") if self.acquired_at else "?"
        beat = ""
        if self.heartbeat_at:
            beat = f", last heartbeat {(self.db_now - self.heartbeat_at).total_seconds():.0f} s ago"
        date = f"report date {self.report_date}, " if self.report_date else ""
        who = f"started by {self.started_by} on {self.host} pid {self.pid}"
        return f"run {self.run_id} ({date}{who}, since {since}{beat})"

    def dead(self) -> str:
        """Why this holder no longer holds the warehouse ('' while it does)."""
        if self.token is None or self.released_at is not None:
            return "released"
        if self.expires_at is None or self.expires_at <= self.db_now:
            return f"{self.describe()} stopped its heartbeat"
        if self.run_process and self.host == socket.gethostname() and self.pid:
            if self.boot_id and _boot_id() and self.boot_id != _boot_id():
                return f"{self.describe()} was on this host before it restarted"
            if not _process_alive(self.pid, self.pid_started):
                return f"{self.describe()} died (its process {self.pid} is gone)"
        return ""


def _ensure_table(conn: psycopg.Connection) -> None:
    with conn.transaction():
        missing = conn.execute("select to_regclass('audit.run_lease') is null").fetchone()
        if missing is None or missing[0]:
            conn.execute("select pg_advisory_xact_lock(%s)", (DDL_LOCK,))
            conn.execute(DDL)
        conn.execute("insert into audit.run_lease (lease) values (%s) on conflict (lease) do nothing", (LEASE,))


def _read(conn: psycopg.Connection, lock: bool = False) -> Holder:
    row = conn.execute(
        f"select {_COLUMNS} from audit.run_lease where lease = %s" + (" for update" if lock else ""), (LEASE,)
    ).fetchone()
    assert row is not None  # _ensure_table inserted it
    return Holder(*row)


def holder(url: str | None = None) -> Holder | None:
    """The run holding the warehouse now, or None when it is free."""
    with db.connect(url, autocommit=True) as conn:
        _ensure_table(conn)
        current = _read(conn)
    return None if current.dead() else current


def _me(run_process: bool) -> dict:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_started": _process_start(pid),
        "boot_id": _boot_id(),
        "run_process": run_process,
    }


def _try_take(
    conn: psycopg.Connection, token: str, run_id: str, report_date: dt.date | None, started_by: str, run_process: bool
) -> tuple[bool, Holder, str]:
    """Take the lease if it is free (or already ours): (taken, previous holder, why it was free)."""
    with conn.transaction():
        current = _read(conn, lock=True)
        why = "" if current.token == token and current.released_at is None else current.dead()
        if current.token != token and not why:
            return False, current, ""
        me = _me(run_process)
        conn.execute(
            "update audit.run_lease set token = %(token)s, run_id = %(run_id)s, report_date = %(report_date)s, "
            "started_by = %(started_by)s, host = %(host)s, pid = %(pid)s, pid_started = %(pid_started)s, "
            "boot_id = %(boot_id)s, run_process = %(run_process)s, acquired_at = now(), heartbeat_at = now(), "
            "expires_at = now() + make_interval(secs => %(expiry)s), released_at = null, released_how = null "
            "where lease = %(lease)s",
            me
            | {
                "token": token,
                "run_id": run_id,
                "report_date": report_date,
                "started_by": started_by,
                "expiry": expiry_seconds(),
                "lease": LEASE,
            },
        )
    return True, current, why


def acquire(
    url: str | None,
    run_id: str,
    report_date: dt.date | None,
    started_by: str,
    *,
    run_process: bool = False,
    wait: float | None = None,
    echo: Callable[[str], None] = log.info,
) -> str:
    """Take the warehouse for a run, waiting up to `wait` seconds (default S1MIG_LEASE_WAIT)
    while another live run holds it. Returns the token that names this holding."""
    wait = wait_seconds() if wait is None else wait
    token = uuid.uuid4().hex
    started = time.monotonic()
    last_shown = None
    with db.connect(url, autocommit=True) as conn:
        _ensure_table(conn)
        while True:
            taken, previous, why = _try_take(conn, token, run_id, report_date, started_by, run_process)
            if taken:
                if why and why != "released" and previous.token:
                    echo(f"the warehouse was left by a run that no longer holds it: {why}; taking it over")
                    log.warning("lease taken over from %s: %s", previous.run_id, why)
                log.info("run %s holds the warehouse (lease %s)", run_id, token)
                return token
            waited = time.monotonic() - started
            if waited >= wait:
                raise LeaseBusy(
                    f"the warehouse is in use by {previous.describe()}; gave up after waiting {waited:.0f} s "
                    f"(S1MIG_LEASE_WAIT={wait:g}): run again when it has finished"
                )
            if last_shown is None or time.monotonic() - last_shown >= PROGRESS_SECONDS:
                last_shown = time.monotonic()
                echo(f"{WAITING} held by {previous.describe()}; waited {waited:.0f} of {wait:g} s")
            time.sleep(min(POLL_SECONDS, max(wait - waited, 0.05)))


def confirm(url: str | None, token: str, run_id: str, extend: float | None = None) -> None:
    """Check this run still holds the lease and renew it (expires now + `extend` seconds,
    default S1MIG_LEASE_EXPIRY). Raises LeaseLost naming the run that took it."""
    seconds = expiry_seconds() if extend is None else extend
    me = _me(False)
    with db.connect(url, autocommit=True) as conn:
        _ensure_table(conn)
        with conn.transaction():
            current = _read(conn, lock=True)
            if current.token != token or current.released_at is not None:
                now = "released" if current.token is None or current.released_at else f"held by {current.describe()}"
                raise LeaseLost(
                    f"run {run_id} no longer holds the warehouse (now {now}): its lease lapsed "
                    "(no heartbeat for S1MIG_LEASE_EXPIRY) and another run may have changed the warehouse "
                    "since; run the date again"
                )
            # the pid is informative for a scheduler's task (a process per task); a run-long
            # process (cli, direct) keeps the one it took the lease with
            conn.execute(
                "update audit.run_lease set heartbeat_at = now(), "
                "expires_at = greatest(expires_at, now() + make_interval(secs => %s)), "
                "host = case when run_process then host else %s end, "
                "pid = case when run_process then pid else %s end, "
                "pid_started = case when run_process then pid_started else %s end where lease = %s",
                (seconds, me["host"], me["pid"], me["pid_started"], LEASE),
            )


def release(url: str | None, token: str, how: str = "released") -> bool:
    """Let go of the lease if this holding still has it. Returns whether it did."""
    with db.connect(url, autocommit=True) as conn:
        _ensure_table(conn)
        released = conn.execute(
            "update audit.run_lease set released_at = now(), released_how = %s "
            "where lease = %s and token = %s and released_at is null",
            (how, LEASE, token),
        ).rowcount
    if released:
        log.info("warehouse lease released (%s)", how)
    return bool(released)


class Heartbeat:
    """Renews the lease every few seconds from a thread while a task works."""

    def __init__(self, url: str | None, token: str):
        self.url, self.token = url, token
        self.interval = min(30.0, expiry_seconds() / 5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s1mig-lease-heartbeat", daemon=True)
        self.lost = False

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = None
        while not self._stop.wait(self.interval):
            try:
                if conn is None or conn.closed:
                    conn = db.connect(self.url, autocommit=True)
                renewed = conn.execute(
                    "update audit.run_lease set heartbeat_at = now(), "
                    "expires_at = greatest(expires_at, now() + make_interval(secs => %s)) "
                    "where lease = %s and token = %s and released_at is null",
                    (expiry_seconds(), LEASE, self.token),
                ).rowcount
                if not renewed and not self.lost:
                    self.lost = True
                    log.error("the warehouse lease was lost while this task worked")
            except psycopg.Error as err:  # the database restarting: try again at the next beat
                log.warning("lease heartbeat failed: %s", err)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


@contextmanager
def held(
    url: str | None,
    run_id: str,
    report_date: dt.date | None,
    started_by: str,
    *,
    wait: float | None = None,
    echo: Callable[[str], None] = log.info,
) -> Iterator[str]:
    """Hold the warehouse for the whole block, in this process (a direct run, a command by
    hand): take (waiting), beat, check it is still held at the end, release."""
    token = acquire(url, run_id, report_date, started_by, run_process=True, wait=wait, echo=echo)
    try:
        with Heartbeat(url, token):
            yield token
        confirm(url, token, run_id)
    finally:
        release(url, token)


@contextmanager
def working(url: str | None, token: str, run_id: str) -> Iterator[None]:
    """One task of a run that holds the lease: confirm before, beat during, confirm after."""
    confirm(url, token, run_id)
    with Heartbeat(url, token):
        yield
    confirm(url, token, run_id)
