"""The sample-data generator: contract-valid drops, routed by local day, deterministic,
and rich enough to exercise every report (spec sections 2-5)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from s1mig.contract import (
    COHORTS,
    EXCLUSION_CATEGORIES,
    EXTRACTS,
    LOCAL_TZ,
    MA_ERROR_CODES,
    PASS_STEP,
    REASON_CODES,
    STAGES,
)
from s1mig.generate import generate

LONDON = ZoneInfo(LOCAL_TZ)
START, DAYS = date(2020, 7, 31), 7
SIG = r"(?:[0-9A-F]{2}-){7}[0-9A-F]{2}"
DATE = r"\d{4}-\d{2}-\d{2}"
FORMATS = {
    "party_id": r"[A-Z0-9]{6}",
    "elec_supplier_id": r"[A-Z0-9]{6}|",
    "gas_supplier_id": r"[A-Z0-9]{6}|",
    "sec_party_signifier": SIG,
    "installation_id": r"S1[0-9]{10}",
    "mpan": r"[0-9]{13}|",
    "mprn": r"[0-9]{6,10}|",
    "cohort": "|".join(COHORTS),
    "group_id": r"[A-Z]{2}",
    "ma_file_name": rf"MA_[A-Z0-9]{{6}}_{SIG}_[0-9]{{8}}_[0-9]{{6}}",
    "cof_file_name": rf"COF_{SIG}_[0-9]{{8}}",
    "ma_status": "ACCEPTED|REJECTED",
    "ma_error_code": "|".join(MA_ERROR_CODES) + "|",
    "stage": "|".join(STAGES),
    "outcome": "PASS|FAIL",
    "response": "SUCCESS|FAILURE",
    "exclusion_category": "|".join(EXCLUSION_CATEGORIES),
    "reason_code": "|".join(REASON_CODES) + "|",
    **dict.fromkeys(("ma_record_no", "attempt_no", "step_no", "cof_counter", "demand", "allocation"), r"[0-9]+"),
    **dict.fromkeys(("eligible_from", "requested_migration_date", "scheduled_for", "migration_date"), DATE),
    **{e.time_column: r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z" for e in EXTRACTS},
}

Row = dict[str, Any]


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def local_day(text: str) -> date:
    return parse_ts(text).astimezone(LONDON).date()


def read_drops(folders: list[Path]) -> dict[str, list[Row]]:
    """Every record of the drops, checked against its manifest; `_drop` is its drop date."""
    tables: dict[str, list[Row]] = defaultdict(list)
    for folder in folders:
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["drop_date"] == folder.name
        assert [e["name"] for e in manifest["extracts"]] == [e.name for e in EXTRACTS]
        for entry, ex in zip(manifest["extracts"], EXTRACTS, strict=True):
            data = (folder / entry["file"]).read_bytes()
            assert entry["file"] == f"{ex.name}.csv"
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
            assert b"\r" not in data
            rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
            assert rows[0] == list(ex.columns)
            assert entry["rows"] == len(rows) - 1
            for values in rows[1:]:
                assert len(values) == len(ex.columns)
                tables[ex.name].append(dict(zip(ex.columns, values, strict=True)) | {"_drop": folder.name})
    return tables


@pytest.fixture(scope="module")
def week(tmp_path_factory) -> tuple[list[Path], dict[str, list[Row]]]:
    folders = generate(tmp_path_factory.mktemp("week"), START, DAYS, 500, 1, progress=False)
    return folders, read_drops(folders)


def test_one_complete_drop_per_day(week):
    folders, _ = week
    assert [f.name for f in folders] == [(START + timedelta(days=k)).isoformat() for k in range(DAYS)]
    for folder in folders:
        expected = {"manifest.json"} | {f"{e.name}.csv" for e in EXTRACTS}
        assert {p.name for p in folder.iterdir()} == expected


def test_every_field_has_its_format(week):
    _, tables = week
    for name, rows in tables.items():
        for row in rows:
            for column, value in row.items():
                if column in FORMATS:
                    assert re.fullmatch(FORMATS[column], value), (name, column, value)


def assert_routed(tables: dict[str, list[Row]], start: date) -> None:
    """Drop D holds the records of local day D; the first drop also everything earlier."""
    for ex in EXTRACTS:
        for row in tables[ex.name]:
            day, drop = local_day(row[ex.time_column]), date.fromisoformat(row["_drop"])
            assert day <= drop if drop == start else day == drop, (ex.name, row)


def test_records_land_in_the_drop_of_their_local_day(week):
    assert_routed(week[1], START)


def test_conditional_fields(week):
    _, t = week
    for i in t["installations"]:
        assert i["mpan"] or i["mprn"]
        assert bool(i["mpan"]) == bool(i["elec_supplier_id"])
        assert bool(i["mprn"]) == bool(i["gas_supplier_id"])
    for m in t["migration_authorisations"]:
        assert (m["ma_status"] == "REJECTED") == bool(m["ma_error_code"])
    for e in t["migration_events"]:
        assert (e["outcome"] == "FAIL") == bool(e["reason_code"])
        if e["outcome"] == "PASS":
            assert int(e["step_no"]) == PASS_STEP[e["stage"]]
        else:
            assert REASON_CODES[e["reason_code"]][:2] == (e["stage"], int(e["step_no"]))
    for c in t["cof_records"]:
        assert c["reason_code"] == ("COF01" if c["response"] == "FAILURE" else "")


def test_files_are_consistent(week):
    _, t = week
    signifier = {p["party_id"]: p["sec_party_signifier"] for p in t["parties"]}
    ma_files: dict[str, set] = defaultdict(set)
    for m in t["migration_authorisations"]:
        ma_files[m["ma_file_name"]].add((m["party_id"], m["received_at"]))
        assert m["ma_file_name"].startswith(f"MA_{m['party_id']}_{signifier[m['party_id']]}_")
    assert all(len(v) == 1 for v in ma_files.values())
    cof_files: dict[str, set] = defaultdict(set)
    for c in t["cof_records"]:
        shared = (c["cof_counter"], c["party_id"], c["sec_party_signifier"], c["generated_at"])
        cof_files[c["cof_file_name"]].add(shared)
        assert c["cof_file_name"] == f"COF_{signifier[c['party_id']]}_{int(c['cof_counter']):08d}"
    assert all(len(v) == 1 for v in cof_files.values())
    counters: dict[str, list[int]] = defaultdict(list)
    for ((counter, party, _, _),) in cof_files.values():
        counters[party].append(int(counter))
    for party, seen in counters.items():
        assert sorted(seen) == list(range(1, len(seen) + 1)), party


def _version_at(versions: list[Row], t: str) -> Row:
    return max((v for v in versions if parse_ts(v["effective_from"]) <= parse_ts(t)), key=lambda v: v["effective_from"])


def test_attempts_follow_accepted_authorisations_of_a_responsible_supplier(week):
    _, t = week
    ma = {(m["ma_file_name"], m["ma_record_no"]): m for m in t["migration_authorisations"]}
    versions: dict[str, list[Row]] = defaultdict(list)
    for i in t["installations"]:
        versions[i["installation_id"]].append(i)
    for a in t["migration_attempts"]:
        m = ma[(a["ma_file_name"], a["ma_record_no"])]
        assert m["ma_status"] == "ACCEPTED"
        assert (m["party_id"], m["installation_id"]) == (a["party_id"], a["installation_id"])
        assert a["scheduled_for"] == m["requested_migration_date"] > local_day(m["received_at"]).isoformat()
        assert 0 < (parse_ts(a["scheduled_at"]) - parse_ts(m["received_at"])).total_seconds() < 3600
        v = _version_at(versions[a["installation_id"]], a["scheduled_at"])
        assert a["party_id"] in (v["elec_supplier_id"], v["gas_supplier_id"])


def test_each_attempt_runs_the_stages_in_order(week):
    _, t = week
    events: dict[str, list[Row]] = defaultdict(list)
    for e in t["migration_events"]:
        events[e["attempt_id"]].append(e)
    cofs = {c["attempt_id"] for c in t["cof_records"]}
    attempts_by_installation: dict[str, list[Row]] = defaultdict(list)
    for a in t["migration_attempts"]:
        attempts_by_installation[a["installation_id"]].append(a)
        evs = sorted(events[a["attempt_id"]], key=lambda e: (e["event_ts"], e["event_id"]))
        passed = [e["stage"] for e in evs if e["outcome"] == "PASS"]
        failed = [e for e in evs if e["outcome"] == "FAIL"]
        assert passed == list(STAGES[: len(passed)])
        assert len({e["event_ts"] for e in failed}) <= 1 and (not failed or evs[-1]["outcome"] == "FAIL")
        assert a["attempt_id"] not in cofs or passed == list(STAGES)
    for attempts in attempts_by_installation.values():
        numbers = [int(a["attempt_no"]) for a in sorted(attempts, key=lambda a: a["scheduled_at"])]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_the_run_exercises_every_report(week):
    folders, t = week
    parties = Counter(p["party_id"] for p in t["parties"])
    groups = Counter({p["party_id"]: p["affiliate_group"] for p in t["parties"]}.values())
    assert len(parties) >= 5 and max(parties.values()) == 2  # one rename
    assert max(groups.values()) >= 2  # affiliated parties share a group
    base = [i for i in t["installations"] if i["_drop"] == folders[0].name]
    later = [i for i in t["installations"] if i["effective_from"] > base[0]["effective_from"]]
    assert later  # a change of supplier
    assert {i["cohort"] for i in base} == set(COHORTS) and "DA" in {i["group_id"] for i in base}
    assert any(i["mpan"] and not i["mprn"] for i in base) and any(i["mprn"] and not i["mpan"] for i in base)
    assert any(i["mpan"] and i["mprn"] and i["elec_supplier_id"] == i["gas_supplier_id"] for i in base)
    assert any(i["mpan"] and i["mprn"] and i["elec_supplier_id"] != i["gas_supplier_id"] for i in base)
    assert {m["ma_error_code"] for m in t["migration_authorisations"]} == set(MA_ERROR_CODES) | {""}
    stage_codes = {e["reason_code"] for e in t["migration_events"]} - {""}
    assert stage_codes == set(REASON_CODES) - {"COF01"}
    assert {"SUCCESS", "FAILURE"} == {c["response"] for c in t["cof_records"]}
    assert {x["exclusion_category"] for x in t["exclusions"]} == set(EXCLUSION_CATEGORIES)
    assert max(int(a["attempt_no"]) for a in t["migration_attempts"]) == 5
    fails = Counter((e["attempt_id"], e["event_ts"]) for e in t["migration_events"] if e["outcome"] == "FAIL")
    assert max(fails.values()) == 2  # a tie
    allocations = Counter((c["migration_date"], c["party_id"]) for c in t["capacity_allocations"])
    assert max(allocations.values()) == 2  # a revision
    assert any(int(c["allocation"]) < min(int(c["demand"]), 100) for c in t["capacity_allocations"])
    hours = Counter(parse_ts(e["event_ts"]).hour for e in t["migration_events"])
    assert hours[23] and hours[0]
    for folder in folders:  # completions every day
        assert any(c["_drop"] == folder.name and c["response"] == "SUCCESS" for c in t["cof_records"])


def test_split_supplier_attempts_get_a_cof_file_per_party(week):
    _, t = week
    parties_by_attempt: dict[str, dict[str, str]] = defaultdict(dict)
    for c in t["cof_records"]:
        parties_by_attempt[c["attempt_id"]][c["party_id"]] = c["generated_at"]
    split = [p for p in parties_by_attempt.values() if len(p) == 2]
    assert split
    gaps = [abs(parse_ts(a) - parse_ts(b)) for a, b in (p.values() for p in split)]
    assert max(gaps) > timedelta(hours=12)  # one party's COF a day later


def test_same_seed_same_bytes(tmp_path):
    first = generate(tmp_path / "a", START, 3, 120, 7, progress=False)
    second = generate(tmp_path / "b", START, 3, 120, 7, progress=False)
    other = generate(tmp_path / "c", START, 3, 120, 8, progress=False)
    for a, b, c in zip(first, second, other, strict=True):
        assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
        assert (a / "manifest.json").read_bytes() != (c / "manifest.json").read_bytes()


def test_tiny_run_across_the_clock_change(tmp_path, capsys):
    folders = generate(tmp_path, date(2020, 10, 24), 3, 50, 3, progress=True)
    assert_routed(read_drops(folders), date(2020, 10, 24))
    assert capsys.readouterr().err.count("generate: drop") == 3
