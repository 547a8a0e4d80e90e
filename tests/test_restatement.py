"""Restatement (spec "Runs, corrections and restatement"): three days landed and exported
through the direct path (real dbt, real GX, real exports; 07-30 landed and built as the
session's template database holds it), then corrections of past days
re-delivered. The corrected day and every later exported day are gated and exported
again in order; a day whose report files change gets the next revision, the previous
one kept whole under revisions/<n>/, and its files equal those of a fresh serial build of
the corrected data; a day whose files do not change keeps its revision; every restated
day's evidence names the corrected drop."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest

from s1mig import export, pipeline, restate
from s1mig.errors import S1migError
from tests.support.databases import built_warehouse, fresh_database
from tests.support.drops import D01, D30, D31, I5, append_rows, edit_rows, event, write_drop

pytestmark = pytest.mark.integration

DAYS = (D30, D31, D01)


def _valid_third_day(landing: Path) -> Path:
    """The hand-made drops (in `landing`) with a valid third day (theirs is corrupt on purpose)."""
    shutil.rmtree(landing / D01.isoformat())
    write_drop(
        landing,
        D01.isoformat(),
        {
            "exclusions": [
                {
                    "installation_id": I5,
                    "exclusion_category": "MISSING_MASTER_KEYS",
                    "excluded_at": "2020-08-01T09:00:00Z",
                }
            ]
        },
    )
    return landing


def _files(folder: Path) -> dict[str, bytes]:
    """Everything in a date folder except the kept revisions."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] != export.REVISIONS
    }


def _reports(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in _files(folder).items() if k.endswith(".csv")}


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _evidence(folder: Path) -> dict:
    return json.loads((folder / "evidence.json").read_text())


def _run_corrected(landing: Path, day, out: Path, url: str, run_id: str) -> str:
    """The run of a re-delivered day: the steps of pipeline.run_direct, keeping land's status."""
    status = pipeline.land_step(landing, day, url)["status"]
    pipeline.dbt_step(day, url)
    pipeline.gate_step(day, run_id, url)
    pipeline.export_step(day, out, url, run_id)
    pipeline.summary_step(day, out, url, run_id)
    return status


def _ledger(url: str, day) -> tuple[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select delivery_sha256 from raw.drop_ledger where drop_date = %s order by landed_at", (day,)
        ).fetchall()
    return rows[-2][0], rows[-1][0]  # (replaced delivery, current delivery)


def _assert_cause(folder: Path, url: str, corrected) -> None:
    replaced, current = _ledger(url, corrected)
    cause = _evidence(folder)["restatement"]["corrected_drop"]
    assert (cause["drop_date"], cause["delivery_sha256"], cause["replaced_delivery_sha256"]) == (
        corrected.isoformat(),
        current,
        replaced,
    )


def test_correction_restates_later_exported_dates(server_url, tmp_path):
    # 07-30 comes landed and built (the session's template), gated here and exported; the
    # other two days are direct runs
    landing = tmp_path / "landing"
    with built_warehouse(server_url, landing, f"first-{D30}") as warehouse:
        _valid_third_day(landing)
        _restatement(warehouse, landing, server_url, tmp_path)


