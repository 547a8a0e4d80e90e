"""Export (spec section 7): every party as at end of D gets every report file for D,
header-only when it has no rows, plus one manifest.json for the date.

Rows stream from PostgreSQL (COPY ... TO STDOUT) straight to disk while being hashed
and counted; nothing holds a whole mart in memory. Files are written to a temporary
folder beside the target; before anything is published, gate rule R9 (conservation,
spec section 6) re-reads them from disk: every party in the marts' rows for D is a
party as at end of D, the files' data rows add up to the marts' rows per report, and
every file hashes to its manifest entry. Only then is the folder swapped into place,
so a reader never sees a half-written date, and a re-run with the same data rewrites
byte-identical files.

Revisions ("Runs, corrections and restatement"): manifest.json carries `revision`, 1 the
first time and +1 each time the date's report files change (compared through the
manifest's file list: path, party, report, rows and sha256 of every file); an identical
re-run keeps the revision. When a new revision is published, everything the previous
one had in the date folder (party files, manifest, evidence, run summary) is kept under
<out>/<D>/revisions/<n>/.

Crash safety: an export is killed at any point (while writing its temporary folder
.<D>.tmp-<pid>, while linking the kept revision into it, between the publishing exchange
and the removal of the folder it replaced, between the two renames where the system has
no exchange) and the date keeps its last good files: the published folder is only ever
replaced by an atomic exchange with a complete one. What a killed export leaves is hidden
folders beside the dates; every export into an out folder first recovers them all, under
a lock on the out folder (one export at a time there): a date folder that an interrupted
two-rename publish took away (.<D>.old-<pid>, the published export) is put back, and every
other leftover (an unpublished temporary folder, or the folder an exchange replaced, whose
content is the published one's kept revision or identical report files) is removed.

Release (s1mig.release, four-eyes): in a DAG run the checked folder is not published at once:
`stage` moves it to the run's pending area <out>/.pending/<run>/<D>/ (inside `out`: one file
system), and `publish_folder` publishes it once released: hard-linked into a temporary folder
beside the dates (the pending folder stays whole until the date is published, so a killed
publish is recovered like a killed export), its files re-hashed against the manifest, its
revision settled against what <out>/<D> has then, the release written into evidence.json,
audit.export_evidence and audit.releases in the transaction that exchanges it into place.
`export_date` does both at once, auto-released (direct callers: no one to ask)."""

from __future__ import annotations

import ctypes
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from s1mig import db, evidence, relations
from s1mig.contract import LOCAL_TZ, REPORTS, Report
from s1mig.errors import GateBlocked, S1migError

log = logging.getLogger(__name__)

CONSERVATION_RULE = ("R9", "export_conservation", "blocking")  # rule_id, rule_name, severity
SAMPLE_KEYS = 5  # example keys in R9's line, as the gate's rules give
REVISIONS = "revisions"  # <out>/<D>/revisions/<n>/: what revision n had in the date folder


@dataclass(frozen=True)
class ExportedFile:
    path: str  # relative to the date folder
    party_id: str
    report_id: str
    rows: int
    sha256: str


def parties_at_end_of(conn: psycopg.Connection, report_date: dt.date) -> list[str]:
    """Every party with a version effective before the end of D (spec section 7), from
    the public model of the parties (s1mig.relations)."""
    if db.scalar(conn, "select to_regclass(%s) is null", (relations.relation("parties"),)):
        raise RuntimeError(f"{relations.relation('parties')} does not exist: run dbt build first")
    rows = conn.execute(
        sql.SQL(
            "select distinct party_id from {} "
            "where effective_from < ((%s::date + 1)::timestamp at time zone %s) order by party_id"
        ).format(relations.identifier("parties")),
        (report_date, LOCAL_TZ),
    ).fetchall()
    return [r[0] for r in rows]


def _column_types(conn: psycopg.Connection, report: Report) -> dict[str, str]:
    schema, name = relations.RELATIONS[report.model]
    cols = conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = %s and table_name = %s order by ordinal_position",
        (schema, name),
    ).fetchall()
    if not cols:
        raise RuntimeError(f"mart {schema}.{name} does not exist: run dbt build first")
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
            parts.append(sql.Composed([ident]))
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


