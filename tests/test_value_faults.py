"""Value-level faults are never dropped silently: they land (the drop's structure is
fine), staging routes them to rejects with the reason and raw lineage, they never reach a
mart, and the gate blocks the date naming them, until a corrected drop goes through.

Each scenario runs its failing date once through the real DAG (`s1mig run`: its one-line
error is what is asserted); the rest goes through the direct path (pipeline.run_direct)."""

from __future__ import annotations

import json
import shutil

import psycopg
import pytest

from s1mig import dbt, land, pipeline
from tests.support.cli import run_cli
from tests.support.databases import built_warehouse
from tests.support.drops import D30, D31, I4, I5, MA_A, append_rows, build_handmade_landing, edit_rows, event, line_of
from tests.support.exports import assert_exports_match_reference

pytestmark = pytest.mark.integration

FAULTS = [
    # (extract, row match, change, words of the reason)
    (
        "migration_events",
        {"event_id": "E21"},
        {"event_ts": "2020-07-30T25:59:59Z"},
        "event_ts '2020-07-30T25:59:59Z' is not an ISO 8601 UTC timestamp",
    ),
    ("installations", {"installation_id": I4}, {"cohort": "XOC"}, "cohort 'XOC' is not one of IOC, MOC, FOC"),
    ("migration_attempts", {"attempt_id": "A3"}, {"scheduled_for": ""}, "scheduled_for is missing"),
    (
        "installations",
        {"installation_id": I5},
        {"mpan": "100000000005"},
        "mpan '100000000005' is not an MPAN (13 digits)",
    ),
    (
        "migration_authorisations",
        {"ma_file_name": MA_A, "ma_record_no": "5"},
        {"ma_error_code": ""},
        "ma_error_code must be present exactly when ma_status is REJECTED",
    ),
    (
        "migration_events",
        {"event_id": "E43"},
        {"reason_code": "DTP99"},
        "reason_code 'DTP99' is not a known code of stage DEVICE_TESTING",
    ),
]


def test_value_faults_go_to_rejects_block_the_gate_and_a_correction_goes_through(warehouse, tmp_path):
    good = build_handmade_landing(tmp_path / "good")
    landing, out = tmp_path / "landing", tmp_path / "out"
    shutil.copytree(good / "2020-07-30", landing / "2020-07-30")
    for extract, match, change, _ in FAULTS:
        edit_rows(landing / "2020-07-30", extract, match, change)

    proc = run_cli("run", "--landing", str(landing), "--date", "2020-07-30", "--out", str(out))
    assert proc.returncode != 0
    # the value faults plus the records they leave unresolvable (A3's events, A4 without I4)
    assert "L1 no_rejected_records: 11 failing" in proc.stderr
    assert "drop 2020-07-30 installations.csv line" in proc.stderr  # sample keys name file and line
    assert not (out / "2020-07-30").exists()

    with psycopg.connect(warehouse) as conn:
        rejects = conn.execute(
            "select extract_name, _file_name, line_no, reject_reason, raw_record, _file_sha256 "
            "from staging.stg_dcc__rejects"
        ).fetchall()
        assert len(rejects) == len(FAULTS)
        # the file's hash is kept once, in the ledger's manifest, and each reject names it
        delivered = json.loads((landing / "2020-07-30" / "manifest.json").read_text())
        assert {(r[0], r[5]) for r in rejects} == {
            (e["name"], e["sha256"]) for e in delivered["extracts"] if e["name"] in {f[0] for f in FAULTS}
        }
        for extract, match, _change, words in FAULTS:
            hit = [r for r in rejects if r[0] == extract and all(r[4][k] == v for k, v in match.items())]
            assert len(hit) == 1, (extract, match)
            assert words in hit[0][3]
            assert hit[0][1] == f"{extract}.csv" and hit[0][2] >= 2
        # the faulty records reached no staging model and no mart
        assert (
            conn.execute(
                "select count(*) from staging.stg_dcc__migration_events where event_id in ('E21', 'E43')"
            ).fetchone()[0]
            == 0
        )
        assert conn.execute("select count(*) from marts.s1mig_006 where installation_id = %s", (I4,)).fetchone()[0] == 0

    # the corrected re-delivery replaces the faulty one and the date goes through
    shutil.rmtree(landing / "2020-07-30")
    shutil.copytree(good / "2020-07-30", landing / "2020-07-30")
    pipeline.run_direct(landing, D30, out, run_id="corrected")
    assert_exports_match_reference(landing, out, D30)
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select count(*) from staging.stg_dcc__rejects").fetchone()[0] == 0
        ledger = conn.execute("select count(*), count(superseded_at) from raw.drop_ledger").fetchone()
    assert ledger == (2, 1)


def test_a_record_delivered_twice_fails_its_model_naming_both_copies_and_a_correction_goes_through(
    server_url, tmp_path
):
    """A key delivered again (in a later drop, or twice in one file) fails the staging
    model with the file, line and drop of every copy; the drop's rows are not staged
    (nothing half-loaded), nothing is exported, and the corrected drop goes through.
    07-30 comes landed and built (the session's template: its own run is not under test)."""
    with built_warehouse(server_url, tmp_path / "good", "d30") as warehouse:
        _delivered_twice(warehouse, tmp_path / "good", tmp_path)


