"""B1 landing: s1mig.land.land against psql `\\copy` of the same files, and the land
step's peak RSS at two drop sizes a factor of ten apart.

Each size is one generated first drop (the product generator at its own 5%-a-day
volume, so every size has the same mix of extracts). The land step runs in a child
process into a fresh database whose raw schema already exists (as on any day after the
first); psql loads the same files into the same tables (created by the product's own
raw DDL, so columns, lineage defaults and index are identical) in one transaction,
setting the same lineage settings the land step sets. The ratio compares the land
call's own time with psql's wall time at the larger size (best of the rounds); the
peak RSS is the child's, from wait4()."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
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
    drop_rows,
    generate,
    progress,
    psql_path,
    run_measured,
)

ROWS_PER_INSTALLATION = 3.6  # rows of a first drop per base installation at 5% a day
RSS_FLAT = 1.10
RSS_LIMIT_MB = 300.0
TARGET = 1.3


def _prepare_raw(url: str) -> None:
    from s1mig import db, land

    with db.connect(url) as conn:
        land.ensure_raw_schema(conn)


def _copy_script(drop_dir: Path, day: dt.date, path: Path) -> Path:
    """psql script: the same COPY per file into the same raw tables, one transaction."""
    import json

    from s1mig.contract import EXTRACTS_BY_NAME

    manifest = json.loads((drop_dir / "manifest.json").read_text())
    lines = [
        "\\set ON_ERROR_STOP 1",
        "begin;",
        f"select set_config('s1mig.drop_date', '{day.isoformat()}', true);",
    ]
    for entry in manifest["extracts"]:
        ex = EXTRACTS_BY_NAME[entry["name"]]
        lines.append(
            f"select set_config('s1mig.file_name', '{entry['file']}', true), setval('raw.row_number_seq', 1, false);"
        )
        lines.append(
            f"\\copy raw.{ex.name} ({', '.join(ex.columns)}) from '{drop_dir / entry['file']}' "
            "with (format csv, header true, encoding 'UTF8')"
        )
    lines.append("commit;")
    path.write_text("\n".join(lines) + "\n")
    return path


def _raw_counts(server: Server, dbname: str) -> dict[str, int]:
    from s1mig.contract import EXTRACTS

    return {ex.name: int(server.execute(f"select count(*) from raw.{ex.name}", dbname)[0][0]) for ex in EXTRACTS}


@dataclass(frozen=True)
class SizeResult:
    rows: int
    land: float  # the land.land call, best of the rounds
    land_wall: float  # its child process, start-up included
    psql: float  # psql's wall time, best of the rounds
    rss: float  # peak RSS of the land child (MB), worst of the rounds


def _one_size(root: Path, server: Server, rows_wanted: int, rounds: int, start: dt.date) -> SizeResult:
    installations = max(1000, int(rows_wanted / ROWS_PER_INSTALLATION))
    landing = root / f"landing-b1-{rows_wanted}"
    home = Home(root, f"b1_{rows_wanted}")
    generate(landing, start, 1, installations, 0.05 * installations, home.logs("generate.log"))
    rows = sum(drop_rows(landing, start).values())
    progress(f"B1 drop of {rows:,} rows ({installations:,} installations)")
    script = _copy_script(landing / start.isoformat(), start, home.path / "copy.sql")
    lands: list[Measured] = []
    copies: list[Measured] = []
    for r in range(1, rounds + 1):
        name = f"b1_land_{rows_wanted}"
        url = server.create(name)
        _prepare_raw(url)
        server.checkpoint()
        cmd = child_cmd("land", "--landing", str(landing), "--date", start.isoformat())
        lands.append(
            run_measured(f"B1 land {rows:,} rows (round {r})", cmd, home.env(url), home.logs(f"land-{r}.log")).check()
        )
        landed = _raw_counts(server, name)
        server.drop(name)

        name = f"b1_psql_{rows_wanted}"
        url = server.create(name)
        _prepare_raw(url)
        server.checkpoint()
        cmd = [psql_path(), url, "-X", "-q", "-f", str(script)]
        copies.append(
            run_measured(f"B1 psql \\copy {rows:,} rows (round {r})", cmd, clean_env(), home.logs(f"psql-{r}.log"))
        )
        copies[-1].check()
        copied = _raw_counts(server, name)
        server.drop(name)
        if landed != copied:
            raise BenchError(f"B1: land and psql loaded different rows: {landed} vs {copied}")
    shutil.rmtree(landing, ignore_errors=True)
    return SizeResult(
        rows=rows,
        land=min(m.inner() for m in lands),
        land_wall=min(m.seconds for m in lands),
        psql=min(m.seconds for m in copies),
        rss=max(m.max_rss_mb for m in lands),
    )


def run(root: Path, server: Server, report: Report, sizes: tuple[int, int], rounds: int, start: dt.date) -> None:
    small = _one_size(root, server, sizes[0], rounds, start)
    big = _one_size(root, server, sizes[1], rounds, start)
    report.add(
        Figure(
            "B1",
            "landing",
            big.land / big.psql,
            TARGET,
            [
                f"{big.rows:,} rows: land.land {big.land:.2f}s (child process wall {big.land_wall:.2f}s) "
                f"vs psql \\copy {big.psql:.2f}s; best of {rounds}",
                f"{small.rows:,} rows: land.land {small.land:.2f}s vs psql \\copy {small.psql:.2f}s "
                f"(ratio {small.land / small.psql:.2f})",
            ],
        )
    )
    rss_small, rss_big = small.rss, big.rss
    growth = rss_big / rss_small
    report.add(
        Figure(
            "B1",
            "landing-rss",
            growth,
            RSS_FLAT,
            [
                f"peak RSS of the land step: {rss_small:.0f} MB at {small.rows:,} rows, "
                f"{rss_big:.0f} MB at {big.rows:,} rows (limit {RSS_LIMIT_MB:.0f} MB)",
            ],
            passed=growth <= RSS_FLAT and max(rss_small, rss_big) < RSS_LIMIT_MB,
        )
    )