def _restatement(warehouse: str, landing: Path, server_url: str, tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    pipeline.export_step(D30, out, warehouse, f"first-{D30}")
    pipeline.summary_step(D30, out, warehouse, f"first-{D30}")
    for day in DAYS[1:]:
        pipeline.run_direct(landing, day, out, run_id=f"first-{day}")
    assert [_manifest(out / d.isoformat())["revision"] for d in DAYS] == [1, 1, 1]
    # the last date also went to another folder once: restatement names it, leaves it alone
    export.export_date(D01, elsewhere, warehouse, "elsewhere")
    before = {d: _files(out / d.isoformat()) for d in DAYS}

    # correction 1: drop 07-30 again with a failure of A3 on 07-30. A3's Success on 07-31
    # becomes a Failure on 07-30: every later day's cumulative counts (005, 010) change.
    append_rows(
        landing / D30.isoformat(),
        "migration_events",
        [event("E99", "A3", "COMMISSIONING", 53, "FAIL", "2020-07-30T15:00:00Z", "COM02")],
    )
    assert restate.stale_dates(out, warehouse) == []
    assert _run_corrected(landing, D30, out, warehouse, "fix-1") == "replaced"
    assert restate.stale_dates(out, warehouse) == [D31, D01]  # exported from the replaced delivery
    lines: list[str] = []
    restated = restate.restate_later_dates(D30, out, warehouse, "fix-1", echo=lines.append)
    assert restated == [D31, D01]
    assert restate.stale_dates(out, warehouse) == []
    assert any(f"{elsewhere.resolve()} also holds exports of {D01}" in line for line in lines)
    for day in DAYS:
        folder = out / day.isoformat()
        assert _manifest(folder)["revision"] == 2, day
        assert _reports(folder) != {k: v for k, v in before[day].items() if k.endswith(".csv")}, day
        # everything revision 1 had in the date folder is kept, byte for byte
        assert _files(folder / export.REVISIONS / "1") == before[day], day
        assert sorted(p.name for p in (folder / export.REVISIONS).iterdir()) == ["1"]
        assert _evidence(folder)["revision"] == 2
    assert _evidence(out / D30.isoformat())["restatement"] is None  # the corrected day's own run
    for day in (D31, D01):
        _assert_cause(out / day.isoformat(), warehouse, D30)
        assert "<td>R9</td>" in (out / day.isoformat() / "run-summary.html").read_text()
    assert _manifest(elsewhere / D01.isoformat())["revision"] == 1  # not asked for: untouched
    after_fix_1 = {d: _files(out / d.isoformat()) for d in DAYS}

    # correction 2: drop 07-31 again with another name for SUPC03, which no report shows:
    # the corrected day and the day after it are restated and keep their revision and bytes
    edit_rows(landing / D31.isoformat(), "parties", {"party_id": "SUPC03"}, {"party_name": "Supplier C (renamed)"})
    assert _run_corrected(landing, D31, out, warehouse, "fix-2") == "replaced"
    assert restate.restate_later_dates(D31, out, warehouse, "fix-2", echo=None) == [D01]
    for day in DAYS:
        folder = out / day.isoformat()
        assert _manifest(folder)["revision"] == 2, day
        now = _files(folder)
        assert {k: v for k, v in now.items() if k != "evidence.json" and k != "run-summary.html"} == {
            k: v for k, v in after_fix_1[day].items() if k != "evidence.json" and k != "run-summary.html"
        }, day
        assert sorted(p.name for p in (folder / export.REVISIONS).iterdir()) == ["1"]
    _assert_cause(out / D01.isoformat(), warehouse, D31)
    assert _evidence(out / D01.isoformat())["run_id"] == "fix-2"

    # a later date in the folder that this warehouse never landed (another warehouse wrote
    # it) cannot be restated from data as at its end: a one-line error, nothing touched
    stray = out / "2020-08-02"
    shutil.copytree(out / D01.isoformat(), stray, ignore=shutil.ignore_patterns(export.REVISIONS))
    untouched = {d: _files(out / d.isoformat()) for d in DAYS}
    with pytest.raises(S1migError) as err:
        restate.restate_later_dates(D30, out, warehouse, "refused", echo=None)
    assert str(err.value) == (
        f"cannot restate the dates after {D30} in {out}: 2020-08-02 exported there but not landed in this "
        "warehouse (land those drops first)"
    )
    assert {d: _files(out / d.isoformat()) for d in DAYS} == untouched
    shutil.rmtree(stray)

    # correction 3 landed on its own (s1mig land, no run of 07-30): the next run, of 08-01,
    # restates the exports made from the replaced delivery, 07-30 and 07-31, naming it
    edit_rows(landing / D30.isoformat(), "parties", {"party_id": "SUPB02"}, {"party_name": "Supplier B (renamed)"})
    assert pipeline.land_step(landing, D30, warehouse)["status"] == "replaced"
    assert restate.stale_dates(out, warehouse) == [D30, D31, D01]
    pipeline.run_direct(landing, D01, out, run_id="next")
    assert restate.stale_dates(out, warehouse) == []
    for day in (D30, D31):
        _assert_cause(out / day.isoformat(), warehouse, D30)
        assert _evidence(out / day.isoformat())["run_id"] == "next"
        assert _manifest(out / day.isoformat())["revision"] == 2, day  # a name no report shows

    # a fresh warehouse, the corrected drops run day by day: the same report files
    with fresh_database(server_url) as fresh, pytest.MonkeyPatch.context() as mp:
        mp.setenv("S1MIG_DATABASE_URL", fresh)
        serial = tmp_path / "serial"
        for day in DAYS:
            pipeline.run_direct(landing, day, serial, run_id=f"serial-{day}")
        for day in DAYS:
            assert _reports(out / day.isoformat()) == _reports(serial / day.isoformat()), day
            assert _manifest(out / day.isoformat())["files"] == _manifest(serial / day.isoformat())["files"], day
            assert _manifest(serial / day.isoformat())["revision"] == 1
