"""Self-checks of the test oracle (tests/reference.py) on the tiny hand-made landing
folder of tests/drops.py (its docstring lists every case)."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import reference as ref
from drops import (
    COF_A1,
    COF_A2,
    COF_B1,
    D01,
    D30,
    D31,
    G1,
    G3,
    G4,
    I1,
    I2,
    I3,
    I4,
    I5,
    M1,
    M2,
    M3,
    M5,
    MA_A,
    MA_B,
    SIG_A,
    SIG_B,
    build_handmade_landing,
)


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    return build_handmade_landing(tmp_path_factory.mktemp("landing"))


def rows(report_id: str, *lines: str) -> list[dict[str, str]]:
    """Expected rows written as CSV lines, for readability."""
    return [dict(zip(ref.COLUMNS[report_id], next(csv.reader([line])), strict=True)) for line in lines]


# ----------------------------------------------------------------------------- building blocks


def test_london_day_boundaries():
    assert ref.day_start(D31) == datetime(2020, 7, 30, 23, 0, tzinfo=UTC)  # BST
    assert ref.in_day(ref.parse_ts("2020-07-30T23:30:00Z"), D31)
    assert ref.in_day(ref.parse_ts("2020-07-30T22:59:59Z"), D30)
    assert not ref.in_day(ref.parse_ts("2020-07-30T23:00:00Z"), D30)
    assert ref.local_day(ref.parse_ts("2020-12-31T23:30:00Z")) == date(2020, 12, 31)  # GMT
    assert ref.end_of(date(2020, 10, 25)) - ref.day_start(date(2020, 10, 25)) == timedelta(hours=25)
    assert ref.end_of(date(2020, 3, 29)) - ref.day_start(date(2020, 3, 29)) == timedelta(hours=23)


def test_pct_rounds_half_away_from_zero():
    assert ref.pct(1, 800) == Decimal("0.13")  # 0.125: half-even would give 0.12
    assert ref.fmt(ref.pct(1, 8)) == "12.50"
    assert ref.fmt(ref.pct(2, 3)) == "66.67"
    assert ref.fmt(ref.pct(0, 5)) == "0.00"
    assert ref.fmt(ref.pct(5, 5)) == "100.00"
    assert ref.pct(0, 0) is None and ref.fmt(None) == ""


def test_failure_tie_break_prefers_event_then_lower_id():
    t = ref.parse_ts("2020-07-30T10:00:00Z")
    E, C = ref.RECORD["migration_events"], ref.RECORD["cof_records"]
    ev = E("E9", "A", "COMMISSIONING", 53, "FAIL", "COM02", t)
    cf = C("COF_X_00000001", 1, "P", "X", t, "A", "I", "FAILURE", "COF01")
    assert ref.complete([], [ev], [cf]).reason_code == "COM02"  # lower step at the same instant
    ev60 = E("Z1", "A", "COMMISSIONING", 60, "FAIL", "COM02", t)  # contrived full tie on step
    assert ref.complete([], [ev60], [cf]).reason_code == "COM02"  # events before COF records
    cf2 = C("COF_W_00000001", 1, "Q", "W", t, "A", "I", "FAILURE", "COF01")
    got = ref.complete([], [], [cf, cf2])
    assert (got.failed_stage, got.step_no, got.completed_at) == ("COF", 60, t)
    earlier = E("E1", "A", "MVF_VALIDATION", 22, "FAIL", "MVF02", ref.parse_ts("2020-07-30T09:59:59Z"))
    assert ref.complete([], [ev, earlier], [cf]).reason_code == "MVF02"  # earliest time first


def test_success_needs_every_party_and_commissioning():
    t1, t2 = ref.parse_ts("2020-07-30T12:00:00Z"), ref.parse_ts("2020-07-30T14:00:00Z")
    E, C = ref.RECORD["migration_events"], ref.RECORD["cof_records"]
    parties = [ref.Responsibility("PA", "ELEC", "1", None), ref.Responsibility("PB", "GAS", None, "2")]
    com = E("E1", "A", "COMMISSIONING", 59, "PASS", None, t1)
    ca = C("COF_A_00000001", 1, "PA", "A", t1, "A", "I", "SUCCESS", None)
    cb = C("COF_B_00000003", 3, "PB", "B", t2, "A", "I", "SUCCESS", None)
    assert ref.complete(parties, [com], [ca]) is None  # PB's COF missing: awaiting
    assert ref.complete(parties, [], [ca, cb]) is None  # no COMMISSIONING PASS: awaiting
    assert ref.complete(parties, [com], [ca, cb]) == ref.Completion("Success", t2)
    # a party with two SUCCESS records contributes its earliest; 001 shows its lowest counter
    ca_late = C("COF_A_00000009", 9, "PA", "A", ref.parse_ts("2020-07-30T15:00:00Z"), "A", "I", "SUCCESS", None)
    assert ref.complete(parties, [com], [ca_late, ca, cb]) == ref.Completion("Success", t2)
    assert ref.success_cof([ca_late, ca, cb], "PA") is ca


def test_responsibilities():
    Inst = ref.RECORD["installations"]
    dual = Inst("S1", "IOC", "AA", "m", "g", "P1", "P1", None, None)
    split = Inst("S1", "IOC", "AA", "m", "g", "P1", "P2", None, None)
    gas = Inst("S1", "IOC", "AA", None, "g", None, "P2", None, None)
    assert ref.responsibilities(dual) == [ref.Responsibility("P1", "DUAL", "m", "g")]
    assert ref.responsibilities(split) == [
        ref.Responsibility("P1", "ELEC", "m", None),
        ref.Responsibility("P2", "GAS", None, "g"),
    ]
    assert ref.responsibilities(gas) == [ref.Responsibility("P2", "GAS", None, "g")]


# ----------------------------------------------------------------------------- loading


def test_load_reads_drops_up_to_date_and_rejects_corrupt_drop(landing):
    wh = ref.load(landing, D30)
    assert wh.drops == [D30] and not wh.rejected
    assert len(wh.installations) == 7 and len(wh.migration_events) == 14
    wh = ref.load(landing, D01)
    assert wh.drops == [D30, D31] and list(wh.rejected) == [D01]
    assert len(wh.cof_records) == 3  # the gzipped file was read
    assert wh.exclusions[0].excluded_at == datetime(2020, 7, 31, 9, tzinfo=UTC)
    assert wh.installations[0].mprn == G1 and wh.installations[1].mprn is None  # empty field = NULL


# ----------------------------------------------------------------------------- reports, 2020-07-30


def test_reports_2020_07_30(landing):
    wh = ref.load(landing, D30)
    assert ref.report_001(wh, D30) == rows(
        "S1MIG-001",
        f"2020-07-30,SUPA01,{I1},1,ELEC,{M1},,IOC,AA,2020-07-30,2020-07-30T14:00:00Z,{COF_A1}",
        f"2020-07-30,SUPB02,{I1},1,GAS,,{G1},IOC,AA,2020-07-30,2020-07-30T14:00:00Z,{COF_B1}",
    )
    assert ref.report_006(wh, D30) == rows(
        "S1MIG-006",
        f"2020-07-30,SUPA01,{I1},1,ELEC,{M1},,IOC,AA,Success,,2020-07-30T14:00:00Z",
        f"2020-07-30,SUPA01,{I2},1,ELEC,{M2},,MOC,DA,Failure,MVF01,2020-07-30T22:59:59Z",
        f"2020-07-30,SUPB02,{I1},1,GAS,,{G1},IOC,AA,Success,,2020-07-30T14:00:00Z",
        f"2020-07-30,SUPB02,{I4},1,GAS,,{G4},FOC,BB,Failure,DTP01,2020-07-30T10:00:00Z",
    )
    assert ref.report_002(wh, D30) == rows(
        "S1MIG-002",
        f"2020-07-30,SUPA01,{MA_A},2020-07-30T06:00:00Z,5,3,2,60.00",
        f"2020-07-30,SUPB02,{MA_B},2020-07-30T06:05:00Z,1,1,0,100.00",
    )
    assert ref.report_003(wh, D30) == rows(
        "S1MIG-003",
        f"2020-07-30,SUPA01,{MA_A},4,S19999999999,1999999999999,MA01,Installation not known to the SMETS1 inventory",
        f"2020-07-30,SUPA01,{MA_A},5,{I5},{M5},MA06,Requested migration date outside the party's allocation",
    )
    assert ref.report_004(wh, D30) == rows(
        "S1MIG-004",
        "2020-07-30,SUPA01,150,120,3,2.50,Y",
        "2020-07-30,SUPB02,50,40,1,2.50,N",
    )
    assert ref.report_005(wh, D30) == rows(
        "S1MIG-005",
        "2020-07-30,SUPA01,IOC,2,1,0,100.00,1,0",
        "2020-07-30,SUPA01,MOC,1,0,1,0.00,0,1",
        "2020-07-30,SUPB02,FOC,1,0,1,0.00,0,1",
        "2020-07-30,SUPB02,IOC,1,1,0,100.00,1,0",
    )
    assert ref.report_007(wh, D30) == rows(
        "S1MIG-007",
        "2020-07-30,SUPA01,MOC,DA,MVF_VALIDATION,21,MVF01,Device security credentials rejected,1",
        "2020-07-30,SUPB02,FOC,BB,DEVICE_TESTING,31,DTP01,Communications hub not responding,1",
    )
    assert ref.report_008(wh, D30) == rows(
        "S1MIG-008",
        f"2020-07-30,SUPA01,{I2},ELEC,1,1,MVF01,2020-07-30T22:59:59Z,N,,",
        f"2020-07-30,SUPB02,{I4},GAS,1,1,DTP01,2020-07-30T10:00:00Z,Y,,",
    )
    assert ref.report_009(wh, D30) == rows(
        "S1MIG-009",
        f"2020-07-30,SUPA01,{SIG_A},{COF_A1},1,2020-07-30T12:00:00Z,1,1,0",
        f"2020-07-30,SUPB02,{SIG_B},{COF_B1},1,2020-07-30T14:00:00Z,1,1,0",
    )
    # I3 at end of 07-30 is the split version (SUPA01 elec, SUPB02 gas) and is awaiting outcome
    assert ref.report_010(wh, D30) == rows(
        "S1MIG-010",
        "2020-07-30,IOC,AA,SUPA01,3,1,0,1,0,1,33.33",
        "2020-07-30,MOC,DA,SUPA01,1,0,0,0,1,0,0.00",
        "2020-07-30,FOC,BB,SUPB02,1,0,0,0,1,0,0.00",
        "2020-07-30,IOC,AA,SUPB02,2,1,0,1,0,0,50.00",
    )


# ----------------------------------------------------------------------------- reports, 2020-07-31


def test_reports_2020_07_31(landing):
    wh = ref.load(landing, D31)
    # completed at 00:00 BST on 07-31; DUAL because responsibility is fixed at scheduled_at
    assert ref.report_001(wh, D31) == rows(
        "S1MIG-001",
        f"2020-07-31,SUPA01,{I3},1,DUAL,{M3},{G3},IOC,AA,2020-07-30,2020-07-30T23:00:00Z,{COF_A2}",
    )
    assert ref.report_006(wh, D31) == rows(
        "S1MIG-006",
        f"2020-07-31,SUPA01,{I3},1,DUAL,{M3},{G3},IOC,AA,Success,,2020-07-30T23:00:00Z",
    )
    assert ref.report_002(wh, D31) == [] and ref.report_003(wh, D31) == [] and ref.report_007(wh, D31) == []
    assert ref.report_004(wh, D31) == rows("S1MIG-004", "2020-07-31,SUPA01,0,0,0,,Y")
    assert ref.report_005(wh, D31) == rows(
        "S1MIG-005",
        "2020-07-31,SUPA01,IOC,0,1,0,100.00,2,0",
        "2020-07-31,SUPA01,MOC,0,0,0,,0,1",
        "2020-07-31,SUPB02,FOC,0,0,0,,0,1",
        "2020-07-31,SUPB02,IOC,0,0,0,,1,0",
    )
    assert ref.report_008(wh, D31) == rows(
        "S1MIG-008",
        f"2020-07-31,SUPA01,{I2},ELEC,1,1,MVF01,2020-07-30T22:59:59Z,N,,",
        f"2020-07-31,SUPB02,{I4},GAS,1,1,DTP01,2020-07-30T10:00:00Z,N,NO_WAN_ATTEMPTING_MIGRATION,2020-07-31T09:00:00Z",
    )
    assert ref.report_009(wh, D31) == rows(
        "S1MIG-009",
        f"2020-07-31,SUPA01,{SIG_A},{COF_A2},2,2020-07-30T23:00:00Z,1,1,0",
    )
    # versions at end of 07-31: I1 gas -> SUPC03, I3 gas -> SUPB02 (010 is installation-level)
    assert ref.report_010(wh, D31) == rows(
        "S1MIG-010",
        "2020-07-31,IOC,AA,SUPA01,3,2,0,0,0,1,66.67",
        "2020-07-31,MOC,DA,SUPA01,1,0,0,0,1,0,0.00",
        "2020-07-31,FOC,BB,SUPB02,1,0,1,0,0,0,0.00",
        "2020-07-31,IOC,AA,SUPB02,1,1,0,0,0,0,100.00",
        "2020-07-31,IOC,AA,SUPC03,1,1,0,0,0,0,100.00",
    )


def test_not_yet_complete_before_its_drop(landing):
    """As at end of 07-30 I3's COF does not exist yet: nothing for 07-31 from I3."""
    assert ref.report_001(ref.load(landing, D30), D31) == []


