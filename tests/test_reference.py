"""Self-checks of the test oracle (tests/reference/) on the tiny hand-made landing
folder of tests/support/drops.py (its docstring lists every case)."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests import reference as ref
from tests.support.drops import (
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
    both = [ref.Responsibility("P", "ELEC", "m", None), ref.Responsibility("Q", "GAS", None, "g")]
    ev = E("E9", "A", "COMMISSIONING", 53, "FAIL", "COM02", t)
    cf = C("COF_X_00000001", 1, "P", "X", t, "A", "I", "FAILURE", "COF01")
    assert ref.complete(both, [ev], [cf]).reason_code == "COM02"  # lower step at the same instant
    ev60 = E("Z1", "A", "COMMISSIONING", 60, "FAIL", "COM02", t)  # contrived full tie on step
    assert ref.complete(both, [ev60], [cf]).reason_code == "COM02"  # events before COF records
    cf2 = C("COF_W_00000001", 1, "Q", "W", t, "A", "I", "FAILURE", "COF01")
    got = ref.complete(both, [], [cf, cf2])
    assert (got.failed_stage, got.step_no, got.completed_at) == ("COF", 60, t)
    assert [f.record_id for f in ref.failure_records(both, [], [cf, cf2])] == [cf2.cof_file_name, cf.cof_file_name]
    earlier = E("E1", "A", "MVF_VALIDATION", 22, "FAIL", "MVF02", ref.parse_ts("2020-07-30T09:59:59Z"))
    assert ref.complete(both, [ev, earlier], [cf]).reason_code == "MVF02"  # earliest time first
    assert ref.complete([], [ev], [cf]) is None  # no responsible party: never complete


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
    # a party with two SUCCESS records contributes its lowest counter, which 001 also shows
    ca_late = C("COF_A_00000009", 9, "PA", "A", ref.parse_ts("2020-07-30T15:00:00Z"), "A", "I", "SUCCESS", None)
    assert ref.complete(parties, [com], [ca_late, ca, cb]) == ref.Completion("Success", t2)
    assert ref.success_cof([ca_late, ca, cb], "PA") is ca
    # v1.1: the COMMISSIONING PASS is one of the conditions; the earliest PASS counts
    t3, t4 = ref.parse_ts("2020-07-30T16:00:00Z"), ref.parse_ts("2020-07-30T18:00:00Z")
    com_late = E("E2", "A", "COMMISSIONING", 59, "PASS", None, t3)
    com_later = E("E3", "A", "COMMISSIONING", 59, "PASS", None, t4)
    assert ref.complete(parties, [com_later, com_late], [ca, cb]) == ref.Completion("Success", t3)
    assert ref.success_time(parties, [com_late], [ca, cb]) == t3
    # a SUCCESS COF from a party that is not responsible counts for nothing
    cc = C("COF_C_00000001", 1, "PC", "C", t1, "A", "I", "SUCCESS", None)
    assert ref.complete(parties, [com], [ca, cc]) is None


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


# ----------------------------------------------------------------------------- contract v1.1 completion cases
# Small warehouses built record by record (no landing folder); August 2020 is BST (UTC+1),
# so local day D runs from (D-1)T23:00Z to DT23:00Z.

V1, V2, V3 = date(2020, 8, 3), date(2020, 8, 4), date(2020, 8, 5)
PA, PB, PC = "SUPA01", "SUPB02", "SUPC03"
SIGS = {PA: SIG_A, PB: SIG_B, PC: "00-00-00-00-00-00-00-C3"}
X1, X2 = "S10000000101", "S10000000102"
XM1, XG1, XM2, XG2 = "1000000000101", "20000101", "1000000000102", "20000102"
MPXN = {X1: (XM1, XG1), X2: (XM2, XG2)}


def _rec(extract: str, **values):
    """A typed record of `extract`; missing columns are NULL; '...Z' strings become instants."""
    typed = {k: ref.parse_ts(v) if isinstance(v, str) and v.endswith("Z") else v for k, v in values.items()}
    return ref.RECORD[extract](**{c: typed.get(c) for c in ref.EXTRACTS_BY_NAME[extract].columns})


def _inst(iid, elec=None, gas=None, eff="2020-06-01T00:00:00Z", cohort="IOC", group="AA"):
    mpan, mprn = MPXN[iid]
    return _rec(
        "installations", installation_id=iid, cohort=cohort, group_id=group, mpan=mpan if elec else None,
        mprn=mprn if gas else None, elec_supplier_id=elec, gas_supplier_id=gas, eligible_from=date(2020, 7, 1),
        effective_from=eff,
    )  # fmt: skip


def _att(aid, iid, pid, sched="2020-08-03T06:00:00Z", no=1):
    return _rec(
        "migration_attempts", attempt_id=aid, installation_id=iid, attempt_no=no, ma_file_name="MA", ma_record_no=1,
        party_id=pid, scheduled_at=sched, scheduled_for=V1,
    )  # fmt: skip


def _ev(eid, aid, at, code=None, stage="COMMISSIONING"):
    """A FAIL event with reason `code`, or a PASS of `stage` when code is None."""
    if code is None:
        return _rec("migration_events", event_id=eid, attempt_id=aid, stage=stage, step_no=59 if stage ==
                    "COMMISSIONING" else 19, outcome="PASS", event_ts=at)  # fmt: skip
    stage, step = ref.REASON_CODES[code][:2]
    return _rec(
        "migration_events", event_id=eid, attempt_id=aid, stage=stage, step_no=step, outcome="FAIL", reason_code=code,
        event_ts=at,
    )  # fmt: skip


def _cof(pid, counter, at, aid, iid, failure=False):
    return _rec(
        "cof_records", cof_file_name=_cof_name(pid, counter), cof_counter=counter, party_id=pid,
        sec_party_signifier=SIGS[pid], generated_at=at, attempt_id=aid, installation_id=iid,
        response="FAILURE" if failure else "SUCCESS", reason_code="COF01" if failure else None,
    )  # fmt: skip


def _cof_name(pid, counter):
    return f"COF_{SIGS[pid]}_{counter:08d}"


def _wh(*records, drops=(V1, V2, V3)) -> ref.Warehouse:
    tables = {e.name: [] for e in ref.EXTRACTS}
    tables["parties"] = [
        _rec("parties", party_id=p, party_name=p, sec_party_signifier=SIGS[p], effective_from="2020-06-01T00:00:00Z")
        for p in (PA, PB, PC)
    ]
    for r in records:
        tables[next(name for name, cls in ref.RECORD.items() if isinstance(r, cls))].append(r)
    return ref.Warehouse(tables, list(drops), {})


def _keyed(report_id, wh, d, *columns):
    """The report's rows of D as tuples of the given columns (the rest is checked elsewhere)."""
    return [tuple(r[c] for c in columns) for r in ref.REPORTS[report_id](wh, d)]


