"""Hostile input, tried as an attacker would (issue 15): every fault is built here (gzip
bombs on the fly, links, FIFOs, broken manifests, bytes PostgreSQL cannot store) and each
ends the same way: a quarantine record, one line naming the file and its physical line,
nothing landed (raw, the ledger and the database's size as they were), and the corrected
re-delivery goes through. Memory is measured in a child process (`s1mig land`, wait4);
the limits are set low through S1MIG_LAND_* where a test needs them low.

Also: the first drop is a deliberate choice (--first, S1MIG_FIRST_DROP) and a landing can
be taken back (`s1mig land --undo D`), recorded in the ledger."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from s1mig import land
from s1mig.contract import EXTRACTS
from s1mig.errors import DropOutOfSequence, DropRejected, NothingToUndo
from tests.support.cli import REPO, run_cli
from tests.support.drops import D30, D31, SIG_A, SIG_B, event, write_drop
from tests.support.drops import raw_snapshot as snapshot
from tests.support.drops import small_drop_tables as tables

pytestmark = pytest.mark.integration

D29 = dt.date(2020, 7, 29)
SECRET = "TOP-SECRET-7f3a"  # content of a file outside the drop: must never be echoed
EVENT_ROW = b"E9,A1,MCF_VALIDATION,19,PASS,,2020-07-30T08:00:00Z\n"
EVENTS_HEADER = b"event_id,attempt_id,stage,step_no,outcome,reason_code,event_ts\n"


# ----------------------------------------------------------------------------- building faults


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def set_file(folder: Path, name: str, data: bytes, rows: int | None = None, file: str | None = None) -> None:
    """Replace extract `name` with `data` (as delivered; `file` names it, e.g. .csv.gz),
    the manifest made to agree (sha256 and, when given, rows) so only the fault remains."""
    manifest = manifest_of(folder)
    entry = next(e for e in manifest["extracts"] if e["name"] == name)
    (folder / entry["file"]).unlink()
    entry["file"] = file or f"{name}.csv"
    (folder / entry["file"]).write_bytes(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    if rows is not None:
        entry["rows"] = rows
    (folder / "manifest.json").write_text(json.dumps(manifest))


def edit_file(folder: Path, name: str, change: Callable[[bytes], bytes], rows: int | None = None) -> None:
    set_file(folder, name, change((folder / f"{name}.csv").read_bytes()), rows)


def edit_manifest_text(folder: Path, change: Callable[[str], str]) -> None:
    path = folder / "manifest.json"
    path.write_text(change(path.read_text()))


def gzip_bomb(expanded: int, line: bytes = EVENT_ROW, header: bytes = EVENTS_HEADER) -> tuple[bytes, int]:
    """One gzip member (a single deflate stream) that expands to about `expanded` bytes of
    `line` repeated after `header`: (compressed bytes, lines of `line` in it)."""
    block = line * max(1, (1 << 20) // len(line))
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [comp.compress(header)]
    count = expanded // len(block)
    parts += [comp.compress(block) for _ in range(count)]
    parts.append(comp.flush())
    return b"".join(parts), count * (len(block) // len(line))


def _bomb(folder: Path) -> None:
    """200 MB of sound rows, as many as the manifest says: only the size limit stops it."""
    data, rows = gzip_bomb(200 << 20)
    set_file(folder, "migration_events", data, rows, "migration_events.csv.gz")


def _link_outside(folder: Path) -> None:
    outside = folder.parent / "outside.csv"
    outside.write_text(f"{SECRET},x\n")
    (folder / "migration_events.csv").unlink()
    (folder / "migration_events.csv").symlink_to(outside)


def _fifo(folder: Path) -> None:
    (folder / "exclusions.csv").unlink()
    os.mkfifo(folder / "exclusions.csv")


def _device(folder: Path) -> None:
    (folder / "exclusions.csv").unlink()
    try:
        os.mknod(folder / "exclusions.csv", 0o600 | 0o020000, os.makedev(1, 5))  # like /dev/zero
    except PermissionError:
        pytest.skip("no permission to create a device node here")


def _deep_manifest(folder: Path) -> None:
    (folder / "manifest.json").write_text(
        '{"drop_date": "2020-07-30",\n"extracts": ' + "[" * 50_000 + "]" * 50_000 + "}"
    )


def _name_list(folder: Path) -> None:
    """A pretty-printed manifest (one value a line) whose first extract's name is a list:
    line 1 {, 2 drop_date, 3 "extracts": [, 4 {, 5 "name": ["""
    manifest = manifest_of(folder)
    manifest["extracts"][0]["name"] = ["parties"]
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _multiline_then_ragged(folder: Path) -> None:
    # row 1 spans lines 2-3 (a quoted line break in party_name); row 2 (line 4) has a field too many
    data = (
        b"party_id,party_name,sec_party_signifier,affiliate_group,effective_from\n"
        b'SUPA01,"Supplier\nA",' + SIG_A.encode() + b",SUPA,2020-06-01T00:00:00Z\n"
        b"SUPB02,Supplier B," + SIG_B.encode() + b",SUPB,2020-06-01T00:00:00Z,extra\n"
    )
    set_file(folder, "parties", data, rows=2)


FAULTS = {
    # name: (how to break a sound delivery, file named, physical line named, words of the problem)
    "gzip bomb": (
        _bomb,
        "migration_events.csv.gz",
        None,  # set below from the cap: the line being read when it is reached
        "decompresses to more than 16 MiB (the limit per file, S1MIG_LAND_MAX_FILE_BYTES)",
    ),
    "no line feed": (
        lambda f: set_file(
            f, "migration_events", gzip_bomb(64 << 20, line=b"A" * 4096)[0], 3, "migration_events.csv.gz"
        ),
        "migration_events.csv.gz",
        2,
        "longer than 64 KiB (the limit, S1MIG_LAND_MAX_LINE_BYTES; no record of the contract is that long) "
        "without a line end",
    ),
    "rows past the manifest": (
        lambda f: set_file(f, "migration_events", EVENTS_HEADER + EVENT_ROW * 500_000, rows=3),
        "migration_events.csv",
        5,
        "is data row 4, but manifest.json says migration_events.csv has 3 rows",
    ),
    "plain file over the cap": (
        lambda f: set_file(f, "migration_events", EVENTS_HEADER + EVENT_ROW * 400_000, rows=400_000),
        "migration_events.csv",
        None,
        "is larger than 16 MiB (the limit per file, S1MIG_LAND_MAX_FILE_BYTES)",
    ),
    "symbolic link": (_link_outside, "migration_events.csv", None, "is a symbolic link, not a regular file"),
    "fifo": (_fifo, "exclusions.csv", None, "is a FIFO (named pipe), not a regular file"),
    "device": (_device, "exclusions.csv", None, "is a character device, not a regular file"),
    "header echoes only the offending field": (
        lambda f: edit_file(f, "migration_events", lambda b: b.replace(b"event_id,", f"{SECRET},".encode(), 1)),
        "migration_events.csv",
        1,
        f"header column 1 is '{SECRET}'; the contract says 'event_id'",
    ),
    "CR-only line ends": (
        lambda f: edit_file(f, "migration_events", lambda b: b.replace(b"\n", b"\r")),
        "migration_events.csv",
        1,
        "line ends are carriage returns only (CR); the contract needs LF or CRLF",
    ),
    "mixed line ends": (
        lambda f: edit_file(
            f,
            "migration_events",
            lambda b: b.replace(b"PASS,,2020-07-30T09:30:00Z\n", b"PASS,,2020-07-30T09:30:00Z\r\n"),
        ),
        "migration_events.csv",
        4,
        "ends with CRLF, but the header ends with LF only: mixed line ends",
    ),
    "manifest rows of 5000 digits": (
        lambda f: edit_manifest_text(f, lambda t: t.replace('"rows": 3', '"rows": ' + "9" * 5000, 1)),
        "manifest.json",
        1,
        "migration_events: rows is a number of 5000 digits",
    ),
    "deeply nested manifest": (_deep_manifest, "manifest.json", 2, "nested more than 16 levels deep"),
    "name that is a list": (_name_list, "manifest.json", 5, "extracts[0]: unknown extract ['parties']"),
    "byte-order mark inside a field": (
        lambda f: edit_file(f, "parties", lambda b: b.replace(b"Supplier SUPB02", b"Supplier \xef\xbb\xbfSUPB02")),
        "parties.csv",
        3,
        "field 2 (party_name) holds a byte-order mark (\\ufeff",
    ),
    "lone surrogate": (
        lambda f: edit_file(f, "installations", lambda b: b.replace(b"MOC", b"M\xed\xa0\x80C")),
        "installations.csv",
        3,
        "field 2 (cohort) is not valid UTF-8: an encoded UTF-16 surrogate",
    ),
    "NUL byte": (
        lambda f: edit_file(f, "migration_events", lambda b: b.replace(b"MVF_VALIDATION,21", b"MVF_\x00VALIDATION,21")),
        "migration_events.csv",
        3,
        "field 3 (stage) holds a NUL byte (\\x00), which PostgreSQL cannot store",
    ),
    "over-long record": (
        lambda f: edit_file(f, "migration_events", lambda b: b.replace(b"E3,", b"E" * 70_000 + b",")),
        "migration_events.csv",
        4,
        "longer than 64 KiB (the limit, S1MIG_LAND_MAX_LINE_BYTES)",
    ),
    "quoted multi-line field before the fault": (
        _multiline_then_ragged,
        "parties.csv",
        4,
        "has 6 fields; parties has 5",
    ),
    "unterminated quote": (
        lambda f: edit_file(f, "migration_events", lambda b: b.replace(b"E2,A2", b'"E2,A2')),
        "migration_events.csv",
        3,
        "a quoted field opened on this line is never closed (unterminated quote)",
    ),
}


def database_size(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("select pg_database_size(current_database())").fetchone()[0]


def latest_quarantine(home: Path, day: str = "2020-07-30") -> tuple[dict, str]:
    reports = sorted((home / "quarantine" / day).glob("*.json"))
    assert reports, "no quarantine record"
    return json.loads(reports[-1].read_text()), reports[-1].with_suffix(".txt").read_text()


def sound_correction(tmp_path: Path) -> Path:
    """A sound delivery of 2020-07-30 that differs from the first one (one more exclusion):
    each fault is planted in a copy of it, and it is the corrected re-delivery."""
    folder = write_drop(tmp_path / "corrected", "2020-07-30", tables())
    row = b"S10000000001,MISSING_MASTER_KEYS,2020-07-30T10:00:00Z\n"
    edit_file(folder, "exclusions", lambda b: b + row, rows=1)
    return folder


@pytest.fixture
def low_limits(monkeypatch):
    monkeypatch.setenv("S1MIG_LAND_MAX_FILE_BYTES", "16M")
    monkeypatch.setenv("S1MIG_LAND_MAX_LINE_BYTES", "64K")


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_is_quarantined_with_file_and_line_and_a_correction_goes_through(
    fault, warehouse, tmp_path, s1mig_home, low_limits
):
    write_drop(tmp_path / "first", "2020-07-30", tables())
    land.land(tmp_path / "first" / "2020-07-30", D30)
    before, size_before = snapshot(warehouse), database_size(warehouse)

    corrected = sound_correction(tmp_path)
    bad = tmp_path / "bad" / "2020-07-30"
    shutil.copytree(corrected, bad)
    breaker, file, line, words = FAULTS[fault]
    breaker(bad)

    with pytest.raises(DropRejected) as caught:
        land.land(bad, D30)
    err = caught.value
    message = str(err)
    assert err.file == file, message
    if fault == "gzip bomb":  # the line being read when the cap was reached: 16 MiB of 51-byte lines
        assert err.line is not None and (16 << 20) // len(EVENT_ROW) - 2 < err.line < (17 << 20) // len(EVENT_ROW)
    elif fault == "plain file over the cap":
        assert err.line is not None and (16 << 20) // len(EVENT_ROW) - 2 < err.line < (17 << 20) // len(EVENT_ROW)
    else:
        assert err.line == line, message
    assert words in err.problem, message
    assert "\n" not in message and len(message) < 400, message
    assert SECRET not in message or fault == "header echoes only the offending field"
    assert "MVF_VALIDATION" not in message  # no record of a file is echoed
    # the quarantine record: file, line, the one line; nothing of an outside file
    record, text = latest_quarantine(s1mig_home)
    assert (record["file"], record["line"], record["message"]) == (err.file, err.line, message)
    assert text == message + "\n"
    if fault == "symbolic link":
        assert SECRET not in json.dumps(record) and SECRET not in text
    # nothing landed; the database no larger than a few MB above where it was
    assert snapshot(warehouse) == before
    assert database_size(warehouse) - size_before < 2 << 20

    result = land.land(corrected, D30)
    assert result.status == "replaced"
    assert result.rows["exclusions"] == 1


def test_the_cli_prints_one_line_and_a_fifo_never_hangs(warehouse, tmp_path, s1mig_home):
    write_drop(tmp_path / "first", "2020-07-30", tables())
    land.land(tmp_path / "first" / "2020-07-30", D30)  # the first drop: its landing is not under test
    landing = tmp_path / "landing"
    shutil.copytree(sound_correction(tmp_path), landing / "2020-07-30")
    _fifo(landing / "2020-07-30")
    proc = subprocess.run(
        [sys.executable, "-m", "s1mig.cli", "land", "--landing", str(landing), "--date", "2020-07-30"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("s1mig: error:")]
    assert errors == [
        "s1mig: error: drop 2020-07-30 rejected: exclusions.csv: "
        "is a FIFO (named pipe), not a regular file (a drop holds regular files only)"
    ]
    assert "Traceback" not in proc.stderr

    # a manifest whose rows has thousands of digits, a name that is a list: one line each
    (landing / "2020-07-30" / "exclusions.csv").unlink()
    shutil.copy(tmp_path / "corrected" / "2020-07-30" / "exclusions.csv", landing / "2020-07-30")
    edit_manifest_text(landing / "2020-07-30", lambda t: t.replace('"name": "parties"', '"name": ["parties"]'))
    proc = run_cli("land", "--landing", str(landing), "--date", "2020-07-30")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "s1mig: error: drop 2020-07-30 rejected: manifest.json line 1: extracts[0]: unknown extract ['parties']"
    )

    # a setting that makes no sense: one line, no quarantine record (not the drop's fault)
    records = len(list((s1mig_home / "quarantine" / "2020-07-30").glob("*.json")))
    proc = subprocess.run(
        [sys.executable, "-m", "s1mig.cli", "land", "--landing", str(landing), "--date", "2020-07-30"],
        capture_output=True,
        text=True,
        env=dict(os.environ, S1MIG_LAND_MAX_LINE_BYTES="lots"),
        cwd=REPO,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "s1mig: error: S1MIG_LAND_MAX_LINE_BYTES must be a size in bytes such as 65536, 64K, 512M or 4G, not 'lots'"
    )
    assert len(list((s1mig_home / "quarantine" / "2020-07-30").glob("*.json"))) == records


def test_a_drop_folder_that_is_a_link_is_refused(warehouse, tmp_path, s1mig_home):
    real = write_drop(tmp_path / "elsewhere", "2020-07-30", tables())
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "2020-07-30").symlink_to(real, target_is_directory=True)
    with pytest.raises(DropRejected, match=r"2020-07-30/: the drop folder is a symbolic link; deliver a real folder"):
        land.land(tmp_path / "landing" / "2020-07-30", D30)
    land.land(real, D30)  # the same drop delivered as a folder


# `s1mig land` run by a child Python that reports its own peak RSS since exec (VmHWM).
# wait4's ru_maxrss would also count the pages the child shared with this test process
# before exec (a big pytest process late in the suite: hundreds of MB that are not the
# landing's).
_PEAK_REPORTING_CLI = """
import os, sys
from s1mig.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open("/proc/self/status") as status:
        peak_kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["S1MIG_TEST_PEAK_FILE"], "w") as out:
        out.write(peak_kb)
sys.exit(code)
"""


def _land_in_child(landing: Path, day: str, env: dict[str, str] | None = None) -> tuple[int, str, int]:
    """`s1mig land` in a child process: (exit code, stderr, peak RSS in bytes of the child)."""
    peak_file = landing.parent / f"peak-{day}-{os.getpid()}"
    child_env = {**(env or os.environ), "S1MIG_TEST_PEAK_FILE": str(peak_file)}
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_REPORTING_CLI, "land", "--landing", str(landing), "--date", day],
        env=child_env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc.returncode, proc.stderr, int(peak_file.read_text()) * 1024


def test_a_gzip_bomb_is_read_with_flat_memory_and_leaves_the_database_as_it_was(warehouse, tmp_path, s1mig_home):
    """A 300 MB expansion of sound-looking rows (one deflate stream, 2 MB on disk) under the
    default limits: the whole file is verified (the manifest's rows match, its sha256 does
    not) in a child process whose peak RSS stays far under 300 MB, and the database does
    not grow: nothing reached it."""
    write_drop(tmp_path / "first", "2020-07-30", tables())
    land.land(tmp_path / "first" / "2020-07-30", D30)
    before, size_before = snapshot(warehouse), database_size(warehouse)

    landing = tmp_path / "landing"
    folder = shutil.copytree(sound_correction(tmp_path), landing / "2020-07-30")
    bomb, rows = gzip_bomb(300 << 20)
    set_file(folder, "migration_events", bomb, rows=rows, file="migration_events.csv.gz")
    manifest = manifest_of(folder)
    manifest["extracts"][4]["sha256"] = "0" * 64  # the bytes as delivered do not match
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert len(bomb) < 3 << 20

    code, stderr, peak = _land_in_child(landing, "2020-07-30")
    assert code == 1
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith("s1mig: error: drop 2020-07-30 rejected: migration_events.csv.gz: sha256 is ")
    )
    assert peak < 150 << 20, f"peak RSS {peak >> 20} MB"
    assert snapshot(warehouse) == before
    assert database_size(warehouse) - size_before < 2 << 20
    record, _ = latest_quarantine(s1mig_home)
    assert record["file"] == "migration_events.csv.gz"
    assert land.land(tmp_path / "corrected" / "2020-07-30", D30).status == "replaced"


class _ChangeWhenVerified(logging.Handler):
    """Appends rows to a file (the same inode the landing holds open) the moment the landing
    says every file is verified: the file changes between verifying and loading."""

    def __init__(self, path: Path, data: bytes):
        super().__init__()
        self.path, self.data = path, data

    def emit(self, record: logging.LogRecord) -> None:
        if "every file verified" in record.getMessage():
            with open(self.path, "ab") as fh:
                fh.write(self.data)


def test_a_file_changed_after_it_was_verified_is_rejected_and_its_dead_rows_vacuumed(warehouse, tmp_path, s1mig_home):
    write_drop(tmp_path / "first", "2020-07-30", tables())
    land.land(tmp_path / "first" / "2020-07-30", D30)
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute("vacuum raw.migration_events")
        heap_before = conn.execute("select pg_relation_size('raw.migration_events')").fetchone()[0]
    before, size_before = snapshot(warehouse), database_size(warehouse)

    folder = sound_correction(tmp_path)
    handler = _ChangeWhenVerified(folder / "migration_events.csv", EVENT_ROW * 100_000)  # 5 MB more
    logger = logging.getLogger("s1mig.land")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(DropRejected) as caught:
            land.land(folder, D30)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert caught.value.file == "migration_events.csv"
    assert "changed while it was being landed" in caught.value.problem
    assert "100003 rows" in caught.value.problem
    assert snapshot(warehouse) == before
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select pg_relation_size('raw.migration_events')").fetchone()[0] == heap_before
    assert database_size(warehouse) - size_before < 2 << 20
    assert latest_quarantine(s1mig_home)[0]["file"] == "migration_events.csv"
    # delivered again (as the manifest says it is) it lands
    edit_file(folder, "migration_events", lambda b: b[: -len(EVENT_ROW) * 100_000])
    assert land.land(folder, D30).status == "replaced"


def test_line_numbers_are_physical_after_a_multi_line_record_and_crlf_lands(warehouse, tmp_path):
    """`_row_number + 1` is a record's first physical line (what staging reports as
    line_no), also after a record whose quoted field holds line breaks; a CRLF file lands
    with no CR in any value."""
    folder = write_drop(tmp_path, "2020-07-30", tables())
    data = (
        b"party_id,party_name,sec_party_signifier,affiliate_group,effective_from\r\n"
        b'SUPA01,"Supplier\r\nA\r\nLtd",' + SIG_A.encode() + b",SUPA,2020-06-01T00:00:00Z\r\n"
        b"SUPB02,Supplier B," + SIG_B.encode() + b",SUPB,2020-06-01T00:00:00Z\r\n"
        b"SUPC03,Supplier C," + SIG_B.encode() + b",SUPC,2020-06-01T00:00:00Z\r\n"
    )
    set_file(folder, "parties", data, rows=3)
    land.land(folder, D30)
    with psycopg.connect(warehouse) as conn:
        rows = conn.execute(
            "select party_id, party_name, affiliate_group, _row_number + 1 from raw.parties order by _row_number"
        ).fetchall()
        events = conn.execute("select event_id, _row_number + 1 from raw.migration_events order by 2").fetchall()
    assert rows == [
        ("SUPA01", "Supplier\r\nA\r\nLtd", "SUPA", 2),
        ("SUPB02", "Supplier B", "SUPB", 5),
        ("SUPC03", "Supplier C", "SUPC", 6),
    ]
    assert events == [("E1", 2), ("E2", 3), ("E3", 4)]  # the next file starts again at line 2


def test_an_unexpected_error_is_quarantined_in_one_line_with_the_traceback_in_its_log(
    warehouse, tmp_path, s1mig_home, monkeypatch
):
    """Fault injection (nothing else can make the landing's own code fail): whatever breaks
    while a file is verified ends in a quarantine record and one line naming the file and
    line; the traceback is only in the record's log."""
    folder = write_drop(tmp_path, "2020-07-30", tables())

    def broken(self, chunk, base, terminated):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(land._Scan, "_lines", broken)
    with pytest.raises(DropRejected) as caught:
        land.land(folder, D30)
    message = str(caught.value)
    assert message == (
        "drop 2020-07-30 rejected: parties.csv line 2: unexpected error (ZeroDivisionError) while landing; "
        "nothing was landed (details: quarantine record)"
    )
    record, _ = latest_quarantine(s1mig_home)
    assert record["message"] == message
    assert "Traceback" in Path(record["details"]).read_text() and "injected" in Path(record["details"]).read_text()
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select count(*) from raw.drop_ledger").fetchone()[0] == 0
    monkeypatch.undo()
    assert land.land(folder, D30).status == "landed"


# ----------------------------------------------------------------------------- first drop and undo


def two_days(tmp_path: Path) -> Path:
    landing = tmp_path / "landing"
    write_drop(landing, "2020-07-29", {"parties": tables()["parties"]})
    write_drop(landing, "2020-07-30", tables())
    write_drop(
        landing,
        "2020-07-31",
        {"migration_events": [event("E4", "A1", "DEVICE_TESTING", 49, "PASS", "2020-07-31T08:00:00Z")]},
    )
    return landing


def test_the_first_drop_is_a_deliberate_choice(warehouse, tmp_path, monkeypatch, s1mig_home):
    landing = two_days(tmp_path)
    # not chosen at all (the tests' session chooses "any"): an empty warehouse takes no drop
    monkeypatch.delenv("S1MIG_FIRST_DROP")
    proc = run_cli("land", "--landing", str(landing), "--date", "2020-07-30")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "s1mig: error: drop 2020-07-30 not landed: the warehouse is empty: choose its first drop, which carries "
        "all history before it and after which no earlier date can be landed: land 2020-07-30 with --first "
        "(s1mig land, run or backfill) or set S1MIG_FIRST_DROP=2020-07-30"
    )
    monkeypatch.setenv("S1MIG_FIRST_DROP", "2020-07-30")
    with pytest.raises(DropOutOfSequence) as caught:
        land.land(landing / "2020-07-31", D31)
    assert str(caught.value) == (
        "drop 2020-07-31 not landed: the warehouse is empty and its first drop (chosen with --first or "
        "S1MIG_FIRST_DROP) is 2020-07-30: land 2020-07-30 first"
    )
    with pytest.raises(DropOutOfSequence, match="2020-07-29 is before the first drop chosen with --first or "):
        land.land(landing / "2020-07-29", D29)
    assert land.land(landing / "2020-07-30", D30).first
    assert not land.land(landing / "2020-07-31", D31).first
    # a date before the first drop: the message says how to proceed
    monkeypatch.delenv("S1MIG_FIRST_DROP")
    proc = run_cli("land", "--landing", str(landing), "--date", "2020-07-29")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "s1mig: error: drop 2020-07-29 not landed: 2020-07-29 is before the warehouse's first drop, 2020-07-30, "
        "which carries all history before it, so no earlier drop can be added; to start the warehouse at "
        "2020-07-29: undo the landed drops, latest first (s1mig land --undo 2020-07-31, ..., "
        "s1mig land --undo 2020-07-30), then s1mig land --date 2020-07-29 --first (or set S1MIG_FIRST_DROP=2020-07-29)"
    )
    # following that advice
    run_cli("land", "--undo", "2020-07-31", check=True)
    run_cli("land", "--undo", "2020-07-30", check=True)
    done = run_cli("land", "--landing", str(landing), "--date", "2020-07-29", "--first", check=True)
    assert "landed as the warehouse's first drop" in done.stdout
    for day in (D30, D31):  # what follows the advice's commands (in this process: no command line start)
        land.land(landing / day.isoformat(), day)
    with psycopg.connect(warehouse) as conn:
        current = conn.execute(
            "select drop_date from raw.drop_ledger where superseded_at is null order by 1"
        ).fetchall()
    assert [d for (d,) in current] == [D29, D30, D31]
    bad = run_cli("land", "--landing", str(landing), "--date", "2020-07-30", "--first")
    assert "the warehouse starts at 2020-07-29, not at the first drop chosen" in bad.stderr


def test_undo_takes_the_latest_landing_back_and_the_ledger_keeps_it(warehouse, tmp_path):
    landing = two_days(tmp_path)
    first = land.land(landing / "2020-07-30", D30)
    second = land.land(landing / "2020-07-31", D31)
    with pytest.raises(NothingToUndo) as caught:
        land.undo(D30)
    assert str(caught.value) == (
        "drop 2020-07-30 cannot be undone: the later drops landed after it (2020-07-31) depend on it; "
        "undo them first, latest first (s1mig land --undo 2020-07-31)"
    )
    done = land.undo(D31)
    assert done.rows_removed["migration_events"] == 1 and not done.built_by_dbt
    assert done.line().startswith("drop 2020-07-31: undone (1 rows removed; delivery ")
    with pytest.raises(NothingToUndo, match="drop 2020-07-31 is not landed: nothing to undo"):
        land.undo(D31)
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select count(*) from raw.migration_events where _drop_date = %s", (D31,)).fetchone() == (
            0,
        )
        ledger = conn.execute(
            "select drop_date, delivery_sha256, action, superseded_at is not null, rows_landed "
            "from raw.drop_ledger order by landed_at"
        ).fetchall()
    assert ledger == [
        (D30, first.delivery_sha256, "land", False, first.rows),
        (D31, second.delivery_sha256, "land", True, second.rows),
        (D31, second.delivery_sha256, "undo", True, {e.name: int(e.name == "migration_events") for e in EXTRACTS}),
    ]
    # the date can land again; the ledger now says it was landed, undone and landed
    assert land.land(landing / "2020-07-31", D31).status == "landed"
    assert land.undo(D31).drop_date == D31 and land.undo(D30).drop_date == D30
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select count(*) from raw.drop_ledger where superseded_at is null").fetchone() == (0,)
        assert sum(conn.execute(f"select count(*) from raw.{e.name}").fetchone()[0] for e in EXTRACTS) == 0
