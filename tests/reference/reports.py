"""The reports on D's files, allocations, attempts and completions (001-007, 009), and the REPORTS registry."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date
from typing import Any

from s1mig.contract import MA_ERROR_CODES, REASON_CODES, REPORT_IDS

from .clock import in_day
from .completion import success_cof
from .formatting import COLUMNS, KEYS, finish, pct
from .installations import report_008, report_010
from .loading import Warehouse
from .model import Model

# Migration Scaling Methodology minimum allocation (spec section 1), written here from the spec;
# tests/test_contract_sources.py checks it equals contract.DMIN.
DMIN = 100


def _completed_attempt(report_date: date, av: Any, r: Any) -> dict[str, Any]:
    """The columns 001 and 006 share: the completed attempt, for the party of responsibility `r`."""
    a = av.attempt
    return {
        "report_date": report_date,
        "party_id": r.party_id,
        "installation_id": a.installation_id,
        "attempt_no": a.attempt_no,
        "fuel": r.fuel,
        "mpan": r.mpan,
        "mprn": r.mprn,
        "cohort": av.cohort,
        "group_id": av.group_id,
    }


def report_001(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Successfully Migrated Installations: attempt x party, Success completed on D."""
    m = Model(wh, report_date)
    rows = []
    for av, r in m.completions_on("Success", day_only=True):
        rows.append(
            {
                **_completed_attempt(report_date, av, r),
                "migration_date": av.attempt.scheduled_for,
                "completed_at": av.completion.completed_at,
                "cof_file_name": success_cof(av.cofs, r.party_id).cof_file_name,
            }
        )
    return finish("S1MIG-001", rows)