SPLIT = (_inst(X1, elec=PA, gas=PB), _att("A1", X1, PA))


def test_v11_pass_after_cof_on_the_same_day():
    wh = _wh(
        *SPLIT,
        _cof(PA, 1, "2020-08-03T10:00:00Z", "A1", X1),
        _cof(PB, 1, "2020-08-03T11:00:00Z", "A1", X1),
        _ev("E1", "A1", "2020-08-03T15:00:00Z"),  # the PASS is the last condition to come true
    )
    assert ref.report_001(wh, V1) == rows(
        "S1MIG-001",
        f"2020-08-03,{PA},{X1},1,ELEC,{XM1},,IOC,AA,2020-08-03,2020-08-03T15:00:00Z,{_cof_name(PA, 1)}",
        f"2020-08-03,{PB},{X1},1,GAS,,{XG1},IOC,AA,2020-08-03,2020-08-03T15:00:00Z,{_cof_name(PB, 1)}",
    )
    assert _keyed("S1MIG-006", wh, V1, "party_id", "completion_status", "completed_at") == [
        (PA, "Success", "2020-08-03T15:00:00Z"),
        (PB, "Success", "2020-08-03T15:00:00Z"),
    ]
    assert ref.late_records(wh, V3) == []


def test_v11_pass_after_cof_on_the_next_day():
    wh = _wh(
        *SPLIT,
        _cof(PA, 1, "2020-08-03T10:00:00Z", "A1", X1),
        _cof(PB, 1, "2020-08-03T20:00:00Z", "A1", X1),
        _ev("E1", "A1", "2020-08-04T08:00:00Z"),
    )
    # 08-03: both COFs, no PASS yet: awaiting outcome, in no completion report
    assert ref.report_001(wh, V1) == [] and ref.report_006(wh, V1) == []
    assert _keyed("S1MIG-010", wh, V1, "party_id", "migrated", "awaiting_outcome") == [(PA, "0", "1"), (PB, "0", "1")]
    # 08-04: Success at the PASS
    assert _keyed("S1MIG-001", wh, V2, "party_id", "completed_at", "cof_file_name") == [
        (PA, "2020-08-04T08:00:00Z", _cof_name(PA, 1)),
        (PB, "2020-08-04T08:00:00Z", _cof_name(PB, 1)),
    ]
    assert _keyed("S1MIG-005", wh, V2, "party_id", "succeeded", "cumulative_succeeded") == [
        (PA, "1", "1"),
        (PB, "1", "1"),
    ]
    assert _keyed("S1MIG-010", wh, V2, "party_id", "migrated", "awaiting_outcome") == [(PA, "1", "0"), (PB, "1", "0")]
    assert ref.report_001(wh, V3) == [] and ref.late_records(wh, V3) == []


