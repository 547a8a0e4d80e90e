"""B5 export: s1mig.export.export_date against psql `\\copy (SELECT ...) TO` of the same
rows with the same queries, and the export's peak RSS at two mart sizes.

The marts come from B3's direct run (day 2). Building marts of a realistic daily size
takes hours with the current models (see B2), so the rows of D in the row-level marts
(001, 002, 003, 006, 008, 009) are multiplied with synthetic copies that differ in one
key column (`<id>~<n>`); the aggregate marts (004, 005, 007, 010) stay as built. The
export only streams marts, so what the rows say does not matter, only how many there
are. The baseline runs, in one psql session and one REPEATABLE READ transaction, one
`\\copy (select ...) to '<file>'` per party and report with the query export.py builds
(same columns and formats, filter and sort); its files are checked byte for byte
against the export's manifest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import shutil
from pathlib import Path

from benchlib import (
    BenchError,
    Figure,
    Home,
    Measured,
    Report,
    Server,
    child_cmd,
    clean_env,
    progress,
    psql_path,
    run_measured,
)

TARGET = 1.3
RSS_FLAT = 1.10
KEY_COLUMNS = ("installation_id", "ma_file_name", "cof_file_name")
DB = "b5_export"


def _pk_columns(server: Server, table: str) -> list[str]:
    rows = server.execute(
        "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) "
        f"where i.indrelid = 'marts.{table}'::regclass and i.indisprimary",
        DB,
    )
    return [r[0] for r in rows]


def _columns(server: Server, table: str) -> list[tuple[str, str]]:
    rows = server.execute(
        "select column_name, data_type from information_schema.columns "
        f"where table_schema = 'marts' and table_name = '{table}' order by ordinal_position",
        DB,
    )
    return [(r[0], r[1]) for r in rows]


def _inflatable(server: Server) -> dict[str, str]:
    """mart -> the key column its synthetic copies vary."""
    from s1mig.contract import REPORTS

    out: dict[str, str] = {}
    for report in REPORTS:
        pk = _pk_columns(server, report.model)
        key = next((c for c in KEY_COLUMNS if c in pk), None)
        if key:
            out[report.model] = key
    return out


def _rows_of_day(server: Server, day: dt.date, tables: list[str]) -> int:
    total = 0
    for table in tables:
        total += int(server.execute(f"select count(*) from marts.{table} where report_date = '{day}'", DB)[0][0])
    return total


def _inflate(server: Server, day: dt.date, marts: dict[str, str], first: int, last: int) -> None:
    """Add copies first..last of D's original rows of each row-level mart."""
    for table, key in marts.items():
        cols = [c for c, _ in _columns(server, table)]
        select = ", ".join(f"{c} || '~' || g::text" if c == key else c for c in cols)
        server.execute(
            f"insert into marts.{table} ({', '.join(cols)}) select {select} "
            f"from marts.{table} cross join generate_series({first}, {last}) as g "
            f"where report_date = '{day}' and {key} not like '%~%'",
            DB,
        )
    server.execute("vacuum analyze", DB)


def _baseline_script(server: Server, day: dt.date, out: Path, script: Path) -> list[tuple[str, Path]]:
    """The psql script of the export's queries; returns (relative path, file) pairs."""
    from s1mig.contract import LOCAL_TZ, REPORTS

    parties = [
        r[0]
        for r in server.execute(
            "select distinct party_id from staging.stg_dcc__parties "
            f"where effective_from < (('{day}'::date + 1)::timestamp at time zone '{LOCAL_TZ}') order by party_id",
            DB,
        )
    ]
    compact = day.strftime("%Y%m%d")
    lines = ["\\set ON_ERROR_STOP 1", "begin transaction isolation level repeatable read, read only;"]
    files: list[tuple[str, Path]] = []
    shutil.rmtree(out, ignore_errors=True)
    for party in parties:
        (out / party).mkdir(parents=True)
        for report in REPORTS:
            types = _columns(server, report.model)
            kinds = dict(types)
            select = []
            for name, data_type in types:
                if data_type == "timestamp with time zone":
                    select.append(
                        f"""to_char("{name}" at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') as "{name}\""""
                    )
                elif data_type == "date":
                    select.append(f"""to_char("{name}", 'YYYY-MM-DD') as "{name}\"""")
                else:
                    select.append(f'"{name}"')
            order = ", ".join(f'"{c}" collate "C"' if kinds[c] == "text" else f'"{c}"' for c in report.key)
            query = (
                f'select {", ".join(select)} from marts."{report.model}" '
                f"where report_date = '{day}'::date and party_id = '{party}' order by {order}"
            )
            rel = f"{party}/{report.report_id}_{party}_{compact}.csv"
            files.append((rel, out / rel))
            lines.append(f"\\copy ({query}) to '{out / rel}' with (format csv, header true)")
    lines.append("commit;")
    script.write_text("\n".join(lines) + "\n")
    return files


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _same_bytes(files: list[tuple[str, Path]], export_folder: Path) -> tuple[int, int]:
    """How many baseline files equal the export's (by the sha256 in its manifest)."""
    manifest = json.loads((export_folder / "manifest.json").read_text())
    expected = {f["path"]: f["sha256"] for f in manifest["files"]}
    same = sum(1 for rel, path in files if expected.get(rel) == _sha256(path))
    return same, len(expected)


