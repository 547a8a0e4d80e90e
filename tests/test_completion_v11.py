"""Contract v1.1 completion cases through the real pipeline (land, dbt, gate, export on
the direct path), each date's files checked against the reference (tests/reference/),
and the late records they leave in the break register.

On top of the hand-made landing (tests/support/drops.py), party SUPD04 gets two attempts whose
one SUCCESS COF (10:00Z on 07-30) comes before their COMMISSIONING PASS:
  A7  PASS at 08:00Z on 07-31: a Success on 07-31 at the PASS (v1.0: in no report at all)
  A8  PASS at 15:00Z on 07-30: a Success on 07-30 at 15:00Z, not at the COF's 10:00Z
and A1 (split supplier SUPA01 elec / SUPB02 gas, a Success on 07-30) gets, on 07-31, a
FAIL event and a FAILURE COF of SUPB02: late records. They change no report (A1 stays
a Success, cumulative_succeeded does not go down) and are warning W2: one break per
responsible party for the event, one for SUPB02's COF."""

from __future__ import annotations

import csv
import gzip
import io
import json

import psycopg
import pytest

from s1mig import breaks, pipeline
from tests.support.cli import run_cli
from tests.support.drops import (
    D30,
    D31,
    I1,
    append_rows,
    attempt,
    build_handmade_landing,
    cof,
    edit_rows,
    event,
    inst,
    ma,
    party,
    refresh_manifest,
)
from tests.support.exports import assert_exports_match_reference

pytestmark = pytest.mark.integration

SIG_D = "00-00-00-00-00-00-00-D4"
MA_D = f"MA_SUPD04_{SIG_D}_20200730_060000"
COF_D1 = f"COF_{SIG_D}_00000001"
COF_B2 = "COF_00-00-00-00-00-00-00-B2_00000002"
I7, I8 = "S10000000007", "S10000000008"


def _plain(folder, extract: str) -> None:
    """Turn a gzipped extract of a drop into plain CSV (so rows can be appended)."""
    gz = folder / f"{extract}.csv.gz"
    (folder / f"{extract}.csv").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["extracts"]:
        if entry["name"] == extract:
            entry["file"] = f"{extract}.csv"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    refresh_manifest(folder)


def _landing(root):
    landing = build_handmade_landing(root)
    d30, d31 = landing / D30.isoformat(), landing / D31.isoformat()
    append_rows(d30, "parties", [party("SUPD04", SIG_D, "2020-06-01T00:00:00Z")])
    append_rows(
        d30,
        "installations",
        [
            inst(I7, "IOC", "AA", mpan="1000000000007", elec="SUPD04"),
            inst(I8, "FOC", "BB", mprn="2000008", gas="SUPD04"),
        ],
    )
    append_rows(
        d30,
        "migration_authorisations",
        [
            ma(MA_D, 1, "SUPD04", "2020-07-30T06:00:00Z", I7, "1000000000007", "ACCEPTED"),
            ma(MA_D, 2, "SUPD04", "2020-07-30T06:00:00Z", I8, "2000008", "ACCEPTED"),
        ],
    )
    append_rows(d30, "migration_attempts", [attempt("A7", I7, MA_D, 1, "SUPD04"), attempt("A8", I8, MA_D, 2, "SUPD04")])
    append_rows(
        d30,
        "migration_events",
        [
            event("E70", "A7", "MCF_VALIDATION", 19, "PASS", "2020-07-30T07:00:00Z"),
            event("E80", "A8", "MCF_VALIDATION", 19, "PASS", "2020-07-30T07:00:00Z"),
            event("E81", "A8", "COMMISSIONING", 59, "PASS", "2020-07-30T15:00:00Z"),
        ],
    )
    append_rows(
        d30,
        "cof_records",
        [
            cof(COF_D1, 1, "SUPD04", SIG_D, "2020-07-30T10:00:00Z", "A7", I7),
            cof(COF_D1, 1, "SUPD04", SIG_D, "2020-07-30T10:00:00Z", "A8", I8),
        ],
    )
    append_rows(
        d31,
        "migration_events",
        [
            event("E71", "A7", "COMMISSIONING", 59, "PASS", "2020-07-31T08:00:00Z"),
            event("E19", "A1", "COMMISSIONING", 53, "FAIL", "2020-07-31T09:00:00Z", "COM02"),
        ],
    )
    _plain(d31, "cof_records")
    append_rows(
        d31,
        "cof_records",
        [cof(COF_B2, 2, "SUPB02", "00-00-00-00-00-00-00-B2", "2020-07-31T11:00:00Z", "A1", I1, "FAILURE", "COF01")],
    )
    return landing


