"""Export (spec section 7): every party as at end of D gets every report file for D,
header-only when it has no rows, plus one manifest.json for the date.

Rows stream from PostgreSQL (COPY ... TO STDOUT) straight to disk while being hashed
and counted; nothing holds a whole mart in memory. Files are written to a temporary
folder beside the target and renamed into place, so a reader never sees a half-written
date, and a re-run with the same data rewrites byte-identical files."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from s1mig import db, evidence
from s1mig.contract import LOCAL_TZ, REPORTS, Report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportedFile:
    path: str  # relative to the date folder
    party_id: str
    report_id: str
    rows: int
    sha256: str


def parties_at_end_of(conn: psycopg.Connection, report_date: dt.date) -> list[str]:
    """Every party with a version effective before the end of D (spec section 7)."""
    rows = conn.execute(
        "select distinct party_id from staging.stg_dcc__parties "
        "where effective_from < ((%s::date + 1)::timestamp at time zone %s) order by party_id",
        (report_date, LOCAL_TZ),
    ).fetchall()
    return [r[0] for r in rows]


def _column_types(conn: psycopg.Connection, report: Report) -> dict[str, str]:
    cols = conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'marts' and table_name = %s order by ordinal_position",
        (report.model,),
    ).fetchall()
    if not cols:
        raise RuntimeError(f"mart marts.{report.model} does not exist: run dbt build first")
    return dict(cols)


def _sort_key(types: dict[str, str], column: str) -> sql.Composable:
    """Text sorts by code point (COLLATE "C"), so the order is the same on any server."""
    if types[column] == "text":
        return sql.SQL('{} collate "C"').format(sql.Identifier(column))
    return sql.Identifier(column)


def _select_list(types: dict[str, str]) -> sql.Composable:
    """The mart's columns in order, formatted as section 5 says: timestamps as UTC
    YYYY-MM-DDTHH:MM:SSZ, dates as YYYY-MM-DD, numerics as stored (scale 2 for pct)."""
    parts = []
    for name, data_type in types.items():
        ident = sql.Identifier(name)
        if data_type == "timestamp with time zone":
            parts.append(
                sql.SQL("""to_char({} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') as {}""").format(ident, ident)
            )
        elif data_type == "date":
            parts.append(sql.SQL("to_char({}, 'YYYY-MM-DD') as {}").format(ident, ident))
        else:
            parts.append(ident)
    return sql.SQL(", ").join(parts)


WRITE_CHUNK = 1 << 20  # bytes gathered before one write + hash (COPY yields one block per row)


def _copy_to_file(conn: psycopg.Connection, query: sql.Composable, path: Path) -> tuple[int, str]:
    """Stream the query's CSV into `path` in 1 MiB chunks, hashing as it goes (memory
    stays at one chunk; per-row writes cost B5 a third of psql's time)."""
    sha = hashlib.sha256()
    buf = bytearray()
    with open(path, "wb") as fh, conn.cursor() as cur:
        with cur.copy(sql.SQL("copy ({}) to stdout with (format csv, header true)").format(query)) as copy:
            for block in copy:
                buf += block
                if len(buf) >= WRITE_CHUNK:
                    fh.write(buf)
                    sha.update(buf)
                    buf.clear()
        if buf:
            fh.write(buf)
            sha.update(buf)
        rows = cur.rowcount
    return rows, sha.hexdigest()


def export_date(report_date: dt.date, out: Path, url: str | None = None, run_id: str = "direct") -> Path:
    """Write <out>/<D>/<party>/<report>_<party>_<YYYYMMDD>.csv for every party and report,
    <out>/<D>/manifest.json and <out>/<D>/evidence.json (also kept in
    audit.export_evidence). Returns the date folder."""
    out.mkdir(parents=True, exist_ok=True)
    ds, compact = report_date.isoformat(), report_date.strftime("%Y%m%d")
    target = out / ds
    tmp = out / f".{ds}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    files: list[ExportedFile] = []
    try:
        with db.connect(url) as conn, conn.transaction():
            # One snapshot for every file of the date.
            conn.execute("set transaction isolation level repeatable read, read only")
            parties = parties_at_end_of(conn, report_date)
            selects_types = {r.report_id: _column_types(conn, r) for r in REPORTS}
            selects = {r.report_id: _select_list(selects_types[r.report_id]) for r in REPORTS}
            for party in parties:
                (tmp / party).mkdir()
                for report in REPORTS:
                    rel = f"{party}/{report.report_id}_{party}_{compact}.csv"
                    query = sql.SQL("select {} from {} where report_date = {} and party_id = {} order by {}").format(
                        selects[report.report_id],
                        sql.Identifier("marts", report.model),
                        sql.Literal(report_date),
                        sql.Literal(party),
                        sql.SQL(", ").join(_sort_key(selects_types[report.report_id], c) for c in report.key),
                    )
                    rows, sha = _copy_to_file(conn, query, tmp / rel)
                    files.append(ExportedFile(rel, party, report.report_id, rows, sha))
            log.info("export %s: %d files for %d parties", ds, len(files), len(parties))
            manifest = {"report_date": ds, "files": [f.__dict__ for f in files]}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            record = evidence.build(conn, report_date, run_id, manifest["files"])
        (tmp / "evidence.json").write_text(json.dumps(record, indent=2) + "\n")
        with db.connect(url) as conn, conn.transaction():
            conn.execute(evidence.EVIDENCE_DDL)
            conn.execute(
                "delete from audit.export_evidence where run_id = %s and report_date = %s", (run_id, report_date)
            )
            conn.execute(
                "insert into audit.export_evidence (run_id, report_date, evidence) values (%s, %s, %s)",
                (run_id, report_date, json.dumps(record)),
            )
            _swap_into_place(tmp, target)  # inside the transaction: no evidence row without files
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _swap_into_place(tmp: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
