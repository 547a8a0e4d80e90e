"""The reconciliation gate task: run the GX checkpoint for D, record every rule's
outcome in audit.gate_results, and block (GateBlocked) on any blocking failure."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from s1mig_expectations import migrated_state
from s1mig_expectations.checkpoint import BATCH_MODEL
from s1mig_expectations.rules import INHERITED_SQL, RULES, Rule

from s1mig import breaks, config, db, relations, run_tasks
from s1mig.errors import GateBlocked

log = logging.getLogger(__name__)

AUDIT_DDL = """
create schema if not exists audit;
create table if not exists audit.gate_results (
    run_id text not null,
    report_date date not null,
    rule_id text not null,
    rule_name text not null,
    severity text not null,
    status text not null,
    failing_count bigint not null,
    sample_keys text[] not null,
    checked_at timestamptz not null default now(),
    primary key (run_id, report_date, rule_id)
)"""


FACTS_DDL = """
create table if not exists audit.gate_facts (
    run_id text not null,
    report_date date not null,
    fact text not null,
    party_id text not null,
    value bigint not null,
    primary key (run_id, report_date, fact, party_id)
)"""


def _date_sql(report_date: dt.date) -> str:
    return f"date '{report_date.isoformat()}'"


def warning_instances(conn, rule: Rule, report_date: dt.date) -> list[str]:
    """Every row a warning rule finds on D (the checkpoint keeps only a sample): the
    instances of the break register. Warning rules read the day's rows only."""
    query = rule.query(report_date).replace("{batch}", relations.relation(BATCH_MODEL))
    return [r[0] for r in conn.execute(f"select record::text from ({query}) as found")]


def inherited_counts(conn, report_date: dt.date, run_id: str) -> dict[str, int]:
    """Rule 8's inherited installations per party, as the gate recorded them for the run."""
    if conn.execute("select to_regclass('audit.gate_facts') is null").fetchone()[0]:
        return {}
    rows = conn.execute(
        "select party_id, value from audit.gate_facts where run_id = %s and report_date = %s "
        "and fact = 'R8 inherited' order by party_id",
        (run_id, report_date),
    ).fetchall()
    return dict(rows)


GATE_STATE_PART = "_gate_state"  # the checkpoint of the rules that read the gate's kept state


def _move_rule_8_expectation(report_date: dt.date, url: str | None) -> str:
    started = time.monotonic()
    with db.connect(url) as conn, conn.transaction():
        how = migrated_state.move(conn, report_date)
    return f"{how} in {time.monotonic() - started:.1f} s"


# Under `s1mig run` every task of the run is in one process (run_tasks.ONE_PROCESS_RUN_ENV),
# so the gate's import of great_expectations (2-3 s of CPU) can be done beside the dbt
# build, which runs in a process of its own. A deployment's workers run each task in a
# process of its own, where an import ahead would be wasted: nothing is imported there.


def _import_gx() -> None:
    try:
        import great_expectations  # noqa: F401
        from great_expectations.data_context.types import base, resource_identifiers  # noqa: F401
    except Exception as err:  # noqa: BLE001 - the gate imports it again and says what failed
        log.debug("great_expectations not imported beside the build: %s", err)


@contextmanager
def imported_beside_build() -> Iterator[None]:
    """Around the dbt build: under `s1mig run` (run_tasks.ONE_PROCESS_RUN_ENV), great_expectations
    is imported on a thread of this process meanwhile, ready when the gate task starts."""
    if os.environ.get(run_tasks.ONE_PROCESS_RUN_ENV) != "1":
        yield
        return
    thread = threading.Thread(target=_import_gx, name="gate-import", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def run_gate(report_date: dt.date, run_id: str, url: str | None = None) -> list:
    # GX reads the warehouse from ${S1MIG_GX_URL}: the same database as `url`, also when
    # the gate runs in this process without Airflow's environment (pipeline.run_direct)
    os.environ["S1MIG_GX_URL"] = db.warehouse_env(url or db.warehouse_url())["S1MIG_GX_URL"]
    # Rule 8's expectation is moved to the end of D (in the database, one transaction, on
    # a thread of its own) while this thread imports GX and runs the rules that do not
    # read it; the rules that do (Rule.reads_gate_state) run once the move has committed,
    # as a second checkpoint of the date (its names end in GATE_STATE_PART).
    independent = tuple(r for r in RULES if not r.reads_gate_state)
    after_move = tuple(r for r in RULES if r.reads_gate_state)
    gx_root = config.home() / "gx"
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gate-r8") as pool:
        moving = pool.submit(_move_rule_8_expectation, report_date, url)
        try:
            started = time.monotonic()
            from s1mig_expectations import prepare_checkpoint, update_data_docs

            imported = time.monotonic()
            first = prepare_checkpoint(report_date, gx_root, independent)
            outcomes = first.run()
            log.info(
                "gate %s: great_expectations imported in %.1f s, %d rules checked in %.1f s",
                report_date,
                imported - started,
                len(independent),
                time.monotonic() - imported,
            )
        finally:
            how = moving.result()  # the move's error first: rule 8 could not be checked
    log.info("gate %s: rule 8's expectation %s", report_date, how)
    second = prepare_checkpoint(report_date, gx_root, after_move, GATE_STATE_PART, after=first)
    outcomes += second.run()
    update_data_docs(first, second)
    order = {r.rule_id: i for i, r in enumerate(RULES)}
    outcomes.sort(key=lambda o: order[o.rule.rule_id])
    with db.connect(url) as conn, conn.transaction():
        conn.execute(AUDIT_DDL)
        conn.execute(FACTS_DDL)
        breaks.ensure(conn)
        for rule in RULES:
            if rule.severity == "warning":
                breaks.record(conn, report_date, run_id, rule.rule_id, warning_instances(conn, rule, report_date))
        conn.execute("delete from audit.gate_facts where run_id = %s and report_date = %s", (run_id, report_date))
        for party_id, received, inherited in conn.execute(
            INHERITED_SQL.replace("{report_date}", _date_sql(report_date))
        ):
            conn.execute(
                "insert into audit.gate_facts (run_id, report_date, fact, party_id, value) values "
                "(%s, %s, 'R8 inherited', %s, %s), (%s, %s, 'R8 received', %s, %s)",
                (run_id, report_date, party_id, inherited, run_id, report_date, party_id, received),
            )
        conn.execute("delete from audit.gate_results where run_id = %s and report_date = %s", (run_id, report_date))
        for o in outcomes:
            conn.execute(
                "insert into audit.gate_results (run_id, report_date, rule_id, rule_name, severity, status, "
                "failing_count, sample_keys) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    run_id,
                    report_date,
                    o.rule.rule_id,
                    o.rule.name,
                    o.rule.severity,
                    o.status,
                    o.failing_count,
                    o.sample_keys,
                ),
            )
    for o in outcomes:
        log.info("gate %s: %s %s", report_date, o.status.upper(), o.line())
    warnings = [o for o in outcomes if o.status == "warn"]
    for o in warnings:
        log.warning("gate %s: warning (does not block): %s", report_date, o.line())
    notice_file = os.environ.get("S1MIG_NOTICE_FILE")
    if notice_file and warnings:
        with open(notice_file, "a") as fh:
            fh.writelines(f"{report_date} warning: {o.line()}\n" for o in warnings)
    blocking = [o for o in outcomes if o.status == "fail"]
    if blocking:
        raise GateBlocked(f"gate blocked export of {report_date}: " + " | ".join(o.line() for o in blocking))
    return outcomes
