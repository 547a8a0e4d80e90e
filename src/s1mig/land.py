"""Landing: verify a daily drop against the contract and load it into the raw layer.

Two passes per file, both streaming (1 MiB blocks, gzip decompressed on the fly, never a
whole file in memory):

1. Verify, before anything touches the database: every file of the drop is read once
   and checked (the manifest, the header, every record's field count, line ends, UTF-8,
   NUL bytes, byte-order marks, the record and file size limits, the row count, stopping
   at the first row past the manifest's, and the sha256). A drop that fails here wrote
   nothing to the database, so it leaves no dead rows, index entries or WAL behind.
2. Load: in one transaction per drop each file streams again into PostgreSQL COPY while
   its bytes are hashed again; a file that changed since it was verified is rejected,
   the transaction rolls back and the raw tables it touched are vacuumed.

Only regular files inside the drop folder are read (no symbolic link, device or FIFO;
every file is opened relative to the folder with O_NOFOLLOW). Every failure of a drop,
expected or not, ends in a quarantine record ($S1MIG_HOME/quarantine/<D>/) and a
DropRejected whose one line names the file and its physical line; a message shows at
most the offending field, escaped (never the rest of a rejected file). The limits come
from config (S1MIG_LAND_*; docs/landing.md, "Limits").
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
import os
import re
import stat
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from json.decoder import scanstring  # type: ignore[attr-defined]  # public since Python 2, untyped
from pathlib import Path
from typing import BinaryIO

import psycopg
from psycopg import sql

from s1mig import config, db, raw_archive
from s1mig.contract import EXTRACTS, EXTRACTS_BY_NAME, Extract
from s1mig.errors import DropMissing, DropOutOfSequence, DropRejected, NothingToUndo, S1migError

log = logging.getLogger(__name__)

BLOCK = 1 << 20  # 1 MiB blocks read, decompressed and sent to COPY
LANDING_LOCK = 0x51_4D_49_47  # advisory lock id: one landing at a time per warehouse
# Each raw row's lineage. What is the same for every row of a file (its sha256, when it
# landed) is kept once, in raw.drop_ledger (the manifest as delivered, landed_at), not on
# every row: it was a third of a raw row (73 of about 220 bytes; docs/performance.md item 20).
LINEAGE_COLUMNS = ("_drop_date", "_file_name", "_row_number")
PER_FILE_COLUMNS = ("_file_sha256", "_landed_at")  # on the rows of a warehouse made before item 20: dropped
MAX_MANIFEST_DEPTH = 16  # a manifest nests 3 levels deep
SHOWN = 40  # at most this many characters of an offending value appear in a message


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_line_bytes: int
    max_multiline_records: int
    max_manifest_bytes: int

    @classmethod
    def from_config(cls) -> Limits:
        return cls(
            config.land_max_file_bytes(),
            config.land_max_line_bytes(),
            config.land_max_multiline_records(),
            config.land_max_manifest_bytes(),
        )


@dataclass(frozen=True)
class ManifestEntry:
    extract: Extract
    path: Path
    rows: int
    sha256: str


@dataclass(frozen=True)
class LandResult:
    drop_date: dt.date
    status: str  # "landed", "replaced" or "unchanged"
    delivery_sha256: str
    rows: dict[str, int]
    first: bool = False  # this landing made drop_date the warehouse's first drop

    def line(self) -> str:
        total = sum(self.rows.values())
        first = " as the warehouse's first drop" if self.first else ""
        return f"drop {self.drop_date}: {self.status}{first} ({total} rows, delivery {self.delivery_sha256[:12]})"


@dataclass(frozen=True)
class UndoResult:
    drop_date: dt.date
    delivery_sha256: str
    landed_at: dt.datetime
    rows_removed: dict[str, int]
    built_by_dbt: bool  # staging had built this delivery: it keeps those rows until rebuilt

    def line(self) -> str:
        text = (
            f"drop {self.drop_date}: undone ({sum(self.rows_removed.values())} rows removed; delivery "
            f"{self.delivery_sha256[:12]} landed {self.landed_at.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}; "
            "raw.drop_ledger keeps it with an undo row)"
        )
        if self.built_by_dbt:
            text += "; dbt had built it: the next build removes its rows from staging and intermediate"
        return text


# ----------------------------------------------------------------------------- raw schema


def _raw_objects() -> list[tuple[str | None, sql.SQL | sql.Composed]]:
    """The raw layer as (relation created, idempotent DDL) pairs, one list so that the
    DDL and the relations checked for it cannot drift apart (None: not a relation)."""
    objects: list[tuple[str | None, sql.SQL | sql.Composed]] = [
        (None, sql.SQL("create schema if not exists raw")),
        ("raw.row_number_seq", sql.SQL("create sequence if not exists raw.row_number_seq")),
        (
            "raw.drop_ledger",
            sql.SQL(
                """create table if not exists raw.drop_ledger (
                drop_date date not null,
                delivery_sha256 text not null,
                manifest jsonb not null,
                rows_landed jsonb not null,
                landed_at timestamptz not null default now(),
                superseded_at timestamptz,
                primary key (drop_date, landed_at))"""
            ),
        ),
        # 'land': a delivery (current while superseded_at is null); 'undo': `s1mig land --undo`
        # took the delivery of drop_date back (never current; rows_landed = the rows removed)
        (None, sql.SQL("alter table raw.drop_ledger add column if not exists action text not null default 'land'")),
    ]
    for ex in EXTRACTS:
        cols: list[sql.SQL | sql.Composed] = [sql.SQL("{} text").format(sql.Identifier(c)) for c in ex.columns]
        cols += [
            sql.SQL("_drop_date date not null default current_setting('s1mig.drop_date')::date"),
            sql.SQL("_file_name text not null default current_setting('s1mig.file_name')"),
            sql.SQL("_row_number bigint not null default nextval('raw.row_number_seq')"),
        ]
        table = sql.Identifier("raw", ex.name)
        index = f"{ex.name}__drop_date"
        objects.append(
            (f"raw.{ex.name}", sql.SQL("create table if not exists {} ({})").format(table, sql.SQL(", ").join(cols)))
        )
        objects.append(
            (
                f"raw.{index}",
                sql.SQL("create index if not exists {} on {} (_drop_date)").format(sql.Identifier(index), table),
            )
        )
        drops = [sql.SQL("drop column if exists {}").format(sql.Identifier(c)) for c in PER_FILE_COLUMNS]
        objects.append((None, sql.SQL("alter table {} {}").format(table, sql.SQL(", ").join(drops))))
    # older drops' raw rows, archived compressed (s1mig/raw_archive.py)
    for name, statement in zip((*raw_archive.RELATIONS, None), raw_archive.DDL, strict=True):
        objects.append((name, sql.SQL(statement)))
    return objects


def raw_ddl() -> list[sql.SQL | sql.Composed]:
    """Idempotent DDL for the raw layer: every contract column as text plus lineage."""
    return [stmt for _, stmt in _raw_objects()]


def raw_relations() -> list[str]:
    """Every relation raw_ddl() creates."""
    return [name for name, _ in _raw_objects() if name is not None]


def ensure_raw_schema(conn: psycopg.Connection) -> None:
    """Create the raw layer if any of it is missing. When all of it exists nothing runs:
    `create index if not exists` still locks its table, and waits for autovacuum."""
    with conn.transaction():
        missing = conn.execute(
            "select count(*) from unnest(%s::text[]) as name where to_regclass(name) is null",
            (raw_relations(),),
        ).fetchone()
        outdated = conn.execute(  # a warehouse made by an earlier version: the ledger's action, per-row lineage
            "select not exists (select 1 from pg_attribute where attrelid = to_regclass('raw.drop_ledger') "
            "and attname = 'action' and not attisdropped) or exists (select 1 from pg_attribute a "
            "join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'raw' and a.attname = any(%s) and not a.attisdropped)",
            (list(PER_FILE_COLUMNS),),
        ).fetchone()
    if missing and missing[0] == 0 and outdated and not outdated[0]:
        return
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (LANDING_LOCK,))
        for stmt in raw_ddl():
            conn.execute(stmt)


# ----------------------------------------------------------------------------- messages


def _shown(value: object) -> str:
    """An offending value as a message may show it: escaped (a byte-order mark reads
    \\ufeff, a control character \\x1b) and cut to SHOWN characters."""
    text = ascii(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


def _name(name: str) -> str:
    """A file name found in the drop folder, as a message may show it."""
    return name if name.isascii() and name.isprintable() and len(name) <= 80 else _shown(name)


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n:,} bytes"


_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


# ----------------------------------------------------------------------------- the drop folder


class _DropFolder:
    """The drop folder, opened once without following a symbolic link; every file is
    looked up and opened relative to it (O_NOFOLLOW, O_NONBLOCK: a FIFO never blocks) and
    must be a regular file."""

    def __init__(self, drop_dir: Path, drop_date: str):
        self.path = drop_dir
        self.drop_date = drop_date
        try:
            st = os.lstat(drop_dir)
        except FileNotFoundError:
            raise DropMissing(drop_date, str(drop_dir)) from None
        label = f"{drop_dir.name}/"
        if not stat.S_ISDIR(st.st_mode):
            raise DropRejected(drop_date, label, None, f"the drop folder is {_kind(st.st_mode)}; deliver a real folder")
        try:
            self.fd = os.open(drop_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise DropRejected(drop_date, label, None, f"the drop folder cannot be opened ({exc.strerror})") from None

    def close(self) -> None:
        os.close(self.fd)

    def names(self) -> list[str]:
        return os.listdir(self.fd)

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def open(self, name: str) -> BinaryIO:
        """The file `name` of the folder, read-only; a DropRejected unless it is a regular file."""
        st = self.lstat(name)
        if st is None:
            raise DropRejected(self.drop_date, name, None, "listed in manifest.json but missing")
        if not stat.S_ISREG(st.st_mode):
            raise self._not_regular(name, st.st_mode)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as exc:  # replaced by a link since lstat (ELOOP), unreadable, ...
            raise DropRejected(self.drop_date, name, None, f"cannot be opened ({exc.strerror})") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise self._not_regular(name, mode)
        return open(fd, "rb", buffering=0)  # noqa: SIM115 - closed by _land

    def _not_regular(self, name: str, mode: int) -> DropRejected:
        return DropRejected(
            self.drop_date, name, None, f"is {_kind(mode)}, not a regular file (a drop holds regular files only)"
        )


# ----------------------------------------------------------------------------- manifest


class _HugeNumber:
    """A JSON integer too long to be a row count (kept as its digit count only)."""

    def __init__(self, digits: int):
        self.digits = digits


def _parse_int(text: str) -> int | _HugeNumber:
    return int(text) if len(text) <= 18 else _HugeNumber(len(text.lstrip("-")))


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_JSON_NESTING = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> int | None:
    """The offset where `text` nests more than MAX_MANIFEST_DEPTH arrays or objects, or
    None (checked before json.loads, which would recurse)."""
    blanked = _JSON_STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', text)
    depth = 0
    for m in _JSON_NESTING.finditer(blanked):
        depth += 1 if m.group() in "[{" else -1
        if depth > MAX_MANIFEST_DEPTH:
            return m.start()
    return None


_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, idx: int) -> int:
    """The index of the first character at or after idx that is not JSON whitespace."""
    match = _WS.match(text, idx)
    assert match is not None  # the pattern matches the empty string
    return match.end()


_DECODER = json.JSONDecoder(parse_int=_parse_int)


class _Positions:
    """Where each value of a (valid) manifest starts, by path ('extracts', 2, 'rows'), so
    a problem with a value names its physical line."""

    def __init__(self, text: str):
        self.text = text
        self.starts: dict[tuple, int] = {}
        self.walked = False

    def line(self, path: tuple) -> int | None:
        if not self.walked:
            self.walked = True
            try:
                self._walk(0, (), 3)
            except (ValueError, IndexError):
                pass
        while path not in self.starts and path:
            path = path[:-1]
        start = self.starts.get(path)
        return None if start is None else self.text.count("\n", 0, start) + 1

    def _walk(self, idx: int, path: tuple, depth: int) -> int:
        text = self.text
        idx = _skip_ws(text, idx)
        self.starts[path] = idx
        opener = text[idx]
        if depth == 0 or opener not in "[{":
            return _DECODER.raw_decode(text, idx)[1]
        closer = "]" if opener == "[" else "}"
        idx = _skip_ws(text, idx + 1)
        if text[idx] == closer:
            return idx + 1
        n = 0
        while True:
            if opener == "{":
                key, idx = scanstring(text, _skip_ws(text, idx) + 1)
                idx = _skip_ws(text, idx) + 1  # the colon
                idx = self._walk(idx, (*path, key), depth - 1)
            else:
                idx = self._walk(idx, (*path, n), depth - 1)
                n += 1
            idx = _skip_ws(text, idx)
            if text[idx] == closer:
                return idx + 1
            idx += 1  # the comma


def _read_manifest(folder: _DropFolder, limits: Limits) -> tuple[list[ManifestEntry], dict]:
    ds = folder.drop_date
    st = folder.lstat("manifest.json")
    if st is None:
        raise DropMissing(ds, str(folder.path / "manifest.json"))

    def reject(line: int | None, problem: str) -> DropRejected:
        return DropRejected(ds, "manifest.json", line, problem)

    with folder.open("manifest.json") as fh:
        data = fh.read(limits.max_manifest_bytes + 1)
    if len(data) > limits.max_manifest_bytes:
        raise reject(
            None,
            f"is larger than {_size(limits.max_manifest_bytes)} (the limit, S1MIG_LAND_MAX_MANIFEST_BYTES; "
            "a manifest of eight extracts is under 2 KiB)",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise reject(data.count(b"\n", 0, exc.start) + 1, f"is not valid UTF-8 ({exc.reason})") from None
    deep = _too_deep(text)
    if deep is not None:
        raise reject(
            text.count("\n", 0, deep) + 1,
            f"not valid JSON for a manifest: nested more than {MAX_MANIFEST_DEPTH} levels deep",
        )
    try:
        manifest = json.loads(text, parse_int=_parse_int, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise reject(exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except _DuplicateKey as exc:
        found = [m.start() for m in re.finditer(re.escape(json.dumps(exc.key)) + r"\s*:", text)]
        line = text.count("\n", 0, found[1]) + 1 if len(found) > 1 else None
        raise reject(line, f"not valid for a manifest: key {_shown(exc.key)} given twice in one object") from None
    except RecursionError:
        raise reject(None, "not valid JSON for a manifest: nested too deeply") from None
    where = _Positions(text)

    def bad(path: tuple, problem: str) -> DropRejected:
        return reject(where.line(path), problem)

    if not isinstance(manifest, dict) or not isinstance(manifest.get("extracts"), list):
        raise bad(("extracts",), 'expected an object with "drop_date" and an "extracts" list')
    if manifest.get("drop_date") != ds:
        raise bad(("drop_date",), f"drop_date is {_shown(manifest.get('drop_date'))}, the folder says {ds}")
    entries: dict[str, ManifestEntry] = {}
    for i, item in enumerate(manifest["extracts"]):
        at = ("extracts", i)
        if not isinstance(item, dict) or set(item) != {"name", "file", "rows", "sha256"}:
            raise bad(at, f"extracts[{i}] must have exactly name, file, rows, sha256")
        name, file, rows, sha = item["name"], item["file"], item["rows"], item["sha256"]
        if not isinstance(name, str) or name not in EXTRACTS_BY_NAME:
            raise bad((*at, "name"), f"extracts[{i}]: unknown extract {_shown(name)}")
        if name in entries:
            raise bad((*at, "name"), f"extract {name!r} listed twice")
        if not isinstance(file, str) or file not in (f"{name}.csv", f"{name}.csv.gz"):
            raise bad((*at, "file"), f"extract {name!r} file must be {name}.csv or {name}.csv.gz, got {_shown(file)}")
        if isinstance(rows, _HugeNumber) or (isinstance(rows, int) and rows > limits.max_file_bytes):
            digits = rows.digits if isinstance(rows, _HugeNumber) else len(str(rows))
            raise bad(
                (*at, "rows"),
                f"{name}: rows is a number of {digits} digits, more rows than a file within "
                f"{_size(limits.max_file_bytes)} (S1MIG_LAND_MAX_FILE_BYTES) can hold",
            )
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise bad((*at, "rows"), f"{name}: rows must be a whole number")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise bad((*at, "sha256"), f"{name}: sha256 must be 64 lowercase hex digits")
        entries[name] = ManifestEntry(EXTRACTS_BY_NAME[name], folder.path / file, rows, sha)
    missing = [e.name for e in EXTRACTS if e.name not in entries]
    if missing:
        raise bad(("extracts",), f"extracts missing from manifest: {', '.join(missing)}")
    for entry in entries.values():
        if folder.lstat(entry.path.name) is None:
            raise DropRejected(ds, entry.path.name, None, "listed in manifest.json but missing")
    expected = {"manifest.json"} | {e.path.name for e in entries.values()}
    extra = sorted(n for n in folder.names() if n not in expected)
    if extra:
        raise DropRejected(
            ds,
            _name(extra[0]),
            None,
            "file not in the contract (a drop holds manifest.json and the eight extracts only)",
        )
    return [entries[e.name] for e in EXTRACTS], manifest


def read_manifest(drop_dir: Path, drop_date: str) -> list[ManifestEntry]:
    """The manifest's entries, checked against the contract and the folder (DropRejected, or
    DropMissing when the folder or manifest.json has not arrived)."""
    folder = _DropFolder(drop_dir, drop_date)
    try:
        return _read_manifest(folder, Limits.from_config())[0]
    finally:
        folder.close()


def delivery_fingerprint(entries: list[ManifestEntry]) -> str:
    text = "\n".join(f"{e.extract.name}:{e.path.name}:{e.rows}:{e.sha256}" for e in entries)
    return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------- reading


class _Reader:
    """The decompressed bytes of one opened extract in blocks of at most BLOCK bytes,
    hashing the bytes as delivered and stopping at the file size limit (as delivered and
    decompressed): a gzip bomb never expands past one block in memory."""

    def __init__(self, fh: BinaryIO, name: str, drop_date: str, limits: Limits):
        self.fh = fh
        self.name = name
        self.drop_date = drop_date
        self.cap = limits.max_file_bytes
        self.sha = hashlib.sha256()
        self.raw_size = 0
        self.size = 0

    def reject(self, line: int | None, problem: str) -> DropRejected:
        return DropRejected(self.drop_date, self.name, line, problem)

    def blocks(self, line: Callable[[], int | None] = lambda: None) -> Iterator[bytes]:
        """`line` says which physical line a limit was reached on."""
        self.fh.seek(0)
        if not self.name.endswith(".gz"):
            while raw := self.fh.read(BLOCK):
                self._raw(raw, line)
                self._out(len(raw), line)
                yield raw
            return
        decomp = None
        while raw := self.fh.read(BLOCK):
            self._raw(raw, line)
            data = raw
            while True:
                if decomp is None:
                    if not data:
                        break
                    decomp = zlib.decompressobj(wbits=31)
                try:
                    out = decomp.decompress(data, BLOCK)
                except zlib.error as exc:
                    raise self.reject(None, f"not a valid gzip file: {exc}") from None
                if out:
                    self._out(len(out), line)
                    yield out
                if decomp.eof:  # end of one gzip member; a multi-member file goes on
                    data, decomp = decomp.unused_data, None
                    continue
                data = decomp.unconsumed_tail
                if not data and len(out) < BLOCK:
                    break
        if decomp is not None or self.raw_size == 0:
            raise self.reject(None, "gzip file is truncated (unexpected end of data)")

    def _raw(self, raw: bytes, line: Callable[[], int | None]) -> None:
        self.sha.update(raw)
        self.raw_size += len(raw)
        if self.raw_size > self.cap:
            raise self.reject(
                line(), f"is larger than {_size(self.cap)} (the limit per file, S1MIG_LAND_MAX_FILE_BYTES)"
            )

    def _out(self, n: int, line: Callable[[], int | None]) -> None:
        self.size += n
        if self.size > self.cap:
            raise self.reject(
                line(),
                f"decompresses to more than {_size(self.cap)} (the limit per file, S1MIG_LAND_MAX_FILE_BYTES)",
            )


# ----------------------------------------------------------------------------- pass 1: verify


@dataclass
class _Verified:
    """What pass 1 learned about a file: its decompressed size, where its data starts, and
    where a record starts after each record that spans several lines (offset, line)."""

    size: int
    header_end: int
    rows: int
    breaks: list[tuple[int, int]] = field(default_factory=list)


def _field_index(start: bytes) -> int:
    """0-based field of the byte after `start`, the part of a line (that begins a record)
    before it: commas outside quotes."""
    parts = start.split(b'"')
    return sum(parts[i].count(b",") for i in range(0, len(parts), 2))


class _Scan:
    """Pass 1 over one extract's decompressed bytes, block by block. The records are
    split as PostgreSQL's CSV COPY splits them (a line feed outside quotes ends a record;
    a quote toggles quoting), so what it accepts COPY loads, and every fault it finds is
    named by its physical line. Memory: one block and at most one record."""

    def __init__(self, entry: ManifestEntry, drop_date: str, limits: Limits):
        self.drop_date = drop_date
        self.name = entry.path.name
        self.extract = entry.extract
        self.columns = entry.extract.columns
        self.ncols = len(self.columns)
        self.expected_rows = entry.rows
        self.max_line = limits.max_line_bytes
        self.max_multiline = limits.max_multiline_records
        self.line = 0  # physical lines complete
        self.rows = 0  # data records complete
        self.offset = 0  # decompressed offset of `pending`
        self.pending = b""  # the line being read (no line feed yet)
        self.header_end: int | None = None
        self.crlf = False  # line ends: CRLF (from the header) or LF
        self.in_quote = False
        self.rec_line = 0  # the record being read: its first line, bytes so far, fields so far
        self.rec_bytes = 0
        self.rec_fields = 0
        self.multiline = 0
        self.breaks: list[tuple[int, int]] = []

    def reject(self, line: int | None, problem: str) -> DropRejected:
        return DropRejected(self.drop_date, self.name, line, problem)

    def reading_line(self) -> int:
        return self.line + 1

    def feed(self, block: bytes) -> None:
        data = self.pending + block if self.pending else block
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            self.pending = data
        else:
            self.pending = data[cut:]
            self._chunk(data if cut == len(data) else data[:cut], self.offset, terminated=True)
            self.offset += cut
        held = len(self.pending) + (self.rec_bytes if self.in_quote else 0)
        if held > self.max_line:
            raise self._too_long(self.pending)

    def finish(self) -> _Verified:
        if self.pending:
            self._chunk(self.pending, self.offset, terminated=False)
            self.offset += len(self.pending)
            self.pending = b""
        if self.header_end is None:
            raise self.reject(1, "file is empty: the header row is missing")
        if self.in_quote:
            raise self.reject(self.rec_line, "a quoted field opened on this line is never closed (unterminated quote)")
        return _Verified(self.offset, self.header_end, self.rows, self.breaks)

    def _too_long(self, pending: bytes) -> DropRejected:
        limit = f"{_size(self.max_line)} (the limit, S1MIG_LAND_MAX_LINE_BYTES; no record of the contract is that long)"
        if self.header_end is None and b"\r" in pending:
            return self.reject(1, "line ends are carriage returns only (CR); the contract needs LF or CRLF")
        if self.in_quote:
            return self.reject(self.rec_line, f"the record starting on this line is longer than {limit}")
        return self.reject(self.line + 1, f"longer than {limit} without a line end")

    # -- one chunk of whole lines (the last without its line feed when not `terminated`)

    def _chunk(self, chunk: bytes, base: int, terminated: bool) -> None:
        if self.header_end is None:
            nl = chunk.find(b"\n")
            head = chunk if nl < 0 else chunk[:nl]
            self._header(head, terminated=nl >= 0)
            skip = len(chunk) if nl < 0 else nl + 1
            self.line = 1
            self.header_end = base + skip
            chunk, base = chunk[skip:], base + skip
            if not chunk:
                return
        fault = self._byte_fault(chunk)
        if fault is None:
            self._lines(chunk, base, terminated)
            return
        pos, problem = fault
        start = chunk.rfind(b"\n", 0, pos) + 1
        if start:
            self._lines(chunk[:start], base, True)  # an earlier fault in those lines comes first
        line = self.line + 1
        if not self.in_quote:  # the line begins a record: name the field
            k = _field_index(chunk[start:pos])
            column = f" ({self.columns[k]})" if k < self.ncols else ""
            problem = f"field {k + 1}{column} {problem}"
        raise self.reject(line, problem)

    def _byte_fault(self, chunk: bytes) -> tuple[int, str] | None:
        """The first byte that cannot be stored (NUL, not UTF-8) or must not be (a
        byte-order mark inside a field): (offset in chunk, problem)."""
        faults = []
        nul = chunk.find(b"\x00")
        if nul >= 0:
            faults.append((nul, "holds a NUL byte (\\x00), which PostgreSQL cannot store"))
        if not chunk.isascii():
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                pos = exc.start
                if chunk[pos] == 0xED and pos + 1 < len(chunk) and 0xA0 <= chunk[pos + 1] <= 0xBF:
                    what = "an encoded UTF-16 surrogate (a lone surrogate, U+D800 to U+DFFF)"
                else:
                    what = f"byte 0x{chunk[pos]:02x} ({exc.reason})"
                faults.append((pos, f"is not valid UTF-8: {what}"))
            else:
                bom = text.find("\ufeff")
                if bom >= 0:
                    faults.append(
                        (
                            len(text[:bom].encode("utf-8")),
                            "holds a byte-order mark (\\ufeff, invisible in most editors); "
                            "deliver UTF-8 without byte-order marks",
                        )
                    )
        return min(faults) if faults else None

    def _header(self, head: bytes, terminated: bool) -> None:
        if head.startswith(b"\xef\xbb\xbf"):
            raise self.reject(1, "header starts with a byte-order mark; deliver UTF-8 without BOM")
        if terminated and head.endswith(b"\r"):
            self.crlf = True
            head = head[:-1]
        if b"\r" in head:
            if not terminated:
                raise self.reject(1, "line ends are carriage returns only (CR); the contract needs LF or CRLF")
            raise self.reject(1, "the header holds a carriage return (CR) before its end")
        fault = self._byte_fault(head)
        if fault is not None:
            raise self.reject(1, f"header {fault[1]}")
        try:
            header = next(csv.reader([head.decode("utf-8")]), [])
        except csv.Error as exc:
            raise self.reject(1, f"header is not valid CSV ({exc})") from None
        expected = list(self.columns)
        if header == expected:
            return
        contract = ",".join(expected)
        if len(header) != len(expected):
            problem = f"header has {len(header)} columns; the contract says {len(expected)}: {contract}"
        else:
            i = next(i for i, (got, want) in enumerate(zip(header, expected, strict=True)) if got != want)
            problem = f"header column {i + 1} is {_shown(header[i])}; the contract says {expected[i]!r} ({contract})"
        raise self.reject(1, problem)

    def _lines(self, chunk: bytes, base: int, terminated: bool) -> None:
        """Count the records of whole lines. Fast path: no quote in sight, every line one
        record; anything unusual goes to the exact, line-by-line path."""
        if self.in_quote or b'"' in chunk:
            self._each_line(chunk, base, terminated)
            return
        lines = chunk.split(b"\n")
        if terminated:
            lines.pop()
        n = len(lines)
        if self.crlf:
            ends = n if terminated else n - 1
            sound = chunk.count(b"\r") == ends and chunk.count(b"\r\n") == ends
        else:
            sound = b"\r" not in chunk
        if (
            not sound
            or max(map(len, lines)) >= self.max_line
            or list(map(bytes.count, lines, repeat(b","))).count(self.ncols - 1) != n
            or self.rows + n > self.expected_rows
        ):
            self._each_line(chunk, base, terminated)
            return
        self.line += n
        self.rows += n

    def _each_line(self, chunk: bytes, base: int, terminated: bool) -> None:
        lines = chunk.split(b"\n")
        if terminated:
            lines.pop()
        last = len(lines) - 1
        pos = base
        for k, line in enumerate(lines):
            ended = terminated or k < last  # the line has its line feed
            self.line += 1
            if not self.in_quote:
                self.rec_line, self.rec_bytes, self.rec_fields = self.line, 0, 1
            self.rec_bytes += len(line) + ended
            if self.rec_bytes > self.max_line:
                limit = f"{_size(self.max_line)} (the limit, S1MIG_LAND_MAX_LINE_BYTES)"
                if self.rec_line != self.line:
                    raise self.reject(self.rec_line, f"the record starting on this line is longer than {limit}")
                raise self.reject(self.line, f"longer than {limit}")
            quoted = self.in_quote
            commas = crs = 0
            for i, part in enumerate(line.split(b'"')):
                if i:
                    quoted = not quoted
                if not quoted:
                    commas += part.count(b",")
                    crs += part.count(b"\r")
            self.rec_fields += commas
            self.in_quote = quoted
            eol_cr = self.crlf and ended and not quoted and line.endswith(b"\r")
            if crs - eol_cr:
                if not self.crlf and not quoted and line.endswith(b"\r") and crs == 1:
                    problem = "ends with CRLF, but the header ends with LF only: mixed line ends"
                else:
                    problem = "holds a carriage return (CR) outside quotes; a line ends with LF or CRLF only"
                raise self.reject(self.line, problem)
            if self.crlf and ended and not quoted and not eol_cr:
                raise self.reject(self.line, "ends with LF only, but the header ends with CRLF: mixed line ends")
            if not quoted:  # the record ends on this line
                self._record_done(pos + len(line) + ended, more=ended)
            pos += len(line) + ended

    def _record_done(self, next_offset: int, more: bool) -> None:
        if self.rec_fields != self.ncols:
            if self.rec_bytes <= 2 and self.rec_fields == 1:  # nothing but its line end
                problem = f"is empty (a blank line); every record of {self.extract.name} has {self.ncols} fields"
            else:
                problem = (
                    f"has {self.rec_fields} fields; {self.extract.name} has {self.ncols} ({','.join(self.columns)})"
                )
            raise self.reject(self.rec_line, problem)
        self.rows += 1
        if self.rows > self.expected_rows:
            raise self.reject(
                self.rec_line,
                f"is data row {self.rows}, but manifest.json says {self.name} has {self.expected_rows} rows",
            )
        if self.rec_line != self.line:
            self.multiline += 1
            if self.multiline > self.max_multiline:
                raise self.reject(
                    self.rec_line,
                    f"more than {self.max_multiline:,} records span several lines (quoted line breaks; "
                    "the limit, S1MIG_LAND_MAX_MULTILINE_RECORDS)",
                )
            if more:
                self.breaks.append((next_offset, self.line + 1))


def _verify(fh: BinaryIO, entry: ManifestEntry, drop_date: str, limits: Limits, progress: _Progress) -> _Verified:
    scan = _Scan(entry, drop_date, limits)
    reader = _Reader(fh, entry.path.name, drop_date, limits)
    progress.at(entry.path.name, scan.reading_line)
    for block in reader.blocks(scan.reading_line):
        scan.feed(block)
    verified = scan.finish()
    if reader.sha.hexdigest() != entry.sha256:
        raise scan.reject(None, f"sha256 is {reader.sha.hexdigest()}, manifest.json says {entry.sha256}")
    if verified.rows != entry.rows:
        raise scan.reject(None, f"has {verified.rows} data rows, manifest.json says {entry.rows}")
    return verified


# ----------------------------------------------------------------------------- pass 2: load


class _Cutter:
    """A block stream cut at given decompressed offsets, so COPY can stop at a record."""

    def __init__(self, blocks: Iterator[bytes]):
        self.blocks = blocks
        self.carry = b""
        self.pos = 0

    def until(self, end: int | None) -> Iterator[bytes]:
        while end is None or self.pos < end:
            if not self.carry:
                nxt = next(self.blocks, None)
                if nxt is None:
                    return
                self.carry = nxt
            if end is not None and self.pos + len(self.carry) > end:
                k = end - self.pos
                piece, self.carry = self.carry[:k], self.carry[k:]
            else:
                piece, self.carry = self.carry, b""
            self.pos += len(piece)
            yield piece


_LINE_RE = re.compile(r"line (\d+)")


def _copy_file(
    conn: psycopg.Connection, fh: BinaryIO, entry: ManifestEntry, verified: _Verified, drop_date: str, limits: Limits
) -> int:
    """COPY a verified file into its raw table. `_row_number` is the record's first line
    minus one (the header is line 1), so `_row_number + 1` is its physical line even after
    a record that spans several lines: each such record ends a COPY and the row number
    sequence is set for the next."""
    ex = entry.extract
    reader = _Reader(fh, entry.path.name, drop_date, limits)
    conn.execute("select set_config('s1mig.file_name', %s, true)", (entry.path.name,))
    copy_sql = sql.SQL("copy {} ({}) from stdin with (format csv, encoding 'UTF8')").format(
        sql.Identifier("raw", ex.name), sql.SQL(", ").join(map(sql.Identifier, ex.columns))
    )
    cutter = _Cutter(reader.blocks())
    for _ in cutter.until(verified.header_end):
        pass
    segments = [(verified.header_end, 2), *verified.breaks]
    rows = 0
    for (start, first_line), (end, _) in zip(segments, [*segments[1:], (None, 0)], strict=True):
        if start >= verified.size:
            break
        conn.execute("select setval('raw.row_number_seq', %s, false)", (first_line - 1,))
        try:
            with conn.cursor() as cur:
                with cur.copy(copy_sql) as copy:
                    for piece in cutter.until(end):
                        copy.write(piece)
                rows += cur.rowcount
        except psycopg.errors.DataError as exc:  # pass 1 should have found it; name it all the same
            m = _LINE_RE.search(exc.diag.context or "")
            line = first_line + int(m.group(1)) - 1 if m else None
            problem = (exc.diag.message_primary or type(exc).__name__).strip()
            raise reader.reject(line, f"{problem} (found by COPY)") from None
    for _ in cutter.until(None):  # hash to the end
        pass
    if reader.sha.hexdigest() != entry.sha256 or reader.size != verified.size or rows != entry.rows:
        raise reader.reject(
            None,
            "changed while it was being landed (it no longer matches what was verified: sha256 "
            f"{reader.sha.hexdigest()[:12]}, {reader.size:,} bytes, {rows} rows); deliver it again and land again",
        )
    return rows


# ----------------------------------------------------------------------------- landing


def _landed_dates(conn: psycopg.Connection) -> list[dt.date]:
    return [
        r[0]
        for r in conn.execute(
            "select distinct drop_date from raw.drop_ledger where superseded_at is null order by drop_date"
        )
    ]


def _check_sequence(conn: psycopg.Connection, drop_date: dt.date, first_drop: dt.date | str | None) -> bool:
    """Whether drop_date may land now (DropOutOfSequence, saying how to proceed, if not);
    True when it becomes the warehouse's first drop. `first_drop` is the first drop chosen
    (--first, S1MIG_FIRST_DROP), config.FIRST_DROP_ANY for whichever lands first, None when
    none was: an empty warehouse then takes no drop (the first drop carries all history
    before it and no earlier date can follow it, so it is chosen, not an accident)."""
    landed = _landed_dates(conn)
    ds = drop_date.isoformat()
    chosen = "chosen with --first or S1MIG_FIRST_DROP"
    if first_drop == config.FIRST_DROP_ANY:
        first_drop = landed[0] if landed else drop_date
    assert not isinstance(first_drop, str)  # FIRST_DROP_ANY is the only text it can be
    if not landed:
        if first_drop is None:
            raise DropOutOfSequence(
                ds,
                f"the warehouse is empty: choose its first drop, which carries all history before it and "
                f"after which no earlier date can be landed: land {ds} with --first (s1mig land, run or "
                f"backfill) or set S1MIG_FIRST_DROP={ds}",
            )
        if drop_date == first_drop:
            return True
        if drop_date < first_drop:
            raise DropOutOfSequence(
                ds,
                f"{ds} is before the first drop {chosen}, {first_drop}, which carries all history before it; "
                f"to start the warehouse at {ds} instead, set S1MIG_FIRST_DROP={ds} (or land it with --first)",
            )
        raise DropOutOfSequence(
            ds, f"the warehouse is empty and its first drop ({chosen}) is {first_drop}: land {first_drop} first"
        )
    first, last = landed[0], landed[-1]
    undo = f"undo the landed drops, latest first (s1mig land --undo {last}" + (
        f", ..., s1mig land --undo {first})" if first != last else ")"
    )
    if first_drop is not None and first_drop != first:
        if first_drop < first:
            raise DropOutOfSequence(
                ds,
                f"the warehouse starts at {first}, but the first drop {chosen} is {first_drop}: to start it at "
                f"{first_drop}, {undo}, then land from {first_drop}",
            )
        raise DropOutOfSequence(
            ds,
            f"the warehouse starts at {first}, not at the first drop {chosen}, {first_drop}: "
            f"set S1MIG_FIRST_DROP={first} (and drop --first), or {undo}",
        )
    if drop_date in landed or (drop_date - dt.timedelta(days=1)) in landed:
        return False
    if drop_date < first:
        raise DropOutOfSequence(
            ds,
            f"{ds} is before the warehouse's first drop, {first}, which carries all history before it, so no "
            f"earlier drop can be added; to start the warehouse at {ds}: {undo}, then "
            f"s1mig land --date {ds} --first (or set S1MIG_FIRST_DROP={ds})",
        )
    raise DropOutOfSequence(
        ds,
        f"drop {drop_date - dt.timedelta(days=1)} has not been landed (last landed: {last}); "
        "land the missing days first (s1mig backfill)",
    )


def quarantine(error: DropRejected, drop_dir: Path, details: str | None = None) -> Path:
    """Write the rejection's record: <stamp>.json (file, line, problem), <stamp>.txt (the
    one line) and, for an unexpected error, <stamp>.log (its traceback)."""
    qdir = config.home() / "quarantine" / error.drop_date
    qdir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    report = error.as_dict() | {"drop_dir": str(drop_dir), "rejected_at": stamp}
    if details is not None:
        (qdir / f"{stamp}.log").write_text(details)
        report["details"] = str(qdir / f"{stamp}.log")
    (qdir / f"{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    (qdir / f"{stamp}.txt").write_text(str(error) + "\n")
    return qdir / f"{stamp}.json"


class _Progress:
    """Which file (and line) a landing is at, to name them if something unexpected fails."""

    def __init__(self) -> None:
        self.file = ""
        self.line: Callable[[], int | None] = lambda: None

    def at(self, file: str, line: Callable[[], int | None] = lambda: None) -> None:
        self.file, self.line = file, line


def land(
    drop_dir: Path, drop_date: dt.date, url: str | None = None, *, first_drop: dt.date | str | None = None
) -> LandResult:
    """Verify and load one drop. Idempotent; a different delivery replaces the date.

    `first_drop` is the date chosen as the warehouse's first drop (`s1mig land --first`
    passes drop_date); None reads S1MIG_FIRST_DROP (config.first_drop()), and when that is
    not set either, an empty warehouse refuses the drop (DropOutOfSequence saying how to
    choose); config.FIRST_DROP_ANY takes whichever date lands first.

    Raises DropMissing when the folder or manifest.json has not arrived; DropRejected (or
    DropOutOfSequence) with a quarantine record for every failure of the drop, an
    unexpected one included (its traceback goes to the record's .log file only)."""
    ds = drop_date.isoformat()
    progress = _Progress()
    try:
        if first_drop is None:
            first_drop = config.first_drop()
        return _land(drop_dir, drop_date, url, first_drop, Limits.from_config(), progress)
    except DropRejected as err:
        _record(err, drop_dir)
        raise
    except (DropMissing, S1migError, psycopg.OperationalError):
        raise  # not delivered yet, a setting, the database: not a fault of the drop
    except Exception as exc:  # noqa: BLE001 - every failure of a drop ends in a quarantine record
        line = None
        try:
            line = progress.line()
        except Exception:  # noqa: BLE001
            pass
        rejected = DropRejected(
            ds,
            progress.file or f"{drop_dir.name}/",
            line,
            f"unexpected error ({type(exc).__name__}) while landing; nothing was landed (details: quarantine record)",
        )
        _record(rejected, drop_dir, traceback.format_exc())
        raise rejected from None


def _record(err: DropRejected, drop_dir: Path, details: str | None = None) -> None:
    try:
        path = quarantine(err, drop_dir, details)
    except OSError as exc:
        log.error("%s (the quarantine record could not be written: %s)", err, exc)
        return
    log.error("%s (report: %s)", err, path)
    if details:
        log.debug("%s", details)


def _land(
    drop_dir: Path,
    drop_date: dt.date,
    url: str | None,
    first_drop: dt.date | str | None,
    limits: Limits,
    progress: _Progress,
) -> LandResult:
    ds = drop_date.isoformat()
    folder = _DropFolder(drop_dir, ds)
    files: list[BinaryIO] = []
    try:
        progress.at("manifest.json")
        entries, manifest = _read_manifest(folder, limits)
        for entry in entries:
            progress.at(entry.path.name)
            files.append(folder.open(entry.path.name))
        fingerprint = delivery_fingerprint(entries)
        with db.connect(url) as conn:
            ensure_raw_schema(conn)
            with conn.transaction():  # cheap checks first: nothing to read when nothing can land
                _check_sequence(conn, drop_date, first_drop)
                if _current(conn, drop_date) == fingerprint:
                    log.info("drop %s: identical delivery already landed, nothing to do", ds)
                    return LandResult(drop_date, "unchanged", fingerprint, {})
            verified = []
            for entry, fh in zip(entries, files, strict=True):
                verified.append(_verify(fh, entry, ds, limits, progress))
                log.info("drop %s: %s verified (%d rows)", ds, entry.path.name, verified[-1].rows)
            log.info("drop %s: every file verified; loading", ds)
            touched: list[str] = []
            try:
                with conn.transaction():
                    conn.execute("select pg_advisory_xact_lock(%s)", (LANDING_LOCK,))
                    first = _check_sequence(conn, drop_date, first_drop)
                    current = _current(conn, drop_date)
                    if current == fingerprint:
                        log.info("drop %s: identical delivery already landed, nothing to do", ds)
                        return LandResult(drop_date, "unchanged", fingerprint, {})
                    conn.execute("select set_config('s1mig.drop_date', %s, true)", (ds,))
                    rows: dict[str, int] = {}
                    for entry, fh, checked in zip(entries, files, verified, strict=True):
                        progress.at(entry.path.name)
                        table = sql.Identifier("raw", entry.extract.name)
                        conn.execute(sql.SQL("delete from {} where _drop_date = %s").format(table), (drop_date,))
                        touched.append(entry.extract.name)
                        rows[entry.extract.name] = _copy_file(conn, fh, entry, checked, ds, limits)
                        log.info("drop %s: %s %d rows", ds, entry.path.name, rows[entry.extract.name])
                    conn.execute(
                        "update raw.drop_ledger set superseded_at = now() "
                        "where drop_date = %s and superseded_at is null",
                        (drop_date,),
                    )
                    conn.execute(
                        "insert into raw.drop_ledger (drop_date, delivery_sha256, manifest, rows_landed) "
                        "values (%s, %s, %s, %s)",
                        (drop_date, fingerprint, json.dumps(manifest), json.dumps(rows)),
                    )
            except Exception:  # not on Ctrl-C / SIGTERM: stop at once, autovacuum cleans up
                if touched:
                    _vacuum_after_rollback(conn, touched)
                raise
        return LandResult(drop_date, "replaced" if current else "landed", fingerprint, rows, first=first)
    finally:
        for fh in files:
            fh.close()
        folder.close()


def _current(conn: psycopg.Connection, drop_date: dt.date) -> str | None:
    row = conn.execute(
        "select delivery_sha256 from raw.drop_ledger where drop_date = %s and superseded_at is null", (drop_date,)
    ).fetchone()
    return row[0] if row else None


def _vacuum_after_rollback(conn: psycopg.Connection, extracts: list[str]) -> None:
    """A load that failed after COPY began (a file changed after it was verified, the
    database failed) left dead rows: vacuum the raw tables it wrote to, so the space at
    their end goes back to the file system. Best effort."""
    try:
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return
        conn.autocommit = True
        for name in extracts:
            conn.execute(sql.SQL("vacuum {}").format(sql.Identifier("raw", name)))
    except psycopg.Error as exc:
        log.warning("vacuum after a failed load did not run: %s", str(exc).strip().splitlines()[0])


# ----------------------------------------------------------------------------- undo


def undo(drop_date: dt.date, url: str | None = None) -> UndoResult:
    """Take back the current landing of drop_date: its raw rows are deleted, its ledger
    entry is superseded and an 'undo' entry records it (nothing of the ledger is deleted).

    Refused (NothingToUndo) when drop_date is not landed, or when a later drop is landed:
    a drop depends on every earlier one (its records refer to theirs, and the first drop
    carries all history before it), so undo goes latest first."""
    with db.connect(url) as conn:
        ensure_raw_schema(conn)
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(%s)", (LANDING_LOCK,))
            current = conn.execute(
                "select delivery_sha256, manifest, landed_at from raw.drop_ledger "
                "where drop_date = %s and superseded_at is null",
                (drop_date,),
            ).fetchone()
            if current is None:
                raise NothingToUndo(f"drop {drop_date} is not landed: nothing to undo")
            later = [d for d in _landed_dates(conn) if d > drop_date]
            if later:
                span = str(later[0]) if len(later) == 1 else f"{later[0]} to {later[-1]}"
                raise NothingToUndo(
                    f"drop {drop_date} cannot be undone: the later drops landed after it ({span}) depend on it; "
                    f"undo them first, latest first (s1mig land --undo {later[-1]})"
                )
            sha, manifest, landed_at = current
            if db.scalar(
                conn,
                "select exists (select 1 from raw.archived_extracts where drop_date = %s and landed_at = %s)",
                (drop_date, landed_at),
            ):
                raise NothingToUndo(
                    f"drop {drop_date} cannot be undone: its raw rows are archived (S1MIG_RAW_KEEP_DROPS); "
                    "put them back first (s1mig land --restore-archived), then undo"
                )
            removed = {}
            for ex in EXTRACTS:
                cur = conn.execute(
                    sql.SQL("delete from {} where _drop_date = %s").format(sql.Identifier("raw", ex.name)), (drop_date,)
                )
                removed[ex.name] = cur.rowcount
            conn.execute(
                "update raw.drop_ledger set superseded_at = now() where drop_date = %s and superseded_at is null",
                (drop_date,),
            )
            conn.execute(
                "insert into raw.drop_ledger "
                "(drop_date, delivery_sha256, manifest, rows_landed, landed_at, superseded_at, action) "
                "values (%s, %s, %s, %s, clock_timestamp(), clock_timestamp(), 'undo')",
                (drop_date, sha, json.dumps(manifest), json.dumps(removed)),
            )
            built = db.scalar(conn, "select to_regclass('staging.delivery_log') is not null") and db.scalar(
                conn,
                "select exists (select 1 from staging.delivery_log where drop_date = %s and landed_at = %s)",
                (drop_date, landed_at),
            )
    log.info("drop %s: undone (%d rows removed)", drop_date, sum(removed.values()))
    return UndoResult(drop_date, sha, landed_at, removed, bool(built))