def _delivered_twice(warehouse: str, good, tmp_path) -> None:
    landing, out = tmp_path / "landing", tmp_path / "out"
    for day in ("2020-07-30", "2020-07-31"):
        shutil.copytree(good / day, landing / day)

    d31 = landing / "2020-07-31"
    e90 = event("E90", "A4", "COMMISSIONING", 53, "FAIL", "2020-07-31T11:00:00Z", "COM02")
    append_rows(
        d31,
        "migration_events",
        [
            event("E20", "A4", "COMMISSIONING", 51, "FAIL", "2020-07-31T10:00:00Z", "COM01"),  # E20 is in 07-30
            e90,
            e90,  # the same line twice
        ],
    )
    first_e20 = line_of(landing / "2020-07-30", "migration_events", {"event_id": "E20"})
    proc = run_cli("run", "--landing", str(landing), "--date", "2020-07-31", "--out", str(out))
    assert proc.returncode != 0
    assert "stg_dcc__migration_events: 2 key(s) occur more than once (grain: event_id)" in proc.stderr
    assert (
        f"(event_id) = (E20) in migration_events.csv line {first_e20} (drop 2020-07-30)"
        " and migration_events.csv line 2 (drop 2020-07-31)" in proc.stderr
    )
    assert (
        "(event_id) = (E90) in migration_events.csv line 3 (drop 2020-07-31)"
        " and migration_events.csv line 4 (drop 2020-07-31)" in proc.stderr
    )
    assert not (out / "2020-07-31").exists()
    with psycopg.connect(warehouse) as conn:
        staged = conn.execute(
            "select _drop_date, count(*) from staging.stg_dcc__migration_events group by 1 order by 1"
        ).fetchall()
        assert [d for d, _ in staged] == [D30]  # the failed delivery left nothing behind

    # the corrected re-delivery: E90 once, and its own id for the 07-31 event
    edit_rows(d31, "migration_events", {"event_id": "E90"}, None)
    append_rows(d31, "migration_events", [e90])
    edit_rows(d31, "migration_events", {"event_id": "E20"}, {"event_id": "E91"})
    pipeline.run_direct(landing, D31, out, run_id="corrected")
    assert_exports_match_reference(landing, out, D31)
    with psycopg.connect(warehouse) as conn:
        staged = conn.execute(
            "select event_id from staging.stg_dcc__migration_events where _drop_date = %s order by 1", (D31,)
        ).fetchall()
    assert staged == [("E90",), ("E91",)]


def _staging_and_rejects(url: str) -> tuple[list[tuple], list[str]]:
    with psycopg.connect(url) as conn:
        rejects = conn.execute(
            "select extract_name, line_no, reject_reason from staging.stg_dcc__rejects order by 1, 2"
        ).fetchall()
        events = [r[0] for r in conn.execute("select event_id from staging.stg_dcc__migration_events")]
    return rejects, events


def test_rejects_trust_a_staging_model_only_for_the_current_delivery_it_holds(warehouse, tmp_path):
    """stg_dcc__rejects validates again only the raw rows its staging model left out, and
    only where that model holds the drop's current delivery: a staging model still holding
    an earlier delivery of the date (a partial build) is not trusted, since that delivery's
    rows share their line numbers with the new one's."""
    landing = build_handmade_landing(tmp_path / "landing")
    drop = landing / str(D30)
    report_date = ["--vars", f"{{report_date: '{D30}'}}"]
    land.land(drop, D30)
    dbt.run_dbt(["seed"], echo=None)
    dbt.run_dbt(["run", "--select", "staging", *report_date], echo=None)
    rejects, events = _staging_and_rejects(warehouse)
    assert rejects == [] and "E21" in events

    # re-delivered with E21 broken; only the rejects are built: the events' model still
    # holds the first delivery, where E21's line is a valid row
    edit_rows(drop, "migration_events", {"event_id": "E21"}, {"event_ts": "2020-07-30T25:59:59Z"})
    line = line_of(drop, "migration_events", {"event_id": "E21"})
    land.land(drop, D30)
    dbt.run_dbt(["run", "--select", "stg_dcc__rejects", *report_date], echo=None)
    reason = "event_ts '2020-07-30T25:59:59Z' is not an ISO 8601 UTC timestamp (YYYY-MM-DDTHH:MM:SSZ)"
    rejects, events = _staging_and_rejects(warehouse)
    assert rejects == [("migration_events", line, reason)]
    assert "E21" in events  # not rebuilt yet

    # the staging models catch up: the same reject, and E21 is no longer staged
    dbt.run_dbt(["run", "--select", "staging", *report_date], echo=None)
    rejects, events = _staging_and_rejects(warehouse)
    assert rejects == [("migration_events", line, reason)]
    assert "E21" not in events
