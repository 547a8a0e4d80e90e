"""The break register (spec section 6, v1.1): every instance of a warning (W1, W2) the
gate has found, with the first and last report date it was seen on and its state.

A break is one warning row: its rule and the row's text (the instance), e.g. "attempt
A party P: FAIL event E ... after its Success of D" for W2. The gate records every
instance of every warning rule on each run (`record`), so a re-run or a restatement of
the same date updates `last_seen` instead of adding a copy. States:

- ``open``: found and not yet acknowledged; listed by every run and by `s1mig breaks`;
- ``acknowledged``: an operator said who and why (`s1mig breaks ack`); kept for good;
- ``withdrawn``: a later run of the date it was first seen on no longer finds it (its
  drop was corrected); found again, it is open again.

Nothing is ever deleted: every change of state is also a row of audit.break_events
(who, when, why), so the register's history can be audited."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

from s1mig.errors import S1migError

DDL = """
create schema if not exists audit;
create table if not exists audit.breaks (
    break_id bigint generated always as identity primary key,
    rule_id text not null,
    instance text not null,
    first_seen date not null,
    last_seen date not null,
    state text not null default 'open' check (state in ('open', 'acknowledged', 'withdrawn')),
    acknowledged_by text,
    acknowledged_at timestamptz,
    acknowledged_why text,
    unique (rule_id, instance)
);
create table if not exists audit.break_events (
    break_id bigint not null references audit.breaks (break_id),
    event text not null,
    report_date date,
    run_id text,
    by_whom text,
    why text,
    at timestamptz not null default now()
);
"""


@dataclass(frozen=True)
class Break:
    break_id: int
    rule_id: str
    instance: str
    first_seen: dt.date
    last_seen: dt.date
    state: str
    acknowledged_by: str | None = None
    acknowledged_why: str | None = None

    def line(self) -> str:
        seen = f"{self.first_seen}" if self.first_seen == self.last_seen else f"{self.first_seen}..{self.last_seen}"
        text = f"#{self.break_id} {self.rule_id} [{self.state}] seen {seen}: {self.instance}"
        if self.state == "acknowledged":
            text += f" (acknowledged by {self.acknowledged_by}: {self.acknowledged_why})"
        return text

    def as_dict(self) -> dict:
        return {
            "break_id": self.break_id,
            "rule_id": self.rule_id,
            "instance": self.instance,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "state": self.state,
        }


def ensure(conn: psycopg.Connection) -> None:
    conn.execute(DDL)


def record(
    conn: psycopg.Connection, report_date: dt.date, run_id: str, rule_id: str, instances: list[str]
) -> tuple[int, int]:
    """Register what a warning rule found on D (in the caller's transaction). Returns
    (new, withdrawn). New instances are opened; known ones get last_seen; instances
    first seen on D that this run no longer finds are withdrawn."""
    new = 0
    withdrawn_before = {
        instance
        for (instance,) in conn.execute(
            "select instance from audit.breaks "
            "where rule_id = %s and state = 'withdrawn' and instance = any(%s::text[])",
            (rule_id, instances),
        )
    }
    for instance in instances:
        row = conn.execute(
            "insert into audit.breaks (rule_id, instance, first_seen, last_seen) values (%s, %s, %s, %s) "
            "on conflict (rule_id, instance) do update set "
            "first_seen = least(audit.breaks.first_seen, excluded.first_seen), "
            "last_seen = greatest(audit.breaks.last_seen, excluded.last_seen), "
            "state = case when audit.breaks.state = 'withdrawn' then 'open' else audit.breaks.state end "
            "returning break_id, (xmax = 0) as inserted",
            (rule_id, instance, report_date, report_date),
        ).fetchone()
        assert row is not None
        if row[1] or instance in withdrawn_before:
            new += 1
            conn.execute(
                "insert into audit.break_events (break_id, event, report_date, run_id) values (%s, %s, %s, %s)",
                (row[0], "opened" if row[1] else "reopened", report_date, run_id),
            )
    withdrawn = conn.execute(
        "update audit.breaks set state = 'withdrawn' where rule_id = %s and first_seen = %s and state = 'open' "
        "and not (instance = any(%s::text[])) returning break_id",
        (rule_id, report_date, instances),
    ).fetchall()
    for (break_id,) in withdrawn:
        conn.execute(
            "insert into audit.break_events (break_id, event, report_date, run_id, why) "
            "values (%s, 'withdrawn', %s, %s, 'no longer found by a run of its date')",
            (break_id, report_date, run_id),
        )
    return new, len(withdrawn)


_COLUMNS = "break_id, rule_id, instance, first_seen, last_seen, state, acknowledged_by, acknowledged_why"


def open_breaks(conn: psycopg.Connection, through: dt.date | None = None) -> list[Break]:
    """The open breaks (first seen on or before `through`, when given), oldest first."""
    if not _exists(conn):
        return []
    rows = conn.execute(
        f"select {_COLUMNS} from audit.breaks where state = 'open' "
        "and (%s::date is null or first_seen <= %s::date) order by first_seen, rule_id, break_id",
        (through, through),
    ).fetchall()
    return [Break(*r) for r in rows]


def all_breaks(conn: psycopg.Connection) -> list[Break]:
    if not _exists(conn):
        return []
    rows = conn.execute(f"select {_COLUMNS} from audit.breaks order by first_seen, rule_id, break_id").fetchall()
    return [Break(*r) for r in rows]


def acknowledge(conn: psycopg.Connection, break_id: int, by: str, why: str) -> Break:
    """Mark a break acknowledged (recorded with who, when and why; never deleted)."""
    if not by.strip() or not why.strip():
        raise S1migError("acknowledging a break needs --by NAME and --why TEXT")
    if not _exists(conn):
        raise S1migError(f"no break #{break_id}: the register is empty")
    with conn.transaction():
        row = conn.execute(
            f"select {_COLUMNS} from audit.breaks where break_id = %s for update", (break_id,)
        ).fetchone()
        if row is None:
            raise S1migError(f"no break #{break_id} (s1mig breaks --all lists them)")
        found = Break(*row)
        if found.state == "acknowledged":
            raise S1migError(f"break #{break_id} was already acknowledged by {found.acknowledged_by}")
        if found.state == "withdrawn":
            raise S1migError(
                f"break #{break_id} was withdrawn (a later run of {found.first_seen} no longer finds it): "
                "nothing to acknowledge"
            )
        conn.execute(
            "update audit.breaks set state = 'acknowledged', acknowledged_by = %s, acknowledged_at = now(), "
            "acknowledged_why = %s where break_id = %s",
            (by, why, break_id),
        )
        conn.execute(
            "insert into audit.break_events (break_id, event, by_whom, why) values (%s, 'acknowledged', %s, %s)",
            (break_id, by, why),
        )
        row = conn.execute(f"select {_COLUMNS} from audit.breaks where break_id = %s", (break_id,)).fetchone()
    assert row is not None  # read in the transaction that acknowledged it
    return Break(*row)


def _exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("select to_regclass('audit.breaks') is not null").fetchone()
    return bool(row and row[0])