@dataclass(frozen=True)
class MartSide:
    """What the marts hold for D, read in the export's snapshot: the parties as at end of
    D, each report's row count, and the rows of parties that are not among them."""

    report_date: dt.date
    parties: list[str]
    rows: dict[str, int]  # report_id -> rows for D
    strangers: dict[str, tuple[int, list[tuple[str | None, int]]]]  # report_id -> (parties, a few (party, rows))


def mart_side(conn: psycopg.Connection, report_date: dt.date, parties: list[str] | None = None) -> MartSide:
    """Row counts per report for D and the party ids of those rows that are not a party
    as at end of D (aggregates in SQL: nothing is fetched row by row)."""
    parties = parties_at_end_of(conn, report_date) if parties is None else parties
    rows: dict[str, int] = {}
    strangers: dict[str, tuple[int, list[tuple[str | None, int]]]] = {}
    for report in REPORTS:
        table = relations.identifier(report.model)
        outside = sql.SQL("(party_id is null or not party_id = any(%(parties)s))")
        params = {"d": report_date, "parties": parties}
        total, outsiders = db.one(
            conn,
            sql.SQL(
                "select count(*), count(distinct coalesce(party_id, '')) filter (where {}) "
                "from {} where report_date = %(d)s"
            ).format(outside, table),
            params,
        )
        rows[report.report_id] = total
        if outsiders:
            sample = conn.execute(
                sql.SQL(
                    "select party_id, count(*) from {} where report_date = %(d)s and {} group by party_id "
                    'order by party_id collate "C" nulls first limit %(n)s'
                ).format(table, outside),
                params | {"n": SAMPLE_KEYS},
            ).fetchall()
            strangers[report.report_id] = (outsiders, [(p, n) for p, n in sample])
    return MartSide(report_date, parties, rows, strangers)


@dataclass
class Conservation:
    """The outcome of rule R9 on one written date folder."""

    failing_count: int = 0
    sample_keys: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "fail" if self.failing_count else "pass"

    def fail(self, key: str, count: int = 1) -> None:
        self.failing_count += count
        if len(self.sample_keys) < SAMPLE_KEYS:
            self.sample_keys.append(key)

    def line(self) -> str:
        rule_id, name, _ = CONSERVATION_RULE
        text = f"{rule_id} {name}: {self.failing_count} failing"
        if self.sample_keys:
            text += " (e.g. " + "; ".join(self.sample_keys) + ")"
        return text


def read_back(path: Path) -> tuple[int, str, bool]:
    """Re-read a written CSV file from disk: (data rows, sha256 of its bytes, whether it
    is complete: ends with a line end outside quotes). A record ends at a newline outside
    a quoted field; quotes are counted, not parsed, so a 1 MiB block costs two C calls."""
    sha = hashlib.sha256()
    lines = 0
    quoted = False
    last = b""
    with open(path, "rb") as fh:
        while block := fh.read(WRITE_CHUNK):
            sha.update(block)
            last = block[-1:]
            if not quoted and b'"' not in block:
                lines += block.count(b"\n")
                continue
            for i, part in enumerate(block.split(b'"')):
                if i:
                    quoted = not quoted
                if not quoted:
                    lines += part.count(b"\n")
    complete = last == b"\n" and not quoted
    return max(lines - 1, 0), sha.hexdigest(), complete