def report_002(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """MA Receipt Summary: one row per MA file received on D."""
    m = Model(wh, report_date)
    files: dict[str, list[Any]] = defaultdict(list)
    for rec in m.wh.migration_authorisations:
        if in_day(rec.received_at, report_date):
            files[rec.ma_file_name].append(rec)
    rows = []
    for name, recs in files.items():
        accepted = sum(1 for r in recs if r.ma_status == "ACCEPTED")
        rejected = sum(1 for r in recs if r.ma_status == "REJECTED")
        rows.append(
            {
                "report_date": report_date,
                "party_id": recs[0].party_id,
                "ma_file_name": name,
                "received_at": recs[0].received_at,
                "records_received": len(recs),
                "records_accepted": accepted,
                "records_rejected": rejected,
                "acceptance_rate_pct": pct(accepted, len(recs)),
            }
        )
    return finish("S1MIG-002", rows)


def report_003(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """MA Rejections: one row per rejected MA record received on D."""
    m = Model(wh, report_date)
    rows = []
    for rec in m.wh.migration_authorisations:
        if rec.ma_status == "REJECTED" and in_day(rec.received_at, report_date):
            rows.append(
                {
                    "report_date": report_date,
                    "party_id": rec.party_id,
                    "ma_file_name": rec.ma_file_name,
                    "ma_record_no": rec.ma_record_no,
                    "installation_id": rec.installation_id,
                    "mpxn": rec.mpxn,
                    "ma_error_code": rec.ma_error_code,
                    "ma_error_description": MA_ERROR_CODES.get(rec.ma_error_code),
                }
            )
    return finish("S1MIG-003", rows)


def report_004(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Capacity and Demand: one row per party with an allocation for migration_date = D."""
    m = Model(wh, report_date)
    latest: dict[str, Any] = {}
    for alloc in m.wh.capacity_allocations:  # latest allocated_at wins; a tie goes to the later-loaded row
        if alloc.migration_date == report_date:
            if alloc.party_id not in latest or alloc.allocated_at >= latest[alloc.party_id].allocated_at:
                latest[alloc.party_id] = alloc
    scheduled = Counter(a.party_id for a in m.wh.migration_attempts if a.scheduled_for == report_date)
    rows = []
    for party_id, alloc in latest.items():
        rows.append(
            {
                "report_date": report_date,
                "party_id": party_id,
                "demand": alloc.demand,
                "allocation": alloc.allocation,
                "scheduled": scheduled[party_id],
                "utilisation_pct": pct(scheduled[party_id], alloc.allocation),
                "dmin_met": alloc.allocation >= min(alloc.demand, DMIN),
            }
        )
    return finish("S1MIG-004", rows)


def report_005(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Daily Migration Progress: one row per (party, cohort) with any non-zero count."""
    m = Model(wh, report_date)
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for av in m.attempts:
        if av.attempt.scheduled_for == report_date:
            for r in av.parties:
                counts[(r.party_id, av.cohort)]["scheduled"] += 1
    for status, name in (("Success", "succeeded"), ("Failure", "failed")):
        for av, r in m.completions_on(status, day_only=True):
            counts[(r.party_id, av.cohort)][name] += 1
        for av, r in m.completions_on(status, day_only=False):
            counts[(r.party_id, av.cohort)]["cumulative_" + name] += 1
    rows = []
    for (party_id, cohort), c in counts.items():
        if not any(c.values()):
            continue
        rows.append(
            {
                "report_date": report_date,
                "party_id": party_id,
                "cohort": cohort,
                "scheduled": c["scheduled"],
                "succeeded": c["succeeded"],
                "failed": c["failed"],
                "success_rate_pct": pct(c["succeeded"], c["succeeded"] + c["failed"]),
                "cumulative_succeeded": c["cumulative_succeeded"],
                "cumulative_failed": c["cumulative_failed"],
            }
        )
    return finish("S1MIG-005", rows)


def report_006(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Migration Completion Status: attempt x party, completed (Success or Failure) on D."""
    m = Model(wh, report_date)
    rows = []
    for status in ("Success", "Failure"):
        for av, r in m.completions_on(status, day_only=True):
            rows.append(
                {
                    **_completed_attempt(report_date, av, r),
                    "completion_status": status,
                    "completion_reason_code": av.completion.reason_code if status == "Failure" else None,
                    "completed_at": av.completion.completed_at,
                }
            )
    return finish("S1MIG-006", rows)


def report_007(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Failure Analysis: 006 Failure rows on D counted by (party, cohort, group, stage, step, reason)."""
    m = Model(wh, report_date)
    failures: Counter = Counter()
    for av, r in m.completions_on("Failure", day_only=True):
        c = av.completion
        failures[(r.party_id, av.cohort, av.group_id, c.failed_stage, c.step_no, c.reason_code)] += 1
    rows = []
    for (party_id, cohort, group_id, stage, step, code), n in failures.items():
        rows.append(
            {
                "report_date": report_date,
                "party_id": party_id,
                "cohort": cohort,
                "group_id": group_id,
                "failed_stage": stage,
                "tmad_step_no": step,
                "reason_code": code,
                "reason_description": REASON_CODES[code][3] if code in REASON_CODES else None,
                "failures": n,
            }
        )
    return finish("S1MIG-007", rows)


def report_009(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """COF Dispatch: one row per COF file generated on D."""
    m = Model(wh, report_date)
    files: dict[str, list[Any]] = defaultdict(list)
    for c in m.wh.cof_records:
        if in_day(c.generated_at, report_date):
            files[c.cof_file_name].append(c)
    rows = []
    for name, recs in files.items():
        first = recs[0]
        rows.append(
            {
                "report_date": report_date,
                "party_id": first.party_id,
                "sec_party_signifier": first.sec_party_signifier,
                "cof_file_name": name,
                "cof_counter": first.cof_counter,
                "generated_at": first.generated_at,
                "records": len(recs),
                "success_records": sum(1 for c in recs if c.response == "SUCCESS"),
                "failure_records": sum(1 for c in recs if c.response == "FAILURE"),
            }
        )
    return finish("S1MIG-009", rows)


REPORTS: dict[str, Callable[[Warehouse, date], list[dict[str, str]]]] = {
    "S1MIG-001": report_001,
    "S1MIG-002": report_002,
    "S1MIG-003": report_003,
    "S1MIG-004": report_004,
    "S1MIG-005": report_005,
    "S1MIG-006": report_006,
    "S1MIG-007": report_007,
    "S1MIG-008": report_008,
    "S1MIG-009": report_009,
    "S1MIG-010": report_010,
}
assert tuple(REPORTS) == REPORT_IDS == tuple(COLUMNS) == tuple(KEYS)