def _measure(home: Home, server: Server, day: dt.date, label: str, rounds: int) -> tuple[float, float, float, str]:
    """Export and psql baseline alternately, `rounds` times: best export time (the
    export_date call), best psql wall time, worst export peak RSS, byte check."""
    env = home.env(server.url(DB))
    out = home.path / f"exports-{label}"
    script = home.path / f"copy-{label}.sql"
    files = _baseline_script(server, day, home.path / f"psql-{label}", script)
    exports: list[Measured] = []
    copies: list[Measured] = []
    for r in range(1, rounds + 1):
        server.checkpoint()
        cmd = child_cmd("export", "--date", day.isoformat(), "--out", str(out))
        exports.append(run_measured(f"B5 export_date ({label}, {r})", cmd, env, home.logs(f"export-{label}.log")))
        exports[-1].check()
        server.checkpoint()
        cmd = [psql_path(), server.url(DB), "-X", "-q", "-f", str(script)]
        copies.append(run_measured(f"B5 psql \\copy ({label}, {r})", cmd, clean_env(), home.logs(f"psql-{label}.log")))
        copies[-1].check()
    same, total = _same_bytes(files, out / day.isoformat())
    if same != total:
        progress(f"B5 warning: {total - same} of {total} baseline files differ from the export (queries drifted?)")
    return (
        min(m.inner() for m in exports),
        min(m.seconds for m in copies),
        max(m.max_rss_mb for m in exports),
        f"{same}/{total} files byte-identical",
    )


def run(
    root: Path,
    server: Server,
    report: Report,
    source_db: str,
    base: Home,
    day: dt.date,
    sizes: tuple[int, int],
    rounds: int = 2,
) -> None:
    home = Home(root, "b5_export")
    home.copy_state_from(base)
    server.create(DB, source_db)
    marts = _inflatable(server)
    if not marts:
        raise BenchError("B5: no row-level mart with an id column in its primary key")
    original = _rows_of_day(server, day, list(marts))
    if original == 0:
        raise BenchError(f"B5: the marts hold no rows for {day}")
    small_copies = max(1, math.ceil(sizes[0] / original))
    big_copies = max(small_copies * 2, math.ceil(sizes[1] / original))
    _inflate(server, day, marts, 1, small_copies - 1)
    from s1mig.contract import REPORTS

    all_marts = [r.model for r in REPORTS]
    rows_small = _rows_of_day(server, day, all_marts)
    progress(f"B5 marts for {day}: {rows_small:,} rows ({original:,} built, x{small_copies})")
    e_small, p_small, rss_small, same_small = _measure(home, server, day, "small", rounds)
    _inflate(server, day, marts, small_copies, big_copies - 1)
    rows_big = _rows_of_day(server, day, all_marts)
    progress(f"B5 marts for {day}: {rows_big:,} rows (x{big_copies})")
    e_big, p_big, rss_big, same_big = _measure(home, server, day, "big", rounds)
    report.add(
        Figure(
            "B5",
            "export",
            e_big / p_big,
            TARGET,
            [
                f"{rows_big:,} rows: export_date {e_big:.2f}s "
                f"vs psql \\copy {p_big:.2f}s, best of {rounds} ({same_big})",
                f"{rows_small:,} rows: export_date {e_small:.2f}s vs psql \\copy {p_small:.2f}s "
                f"(ratio {e_small / p_small:.2f}; {same_small})",
            ],
        )
    )
    report.add(
        Figure(
            "B5",
            "export-rss",
            rss_big / rss_small,
            RSS_FLAT,
            [
                f"peak RSS of the export: {rss_small:.0f} MB at {rows_small:,} rows, "
                f"{rss_big:.0f} MB at {rows_big:,} rows"
            ],
        )
    )
    server.drop(DB)
