"""The report states (materialization report_state, dbt_project/macros/materializations/):
the two installation states as at the end of D and S1MIG-010's category counts are moved
from the date last built to the run's date by recomputing only the installations whose
state can differ between the two, and the counts by the delta of those rows. They must
hold exactly what a whole build holds: day after day, for an earlier date restated
after a later one, for the same date built again, and after a correction of an earlier
drop (which builds them whole). Gate rule R8's expectation, which the gate keeps moved
the same way on its own (expectations/migrated_state.py), must equal the same counts
computed from every installation."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import psycopg
import pytest
from s1mig_expectations import migrated_state
from s1mig_expectations.rules import MIGRATED_BY_PARTY_CTES

from s1mig import dbt, pipeline
from s1mig.generate import generate
from tests.support.drops import refresh_manifest

pytestmark = pytest.mark.integration

START = dt.date(2020, 7, 31)
STATES = (
    "int_installation_responsibilities_eod",
    "int_installation_status_eod",
    "int_cohort_progress_eod",
)


# the public models R8's kept expectation reads (expectations/migrated_state.py)
GATE_INPUTS = ("installation_versions", "migration_attempts", "attempt_completion_versions")


def _build(day: dt.date, *extra: str) -> None:
    select = ["--select", "+s1mig_010", *GATE_INPUTS]
    dbt.run_dbt(["run", *select, "--vars", f"{{report_date: '{day}'}}", *extra], echo=None)


def _land(landing: Path, day: dt.date) -> None:
    pipeline.land_step(landing, day)


def _fingerprints(url: str, day: dt.date) -> dict[str, tuple]:
    out = {}
    with psycopg.connect(url) as conn:
        for name in STATES:
            out[name] = conn.execute(
                f"select count(*), coalesce(md5(string_agg(md5(t::text), '' order by md5(t::text))), '') "
                f"from intermediate.{name} as t"
            ).fetchone()
        out["s1mig_010"] = conn.execute(
            "select count(*), coalesce(md5(string_agg(t::text, '|' order by t::text)), '') from ("
            "select cohort, group_id, party_id, eligible_installations, migrated, excluded, awaiting_outcome, "
            "failed_outstanding, not_yet_attempted, pct_migrated from marts.s1mig_010 where report_date = %s) as t",
            (day,),
        ).fetchone()
    return out


# R8's expectation per party computed from every installation, as the gate did before it
# kept it moved (the version in force at the end of D through valid_to, the Successes in
# force at the end of D and the parties they listed).
WHOLE_EXPECTATION = """
with bounds as (select ((%(day)s::date + 1)::timestamp at time zone 'Europe/London') as day_end),
installations_at_end as (
    select i.installation_id, i.mpan, i.mprn, i.elec_supplier_id, i.gas_supplier_id, i.eligible_from
    from staging.stg_dcc__installations as i, bounds
    where i.effective_from < bounds.day_end and (i.valid_to is null or i.valid_to >= bounds.day_end)
),
responsible as (
    select installation_id, elec_supplier_id as party_id from installations_at_end
    where mpan is not null and elec_supplier_id is not null and eligible_from <= %(day)s
    union
    select installation_id, gas_supplier_id from installations_at_end
    where mprn is not null and gas_supplier_id is not null and eligible_from <= %(day)s
),
successes as (
    select installation_id, array_agg(distinct party_id) as parties
    from intermediate.int_attempt_completion_versions
    where completion_status = 'Success' and valid_from <= %(day)s and (valid_to is null or valid_to > %(day)s)
    group by installation_id
)
select r.party_id, count(*),
    count(*) filter (where r.party_id = any(s.parties)),
    count(*) filter (where s.installation_id is not null and not r.party_id = any(s.parties))
from responsible as r left join successes as s using (installation_id)
group by r.party_id order by r.party_id
"""


def _assert_gate_expectation(url: str, day: dt.date, how: str) -> None:
    """The gate moves R8's expectation to `day` (`how`: moved from R or recomputed) and
    it equals the whole computation."""
    with psycopg.connect(url) as conn:
        with conn.transaction():
            assert migrated_state.move(conn, day) == how
        held = conn.execute(
            "with "
            + MIGRATED_BY_PARTY_CTES.replace("{report_date}", "%(day)s")
            + " select party_id, eligible, received, inherited from expected order by party_id",
            {"day": day},
        ).fetchall()
        whole = conn.execute(WHOLE_EXPECTATION, {"day": day}).fetchall()
    assert held == whole and sum(row[2] + row[3] for row in whole) > 0, (held, whole)


def _moved_from(url: str) -> dict[str, dt.date | None]:
    """Per state: the date it was moved from in its last build (None: built whole)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("select model_name, from_date from staging.report_state_log").fetchall()
    return {name: from_date for name, from_date in rows if name in STATES}


