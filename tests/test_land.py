"""Landing against a real PostgreSQL: a bad drop is rejected whole with file, line and
problem named and the warehouse left exactly as it was; re-landing the same bytes is a
no-op; a corrected delivery replaces its date and the ledger keeps the old one."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from s1mig import land
from s1mig.errors import DropMissing, DropRejected
from tests.support.drops import D30, D31, event, write_drop
from tests.support.drops import raw_snapshot as snapshot
from tests.support.drops import small_drop_tables as tables

pytestmark = pytest.mark.integration


def rewrite(folder: Path, file: str, mutate: Callable[[bytes], bytes], fix_manifest: bool = True) -> None:
    """Change a file's bytes; by default the manifest is updated so only the fault remains."""
    path = folder / file
    data = mutate(path.read_bytes())
    path.write_bytes(data)
    if fix_manifest:
        manifest = json.loads((folder / "manifest.json").read_text())
        for entry in manifest["extracts"]:
            if entry["file"] == file:
                entry["sha256"] = hashlib.sha256(data).hexdigest()
        (folder / "manifest.json").write_text(json.dumps(manifest))


def edit_manifest(folder: Path, change: Callable[[dict], None]) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _gz_truncated(folder: Path) -> None:
    path = folder / "migration_events.csv"
    data = gzip.compress(path.read_bytes(), mtime=0)[:-12]
    path.unlink()
    (folder / "migration_events.csv.gz").write_bytes(data)

    def change(m):
        for e in m["extracts"]:
            if e["name"] == "migration_events":
                e["file"], e["sha256"] = "migration_events.csv.gz", hashlib.sha256(data).hexdigest()

    edit_manifest(folder, change)


