"""The referential rules of spec section 6 (v1.1) are rejects named by drop, file and line:
an attempt's MA record is an ACCEPTED one of the same installation and party; every party
id a record names is in parties at the record's time; group DA only in cohort MOC; a field
over 64 characters (ids, file names, signifiers) or 256 (any other text) is a reject, not
a database error. Each fault is planted in a drop that is otherwise sound, landed and
built for real (the direct path); the gate's L1 blocks the date naming them; a later drop
resolves nothing (a full rebuild finds the same); the corrected re-delivery goes through
and its exports match the reference."""

from __future__ import annotations

import random
import shutil
import string
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from s1mig import dbt, land, pipeline
from s1mig.contract import EXTRACTS
from s1mig.errors import GateBlocked
from tests.support.drops import (
    D30,
    D31,
    I1,
    I5,
    I6,
    MA_A,
    MA_B,
    SIG_A,
    append_rows,
    build_handmade_landing,
    cof,
    edit_rows,
    event,
    line_of,
    ma,
    party,
)
from tests.support.exports import assert_exports_match_reference

pytestmark = pytest.mark.integration

SIG_Z = "00-00-00-00-00-00-00-D9"
MA_UNKNOWN = f"MA_SUPA01_{SIG_A}_20200730_070000"  # never delivered
MA_Z = f"MA_SUPZ09_{SIG_Z}_20200730_070000"  # from a party that does not exist
COF_Z = f"COF_{SIG_Z}_00000001"
NEEDS = " (an attempt needs an ACCEPTED MA record of its installation and party)"
# random, so incompressible: staged as a key, 9,000 characters would not fit in a btree index entry
HUGE_ID = "".join(random.Random(14).choices(string.ascii_letters + string.digits, k=9000))


def limit(column: str) -> int:
    """Spec section 6 (v1.1): 64 for ids, file names and signifiers, 256 for any other text."""
    return 64 if column.endswith("_id") or column in ("ma_file_name", "cof_file_name", "sec_party_signifier") else 256


@dataclass(frozen=True)
class Fault:
    extract: str
    find: dict  # identifies the faulty row in its file
    reason: str  # the reject's reason contains this
    change: tuple[dict, dict] | None = None  # (row matched in the sound drop, values changed)
    row: dict | None = None  # or a row appended to the sound drop


def _over_long_row(extract) -> Fault:
    """A row whose every field is one character over its limit: one reason per field, in order."""
    row = {column: "X" * (limit(column) + 1) for column in extract.columns}
    reason = "; ".join(f"{c} is {limit(c) + 1} characters long (at most {limit(c)})" for c in extract.columns)
    first = extract.columns[0]
    return Fault(extract.name, {first: row[first]}, reason, row=row)


FAULTS = [
    # an attempt's MA record: not delivered, REJECTED, another installation's, another party's
    Fault(
        "migration_attempts",
        {"attempt_id": "A1"},
        f"MA record {MA_UNKNOWN} #1 is not a valid MA record landed up to this drop{NEEDS}",
        change=({"attempt_id": "A1"}, {"ma_file_name": MA_UNKNOWN}),
    ),
    Fault(
        "migration_attempts",
        {"attempt_id": "A2"},
        f"MA record {MA_A} #4 is REJECTED{NEEDS}",
        change=({"attempt_id": "A2"}, {"ma_record_no": "4"}),
    ),
    Fault(
        "migration_attempts",
        {"attempt_id": "A3"},
        f"MA record {MA_A} #1 is for installation {I1}{NEEDS}",
        change=({"attempt_id": "A3"}, {"ma_record_no": "1"}),
    ),
    # ... whose party, unknown too, is not the MA record's: both rules, on one line
    Fault(
        "migration_attempts",
        {"attempt_id": "A4"},
        f"MA record {MA_B} #1 is from party SUPB02{NEEDS}; "
        "party_id SUPD04 is not in parties at scheduled_at 2020-07-30T06:30:00Z",
        change=({"attempt_id": "A4"}, {"party_id": "SUPD04"}),
    ),
    # the party ids of every other record type that names one, unknown at the record's time
    Fault(
        "installations",
        {"installation_id": I6},
        "elec_supplier_id SUPC03 is not in parties at effective_from 2020-06-01T00:00:00Z",
        change=({"installation_id": I6}, {"elec_supplier_id": "SUPC03"}),  # SUPC03 comes on 07-31: too late
    ),
    Fault(
        "migration_authorisations",
        {"ma_file_name": MA_Z},
        "party_id SUPZ09 is not in parties at received_at 2020-07-30T06:00:00Z",
        row=ma(MA_Z, 1, "SUPZ09", "2020-07-30T06:00:00Z", I5, "1000000000005", "REJECTED", "MA02"),
    ),
    Fault(
        "cof_records",
        {"cof_file_name": COF_Z},
        "party_id SUPZ09 is not in parties at generated_at 2020-07-30T15:00:00Z",
        row=cof(COF_Z, 1, "SUPZ09", SIG_Z, "2020-07-30T15:00:00Z", "A1", I1),
    ),
    Fault(
        "capacity_allocations",
        {"party_id": "SUPQ07"},
        "party_id SUPQ07 is not in parties at allocated_at 2020-07-29T12:00:00Z",
        row={
            "migration_date": "2020-07-30",
            "party_id": "SUPQ07",
            "demand": 10,
            "allocation": 10,
            "allocated_at": "2020-07-29T12:00:00Z",
        },
    ),
    # DA is the MOC Secure group [seed section 5]
    Fault(
        "installations",
        {"installation_id": I5},
        "group_id DA (the MOC Secure group) is only for cohort MOC, not 'IOC'",
        change=({"installation_id": I5}, {"group_id": "DA"}),
    ),
    # over-long fields: the field and its length, none of the value
    Fault(
        "migration_events",
        {"event_id": HUGE_ID},
        "event_id is 9000 characters long (at most 64)",
        row=event(HUGE_ID, "A1", "MVF_VALIDATION", 22, "FAIL", "2020-07-30T08:15:00Z", "MVF02"),
    ),
    Fault(
        "parties",
        {"party_id": "SUPE05"},
        "party_name is 300 characters long (at most 256)",
        row={**party("SUPE05", "00-00-00-00-00-00-00-E5", "2020-06-01T00:00:00Z"), "party_name": "L" * 300},
    ),
    *(_over_long_row(extract) for extract in EXTRACTS),
]