def _assert_whole_build_holds_the_same(url: str, day: dt.date) -> None:
    moved = _fingerprints(url, day)
    assert moved["s1mig_010"][0] > 0 and moved["int_installation_status_eod"][0] > 0, moved
    dbt.run_dbt(
        ["run", "--select", *STATES, "s1mig_010", "--full-refresh", "--vars", f"{{report_date: '{day}'}}"], echo=None
    )
    assert _fingerprints(url, day) == moved


RESPONSIBILITIES_INDEX = ["installation_id", "party_id", "fuel", "cohort", "group_id", "eligible_from"]


def _index_keys(url: str, table: str) -> list[list[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select array(select a.attname::text from unnest(i.indkey) with ordinality as k (attnum, position) "
            "join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = k.attnum order by k.position) "
            "from pg_index as i where i.indrelid = %s::regclass order by 1",
            (f"intermediate.{table}",),
        ).fetchall()
    return [row[0] for row in rows]


def _assert_upgrade_creates_the_configured_index(url: str, day: dt.date) -> None:
    table = "int_installation_responsibilities_eod"
    assert _index_keys(url, table) == [RESPONSIBILITIES_INDEX]
    with psycopg.connect(url, autocommit=True) as conn:  # the index of a build before it was configured
        name = conn.execute(
            "select indexrelid::regclass::text from pg_index where indrelid = %s::regclass", (f"intermediate.{table}",)
        ).fetchone()[0]
        conn.execute(f"drop index {name}")
        conn.execute(f"create index old_responsibilities_key on intermediate.{table} (installation_id)")
    _build(day)
    assert _moved_from(url)[table] == day
    assert _index_keys(url, table) == [["installation_id"], RESPONSIBILITIES_INDEX]


def test_report_states_moved_by_the_changes_equal_a_whole_build(warehouse, tmp_path):
    landing = tmp_path / "landing"
    generate(landing, START, 4, 300, seed=1, progress=False)
    days = [START + dt.timedelta(days=i) for i in range(4)]
    dbt.run_dbt(["seed"], echo=None)
    for day in days[:3]:
        _land(landing, day)
        _build(day)
    # day after day: each state moved from the day before
    assert _moved_from(warehouse) == dict.fromkeys(STATES, days[1])
    _assert_whole_build_holds_the_same(warehouse, days[2])
    _assert_gate_expectation(warehouse, days[1], "recomputed")
    _assert_gate_expectation(warehouse, days[2], f"moved from {days[1]}")

    # an earlier date restated after a later one: moved backwards
    _build(days[0])
    assert _moved_from(warehouse) == dict.fromkeys(STATES, days[2])
    _assert_whole_build_holds_the_same(warehouse, days[0])
    _assert_gate_expectation(warehouse, days[0], f"moved from {days[2]}")

    # forward again, then the same date built again (nothing to move)
    _build(days[2])
    _build(days[2])
    assert _moved_from(warehouse) == dict.fromkeys(STATES, days[2])
    _assert_whole_build_holds_the_same(warehouse, days[2])
    _assert_gate_expectation(warehouse, days[2], f"moved from {days[0]}")
    before = _fingerprints(warehouse, days[2])

    # a state built before its configured index existed (an upgrade) gets it on its next
    # moved build, and holds the same rows
    _assert_upgrade_creates_the_configured_index(warehouse, days[2])
    assert _fingerprints(warehouse, days[2]) == before

    # a correction of day 2 after day 3 was built: an installation of the base gains a
    # version with another supplier on day 2; the states are built whole for day 3
    second = landing / str(days[1])
    later = set()
    for day in days[1:]:
        with open(landing / str(day) / "installations.csv", newline="") as fh:
            later |= {r["installation_id"] for r in csv.DictReader(fh)}
    with open(landing / str(days[0]) / "installations.csv", newline="") as fh:
        base = list(csv.DictReader(fh))
    parties = sorted({r["gas_supplier_id"] for r in base if r["gas_supplier_id"]})
    switched = next(r for r in base if r["mprn"] and r["gas_supplier_id"] and r["installation_id"] not in later)
    other = next(p for p in parties if p != switched["gas_supplier_id"])
    inserted = {**switched, "gas_supplier_id": other, "effective_from": f"{days[1]}T10:00:00Z"}
    with open(second / "installations.csv", "a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=list(inserted), lineterminator="\n").writerow(inserted)
    refresh_manifest(second)
    _land(landing, days[1])
    _build(days[2])
    assert _moved_from(warehouse) == dict.fromkeys(STATES, None)
    _assert_whole_build_holds_the_same(warehouse, days[2])
    _assert_gate_expectation(warehouse, days[2], "recomputed")
    corrected = _fingerprints(warehouse, days[2])
    assert corrected["int_installation_responsibilities_eod"] != before["int_installation_responsibilities_eod"]

    # the restatement goes on day by day from there, moved again
    _land(landing, days[3])
    _build(days[3])
    assert _moved_from(warehouse) == dict.fromkeys(STATES, days[2])
    _assert_whole_build_holds_the_same(warehouse, days[3])
    _assert_gate_expectation(warehouse, days[3], f"moved from {days[2]}")