def check_conservation(folder: Path, mart: MartSide) -> Conservation:
    """Rule R9 on a written date folder, read back from disk: every party of the marts'
    rows for D is a party as at end of D; the manifest lists exactly the ten files of
    every such party, and nothing else is on disk; every file's bytes hash to its entry
    and hold the rows it says; per report, the files' data rows add up to the mart's."""
    day = mart.report_date
    result = Conservation()
    for report_id, (count, sample) in mart.strangers.items():
        for party, rows in sample:
            rows_text = f"{rows} row" + ("s" if rows != 1 else "")
            result.fail(f"{report_id}: party {party or '(none)'} ({rows_text}) is not in parties as at end of {day}")
        result.failing_count += count - len(sample)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        listed = {f["path"]: f for f in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result.fail(f"manifest.json cannot be read back: {exc}")
        return result
    compact = day.strftime("%Y%m%d")
    expected = {f"{p}/{r.report_id}_{p}_{compact}.csv": (p, r.report_id) for p in mart.parties for r in REPORTS}
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*.csv") if p.relative_to(folder).parts[0] != REVISIONS}
    for path in sorted(expected.keys() - listed.keys()):
        result.fail(f"{path}: a party as at end of {day} without this file in manifest.json")
    for path in sorted(listed.keys() - expected.keys()):
        result.fail(f"{path}: in manifest.json but not a file of a party as at end of {day}")
    for path in sorted(on_disk - listed.keys()):
        result.fail(f"{path}: on disk but not in manifest.json")
    file_rows = dict.fromkeys(mart.rows, 0)
    for path, entry in listed.items():
        if path not in on_disk:
            result.fail(f"{path}: in manifest.json but missing on disk")
            continue
        rows, sha, complete = read_back(folder / path)
        if path in expected and (entry.get("party_id"), entry.get("report_id")) != expected[path]:
            result.fail(f"{path}: manifest entry names party {entry.get('party_id')} {entry.get('report_id')}")
        if sha != entry.get("sha256"):
            result.fail(f"{path}: sha256 on disk is {sha[:12]}, manifest.json says {str(entry.get('sha256'))[:12]}")
        if not complete:
            result.fail(f"{path}: truncated (no line end after the last record)")
        if rows != entry.get("rows"):
            result.fail(f"{path}: {rows} data rows on disk, manifest.json says {entry.get('rows')}")
        report_id = entry.get("report_id")
        if report_id in file_rows:
            file_rows[report_id] += rows
    for report_id, in_mart in mart.rows.items():
        if file_rows[report_id] != in_mart:
            result.fail(
                f"{report_id}: the party files hold {file_rows[report_id]} rows, the mart has {in_mart} for {day}"
            )
    return result


def verify_export(folder: Path, report_date: dt.date, url: str | None = None) -> Conservation:
    """Rule R9 for a date folder on disk against the marts as they are now (the export
    itself checks its unpublished folder in the snapshot it was written from)."""
    with db.connect(url) as conn, conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")
        mart = mart_side(conn, report_date)
    return check_conservation(folder, mart)


def record_conservation(url: str | None, run_id: str, report_date: dt.date, result: Conservation) -> None:
    """R9's outcome in audit.gate_results, beside the rules the gate task recorded."""
    from s1mig.gate import AUDIT_DDL

    rule_id, name, severity = CONSERVATION_RULE
    with db.connect(url) as conn, conn.transaction():
        conn.execute(AUDIT_DDL)
        conn.execute(
            "delete from audit.gate_results where run_id = %s and report_date = %s and rule_id = %s",
            (run_id, report_date, rule_id),
        )
        conn.execute(
            "insert into audit.gate_results (run_id, report_date, rule_id, rule_name, severity, status, "
            "failing_count, sample_keys) values (%s, %s, %s, %s, %s, %s, %s, %s)",
            (run_id, report_date, rule_id, name, severity, result.status, result.failing_count, result.sample_keys),
        )


def previous_manifest(target: Path) -> dict | None:
    """The published manifest of the date, None when the date was never exported here.
    A non-empty folder without a readable manifest is not ours to replace."""
    if not target.exists():
        return None
    try:
        manifest = json.loads((target / "manifest.json").read_text())
        if isinstance(manifest, dict) and isinstance(manifest.get("files"), list):
            return manifest
    except (OSError, ValueError):
        pass
    if any(p.name != REVISIONS for p in target.iterdir()):
        raise S1migError(
            f"{target} exists but has no readable manifest.json: not an s1mig export, so it is not replaced "
            "(move it away and re-run)"
        )
    return None


def _kept_revisions(target: Path) -> list[int]:
    folder = target / REVISIONS
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def next_revision(target: Path, previous: dict | None, files: list[dict]) -> int:
    """The previous revision when the report files are the same (same manifest file list:
    path, party, report, rows, sha256), else one more than any revision seen."""
    if previous is None:
        return max(_kept_revisions(target), default=0) + 1
    current = int(previous.get("revision", 1))  # a manifest from before revisions was the first
    if previous.get("files") == files:
        return current
    return max([current, *_kept_revisions(target)]) + 1


def _link(src: str | Path, dst: str | Path) -> None:
    """Hard link (instant, no bytes copied; nothing here is ever written in place), a copy
    where the file system has no hard links."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _link_entry(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=_link)
    else:
        _link(src, dst)


def _carry_revisions(target: Path, tmp: Path, previous: dict | None, revision: int) -> None:
    """Give the new folder the revisions kept so far and, for a new revision, everything
    the published one has now (party files, manifest, evidence, run summary)."""
    if not target.exists():
        return
    if (target / REVISIONS).is_dir():
        _link_entry(target / REVISIONS, tmp / REVISIONS)
    if previous is None:
        return
    old = int(previous.get("revision", 1))
    if old == revision:
        return
    keep = tmp / REVISIONS / str(old)
    if keep.exists():
        raise S1migError(
            f"{target / REVISIONS / str(old)} already exists: revision {old} of {target.name} is kept twice"
        )
    keep.mkdir(parents=True)
    for entry in sorted(target.iterdir()):
        if entry.name != REVISIONS:
            _link_entry(entry, keep / entry.name)


# ----------------------------------------------------------------------------- crash recovery

# what an export leaves beside the date folders while it works: .<D>.tmp-<pid> (the folder
# being written; after an exchange, the folder it replaced) and .<D>.old-<pid> (the
# published folder, between the two renames where the system has no exchange)
_LEFTOVER = re.compile(r"\.(\d{4}-\d{2}-\d{2})\.(tmp|old)-\d+")


@contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """One export at a time per out folder (two warehouses may export into one): an
    exclusive lock on the folder itself, so nothing is added to it; the kernel releases
    it when the holder dies. A lock file where the folder cannot be locked."""
    try:
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            raise
    except OSError:
        fd = os.open(out / ".s1mig-export.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)


def _published_revision(folder: Path) -> int:
    try:
        return int(json.loads((folder / "manifest.json").read_text()).get("revision", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def recover(out: Path) -> list[str]:
    """Finish what interrupted exports left in `out` (hold out_lock): for each date, a
    published folder that the two-rename publish took away (.<D>.old-<pid>) while the date
    folder is absent is put back; every other leftover is removed (the date folder, when
    present, is complete: only whole folders are ever swapped in). Returns one line per
    action (also logged)."""
    found: dict[str, list[tuple[str, Path]]] = {}
    for entry in out.iterdir():
        match = _LEFTOVER.fullmatch(entry.name)
        if match and entry.is_dir() and not entry.is_symlink():
            found.setdefault(match.group(1), []).append((match.group(2), entry))
    actions: list[str] = []
    for ds, leftovers in sorted(found.items()):
        target = out / ds
        olds = [path for kind, path in leftovers if kind == "old"]
        if olds and not target.exists():
            back = max(olds, key=_published_revision)
            back.rename(target)
            actions.append(
                f"export {ds}: put back the published export (revision {_published_revision(target)}) that an "
                f"interrupted export had moved to {back.name}"
            )
        for _, path in leftovers:
            if path.exists():
                shutil.rmtree(path)
                actions.append(f"export {ds}: removed {path.name}, left by an interrupted export")
    for line in actions:
        log.warning(line)
    return actions


def export_date(
    report_date: dt.date,
    out: Path,
    url: str | None = None,
    run_id: str = "direct",
    restatement: dict | None = None,
) -> Path:
    """Write <out>/<D>/<party>/<report>_<party>_<YYYYMMDD>.csv for every party and report,
    <out>/<D>/manifest.json and <out>/<D>/evidence.json (also kept in
    audit.export_evidence), check rule R9 on the written files and only then publish
    them, released at once (no four-eyes: the evidence says "auto-released").
    `restatement` names the corrected drop that caused this export (restate.py).
    Returns the date folder; raises GateBlocked (nothing published) when R9 fails.
    First recovers whatever an interrupted export left in `out` (recover)."""
    from s1mig import release

    with _written(report_date, out, url, run_id, restatement) as tmp:
        return publish_folder(tmp, out, url, release.auto_release(), own=True)


def stage(
    report_date: dt.date,
    out: Path,
    pending: Path,
    url: str | None = None,
    run_id: str = "direct",
    restatement: dict | None = None,
) -> Path:
    """Like export_date, but the checked export goes to <pending>/<D> (a folder inside `out`,
    so publishing it later is an atomic exchange on the same file system), not to the
    parties: publish_folder publishes it once it is released (s1mig.release). Returns the
    pending date folder; raises GateBlocked (nothing written there) when R9 fails."""
    pending.mkdir(parents=True, exist_ok=True)
    with _written(report_date, out, url, run_id, restatement) as tmp:
        folder = pending / report_date.isoformat()
        _swap_into_place(tmp, folder)
    log.info("export %s: checked and waiting for release in %s", report_date, folder)
    return folder


@contextmanager
def _written(report_date: dt.date, out: Path, url: str | None, run_id: str, restatement: dict | None) -> Iterator[Path]:
    """D's export written and checked (R9) into a temporary folder of `out`, under the out
    folder's lock (after recovering what an interrupted export left); the folder is removed
    after the block, whatever the block did with it."""
    out.mkdir(parents=True, exist_ok=True)
    with out_lock(out):
        recover(out)
        tmp = out / f".{report_date.isoformat()}.tmp-{os.getpid()}"
        try:
            _write(report_date, out, tmp, url, run_id, restatement)
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _write(report_date: dt.date, out: Path, tmp: Path, url: str | None, run_id: str, restatement: dict | None) -> dict:
    """Write the date's files, manifest.json and evidence.json into `tmp` (a new folder in
    `out`) and check rule R9 on them (GateBlocked when it fails). The revision is the one
    the date would have if published now; publish_folder settles it. Returns the manifest."""
    ds, compact = report_date.isoformat(), report_date.strftime("%Y%m%d")
    target = out / ds
    previous = previous_manifest(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    files: list[ExportedFile] = []
    with db.connect(url) as conn, conn.transaction():
        # One snapshot for every file of the date and for the counts R9 compares them with.
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
                    relations.identifier(report.model),
                    sql.Literal(report_date),
                    sql.Literal(party),
                    sql.SQL(", ").join(_sort_key(selects_types[report.report_id], c) for c in report.key),
                )
                rows, sha = _copy_to_file(conn, query, tmp / rel)
                files.append(ExportedFile(rel, party, report.report_id, rows, sha))
        mart = mart_side(conn, report_date, parties)
    log.info("export %s: %d files for %d parties", ds, len(files), len(parties))
    listed = [f.__dict__ for f in files]
    revision = next_revision(target, previous, listed)
    manifest = {"report_date": ds, "revision": revision, "files": listed}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    conservation = check_conservation(tmp, mart)
    record_conservation(url, run_id, report_date, conservation)
    if conservation.failing_count:
        raise GateBlocked(
            f"gate blocked export of {ds}: {conservation.line()} (nothing published; {target} keeps its previous files)"
        )
    with db.connect(url) as conn:
        record = evidence.build(
            conn, report_date, run_id, listed, revision=revision, restatement=restatement, out_folder=out
        )
    (tmp / "evidence.json").write_text(json.dumps(record, indent=2) + "\n")
    return manifest


def blocked_rules(record: dict) -> list[str]:
    """The blocking gate rules that did not pass for the export whose evidence is `record`."""
    return [
        str(g.get("rule_id"))
        for g in record.get("gate") or []
        if g.get("severity") == "blocking" and g.get("status") != "pass"
    ]


def check_releasable(conn: psycopg.Connection, record: dict, target: Path) -> None:
    """An export may be published only as it was gated and while it is current (S1migError,
    nothing published, otherwise): no blocking gate rule failed (a blocked gate task marked
    successful by hand does not make its export releasable); it was built from the drops'
    current deliveries (a correction landed while it waited for its approval: runs wait for
    approval side by side, outside the lease); and <out>/<D> holds no export made after it
    (a later run of D was released first)."""
    ds = record["report_date"]
    blocked = blocked_rules(record)
    if blocked:
        raise S1migError(
            f"{ds}: the gate blocked this export ({', '.join(blocked)} did not pass): nothing published; "
            "see docs/gate.md, then run the date again"
        )
    inputs = record.get("inputs")
    if inputs is not None:
        used = {str(i["drop_date"]): i["delivery_sha256"] for i in inputs}
        current = {
            d.isoformat(): sha
            for d, sha in conn.execute(
                "select drop_date, delivery_sha256 from raw.drop_ledger "
                "where superseded_at is null and drop_date <= %s",
                (dt.date.fromisoformat(ds),),
            )
        }
        changed = sorted(d for d in set(used) | set(current) if used.get(d) != current.get(d))
        if changed:
            raise S1migError(
                f"{ds}: this export was built from deliveries that are no longer current (drop(s) "
                f"{', '.join(changed)} delivered again or taken back since): nothing published; run {ds} again"
            )
    try:
        published = json.loads((target / "evidence.json").read_text())
    except (OSError, ValueError):
        return
    if str(published.get("exported_at", "")) > str(record.get("exported_at", "")):
        raise S1migError(
            f"{ds}: {target} holds a later export (exported at {published.get('exported_at')} by run "
            f"{published.get('run_id')}) than this one (exported at {record.get('exported_at')}): nothing published"
        )


def check_files(folder: Path) -> None:
    """The report files of a pending export are still the ones gated: every file listed
    in its manifest hashes to its entry and nothing else is there (S1migError naming the
    first difference): what is published is what was checked and released."""
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*.csv")}
    for path in sorted(on_disk ^ listed.keys()):
        where = "on disk but not in manifest.json" if path in on_disk else "in manifest.json but missing"
        raise S1migError(f"pending export {folder} changed since it was checked: {path} {where}; run the date again")
    for path, entry in sorted(listed.items()):
        _, sha, _ = read_back(folder / path)
        if sha != entry["sha256"]:
            raise S1migError(
                f"pending export {folder} changed since it was checked: {path} no longer hashes to its manifest "
                "entry; run the date again"
            )


def _replace_file(path: Path, text: str) -> None:
    """Write `path` anew (a new inode): it may be a hard link shared with another folder."""
    path.unlink(missing_ok=True)
    path.write_text(text)


def published_by(target: Path, run_id: str, decision: dict) -> bool:
    """Whether the date folder published now is the one run `run_id` released with `decision`."""
    try:
        record = json.loads((target / "evidence.json").read_text())
    except (OSError, ValueError):
        return False
    released = {k: decision.get(k) for k in ("outcome", "by", "by_id", "at", "why")}
    return isinstance(record, dict) and record.get("run_id") == run_id and record.get("release") == released


def publish_folder(
    staged: Path,
    out: Path,
    url: str | None,
    decision: dict,
    own: bool = False,
    summary_writer=None,
) -> Path:
    """Publish the checked export in `staged` (a date folder from `stage`, or with own=True
    the export's own temporary folder, out_lock held) as <out>/<D>, released by `decision`
    (s1mig.release: outcome, by, at, why): its revision settled against what <out>/<D> has
    now, the release written into evidence.json and into audit.export_evidence and
    audit.releases in the transaction that swaps the folder into place. A pending folder is
    hard-linked into a temporary folder first (it stays whole until the date is
    published), its files re-hashed (check_files). `summary_writer(folder, target)`
    re-writes the run summary in the folder to publish. Returns <out>/<D>."""
    if not own:
        with out_lock(out):
            recover(out)
            tmp = out / f".{staged.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                check_files(staged)
                shutil.copytree(staged, tmp, copy_function=_link)
                return publish_folder(tmp, out, url, decision, own=True, summary_writer=summary_writer)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    from s1mig import release

    manifest = json.loads((staged / "manifest.json").read_text())
    ds = manifest["report_date"]
    target = out / ds
    previous = previous_manifest(target)
    revision = next_revision(target, previous, manifest["files"])
    if revision != manifest.get("revision"):
        manifest["revision"] = revision
        _replace_file(staged / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    record = json.loads((staged / "evidence.json").read_text())
    record = evidence.with_release(record, revision, decision)
    _replace_file(staged / "evidence.json", json.dumps(record, indent=2) + "\n")
    if summary_writer is not None and (staged / "run-summary.html").exists():
        (staged / "run-summary.html").unlink()
        summary_writer(staged, target)
    day = dt.date.fromisoformat(ds)
    with db.connect(url) as conn, conn.transaction():
        check_releasable(conn, record, target)
        conn.execute(evidence.EVIDENCE_DDL)
        conn.execute(
            "delete from audit.export_evidence where run_id = %s and report_date = %s", (record["run_id"], day)
        )
        conn.execute(
            "insert into audit.export_evidence (run_id, report_date, evidence) values (%s, %s, %s)",
            (record["run_id"], day, json.dumps(record)),
        )
        release.record(conn, record["run_id"], day, decision, revision, out, record)
        _carry_revisions(target, staged, previous, revision)
        _swap_into_place(staged, target)  # inside the transaction: no evidence row without files
    if previous is not None and revision != int(previous.get("revision", 1)):
        log.info("export %s: revision %d published, revision %s kept", ds, revision, previous.get("revision", 1))
    return target


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Publish tmp as target. Where the system can, the two folders are exchanged in one
    step (the old one is left at tmp for the caller to remove): a reader sees the old
    date or the new one, never neither. Elsewhere two renames, with a moment between."""
    if target.exists() and _exchange(tmp, target):
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