def test_v11_late_failures_after_a_success_for_a_split_supplier_attempt():
    wh = _wh(
        *SPLIT,
        _ev("E1", "A1", "2020-08-03T09:00:00Z"),
        _cof(PA, 1, "2020-08-03T10:00:00Z", "A1", X1),
        _cof(PB, 1, "2020-08-03T11:00:00Z", "A1", X1),
        _ev("E2", "A1", "2020-08-04T08:00:00Z", "COM02"),  # late FAIL event: one instance per party
        _cof(PC, 1, "2020-08-04T09:00:00Z", "A1", X1, failure=True),  # PC is not responsible: nothing
        _cof(PB, 2, "2020-08-04T22:59:59Z", "A1", X1, failure=True),  # late FAILURE COF of PB (08-04 local)
        _cof(PA, 2, "2020-08-04T23:00:00Z", "A1", X1, failure=True),  # late FAILURE COF of PA (08-05 local)
    )
    assert _keyed("S1MIG-006", wh, V1, "party_id", "completion_status", "completed_at") == [
        (PA, "Success", "2020-08-03T11:00:00Z"),
        (PB, "Success", "2020-08-03T11:00:00Z"),
    ]
    for d in (V2, V3):  # the late records change no report
        for report_id in ("S1MIG-001", "S1MIG-006", "S1MIG-007", "S1MIG-008"):
            assert ref.REPORTS[report_id](wh, d) == [], (report_id, d)
        assert _keyed(
            "S1MIG-005", wh, d, "party_id", "succeeded", "failed", "cumulative_succeeded", "cumulative_failed"
        ) == [
            (PA, "0", "0", "1", "0"),
            (PB, "0", "0", "1", "0"),
        ]
        assert _keyed("S1MIG-010", wh, d, "party_id", "migrated", "failed_outstanding") == [
            (PA, "1", "0"),
            (PB, "1", "0"),
        ]
    # ... but they are listed, the COF of a party not responsible is not
    late = ref.LateRecord
    t_e2, t_b2, t_a2 = (
        ref.parse_ts(t) for t in ("2020-08-04T08:00:00Z", "2020-08-04T22:59:59Z", "2020-08-04T23:00:00Z")
    )
    assert ref.late_records(wh, V1) == []
    on_v2 = [
        late(V2, "A1", PA, "event", "E2", t_e2),
        late(V2, "A1", PB, "cof", _cof_name(PB, 2), t_b2),
        late(V2, "A1", PB, "event", "E2", t_e2),
    ]
    assert ref.late_records(wh, V2) == on_v2
    assert ref.late_records(wh, V3) == sorted([*on_v2, late(V3, "A1", PA, "cof", _cof_name(PA, 2), t_a2)])
    # 009 lists every COF file generated on D, late records and PC's included
    assert _keyed("S1MIG-009", wh, V2, "party_id", "cof_counter", "failure_records") == [(PB, "2", "1"), (PC, "1", "1")]


