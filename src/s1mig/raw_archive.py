"""Raw rows of older drops, archived compressed inside the warehouse (issue 18, B10).

Staging types each drop once (incremental by delivery), so once every staging model
holds a drop, its raw rows are read again only by a whole rebuild of staging (a
`--full-refresh`, or a staging model new to the warehouse). Keeping them as rows costs
about 150 bytes a record for ever; compressed they take a fraction of that. After each
build (pipeline.dbt_step, beside_build below) the raw rows of every current delivery older than
the newest S1MIG_RAW_KEEP_DROPS drop dates (default 7), once every staging model has
logged that delivery, are moved to `raw.archived_chunks`: each extract's rows, every
column and every lineage column, as PostgreSQL's COPY text, zlib-compressed in chunks of
at most CHUNK bytes, with its row count and the sha256 of the uncompressed text in
`raw.archived_extracts`. One transaction per drop, under the landing lock.

Nothing is lost: `s1mig land --restore-archived` puts the rows back exactly (COPY of the
same text; the row count and the hash are checked) and removes the archive. A whole
rebuild of a staging model refuses to run while its raw source has archived drops,
naming the command (macros/materializations/delivery_staging.sql), so it can never
silently miss them. `parties` is never archived: stg_dcc__parties is rebuilt whole every
run. A superseded delivery's archive is kept (what was delivered, for audit); undoing an
archived drop asks for the restore first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from s1mig import config, db
from s1mig.contract import EXTRACTS
from s1mig.errors import S1migError

log = logging.getLogger(__name__)

CHUNK = 8 << 20  # bytes of compressed text in one archived_chunks row
ARCHIVED = tuple(ex for ex in EXTRACTS if ex.name != "parties")  # parties: rebuilt whole every run

DDL = (
    """create table if not exists raw.archived_extracts (
        drop_date date not null,
        landed_at timestamptz not null,
        extract_name text not null,
        rows bigint not null,
        text_bytes bigint not null,
        compressed_bytes bigint not null,
        text_sha256 text not null,
        archived_at timestamptz not null default now(),
        primary key (drop_date, landed_at, extract_name))""",
    """create table if not exists raw.archived_chunks (
        drop_date date not null,
        landed_at timestamptz not null,
        extract_name text not null,
        chunk_no integer not null,
        data bytea not null,
        primary key (drop_date, landed_at, extract_name, chunk_no))""",
    # compressed already: TOAST stores the chunks out of line without compressing again
    "alter table raw.archived_chunks alter column data set storage external",
)
RELATIONS = ("raw.archived_extracts", "raw.archived_chunks")


class ArchiveBroken(S1migError):
    """An archive does not give back what was archived (row count or hash)."""


@dataclass(frozen=True)
class Moved:
    drop_date: dt.date
    rows: int
    text_bytes: int
    compressed_bytes: int

    def line(self, verb: str) -> str:
        return (
            f"drop {self.drop_date}: {self.rows:,} raw rows {verb} ({self.text_bytes / 1e6:.1f} MB as text, "
            f"{self.compressed_bytes / 1e6:.1f} MB compressed)"
        )

    def __add__(self, other: Moved) -> Moved:
        return Moved(
            self.drop_date,
            self.rows + other.rows,
            self.text_bytes + other.text_bytes,
            self.compressed_bytes + other.compressed_bytes,
        )


@dataclass(frozen=True)
class Restored:
    moved: list[Moved]

    def line(self) -> str:
        if not self.moved:
            return "no archived raw rows of a current delivery: nothing to restore"
        rows = sum(m.rows for m in self.moved)
        span = f"{self.moved[0].drop_date} .. {self.moved[-1].drop_date}"
        return f"{rows:,} raw rows of {len(self.moved)} drop(s) put back from the archive ({span})"


def _columns(extract) -> sql.Composed:
    from s1mig.land import LINEAGE_COLUMNS

    return sql.SQL(", ").join(map(sql.Identifier, (*extract.columns, *LINEAGE_COLUMNS)))


def _current_archived(conn: psycopg.Connection) -> list[tuple[dt.date, dt.datetime]]:
    """The current deliveries whose raw rows are archived."""
    return conn.execute(
        "select distinct a.drop_date, a.landed_at from raw.archived_extracts a join raw.drop_ledger l "
        "on l.drop_date = a.drop_date and l.landed_at = a.landed_at and l.superseded_at is null "
        "order by 1"
    ).fetchall()


def archive(url: str | None = None, keep: int | None = None) -> list[Moved]:
    """Archive the raw rows of the current deliveries older than the newest `keep` drop
    dates (S1MIG_RAW_KEEP_DROPS) that every staging model holds. Returns what moved."""
    from s1mig.land import LANDING_LOCK, ensure_raw_schema

    keep = config.raw_keep_drops() if keep is None else keep
    moved: list[Moved] = []
    with db.connect(url) as conn:
        ensure_raw_schema(conn)
        if not db.scalar(
            conn,
            "select to_regclass('staging.delivery_log') is not null and to_regclass('raw.drop_ledger') is not null",
        ):
            return moved
        due = conn.execute(
            """
            with current_drops as (
                select drop_date, landed_at, dense_rank() over (order by drop_date desc) as newest
                from raw.drop_ledger where superseded_at is null
            ),
            staging_models as (
                select count(distinct model_name) as n from staging.delivery_log
                where model_name like 'stg\\_dcc\\_\\_%%'
            )
            select c.drop_date, c.landed_at from current_drops c, staging_models m
            where c.newest > %s and m.n > 0
              and not exists (select 1 from raw.archived_extracts a
                              where a.drop_date = c.drop_date and a.landed_at = c.landed_at)
              and (select count(*) from staging.delivery_log s where s.drop_date = c.drop_date
                   and s.landed_at = c.landed_at and s.model_name like 'stg\\_dcc\\_\\_%%') = m.n
            order by c.drop_date
            """,
            (keep,),
        ).fetchall()
        conn.commit()  # ends the reads' transaction: each drop below is a transaction of its own
        for drop_date, landed_at in due:
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(%s)", (LANDING_LOCK,))
                still = db.scalar(
                    conn,
                    "select exists (select 1 from raw.drop_ledger where drop_date = %s and landed_at = %s "
                    "and superseded_at is null)",
                    (drop_date, landed_at),
                )
                if not still:  # replaced by a correction meanwhile
                    continue
                total = sum(
                    (_archive_extract(conn, ex, drop_date, landed_at) for ex in ARCHIVED), Moved(drop_date, 0, 0, 0)
                )
            log.info(total.line("archived"))
            moved.append(total)
        if moved:  # the deleted rows' space, for the next landings (autovacuum would wait for a fifth of a table)
            conn.autocommit = True
            for ex in ARCHIVED:
                conn.execute(sql.SQL("vacuum {}").format(sql.Identifier("raw", ex.name)))
    return moved


POLL_SECONDS = 0.5  # how often beside_build asks whether staging holds every delivery


@contextmanager
def beside_build(url: str | None = None, keep: int | None = None) -> Iterator[None]:
    """Archive while a build runs (pipeline.dbt_step). A thread waits until every staging
    model of the project (staging_models) has logged every current delivery (their
    transactions, which take the landing lock shared, are then over), then archives
    (archive(), under the landing lock) while the intermediate models and the marts
    build; the block ends once it is done. On a national day the archive (about 5 s) then
    overlaps the build's second half, when one of the build's two threads waits for the
    other (docs/performance.md item 24), instead of following the build. When staging
    never holds everything while the block runs (a partial build), the archive runs after
    the block, as it did before. A failed build stops the wait and archives nothing more
    (an archive under way ends: one transaction a drop); an interrupt does not wait for
    it (its open transaction rolls back)."""
    models = staging_models()
    if not models:  # no project to read them from: after the block, as before
        yield
        archive(url, keep)
        return
    stop = threading.Event()
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            with db.connect(url) as conn:
                while not _staging_holds_every_delivery(conn, models):
                    conn.rollback()
                    if stop.wait(POLL_SECONDS):
                        return
            outcome["moved"] = archive(url, keep)
        except Exception as exc:  # noqa: BLE001 - surfaced by the block's end
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="s1mig-raw-archive", daemon=True)
    worker.start()
    try:
        yield
    except BaseException as exc:
        stop.set()
        if isinstance(exc, Exception):
            worker.join()
        raise
    stop.set()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    if "moved" not in outcome:
        archive(url, keep)


def staging_models() -> list[str]:
    """The project's staging models (dbt_project/models/staging/stg_*.sql): what must hold
    a delivery before its raw rows may be archived beside a build."""
    return sorted(path.stem for path in (config.dbt_project_dir() / "models" / "staging").glob("stg_*.sql"))


def _staging_holds_every_delivery(conn: psycopg.Connection, models: list[str]) -> bool:
    """Every staging model of the project has logged every current delivery."""
    if not db.scalar(
        conn, "select to_regclass('staging.delivery_log') is not null and to_regclass('raw.drop_ledger') is not null"
    ):
        return False
    return bool(
        db.scalar(
            conn,
            """
            select not exists (
                select 1
                from raw.drop_ledger as ledger
                cross join unnest(%s::text[]) as models (model_name)
                where ledger.superseded_at is null
                  and not exists (
                      select 1 from staging.delivery_log as logged
                      where logged.model_name = models.model_name
                        and logged.drop_date = ledger.drop_date and logged.landed_at = ledger.landed_at
                  )
            )
            """,
            (models,),
        )
    )


def _archive_extract(conn: psycopg.Connection, ex, drop_date: dt.date, landed_at: dt.datetime) -> Moved:
    table = sql.Identifier("raw", ex.name)
    # no order by: the restore needs none, and the first drop's (tens of millions of rows) would
    # be a sort on disk
    out = sql.SQL("copy (select {} from {} where _drop_date = {}) to stdout").format(
        _columns(ex), table, sql.Literal(drop_date)
    )
    sha = hashlib.sha256()
    packer = zlib.compressobj(1)  # level 1: 16 % of the text at ~230 MB/s; level 6: 13 % at ~65 MB/s
    text_bytes = compressed = 0
    with tempfile.TemporaryFile() as spool:  # the compressed text, bounded memory
        with conn.cursor() as cur, cur.copy(out) as copy:
            for block in copy:
                data = bytes(block)
                sha.update(data)
                text_bytes += len(data)
                spool.write(packer.compress(data))
        spool.write(packer.flush())
        compressed = spool.tell()
        spool.seek(0)
        chunk_no = 0
        while piece := spool.read(CHUNK):
            conn.execute(
                "insert into raw.archived_chunks values (%s, %s, %s, %s, %s)",
                (drop_date, landed_at, ex.name, chunk_no, piece),
            )
            chunk_no += 1
    deleted = conn.execute(sql.SQL("delete from {} where _drop_date = %s").format(table), (drop_date,)).rowcount
    conn.execute(
        "insert into raw.archived_extracts (drop_date, landed_at, extract_name, rows, text_bytes, "
        "compressed_bytes, text_sha256) values (%s, %s, %s, %s, %s, %s, %s)",
        (drop_date, landed_at, ex.name, deleted, text_bytes, compressed, sha.hexdigest()),
    )
    return Moved(drop_date, deleted, text_bytes, compressed)


def restore(url: str | None = None) -> list[Moved]:
    """Put the archived raw rows of every current delivery back into raw (and remove their
    archive), checking each extract's row count and hash. Returns what moved."""
    from s1mig.land import LANDING_LOCK, ensure_raw_schema

    moved: list[Moved] = []
    with db.connect(url) as conn:
        ensure_raw_schema(conn)
        archived = _current_archived(conn)
        conn.commit()  # each drop below is a transaction of its own
        for drop_date, landed_at in archived:
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(%s)", (LANDING_LOCK,))
                total = sum(
                    (_restore_extract(conn, ex, drop_date, landed_at) for ex in ARCHIVED), Moved(drop_date, 0, 0, 0)
                )
            log.info(total.line("restored"))
            moved.append(total)
    return moved


