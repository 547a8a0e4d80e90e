"""Hand-made drops for tests: a writer for contract-shaped drop folders and one small
landing folder whose every case is written out by hand.

The drops (all times UTC; BST = UTC+1 in July):

2020-07-30 (first drop)
  parties      SUPA01, SUPB02 (effective 2020-06-01)
  installations
    I1  IOC/AA  elec SUPA01 + gas SUPB02      split dual supplier -> succeeds on 07-30
    I2  MOC/DA  elec SUPA01                   fails at MVF (MVF01) at 22:59:59Z = 23:59:59 BST on 07-30
    I3  IOC/AA  elec + gas SUPA01 (DUAL)      SUCCESS COF at 23:00:00Z = 00:00 BST on 07-31;
                                              a new version at 20:00Z on 07-30 moves its gas to SUPB02
    I4  FOC/BB  gas SUPB02                    DTP03 (step 35) and DTP01 (step 31) at the same instant
    I5  IOC/AA  elec SUPA01                   MA rejected (MA06), never attempted
    I6  IOC/AA  elec SUPA01, eligible only from 2020-08-15
  MA files from SUPA01 (5 records, 2 rejected) and SUPB02 (1 record)
  capacity for 07-30 (SUPA01 re-allocated 100 -> 120; SUPB02 40 of 50) and 07-31 (SUPA01 0 of 0)
2020-07-31
  party SUPC03 (effective 10:00Z); I1 new version (gas -> SUPC03, 12:00Z); I3's COF (gzipped file);
  exclusion of I4 (NO_WAN_ATTEMPTING_MIGRATION, 09:00Z)
2020-08-01  a corrupt drop (manifest row count wrong): rejected whole
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from datetime import date
from pathlib import Path

from s1mig.contract import EXTRACTS, EXTRACTS_BY_NAME

D30, D31, D01 = date(2020, 7, 30), date(2020, 7, 31), date(2020, 8, 1)
SIG_A, SIG_B, SIG_C = "00-00-00-00-00-00-00-A1", "00-00-00-00-00-00-00-B2", "00-00-00-00-00-00-00-C3"
I1, I2, I3, I4, I5, I6 = (f"S1{n:010d}" for n in range(1, 7))
M1, M2, M3, M5, M6 = "1000000000001", "1000000000002", "1000000000003", "1000000000005", "1000000000006"
G1, G3, G4 = "2000001", "2000003", "2000004"
MA_A = f"MA_SUPA01_{SIG_A}_20200730_060000"
MA_B = f"MA_SUPB02_{SIG_B}_20200730_060500"
COF_A1, COF_A2, COF_B1 = f"COF_{SIG_A}_00000001", f"COF_{SIG_A}_00000002", f"COF_{SIG_B}_00000001"


def write_drop(landing: Path, drop_date: str, tables: dict[str, list[dict]], gzipped: tuple[str, ...] = ()) -> Path:
    """A drop folder as spec section 2 describes it; columns missing from a row are NULL."""
    folder = landing / drop_date
    folder.mkdir(parents=True)
    entries = []
    for extract in EXTRACTS:
        rows = tables.get(extract.name, [])
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(extract.columns)
        for row in rows:
            assert set(row) <= set(extract.columns), row
            writer.writerow([row.get(c, "") for c in extract.columns])
        data = buf.getvalue().encode("utf-8")
        file = f"{extract.name}.csv"
        if extract.name in gzipped:
            data, file = gzip.compress(data, mtime=0), file + ".gz"
        (folder / file).write_bytes(data)
        entries.append(
            {"name": extract.name, "file": file, "rows": len(rows), "sha256": hashlib.sha256(data).hexdigest()}
        )
    (folder / "manifest.json").write_text(json.dumps({"drop_date": drop_date, "extracts": entries}))
    return folder


def party(pid, sig, eff):
    return {
        "party_id": pid,
        "party_name": f"Supplier {pid}",
        "sec_party_signifier": sig,
        "affiliate_group": pid[:4],
        "effective_from": eff,
    }


def inst(iid, cohort, group, mpan="", mprn="", elec="", gas="", eligible="2020-07-01", eff="2020-06-01T00:00:00Z"):
    return {
        "installation_id": iid,
        "cohort": cohort,
        "group_id": group,
        "mpan": mpan,
        "mprn": mprn,
        "elec_supplier_id": elec,
        "gas_supplier_id": gas,
        "eligible_from": eligible,
        "effective_from": eff,
    }


def ma(file, no, pid, received, iid, mpxn, status, error=""):
    return {
        "ma_file_name": file,
        "ma_record_no": no,
        "party_id": pid,
        "received_at": received,
        "installation_id": iid,
        "mpxn": mpxn,
        "requested_migration_date": "2020-07-30",
        "ma_status": status,
        "ma_error_code": error,
    }


def attempt(aid, iid, file, no, pid):
    return {
        "attempt_id": aid,
        "installation_id": iid,
        "attempt_no": 1,
        "ma_file_name": file,
        "ma_record_no": no,
        "party_id": pid,
        "scheduled_at": "2020-07-30T06:30:00Z",
        "scheduled_for": "2020-07-30",
    }


def event(eid, aid, stage, step, outcome, ts, reason=""):
    return {
        "event_id": eid,
        "attempt_id": aid,
        "stage": stage,
        "step_no": step,
        "outcome": outcome,
        "reason_code": reason,
        "event_ts": ts,
    }


def passes(aid, prefix, hour):
    stages = (("MCF_VALIDATION", 19), ("MVF_VALIDATION", 29), ("DEVICE_TESTING", 49), ("COMMISSIONING", 59))
    return [
        event(f"{prefix}{i}", aid, stage, step, "PASS", f"2020-07-30T{hour:02d}:{10 * i:02d}:00Z")
        for i, (stage, step) in enumerate(stages)
    ]


def cof(file, counter, pid, sig, ts, aid, iid, response="SUCCESS", reason=""):
    return {
        "cof_file_name": file,
        "cof_counter": counter,
        "party_id": pid,
        "sec_party_signifier": sig,
        "generated_at": ts,
        "attempt_id": aid,
        "installation_id": iid,
        "response": response,
        "reason_code": reason,
    }


MA_SMALL = f"MA_SUPA01_{SIG_A}_20200730_060000"


def small_drop_tables() -> dict[str, list[dict]]:
    """One small, sound first drop of 2020-07-30 (two installations of SUPA01, their MA
    file and attempts, a few events): the landing tests' base."""
    return {
        "parties": [party("SUPA01", SIG_A, "2020-06-01T00:00:00Z"), party("SUPB02", SIG_B, "2020-06-01T00:00:00Z")],
        "installations": [inst(I1, "IOC", "AA", mpan=M1, elec="SUPA01"), inst(I2, "MOC", "DA", mpan=M2, elec="SUPA01")],
        "migration_attempts": [attempt("A1", I1, MA_SMALL, 1, "SUPA01"), attempt("A2", I2, MA_SMALL, 2, "SUPA01")],
        "migration_events": [
            event("E1", "A1", "MCF_VALIDATION", 19, "PASS", "2020-07-30T08:00:00Z"),
            event("E2", "A2", "MVF_VALIDATION", 21, "FAIL", "2020-07-30T09:00:00Z", "MVF01"),
            event("E3", "A1", "MVF_VALIDATION", 29, "PASS", "2020-07-30T09:30:00Z"),
        ],
    }