def test_v11_a_failure_later_on_the_same_day_as_the_success_wins():
    success = (
        _ev("E1", "A1", "2020-08-03T09:00:00Z"),
        _cof(PA, 1, "2020-08-03T10:00:00Z", "A1", X1),
        _cof(PB, 1, "2020-08-03T12:00:00Z", "A1", X1),
    )
    # a FAIL event at 21:00 BST, a FAILURE COF of PB at 23:59:59 BST: both the same local day
    for late_failure, code, at in (
        (_ev("E2", "A1", "2020-08-03T20:00:00Z", "DTP01"), "DTP01", "2020-08-03T20:00:00Z"),
        (_cof(PB, 2, "2020-08-03T22:59:59Z", "A1", X1, failure=True), "COF01", "2020-08-03T22:59:59Z"),
    ):
        wh = _wh(*SPLIT, *success, late_failure)
        assert ref.report_001(wh, V1) == []
        assert _keyed(
            "S1MIG-006", wh, V1, "party_id", "completion_status", "completion_reason_code", "completed_at"
        ) == [
            (PA, "Failure", code, at),
            (PB, "Failure", code, at),
        ]
        assert _keyed("S1MIG-007", wh, V1, "party_id", "reason_code", "failures") == [(PA, code, "1"), (PB, code, "1")]
        assert _keyed("S1MIG-008", wh, V1, "party_id", "last_failure_reason_code") == [(PA, code), (PB, code)]
        assert ref.late_records(wh, V3) == []
    # one second later it is 00:00 BST on 08-04: the Success of 08-03 stands and the COF is late
    wh = _wh(*SPLIT, *success, _cof(PB, 2, "2020-08-03T23:00:00Z", "A1", X1, failure=True))
    assert _keyed("S1MIG-001", wh, V1, "party_id") == [(PA,), (PB,)]
    assert [(r.drop_date, r.party_id, r.kind) for r in ref.late_records(wh, V2)] == [(V2, PB, "cof")]
    # a failure on an EARLIER day than the last Success condition: Failure on that day
    wh = _wh(
        *SPLIT, *success[1:], _ev("E2", "A1", "2020-08-03T13:00:00Z", "COM01"), _ev("E1", "A1", "2020-08-04T09:00Z")
    )
    assert _keyed("S1MIG-006", wh, V1, "completion_status", "completion_reason_code") == [("Failure", "COM01")] * 2
    assert ref.report_006(wh, V2) == [] and ref.late_records(wh, V2) == []


def test_v11_change_of_supplier_between_scheduling_and_completion():
    wh = _wh(
        *SPLIT,  # X1 scheduled at 06:00Z with elec PA, gas PB
        _inst(X1, elec=PA, gas=PC, eff="2020-08-03T08:00:00Z"),  # gas moves to PC after scheduling
        _ev("E1", "A1", "2020-08-03T09:00:00Z"),
        _cof(PA, 1, "2020-08-03T10:00:00Z", "A1", X1),
        _cof(PC, 1, "2020-08-03T11:00:00Z", "A1", X1),  # the new supplier's COF counts for nothing
        _cof(PB, 1, "2020-08-04T07:00:00Z", "A1", X1),  # the responsible (at scheduled_at) party's COF
        # X2: gas-only PB at scheduling, fails on 08-03, gas moves to PC on 08-04
        _inst(X2, gas=PB),
        _att("A2", X2, PB),
        _ev("E3", "A2", "2020-08-03T12:00:00Z", "MCF01"),
        _inst(X2, gas=PC, eff="2020-08-04T12:00:00Z"),
    )
    assert ref.report_001(wh, V1) == []
    # 010 and 008 use the parties as at end of D
    assert _keyed("S1MIG-010", wh, V1, "party_id", "awaiting_outcome", "failed_outstanding") == [
        (PA, "1", "0"),
        (PB, "0", "1"),
        (PC, "1", "0"),
    ]
    assert _keyed("S1MIG-008", wh, V1, "party_id", "installation_id", "fuel") == [(PB, X2, "GAS")]
    assert _keyed("S1MIG-008", wh, V2, "party_id", "installation_id", "fuel") == [(PC, X2, "GAS")]
    # 001 / 006 keep the parties of scheduled_at: PA ELEC and PB GAS, PB's own COF
    assert ref.report_001(wh, V2) == rows(
        "S1MIG-001",
        f"2020-08-04,{PA},{X1},1,ELEC,{XM1},,IOC,AA,2020-08-03,2020-08-04T07:00:00Z,{_cof_name(PA, 1)}",
        f"2020-08-04,{PB},{X1},1,GAS,,{XG1},IOC,AA,2020-08-03,2020-08-04T07:00:00Z,{_cof_name(PB, 1)}",
    )
    assert _keyed("S1MIG-010", wh, V2, "party_id", "migrated", "failed_outstanding") == [(PA, "1", "0"), (PC, "1", "1")]


