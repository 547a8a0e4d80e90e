"""Check exported files against the test oracle (tests/reference/), computed straight
from the raw drops, never from our SQL."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import date
from pathlib import Path

from s1mig.contract import REPORTS
from tests import reference as ref

EXPORTED = tuple(r.report_id for r in REPORTS)


def assert_exports_match_reference(landing: Path, out: Path, day: date) -> dict[str, int]:
    """Every file of the date is exactly what the oracle expects; returns rows per report."""
    wh = ref.load(landing, day)
    expected = ref.expected_files(wh, day, EXPORTED)
    folder = out / day.isoformat()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["report_date"] == day.isoformat()
    listed = {f["path"]: f for f in manifest["files"]}
    expected_paths = {ref.file_name(rid, party, day) for party in expected for rid in expected[party]}
    on_disk = {
        str(p.relative_to(folder)) for p in folder.rglob("*.csv") if "revisions" not in p.relative_to(folder).parts
    }
    assert set(listed) == expected_paths == on_disk
    totals = dict.fromkeys(EXPORTED, 0)
    for party, reports in expected.items():
        for rid, rows in reports.items():
            path = ref.file_name(rid, party, day)
            data = (folder / path).read_bytes()
            # segregation, checked on its own: a party's file holds only that party's rows
            assert {r["party_id"] for r in csv.DictReader(io.StringIO(data.decode("utf-8")))} <= {party}, path
            assert data.decode("utf-8") == ref.to_csv(rid, rows), f"{path} differs from the reference"
            entry = listed[path]
            assert (entry["party_id"], entry["report_id"], entry["rows"]) == (party, rid, len(rows))
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
            totals[rid] += len(rows)
    return totals