FAULTS = {
    # name: (how to break a valid drop, file named, line named, words in the problem)
    "row count": (
        lambda f: edit_manifest(f, lambda m: m["extracts"][4].update(rows=7)),
        "migration_events.csv",
        None,
        "has 3 data rows, manifest.json says 7",
    ),
    "checksum": (
        lambda f: rewrite(f, "migration_events.csv", lambda b: b.replace(b"08:00:00Z", b"08:00:01Z"), False),
        "migration_events.csv",
        None,
        "sha256 is",
    ),
    "header": (
        lambda f: rewrite(f, "migration_events.csv", lambda b: b.replace(b"stage,step_no", b"step_no,stage", 1)),
        "migration_events.csv",
        1,
        "the contract says",
    ),
    "missing file": (lambda f: (f / "parties.csv").unlink(), "parties.csv", None, "missing"),
    "extra file": (lambda f: (f / "notes.txt").write_text("hi"), "notes.txt", None, "not in the contract"),
    "bad utf-8": (
        lambda f: rewrite(f, "installations.csv", lambda b: b.replace(b"IOC", b"I\xffC")),
        "installations.csv",
        2,
        "field 2 (cohort) is not valid UTF-8: byte 0xff",
    ),
    "ragged row": (
        lambda f: rewrite(f, "migration_events.csv", lambda b: b.replace(b"FAIL,MVF01,", b"FAIL,MVF01,x,")),
        "migration_events.csv",
        3,
        "has 8 fields; migration_events has 7",
    ),
    "truncated gzip": (_gz_truncated, "migration_events.csv.gz", None, "truncated"),
    "manifest json": (
        lambda f: (f / "manifest.json").write_text('{"drop_date": "2020-07-30", '),
        "manifest.json",
        1,
        "not valid JSON",
    ),
    "manifest date": (
        lambda f: edit_manifest(f, lambda m: m.update(drop_date="2020-07-29")),
        "manifest.json",
        1,  # the manifest is one line: every value is on line 1
        "the folder says 2020-07-30",
    ),
    "extract missing from manifest": (
        lambda f: edit_manifest(f, lambda m: m["extracts"].pop()),
        "manifest.json",
        1,
        "extracts missing from manifest: exclusions",
    ),
    "bom": (
        lambda f: rewrite(f, "parties.csv", lambda b: b"\xef\xbb\xbf" + b),
        "parties.csv",
        1,
        "byte-order mark",
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_structural_fault_rejects_whole_drop(fault, warehouse, tmp_path, s1mig_home):
    good = tmp_path / "good"
    write_drop(good, "2020-07-30", tables())
    land.land(good / "2020-07-30", D30)  # an earlier good delivery of the date is in place
    before = snapshot(warehouse)

    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    folder = bad / "2020-07-30"
    # vary one value so the bad delivery would otherwise be a correction, not "the same bytes"
    rewrite(folder, "exclusions.csv", lambda b: b + b"S10000000001,MISSING_MASTER_KEYS,2020-07-30T10:00:00Z\n")
    edit_manifest(folder, lambda m: m["extracts"][7].update(rows=1))
    breaker, file, line, words = FAULTS[fault]
    breaker(folder)

    with pytest.raises(DropRejected) as err:
        land.land(folder, D30)
    assert err.value.file == file
    assert err.value.line == line
    assert words in err.value.problem
    assert snapshot(warehouse) == before
    reports = sorted((s1mig_home / "quarantine" / "2020-07-30").glob("*.json"))
    assert json.loads(reports[-1].read_text())["file"] == file
    assert str(err.value) in (reports[-1].with_suffix(".txt")).read_text()


def test_same_bytes_are_a_no_op_and_a_correction_replaces(warehouse, tmp_path):
    write_drop(tmp_path / "v1", "2020-07-30", tables())
    first = land.land(tmp_path / "v1" / "2020-07-30", D30)
    assert first.status == "landed" and first.rows["migration_events"] == 3
    state = snapshot(warehouse)
    again = land.land(tmp_path / "v1" / "2020-07-30", D30)
    assert again.status == "unchanged"
    assert snapshot(warehouse) == state

    corrected = tables()
    corrected["migration_events"] = corrected["migration_events"][:2]
    write_drop(tmp_path / "v2", "2020-07-30", corrected, gzipped=("migration_events",))
    second = land.land(tmp_path / "v2" / "2020-07-30", D30)
    assert second.status == "replaced"
    with psycopg.connect(warehouse) as conn:
        events = conn.execute("select event_id, _file_name, _row_number from raw.migration_events").fetchall()
        ledger = conn.execute(
            "select delivery_sha256, superseded_at is not null from raw.drop_ledger order by landed_at"
        ).fetchall()
    assert sorted(events) == [("E1", "migration_events.csv.gz", 1), ("E2", "migration_events.csv.gz", 2)]
    assert ledger == [(first.delivery_sha256, True), (second.delivery_sha256, False)]


def test_a_warehouse_from_before_item_20_loses_the_per_row_file_columns(warehouse, tmp_path):
    """Raw tables made by an earlier version carry each file's sha256 and landing time on
    every row; the next landing drops those columns (the ledger keeps both once per file)
    and lands as usual."""
    write_drop(tmp_path / "v1", "2020-07-30", tables())
    land.land(tmp_path / "v1" / "2020-07-30", D30)
    with psycopg.connect(warehouse) as conn:
        for ex in land.EXTRACTS:
            conn.execute(
                f"alter table raw.{ex.name} add column _file_sha256 text not null default 'x', "
                "add column _landed_at timestamptz not null default now()"
            )
    write_drop(tmp_path / "v2", "2020-07-31", tables())
    assert land.land(tmp_path / "v2" / "2020-07-31", D31).status == "landed"
    with psycopg.connect(warehouse) as conn:
        left = conn.execute(
            "select count(*) from information_schema.columns where table_schema = 'raw' "
            "and column_name in ('_file_sha256', '_landed_at')"
        ).fetchone()[0]
        events = conn.execute("select count(*) from raw.migration_events").fetchone()[0]
    assert left == 0 and events == 6


def test_a_missing_drop_is_not_a_rejection(warehouse, tmp_path):
    with pytest.raises(DropMissing, match="not found"):
        land.land(tmp_path / "2020-07-30", D30)


def test_days_cannot_be_skipped(warehouse, tmp_path):
    write_drop(tmp_path, "2020-07-30", tables())
    write_drop(tmp_path, "2020-08-01", {})
    land.land(tmp_path / "2020-07-30", D30)
    with pytest.raises(DropRejected, match="drop 2020-07-31 has not been landed"):
        land.land(tmp_path / "2020-08-01", D30.replace(day=31).replace(month=8, day=1))


def test_a_killed_load_leaves_raw_unchanged_and_can_be_redone(warehouse, tmp_path):
    """SIGKILL the landing process while COPY streams a large file: PostgreSQL rolls the
    drop's transaction back, raw is exactly as before, and the drop lands afterwards."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.support.cli import REPO

    write_drop(tmp_path / "v1", "2020-07-30", tables())
    land.land(tmp_path / "v1" / "2020-07-30", D30)
    before = snapshot(warehouse)

    big = tables()
    big["migration_events"] = [
        event(f"X{i}", "A1", "MCF_VALIDATION", 19, "PASS", "2020-07-30T08:00:00Z") for i in range(400_000)
    ]
    write_drop(tmp_path / "v2", "2020-07-30", big)
    proc = subprocess.Popen(
        [sys.executable, "-m", "s1mig.cli", "land", "--landing", str(tmp_path / "v2"), "--date", "2020-07-30"],
        env=dict(os.environ),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with psycopg.connect(warehouse, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            copying = conn.execute(
                "select pid from pg_stat_activity where query ilike 'copy%%raw%%' and pid <> pg_backend_pid()"
            ).fetchall()
            if copying:
                break
            time.sleep(0.01)
        assert copying, "the load never reached COPY"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL  # killed, not finished
        while conn.execute("select count(*) from pg_stat_activity where pid = %s", (copying[0][0],)).fetchone()[0]:
            time.sleep(0.05)
    assert snapshot(warehouse) == before
    assert land.land(tmp_path / "v2" / "2020-07-30", D30).status == "replaced"
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select count(*) from raw.migration_events").fetchone()[0] == 400_000