# Sound records at the limits, in the faulty and the corrected delivery alike: never rejected.
AT_THE_LIMITS = {
    "parties": [{**party("SUPF06", "00-00-00-00-00-00-00-F6", "2020-06-01T00:00:00Z"), "party_name": "N" * 256}],
    "migration_events": [event("E" * 64, "A1", "MCF_VALIDATION", 19, "PASS", "2020-07-30T08:05:00Z")],
}


def _sound_first_drop(good: Path, landing: Path) -> Path:
    folder = landing / "2020-07-30"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(good / "2020-07-30", folder)
    for extract, rows in AT_THE_LIMITS.items():
        append_rows(folder, extract, rows)
    return folder


def _rejects(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select _drop_date, extract_name, _file_name, line_no, reject_reason "
            "from intermediate.int_rejected_records order by 1, 2, 4"
        ).fetchall()


def test_referential_rules_are_rejects_named_by_file_and_line(warehouse, tmp_path):
    good = build_handmade_landing(tmp_path / "good")
    landing, out = tmp_path / "landing", tmp_path / "out"
    first = _sound_first_drop(good, landing)
    for fault in FAULTS:
        if fault.change:
            edit_rows(first, fault.extract, *fault.change)
        else:
            append_rows(first, fault.extract, [fault.row])
    lines = {id(f): line_of(first, f.extract, f.find) for f in FAULTS}

    # lands (nothing is a database error), builds, and the gate blocks the date naming the records
    with pytest.raises(GateBlocked) as blocked:
        pipeline.run_direct(landing, D30, out)
    assert f"L1 no_rejected_records: {len(FAULTS)} failing" in str(blocked.value)
    supq07 = next(f for f in FAULTS if f.find == {"party_id": "SUPQ07"})
    assert f"drop 2020-07-30 capacity_allocations.csv line {lines[id(supq07)]}: {supq07.reason}" in str(blocked.value)
    assert not (out / "2020-07-30").exists()

    rejects = _rejects(warehouse)
    assert len(rejects) == len(FAULTS), rejects
    for fault in FAULTS:
        hits = [r for r in rejects if r[1] == fault.extract and r[3] == lines[id(fault)]]
        assert len(hits) == 1, (fault.extract, fault.find)
        drop, _, file_name, _, reason = hits[0]
        assert (drop, file_name) == (D30, f"{fault.extract}.csv")
        assert fault.reason in reason, (reason, fault.reason)
        assert len(reason) < 1000  # no value is echoed whole
    with psycopg.connect(warehouse) as conn:
        # nothing of the 9,000-character id is echoed; the reject keeps its first 64 characters
        (huge,) = conn.execute(
            "select raw_record from staging.stg_dcc__rejects where extract_name = 'migration_events' "
            "and raw_record ->> 'attempt_id' = 'A1'"
        ).fetchone()
        assert huge["event_id"] == HUGE_ID[:64] + "..." and huge["reason_code"] == "MVF02"
        assert not any(HUGE_ID[i : i + 16] in str(rejects) for i in range(0, 9000 - 16, 16))
        # the records at the limits are staged
        assert conn.execute("select count(*) from staging.stg_dcc__parties where party_id = 'SUPF06'").fetchone() == (
            1,
        )
        assert conn.execute(
            "select count(*) from staging.stg_dcc__migration_events where event_id = %s", ("E" * 64,)
        ).fetchone() == (1,)

    # a later drop resolves nothing: SUPC03 exists from 07-31 10:00Z, after I6's version; the
    # incremental run and a full rebuild agree
    shutil.copytree(good / "2020-07-31", landing / "2020-07-31")
    land.land(landing / str(D31), D31)
    layers = ["--select", "staging", "intermediate", "--vars", f"{{report_date: '{D31}'}}"]
    dbt.run_dbt(["run", *layers], echo=None)
    assert _rejects(warehouse) == rejects
    dbt.run_dbt(["run", *layers, "--full-refresh"], echo=None)
    assert _rejects(warehouse) == rejects

    # the corrected re-delivery of 07-30 goes through (07-31 landed or not)
    _sound_first_drop(good, landing)
    pipeline.run_direct(landing, D30, out)
    assert _rejects(warehouse) == []
    assert_exports_match_reference(landing, out, D30)