def _restore_extract(conn: psycopg.Connection, ex, drop_date: dt.date, landed_at: dt.datetime) -> Moved:
    key = (drop_date, landed_at, ex.name)
    meta = conn.execute(
        "select rows, text_bytes, compressed_bytes, text_sha256 from raw.archived_extracts "
        "where drop_date = %s and landed_at = %s and extract_name = %s",
        key,
    ).fetchone()
    if meta is None:
        return Moved(drop_date, 0, 0, 0)
    rows, text_bytes, compressed, text_sha = meta
    table = sql.Identifier("raw", ex.name)
    copy_in = sql.SQL("copy {} ({}) from stdin").format(table, _columns(ex))
    sha = hashlib.sha256()
    unpacker = zlib.decompressobj()
    chunk_nos = [
        r[0]
        for r in conn.execute(
            "select chunk_no from raw.archived_chunks where drop_date = %s and landed_at = %s "
            "and extract_name = %s order by chunk_no",
            key,
        )
    ]
    with tempfile.TemporaryFile() as spool:  # the text, so that COPY has the connection to itself
        for chunk_no in chunk_nos:  # one chunk in memory at a time
            row = conn.execute(
                "select data from raw.archived_chunks where drop_date = %s and landed_at = %s "
                "and extract_name = %s and chunk_no = %s",
                (*key, chunk_no),
            ).fetchone()
            assert row is not None
            data = unpacker.decompress(row[0])
            sha.update(data)
            spool.write(data)
        data = unpacker.flush()
        sha.update(data)
        spool.write(data)
        if sha.hexdigest() != text_sha:
            raise ArchiveBroken(
                f"the archive of drop {drop_date} {ex.name} does not give back what was archived (sha256 "
                f"{sha.hexdigest()[:12]}, archived {text_sha[:12]}): nothing was restored"
            )
        spool.seek(0)
        with conn.cursor() as cur:
            with cur.copy(copy_in) as copy:
                while block := spool.read(1 << 20):
                    copy.write(block)
            landed = cur.rowcount
    if landed != rows:
        raise ArchiveBroken(
            f"the archive of drop {drop_date} {ex.name} gives back {landed} rows, archived {rows}: nothing was restored"
        )
    conn.execute("delete from raw.archived_chunks where drop_date = %s and landed_at = %s and extract_name = %s", key)
    conn.execute("delete from raw.archived_extracts where drop_date = %s and landed_at = %s and extract_name = %s", key)
    return Moved(drop_date, rows, text_bytes, compressed)
