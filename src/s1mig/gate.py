"""The reconciliation gate task: run the GX checkpoint for D, record every rule's
outcome in audit.gate_results, and block (GateBlocked) on any blocking failure."""

from __future__ import annotations

import datetime as dt
import logging
import os

from s1mig import config, db
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


def run_gate(report_date: dt.date, run_id: str, url: str | None = None) -> list:
    from s1mig_expectations import run_checkpoint

    outcomes = run_checkpoint(report_date, config.home() / "gx")
    with db.connect(url) as conn, conn.transaction():
        conn.execute(AUDIT_DDL)
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
