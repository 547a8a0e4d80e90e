"""Staging is incremental by delivery (dbt_project/macros/incremental_staging.sql): each
build types only the drops delivered since the last one. It must hold exactly what a
full rebuild holds, also after an earlier drop is corrected and re-delivered."""

from __future__ import annotations

import csv
import datetime as dt
import re

import psycopg
import pytest
from conftest import REPO, run_cli
from drops import edit_rows

from s1mig import land

pytestmark = pytest.mark.integration

START = dt.date(2020, 7, 31)
STAGING = (
    "stg_dcc__parties",
    "stg_dcc__installations",
    "stg_dcc__migration_authorisations",
    "stg_dcc__migration_attempts",
    "stg_dcc__migration_events",
    "stg_dcc__cof_records",
    "stg_dcc__capacity_allocations",
    "stg_dcc__exclusions",
    "stg_dcc__rejects",
)


def _fingerprints(url: str) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent digest of every staging table."""
    out = {}
    with psycopg.connect(url) as conn:
        for table in STAGING:
            out[table] = conn.execute(
                f"select count(*), coalesce(md5(string_agg(md5(t::text), '' order by md5(t::text))), '') "
                f"from staging.{table} as t"
            ).fetchone()
    return out


def _build(day: dt.date, *extra: str) -> None:
    run_cli("dbt", "build", "--vars", f"{{report_date: '{day}'}}", *extra, check=True)


def test_incremental_staging_equals_a_full_rebuild_after_a_correction(warehouse, tmp_path):
    landing = tmp_path / "landing"
    run_cli(
        "generate", "--out", str(landing), "--start", str(START), "--days", "4", "--installations", "300", check=True
    )
    days = [START + dt.timedelta(days=i) for i in range(4)]
    for day in days[:3]:
        run_cli("land", "--landing", str(landing), "--date", str(day), check=True)
        _build(day)
    before = _fingerprints(warehouse)

    # correct day 2 (one event's outcome changes, one MA record becomes a value reject)
    # after day 3 was built, then land day 4 and build it incrementally
    second = landing / str(days[1])
    with open(second / "migration_events.csv", newline="") as fh:
        event_id = next(
            r["event_id"] for r in csv.DictReader(fh) if r["stage"] == "MVF_VALIDATION" and r["outcome"] == "PASS"
        )
    failed = {"outcome": "FAIL", "reason_code": "MVF02", "step_no": "22"}
    edit_rows(second, "migration_events", {"event_id": event_id}, failed)
    with open(second / "migration_authorisations.csv", newline="") as fh:
        record = next(csv.DictReader(fh))
    key = {"ma_file_name": record["ma_file_name"], "ma_record_no": record["ma_record_no"]}
    edit_rows(second, "migration_authorisations", key, {"ma_status": "PENDING"})
    run_cli("land", "--landing", str(landing), "--date", str(days[1]), check=True)
    run_cli("land", "--landing", str(landing), "--date", str(days[3]), check=True)
    # the model may fail the gate later (the edit breaks the event sequence); staging is what is tested here
    run_cli("dbt", "run", "--select", "staging", "--vars", f"{{report_date: '{days[3]}'}}", check=True)
    incremental = _fingerprints(warehouse)

    with psycopg.connect(warehouse) as conn:
        assert conn.execute(
            "select count(*) from staging.stg_dcc__migration_events where event_id = %s and outcome = 'FAIL'",
            (event_id,),
        ).fetchone() == (1,)
        assert conn.execute(
            "select count(*) from staging.stg_dcc__rejects where raw_record ->> 'ma_status' = 'PENDING'"
        ).fetchone() == (1,)
        logged = conn.execute(
            "select count(distinct model_name), count(*) from staging.delivery_log l join raw.drop_ledger d "
            "on d.drop_date = l.drop_date and d.landed_at = l.landed_at and d.superseded_at is null"
        ).fetchone()
    assert logged == (len(STAGING), len(STAGING) * 4)
    assert incremental != before

    full = ("dbt", "run", "--select", "staging", "--full-refresh", "--vars", f"{{report_date: '{days[3]}'}}")
    run_cli(*full, check=True)
    assert _fingerprints(warehouse) == incremental


def test_the_dbt_landing_lock_is_the_landers():
    macro = (REPO / "dbt_project" / "macros" / "incremental_staging.sql").read_text()
    found = re.search(r"macro landing_lock_id\(\) -%\}(\d+)\{", macro)
    assert found and int(found.group(1)) == land.LANDING_LOCK