def build_handmade_landing(root: Path) -> Path:
    """Three drops (see the module docstring); the last one is corrupt."""
    write_drop(
        root,
        "2020-07-30",
        {
            "parties": [party("SUPA01", SIG_A, "2020-06-01T00:00:00Z"), party("SUPB02", SIG_B, "2020-06-01T00:00:00Z")],
            "installations": [
                inst(I1, "IOC", "AA", mpan=M1, mprn=G1, elec="SUPA01", gas="SUPB02"),
                inst(I2, "MOC", "DA", mpan=M2, elec="SUPA01"),
                inst(I3, "IOC", "AA", mpan=M3, mprn=G3, elec="SUPA01", gas="SUPA01"),
                inst(I3, "IOC", "AA", mpan=M3, mprn=G3, elec="SUPA01", gas="SUPB02", eff="2020-07-30T20:00:00Z"),
                inst(I4, "FOC", "BB", mprn=G4, gas="SUPB02"),
                inst(I5, "IOC", "AA", mpan=M5, elec="SUPA01"),
                inst(I6, "IOC", "AA", mpan=M6, elec="SUPA01", eligible="2020-08-15"),
            ],
            "migration_authorisations": [
                ma(MA_A, 1, "SUPA01", "2020-07-30T06:00:00Z", I1, M1, "ACCEPTED"),
                ma(MA_A, 2, "SUPA01", "2020-07-30T06:00:00Z", I2, M2, "ACCEPTED"),
                ma(MA_A, 3, "SUPA01", "2020-07-30T06:00:00Z", I3, M3, "ACCEPTED"),
                ma(MA_A, 4, "SUPA01", "2020-07-30T06:00:00Z", "S19999999999", "1999999999999", "REJECTED", "MA01"),
                ma(MA_A, 5, "SUPA01", "2020-07-30T06:00:00Z", I5, M5, "REJECTED", "MA06"),
                ma(MA_B, 1, "SUPB02", "2020-07-30T06:05:00Z", I4, G4, "ACCEPTED"),
            ],
            "migration_attempts": [
                attempt("A1", I1, MA_A, 1, "SUPA01"),
                attempt("A2", I2, MA_A, 2, "SUPA01"),
                attempt("A3", I3, MA_A, 3, "SUPA01"),
                attempt("A4", I4, MA_B, 1, "SUPB02"),
            ],
            "migration_events": [
                *passes("A1", "E1", 8),
                event("E20", "A2", "MCF_VALIDATION", 19, "PASS", "2020-07-30T08:00:00Z"),
                event("E21", "A2", "MVF_VALIDATION", 21, "FAIL", "2020-07-30T22:59:59Z", "MVF01"),
                *passes("A3", "E3", 9),
                event("E40", "A4", "MCF_VALIDATION", 19, "PASS", "2020-07-30T08:00:00Z"),
                event("E41", "A4", "MVF_VALIDATION", 29, "PASS", "2020-07-30T08:10:00Z"),
                # same instant: the lower step (31) wins although its event_id is the higher one
                event("E42", "A4", "DEVICE_TESTING", 35, "FAIL", "2020-07-30T10:00:00Z", "DTP03"),
                event("E43", "A4", "DEVICE_TESTING", 31, "FAIL", "2020-07-30T10:00:00Z", "DTP01"),
            ],
            "cof_records": [
                cof(COF_A1, 1, "SUPA01", SIG_A, "2020-07-30T12:00:00Z", "A1", I1),
                cof(COF_B1, 1, "SUPB02", SIG_B, "2020-07-30T14:00:00Z", "A1", I1),
            ],
            "capacity_allocations": [
                {
                    "migration_date": "2020-07-30",
                    "party_id": "SUPA01",
                    "demand": 150,
                    "allocation": 100,
                    "allocated_at": "2020-07-28T12:00:00Z",
                },
                {
                    "migration_date": "2020-07-30",
                    "party_id": "SUPA01",
                    "demand": 150,
                    "allocation": 120,
                    "allocated_at": "2020-07-29T12:00:00Z",
                },
                {
                    "migration_date": "2020-07-30",
                    "party_id": "SUPB02",
                    "demand": 50,
                    "allocation": 40,
                    "allocated_at": "2020-07-29T12:00:00Z",
                },
                {
                    "migration_date": "2020-07-31",
                    "party_id": "SUPA01",
                    "demand": 0,
                    "allocation": 0,
                    "allocated_at": "2020-07-30T13:00:00Z",
                },
            ],
        },
    )
    write_drop(
        root,
        "2020-07-31",
        {
            "parties": [party("SUPC03", SIG_C, "2020-07-31T10:00:00Z")],
            "installations": [
                inst(I1, "IOC", "AA", mpan=M1, mprn=G1, elec="SUPA01", gas="SUPC03", eff="2020-07-31T12:00:00Z")
            ],
            "cof_records": [cof(COF_A2, 2, "SUPA01", SIG_A, "2020-07-30T23:00:00Z", "A3", I3)],
            "exclusions": [
                {
                    "installation_id": I4,
                    "exclusion_category": "NO_WAN_ATTEMPTING_MIGRATION",
                    "excluded_at": "2020-07-31T09:00:00Z",
                }
            ],
        },
        gzipped=("cof_records",),
    )
    bad = write_drop(
        root,
        "2020-08-01",
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
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["extracts"][-1]["rows"] = 2
    (bad / "manifest.json").write_text(json.dumps(manifest))
    return root


def refresh_manifest(folder: Path) -> None:
    """Recompute every manifest entry's rows and sha256 from the files as they are now."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["extracts"]:
        data = (folder / entry["file"]).read_bytes()
        text = gzip.decompress(data) if entry["file"].endswith(".gz") else data
        entry["rows"] = len(list(csv.reader(io.StringIO(text.decode("utf-8"))))) - 1
        entry["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def append_rows(folder: Path, extract: str, rows: list[dict]) -> None:
    """Add rows at the end of one (plain CSV) extract, keeping the manifest consistent."""
    path = folder / f"{extract}.csv"
    buf = io.StringIO()
    csv.DictWriter(buf, fieldnames=EXTRACTS_BY_NAME[extract].columns, lineterminator="\n").writerows(rows)
    with path.open("a") as f:
        f.write(buf.getvalue())
    refresh_manifest(folder)


def line_of(folder: Path, extract: str, match: dict[str, str]) -> int:
    """The file line of the one row of a (plain CSV) extract matching `match` (line 1 is the header)."""
    rows = list(csv.DictReader(io.StringIO((folder / f"{extract}.csv").read_text())))
    lines = [n + 2 for n, r in enumerate(rows) if all(r[k] == v for k, v in match.items())]
    assert len(lines) == 1, (extract, match, lines)
    return lines[0]


def edit_rows(folder: Path, extract: str, match: dict[str, str], changes: dict[str, str] | None) -> None:
    """Change the values of the rows of one (plain CSV) extract that match `match` (remove
    them when `changes` is None), keeping the manifest consistent, so only the value
    fault remains."""
    path = folder / f"{extract}.csv"
    reader = csv.DictReader(io.StringIO(path.read_text()))
    rows = list(reader)
    hits = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert hits, f"no {extract} row matches {match}"
    if changes is None:
        rows = [r for r in rows if not all(r[k] == v for k, v in match.items())]
    for row in hits if changes is not None else ():
        row.update(changes)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(reader.fieldnames or ()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue())
    refresh_manifest(folder)


def raw_snapshot(url: str) -> dict[str, list]:
    """Every raw row and the ledger, to prove a rejected drop changed nothing."""
    import psycopg

    with psycopg.connect(url) as conn:
        from s1mig import land

        land.ensure_raw_schema(conn)
        state = {
            e.name: conn.execute(f"select * from raw.{e.name} order by _drop_date, _row_number").fetchall()
            for e in EXTRACTS
        }
        state["ledger"] = conn.execute("select * from raw.drop_ledger order by landed_at").fetchall()
    return state
