"""Landing: verify a daily drop against the contract and load it into the raw layer.

One pass per file: the bytes are hashed while they stream into PostgreSQL COPY, so a
file is read once and memory stays flat whatever its size. Everything happens in one
transaction per drop; any failed check (manifest, header, row count, checksum, CSV
shape, UTF-8, truncated gzip) rolls the whole drop back, writes an error report to
$S1MIG_HOME/quarantine and raises DropRejected naming the file, line and problem.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from s1mig import config, db
from s1mig.contract import EXTRACTS, EXTRACTS_BY_NAME, Extract
from s1mig.errors import DropMissing, DropRejected

log = logging.getLogger(__name__)

BLOCK = 1 << 20  # 1 MiB blocks to COPY
LANDING_LOCK = 0x51_4D_49_47  # advisory lock id: one landing at a time per warehouse
LINEAGE_COLUMNS = ("_drop_date", "_file_name", "_file_sha256", "_row_number", "_landed_at")


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

    def line(self) -> str:
        total = sum(self.rows.values())
        return f"drop {self.drop_date}: {self.status} ({total} rows, delivery {self.delivery_sha256[:12]})"


def _raw_objects() -> list[tuple[str | None, sql.Composable]]:
    """The raw layer as (relation created, idempotent DDL) pairs, one list so that the
    DDL and the relations checked for it cannot drift apart (None: not a relation)."""
    objects: list[tuple[str | None, sql.Composable]] = [
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
    ]
    for ex in EXTRACTS:
        cols = [sql.SQL("{} text").format(sql.Identifier(c)) for c in ex.columns]
        cols += [
            sql.SQL("_drop_date date not null default current_setting('s1mig.drop_date')::date"),
            sql.SQL("_file_name text not null default current_setting('s1mig.file_name')"),
            sql.SQL("_file_sha256 text not null default current_setting('s1mig.file_sha256')"),
            sql.SQL("_row_number bigint not null default nextval('raw.row_number_seq')"),
            sql.SQL("_landed_at timestamptz not null default now()"),
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
    return objects


def raw_ddl() -> list[sql.Composable]:
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
            "select count(*) from unnest(%s::text[]) as name where to_regclass(name) is null", (raw_relations(),)
        ).fetchone()
    if missing and missing[0] == 0:
        return
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (LANDING_LOCK,))
        for stmt in raw_ddl():
            conn.execute(stmt)


# ----------------------------------------------------------------------------- manifest


def read_manifest(drop_dir: Path, drop_date: str) -> list[ManifestEntry]:
    manifest_path = drop_dir / "manifest.json"
    if not drop_dir.is_dir():
        raise DropMissing(drop_date, str(drop_dir))
    if not manifest_path.is_file():
        raise DropMissing(drop_date, str(manifest_path))
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise DropRejected(drop_date, "manifest.json", line, f"not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("extracts"), list):
        raise DropRejected(
            drop_date, "manifest.json", None, 'expected an object with "drop_date" and an "extracts" list'
        )
    if manifest.get("drop_date") != drop_date:
        raise DropRejected(
            drop_date, "manifest.json", None, f"drop_date is {manifest.get('drop_date')!r}, folder says {drop_date}"
        )
    entries: dict[str, ManifestEntry] = {}
    for i, item in enumerate(manifest["extracts"], start=1):
        if not isinstance(item, dict) or set(item) != {"name", "file", "rows", "sha256"}:
            raise DropRejected(
                drop_date, "manifest.json", None, f"extracts[{i}] must have exactly name, file, rows, sha256"
            )
        name, file, rows, sha = item["name"], item["file"], item["rows"], item["sha256"]
        if name not in EXTRACTS_BY_NAME:
            raise DropRejected(drop_date, "manifest.json", None, f"unknown extract {name!r}")
        if name in entries:
            raise DropRejected(drop_date, "manifest.json", None, f"extract {name!r} listed twice")
        if file not in (f"{name}.csv", f"{name}.csv.gz"):
            raise DropRejected(
                drop_date,
                "manifest.json",
                None,
                f"extract {name!r} file must be {name}.csv or {name}.csv.gz, got {file!r}",
            )
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise DropRejected(drop_date, "manifest.json", None, f"{name}: rows must be a whole number")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise DropRejected(drop_date, "manifest.json", None, f"{name}: sha256 must be 64 lowercase hex digits")
        path = drop_dir / file
        if not path.is_file():
            raise DropRejected(drop_date, file, None, "listed in manifest.json but missing")
        entries[name] = ManifestEntry(EXTRACTS_BY_NAME[name], path, rows, sha)
    missing = [e.name for e in EXTRACTS if e.name not in entries]
    if missing:
        raise DropRejected(drop_date, "manifest.json", None, f"extracts missing from manifest: {', '.join(missing)}")
    expected = {"manifest.json"} | {e.path.name for e in entries.values()}
    extra = sorted(p.name for p in drop_dir.iterdir() if p.name not in expected)
    if extra:
        raise DropRejected(
            drop_date,
            extra[0],
            None,
            "file not in the contract (a drop holds manifest.json and the eight extracts only)",
        )
    return [entries[e.name] for e in EXTRACTS]


def delivery_fingerprint(entries: list[ManifestEntry]) -> str:
    text = "\n".join(f"{e.extract.name}:{e.path.name}:{e.rows}:{e.sha256}" for e in entries)
    return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------- streaming


class _HashingReader:
    """Yields the decompressed bytes of a file in blocks, hashing the bytes as delivered."""

    def __init__(self, entry: ManifestEntry, drop_date: str):
        self.entry = entry
        self.drop_date = drop_date
        self.sha = hashlib.sha256()
        self.size = 0

    def blocks(self) -> Iterator[bytes]:
        with open(self.entry.path, "rb") as fh:
            raw_blocks = iter(lambda: fh.read(BLOCK), b"")
            if not self.entry.path.name.endswith(".gz"):
                for raw in raw_blocks:
                    self._count(raw)
                    yield raw
                return
            decomp = zlib.decompressobj(wbits=31)
            in_member = False
            for raw in raw_blocks:
                self._count(raw)
                data = raw
                while data:
                    in_member = True
                    try:
                        out = decomp.decompress(data)
                    except zlib.error as exc:
                        raise self.reject(None, f"not a valid gzip file: {exc}") from exc
                    if out:
                        yield out
                    data = b""
                    if decomp.eof:  # end of one gzip member; a multi-member file goes on
                        in_member = False
                        data = decomp.unused_data
                        decomp = zlib.decompressobj(wbits=31)
            if in_member or self.size == 0:
                raise self.reject(None, "gzip file is truncated (unexpected end of data)")

    def _count(self, raw: bytes) -> None:
        self.sha.update(raw)
        self.size += len(raw)

    def reject(self, line: int | None, problem: str) -> DropRejected:
        return DropRejected(self.drop_date, self.entry.path.name, line, problem)


def _split_header(reader: _HashingReader) -> tuple[list[str], Iterator[bytes]]:
    """Read up to the end of the header line; return the header and the full byte stream."""
    blocks = reader.blocks()
    buffered = b""
    for block in blocks:
        buffered += block
        if b"\n" in buffered:
            break
    if not buffered:
        raise reader.reject(1, "file is empty: the header row is missing")
    first = buffered.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise reader.reject(1, f"header is not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    header = next(csv.reader(io.StringIO(text)))

    def stream() -> Iterator[bytes]:
        yield buffered
        yield from blocks

    return header, stream()


_LINE_RE = re.compile(r"line (\d+)")


def _copy_file(conn: psycopg.Connection, entry: ManifestEntry, drop_date: str) -> int:
    ex = entry.extract
    reader = _HashingReader(entry, drop_date)
    header, stream = _split_header(reader)
    if header != list(ex.columns):
        if header and header[0].startswith("\ufeff"):
            problem = "header starts with a byte-order mark; deliver UTF-8 without BOM"
        else:
            problem = f"header is {','.join(header)}; the contract says {','.join(ex.columns)}"
        raise reader.reject(1, problem)
    conn.execute(
        "select set_config('s1mig.file_name', %s, true), "
        "set_config('s1mig.file_sha256', %s, true), setval('raw.row_number_seq', 1, false)",
        (entry.path.name, entry.sha256),
    )
    copy_sql = sql.SQL("copy {} ({}) from stdin with (format csv, header true, encoding 'UTF8')").format(
        sql.Identifier("raw", ex.name), sql.SQL(", ").join(map(sql.Identifier, ex.columns))
    )
    try:
        with conn.cursor() as cur:
            with cur.copy(copy_sql) as copy:
                for block in stream:
                    copy.write(block)
            rows = cur.rowcount
    except psycopg.errors.DataError as exc:  # bad CSV shape, bad UTF-8, ...
        diag = exc.diag
        m = _LINE_RE.search(diag.context or "")
        problem = (diag.message_primary or str(exc)).strip()
        raise reader.reject(int(m.group(1)) if m else None, problem) from exc
    if reader.sha.hexdigest() != entry.sha256:
        raise reader.reject(None, f"sha256 is {reader.sha.hexdigest()}, manifest.json says {entry.sha256}")
    if rows != entry.rows:
        raise reader.reject(None, f"has {rows} data rows, manifest.json says {entry.rows}")
    return rows


# ----------------------------------------------------------------------------- landing


def _check_sequence(conn: psycopg.Connection, drop_date: dt.date) -> None:
    landed = {r[0] for r in conn.execute("select distinct drop_date from raw.drop_ledger where superseded_at is null")}
    if not landed or drop_date in landed or (drop_date - dt.timedelta(days=1)) in landed:
        return
    first, last = min(landed), max(landed)
    if drop_date < first:
        problem = (
            f"the warehouse starts at {first} (that drop carries all earlier history); an earlier drop cannot be added"
        )
    else:
        problem = (
            f"drop {drop_date - dt.timedelta(days=1)} has not been landed (last landed: {last}); "
            "land the missing days first (s1mig backfill)"
        )
    raise DropRejected(str(drop_date), "manifest.json", None, problem)


def quarantine(error: DropRejected, drop_dir: Path) -> Path:
    qdir = config.home() / "quarantine" / error.drop_date
    qdir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    report = error.as_dict() | {"drop_dir": str(drop_dir), "rejected_at": stamp}
    (qdir / f"{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    (qdir / f"{stamp}.txt").write_text(str(error) + "\n")
    return qdir / f"{stamp}.json"


def land(drop_dir: Path, drop_date: dt.date, url: str | None = None) -> LandResult:
    """Verify and load one drop. Idempotent; a different delivery replaces the date."""
    ds = drop_date.isoformat()
    try:
        entries = read_manifest(drop_dir, ds)
        fingerprint = delivery_fingerprint(entries)
        with db.connect(url) as conn:
            ensure_raw_schema(conn)
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(%s)", (LANDING_LOCK,))
                current = conn.execute(
                    "select delivery_sha256 from raw.drop_ledger where drop_date = %s and superseded_at is null",
                    (drop_date,),
                ).fetchone()
                if current and current[0] == fingerprint:
                    log.info("drop %s: identical delivery already landed, nothing to do", ds)
                    return LandResult(drop_date, "unchanged", fingerprint, {})
                _check_sequence(conn, drop_date)
                conn.execute("select set_config('s1mig.drop_date', %s, true)", (ds,))
                rows: dict[str, int] = {}
                for entry in entries:
                    conn.execute(
                        sql.SQL("delete from {} where _drop_date = %s").format(
                            sql.Identifier("raw", entry.extract.name)
                        ),
                        (drop_date,),
                    )
                    rows[entry.extract.name] = _copy_file(conn, entry, ds)
                    log.info("drop %s: %s %d rows", ds, entry.path.name, rows[entry.extract.name])
                conn.execute(
                    "update raw.drop_ledger set superseded_at = now() where drop_date = %s and superseded_at is null",
                    (drop_date,),
                )
                manifest = json.loads((drop_dir / "manifest.json").read_text())
                conn.execute(
                    "insert into raw.drop_ledger (drop_date, delivery_sha256, manifest, rows_landed) "
                    "values (%s, %s, %s, %s)",
                    (drop_date, fingerprint, json.dumps(manifest), json.dumps(rows)),
                )
        return LandResult(drop_date, "replaced" if current else "landed", fingerprint, rows)
    except DropRejected as err:
        path = quarantine(err, drop_dir)
        log.error("%s (report: %s)", err, path)
        raise
