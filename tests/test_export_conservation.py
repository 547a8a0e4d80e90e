"""Gate rule R9 (conservation, spec section 6) and export revisions (spec "Runs,
corrections and restatement"), on the hand-made drops landed, built (real dbt) and gated
(real GX) once for the module: a mart row of a party that is not in `parties` blocks the
export with R9 named and nothing published; the check re-reads real written files from
disk; an identical re-run keeps the revision and the bytes."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from s1mig import export
from s1mig.errors import GateBlocked
from tests.support.databases import built_warehouse
from tests.support.drops import D30

pytestmark = pytest.mark.integration

STRANGER = "ZZZZ99"  # a well-formed party id that no drop ever delivered


@pytest.fixture(scope="module")
def built(server_url, tmp_path_factory) -> Iterator[str]:
    """A warehouse with D30 landed, built and gated (run id "r9-gate"); its URL."""
    with built_warehouse(server_url, tmp_path_factory.mktemp("landing"), "r9-gate") as url:
        yield url


def _bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _reports_and_manifest(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in _bytes(folder).items() if k not in ("evidence.json", "run-summary.html")}


def _r9(url: str, run_id: str) -> tuple[str, int, list[str]]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select status, failing_count, sample_keys from audit.gate_results "
            "where run_id = %s and report_date = %s and rule_id = 'R9'",
            (run_id, D30),
        ).fetchone()
    assert row is not None, f"R9 not recorded for {run_id}"
    return row


def test_identical_rerun_keeps_revision_and_bytes(built, tmp_path):
    out = tmp_path / "out"
    folder = export.export_date(D30, out, built, "r9-gate")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert list(manifest) == ["report_date", "revision", "files"] and manifest["revision"] == 1
    assert _r9(built, "r9-gate") == ("pass", 0, [])
    record = json.loads((folder / "evidence.json").read_text())
    assert {g["rule_id"]: g["status"] for g in record["gate"]}["R9"] == "pass"
    assert (record["revision"], record["restatement"], record["out_folder"]) == (1, None, str(out.resolve()))
    first = _reports_and_manifest(folder)

    export.export_date(D30, out, built, "r9-rerun")
    assert _reports_and_manifest(folder) == first  # same revision, byte-identical files
    assert not (folder / export.REVISIONS).exists()
    assert json.loads((folder / "evidence.json").read_text())["run_id"] == "r9-rerun"
    assert [p.name for p in out.iterdir()] == [D30.isoformat()]  # no temporary folder left


def test_rows_of_a_party_not_in_parties_block_the_export(built, tmp_path):
    out = tmp_path / "out"
    folder = export.export_date(D30, out, built, "r9-gate")
    published = _bytes(folder)
    with psycopg.connect(built) as conn:
        # a copy of one 001 row of D, given to a party that `parties` does not have
        conn.execute(
            "create temp table stranger as select * from marts.s1mig_001 where report_date = %s limit 1", (D30,)
        )
        conn.execute("update stranger set party_id = %s", (STRANGER,))
        assert conn.execute("insert into marts.s1mig_001 select * from stranger").rowcount == 1
    try:
        with pytest.raises(GateBlocked) as blocked:
            export.export_date(D30, out, built, "r9-blocked")
    finally:
        with psycopg.connect(built) as conn:
            conn.execute("delete from marts.s1mig_001 where party_id = %s", (STRANGER,))
    message = str(blocked.value)
    assert "\n" not in message
    assert message.startswith(f"gate blocked export of {D30}: R9 export_conservation: 2 failing")
    assert f"S1MIG-001: party {STRANGER} (1 row) is not in parties as at end of {D30}" in message
    assert "S1MIG-001: the party files hold" in message
    status, failing, samples = _r9(built, "r9-blocked")
    assert (status, failing) == ("fail", 2) and any(STRANGER in s for s in samples)
    # nothing published: the date keeps its previous good files, no temporary folder remains
    assert _bytes(folder) == published
    assert [p.name for p in out.iterdir()] == [D30.isoformat()]
    with psycopg.connect(built) as conn:
        assert not conn.execute("select 1 from audit.export_evidence where run_id = 'r9-blocked'").fetchone(), (
            "an evidence row for a blocked export"
        )

    # the mart repaired, the same run exports and records R9 as passed
    export.export_date(D30, out, built, "r9-blocked")
    assert _r9(built, "r9-blocked") == ("pass", 0, [])
    assert _reports_and_manifest(folder) == {
        k: v for k, v in published.items() if k not in ("evidence.json", "run-summary.html")
    }


def _first_data_file(folder: Path) -> Path:
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["report_id"] == "S1MIG-006" and f["rows"] >= 2)
    return folder / entry["path"]


def test_verification_reads_the_written_files(built, tmp_path):
    """R9's check of a real written folder: altered, truncated, added and removed files."""
    folder = export.export_date(D30, tmp_path / "out", built, "r9-gate")
    assert export.verify_export(folder, D30, built).failing_count == 0

    def broken(change) -> list[str]:
        copy = tmp_path / f"copy-{uuid.uuid4().hex[:6]}"
        shutil.copytree(folder, copy)
        change(copy)
        result = export.verify_export(copy, D30, built)
        assert result.status == "fail"
        return result.sample_keys

    def flip_a_byte(copy: Path) -> None:  # same length, same rows: only the hash tells
        path = _first_data_file(copy)
        data = bytearray(path.read_bytes())
        data[-2] = ord("X") if data[-2] != ord("X") else ord("Y")
        path.write_bytes(bytes(data))

    rel = str(_first_data_file(folder).relative_to(folder))
    keys = broken(flip_a_byte)
    assert len(keys) == 1 and keys[0].startswith(f"{rel}: sha256 on disk is ")

    def drop_last_row(copy: Path) -> None:
        path = _first_data_file(copy)
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(lines[:-1]))

    keys = broken(drop_last_row)
    assert any(k.startswith(f"{rel}: sha256") for k in keys)
    assert any(k.startswith(f"{rel}: ") and "data rows on disk, manifest.json says" in k for k in keys)
    assert any(k.startswith("S1MIG-006: the party files hold") for k in keys)

    def cut_mid_row(copy: Path) -> None:
        path = _first_data_file(copy)
        path.write_bytes(path.read_bytes()[:-3])

    assert any(k == f"{rel}: truncated (no line end after the last record)" for k in broken(cut_mid_row))

    def add_a_file(copy: Path) -> None:
        (copy / "SUPA01" / "notes.csv").write_text("a\n")

    assert broken(add_a_file) == ["SUPA01/notes.csv: on disk but not in manifest.json"]

    def remove_a_file(copy: Path) -> None:
        _first_data_file(copy).unlink()

    assert any(k == f"{rel}: in manifest.json but missing on disk" for k in broken(remove_a_file))


def test_read_back_counts_records_not_lines(tmp_path):
    """A quoted field may hold line ends and quotes; a record ends only outside quotes,
    also when a quoted field spans two read blocks."""
    path = tmp_path / "quoted.csv"
    text = 'a,b\n1,"x\ny"\n2,"say ""hi"",\n"\n3,plain\n'
    path.write_bytes(text.encode())
    assert export.read_back(path) == (3, hashlib.sha256(text.encode()).hexdigest(), True)

    big = "a,b\n" + "".join(f'{i},"{"q" * (export.WRITE_CHUNK // 3)}\n{i}"\n' for i in range(4))
    path.write_bytes(big.encode())
    rows, _, complete = export.read_back(path)
    assert (rows, complete) == (4, True)
    path.write_bytes(big.encode()[: export.WRITE_CHUNK + 10])  # cut inside a quoted field
    assert export.read_back(path)[2] is False