def test_reports_are_as_at_end_of_d_whatever_was_loaded(landing):
    everything = ref.load(landing, D01)
    for d in (D30, D31):
        upto_d = ref.load(landing, d)
        for report_id, report in ref.REPORTS.items():
            assert report(everything, d) == report(upto_d, d), (report_id, d)


def test_001_matches_success_rows_of_006(landing):
    wh = ref.load(landing, D31)
    for d in (D30, D31):
        key = ("party_id", "installation_id", "attempt_no")
        r001 = {tuple(r[k] for k in key) for r in ref.report_001(wh, d)}
        r006 = {tuple(r[k] for k in key) for r in ref.report_006(wh, d) if r["completion_status"] == "Success"}
        assert r001 == r006


def test_expected_files(landing):
    files30 = ref.expected_files(ref.load(landing, D30), D30)
    assert sorted(files30) == ["SUPA01", "SUPB02"]
    assert all(sorted(reports) == list(ref.REPORT_IDS) for reports in files30.values())
    assert [r["installation_id"] for r in files30["SUPB02"]["S1MIG-001"]] == [I1]
    assert files30["SUPB02"]["S1MIG-003"] == []  # nil return
    files31 = ref.expected_files(ref.load(landing, D31), D31)
    assert sorted(files31) == ["SUPA01", "SUPB02", "SUPC03"]
    assert {rid for rid, rs in files31["SUPC03"].items() if rs} == {"S1MIG-010"}
    text = ref.to_csv("S1MIG-003", files30["SUPA01"]["S1MIG-003"])
    assert text.splitlines()[0] == ",".join(ref.COLUMNS["S1MIG-003"]) and text.endswith("'s allocation\n")
    assert ref.file_name("S1MIG-001", "SUPA01", D30) == "SUPA01/S1MIG-001_SUPA01_20200730.csv"
