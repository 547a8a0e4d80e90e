"""Errors that stop a run, each with one human line that says what and where."""

from __future__ import annotations

import psycopg


class S1migError(Exception):
    """Base class: str(error) is the one-line reason shown to the operator."""


class DropRejected(S1migError):
    """A drop failed verification; nothing of it was loaded."""

    def __init__(self, drop_date: str, file: str, line: int | None, problem: str):
        self.drop_date = drop_date
        self.file = file
        self.line = line
        self.problem = problem
        where = f"{file} line {line}" if line else file
        super().__init__(f"drop {drop_date} rejected: {where}: {problem}")

    def as_dict(self) -> dict:
        return {
            "drop_date": self.drop_date,
            "file": self.file,
            "line": self.line,
            "problem": self.problem,
            "message": str(self),
        }


class GateBlocked(S1migError):
    """The reconciliation gate found blocking failures; nothing is exported."""


class DbtFailed(S1migError):
    """dbt build failed for the report date."""


class DropMissing(Exception):
    """The drop (folder or manifest.json) has not arrived yet. In the DAG the
    wait_for_drop sensor waits for a late drop before `land` runs; not an S1migError on
    purpose: a transient filesystem fault after the sensor saw the drop is worth a retry."""

    def __init__(self, drop_date: str, path: str):
        super().__init__(f"drop {drop_date} not found: {path} does not exist (not delivered yet?)")


class DropOutOfSequence(DropRejected):
    """The drop itself may be sound, but its date cannot be landed now: a gap before it,
    a date before the warehouse's first drop, or not the first drop that was chosen. The
    message says how to proceed."""

    def __init__(self, drop_date: str, problem: str):
        self.drop_date = drop_date
        self.file = ""
        self.line = None
        self.problem = problem
        S1migError.__init__(self, f"drop {drop_date} not landed: {problem}")


class ConfigInvalid(S1migError):
    """An S1MIG_* setting has a value that cannot be used; the message names it."""


class NothingToUndo(S1migError):
    """`s1mig land --undo D` found no landing of D it may take back; the message says why."""


class DatabaseUnreachable(psycopg.OperationalError):
    """The warehouse database cannot be reached (server down, wrong host or port, a socket
    folder that does not exist, a connection that timed out) or refused the connection.
    str(error) is one line naming the server (host and port, or the socket path; never
    the password) and what libpq said. A psycopg.OperationalError, not an S1migError, on
    purpose: under a scheduler the task retries (the database may be restarting); under
    `s1mig run` (no retries) it ends the run with this line."""


class Stopped(BaseException):
    """The command got SIGINT (Ctrl-C), SIGTERM (cron, systemd, `timeout`) or SIGHUP and
    stops. A BaseException, like KeyboardInterrupt, so `except Exception` blocks let it
    through; `notes` gather what each layer stopped, for the one line the CLI prints."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        self.signame = signal.Signals(signum).name
        self.notes: list[str] = []
        super().__init__(self.signame)