def _rows(folder, party_id: str, report: str, day) -> list[dict]:
    path = folder / party_id / f"{report}_{party_id}_{day:%Y%m%d}.csv"
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_v11_completions_late_records_and_the_break_register(warehouse, tmp_path):
    landing = _landing(tmp_path / "landing")
    out = tmp_path / "out"
    for day in (D30, D31):
        pipeline.run_direct(landing, day, out)
        assert_exports_match_reference(landing, out, day)

    d30, d31 = out / D30.isoformat(), out / D31.isoformat()
    # PASS after the COF: completed at the PASS, on the PASS's date
    success_d = {r["installation_id"]: r["completed_at"] for r in _rows(d30, "SUPD04", "S1MIG-001", D30)}
    assert success_d == {I8: "2020-07-30T15:00:00Z"}
    success_d = {r["installation_id"]: r["completed_at"] for r in _rows(d31, "SUPD04", "S1MIG-001", D31)}
    assert success_d == {I7: "2020-07-31T08:00:00Z"}
    # late records change no report: A1 is in no 006 of 07-31 and stays counted
    for party_id in ("SUPA01", "SUPB02"):
        assert all(r["installation_id"] != I1 for r in _rows(d31, party_id, "S1MIG-006", D31))
    before = {r["cohort"]: r["cumulative_succeeded"] for r in _rows(d30, "SUPB02", "S1MIG-005", D30)}
    after = {r["cohort"]: r["cumulative_succeeded"] for r in _rows(d31, "SUPB02", "S1MIG-005", D31)}
    assert after["IOC"] == before["IOC"] == "1"

    # W2: three breaks (the event for both parties, the COF for SUPB02), in the evidence and summary
    with psycopg.connect(warehouse) as conn:
        found = conn.execute(
            "select instance, first_seen, state from audit.breaks where rule_id = 'W2' order by instance"
        ).fetchall()
    assert [(i.split(":")[0], first, state) for i, first, state in found] == [
        ("attempt A1 party SUPA01", D31, "open"),
        ("attempt A1 party SUPB02", D31, "open"),
        ("attempt A1 party SUPB02", D31, "open"),
    ]
    assert sum("FAIL event E19" in i for i, _, _ in found) == 2 and sum(COF_B2 in i for i, _, _ in found) == 1
    evidence = json.loads((d31 / "evidence.json").read_text())
    assert sorted(b["instance"].split(":")[0] for b in evidence["open_breaks"] if b["rule_id"] == "W2") == [
        "attempt A1 party SUPA01",
        "attempt A1 party SUPB02",
        "attempt A1 party SUPB02",
    ]
    # rule 8: I1's gas passed to SUPC03 after A1's Success listed SUPA01 and SUPB02; I3's gas
    # passed to SUPB02 after A3 was scheduled (A3's Success on 07-31 lists only SUPA01, DUAL)
    assert evidence["inherited"] == {"SUPB02": 1, "SUPC03": 1}
    assert json.loads((d30 / "evidence.json").read_text())["inherited"] == {}
    register = (d31 / "run-summary.html").read_text().split('id="breaks"')[1].split("</table>")[0]
    assert register.count("FAIL event E19") == 2 and COF_B2 in register

    listed = run_cli("breaks", check=True).stdout
    assert listed.count(" W2 [open] seen 2020-07-31: attempt A1") == 3
    break_id = next(line.split()[0][1:] for line in listed.splitlines() if COF_B2 in line)
    assert run_cli("breaks", "ack", break_id, "--by", "ops").returncode != 0  # --why is required
    run_cli("breaks", "ack", break_id, "--by", "J. Smith", "--why", "COF resent by DCC", check=True)
    assert run_cli("breaks", check=True).stdout.count(" W2 [open]") == 2

    # an identical re-run of 07-31: the same files, no new break, the acknowledgement kept
    pipeline.run_direct(landing, D31, out)
    assert_exports_match_reference(landing, out, D31)
    with psycopg.connect(warehouse) as conn:
        states = conn.execute("select state, count(*) from audit.breaks where rule_id = 'W2' group by 1").fetchall()
        acks = conn.execute("select by_whom, why from audit.break_events where event = 'acknowledged'").fetchall()
    assert dict(states) == {"open": 2, "acknowledged": 1}
    assert acks == [("J. Smith", "COF resent by DCC")]

    # 07-31 corrected without the late FAIL event: its two breaks are withdrawn (never
    # deleted; nothing to acknowledge), the acknowledged COF break stays as it was
    edit_rows(landing / D31.isoformat(), "migration_events", {"event_id": "E19"}, None)
    pipeline.run_direct(landing, D31, out)
    assert_exports_match_reference(landing, out, D31)
    with psycopg.connect(warehouse) as conn:
        rows = conn.execute("select break_id, instance, state from audit.breaks where rule_id = 'W2'").fetchall()
    withdrawn = [(b, i) for b, i, state in rows if state == "withdrawn"]
    assert len(withdrawn) == 2 and all("FAIL event E19" in i for _, i in withdrawn)
    assert sorted(state for _, _, state in rows) == ["acknowledged", "withdrawn", "withdrawn"]
    refused = run_cli("breaks", "ack", str(withdrawn[0][0]), "--by", "ops", "--why", "gone")
    assert refused.returncode == 1 and "was withdrawn" in refused.stderr
    # found again (as a run of 07-31 with the event back would): open again, and recorded
    with psycopg.connect(warehouse) as conn:
        breaks.record(conn, D31, "again", "W2", [withdrawn[0][1]])
        state = conn.execute("select state from audit.breaks where break_id = %s", (withdrawn[0][0],)).fetchone()
        events = conn.execute(
            "select event from audit.break_events where break_id = %s order by at", (withdrawn[0][0],)
        ).fetchall()
    assert state == ("open",) and [e for (e,) in events] == ["opened", "withdrawn", "reopened"]