def test_v11_change_of_supplier_after_a_success():
    wh = _wh(
        _inst(X1, elec=PA, gas=PA),  # DUAL PA at scheduled_at
        _att("A1", X1, PA),
        _ev("E1", "A1", "2020-08-03T09:00:00Z"),
        _cof(PA, 1, "2020-08-03T10:00:00Z", "A1", X1),
        _inst(X1, elec=PA, gas=PB, eff="2020-08-04T06:00:00Z"),  # gas moves to PB after the Success
        _ev("E2", "A1", "2020-08-05T06:00:00Z", "COM02"),  # late
    )
    assert _keyed("S1MIG-001", wh, V1, "party_id", "fuel", "mpan", "mprn") == [(PA, "DUAL", XM1, XG1)]
    assert ref.report_001(wh, V2) == [] and ref.report_006(wh, V3) == []
    # 005 counts the 001 rows (PA's); 010 counts the installation for the parties as at end of D
    assert _keyed("S1MIG-005", wh, V2, "party_id", "cumulative_succeeded") == [(PA, "1")]
    assert _keyed("S1MIG-010", wh, V1, "party_id", "migrated") == [(PA, "1")]
    assert _keyed("S1MIG-010", wh, V2, "party_id", "migrated") == [(PA, "1"), (PB, "1")]
    # the late FAIL event concerns the parties of scheduled_at: PA, once (DUAL)
    assert [(r.drop_date, r.party_id, r.record_id) for r in ref.late_records(wh, V3)] == [(V3, PA, "E2")]


def test_v11_a_cof_of_a_party_not_responsible_counts_for_nothing():
    wh = _wh(
        _inst(X1, elec=PA),
        _att("A1", X1, PA),
        _ev("E1", "A1", "2020-08-03T09:00:00Z"),
        _cof(PB, 1, "2020-08-03T10:00:00Z", "A1", X1),  # SUCCESS, not responsible
        _cof(PC, 1, "2020-08-03T11:00:00Z", "A1", X1, failure=True),  # FAILURE, not responsible
        _cof(PA, 1, "2020-08-04T10:00:00Z", "A1", X1),
        _cof(PC, 2, "2020-08-05T10:00:00Z", "A1", X1, failure=True),  # after the Success: not late either
    )
    assert ref.report_006(wh, V1) == [] and ref.report_008(wh, V1) == []
    assert _keyed("S1MIG-010", wh, V1, "party_id", "awaiting_outcome") == [(PA, "1")]
    assert _keyed("S1MIG-009", wh, V1, "party_id", "cof_file_name") == [(PB, _cof_name(PB, 1)), (PC, _cof_name(PC, 1))]
    assert _keyed("S1MIG-006", wh, V2, "party_id", "completion_status", "completed_at") == [
        (PA, "Success", "2020-08-04T10:00:00Z")
    ]
    assert ref.late_records(wh, V3) == []


def test_v11_late_record_before_the_first_drop_is_in_the_first_drop():
    wh = _wh(
        *SPLIT,
        _ev("E1", "A1", "2020-08-03T09:00:00Z"),
        _cof(PA, 1, "2020-08-03T10:00:00Z", "A1", X1),
        _cof(PB, 1, "2020-08-03T11:00:00Z", "A1", X1),
        _ev("E2", "A1", "2020-08-04T08:00:00Z", "COM02"),
        drops=(V3,),  # the first drop, 08-05, carried everything before it
    )
    assert {(r.drop_date, r.record_id) for r in ref.late_records(wh, V3)} == {(V3, "E2")}
    assert len(ref.late_records(wh, V3)) == 2  # one per responsible party


def test_v11_completion_is_final_from_the_first_date_it_holds():
    """Judged as at the end of each later date, a completion stays what it first was."""
    wh = _wh(
        *SPLIT,
        _ev("E1", "A1", "2020-08-03T09:00:00Z"),
        _cof(PA, 1, "2020-08-03T10:00:00Z", "A1", X1),
        _cof(PB, 1, "2020-08-03T11:00:00Z", "A1", X1),
        _ev("E2", "A1", "2020-08-04T08:00:00Z", "COM02"),
        _cof(PB, 2, "2020-08-05T08:00:00Z", "A1", X1, failure=True),
    )
    success = ref.Completion("Success", ref.parse_ts("2020-08-03T11:00:00Z"))
    assert [ref.Model(wh, d).attempts[0].completion for d in (V1, V2, V3)] == [success] * 3
    # judged on all the records at once without the day rule, the earliest failure would win
    view = ref.Model(wh, V3).attempts[0]
    assert view.failures[0].completion.reason_code == "COM02" and view.completion == success
