"""B6 national scale (`bench/run.py --national`, not part of `make bench`): generate 15
million installations (two days of drops, the first carrying a week of history), land
and build the full history once (day 1: land, dbt build, gate, export), then one daily
run on top (day 2: the same four steps). Every stage runs in its own child process and
reports its wall time, the child's peak RSS (wait4) and the PostgreSQL server's peak
memory (sum of Pss of its processes, sampled every second), plus the database size.

There is no target: the figures show whether a national day fits the night. A stage
longer than --stage-timeout is stopped; the stages that depend on it are then skipped.
--pgoptions (e.g. "-c enable_nestloop=off") applies a session setting to every child,
to measure a proposal at this scale.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    Home,
    Measured,
    Report,
    Server,
    ServerMemory,
    child_cmd,
    clean_env,
    drop_rows,
    progress,
    run_measured,
)

START = dt.date(2020, 7, 31)
DB = "b6_national"


@dataclass
class StageResult:
    name: str
    measured: Measured
    server_mb: float
    db_gb: float

    def line(self) -> str:
        m = self.measured
        state = "stopped at the cap" if m.timed_out else ("ok" if m.ok else f"failed (exit {m.returncode})")
        extra = ""
        if m.result.get("blocked"):
            extra = " gate blocked: " + str(m.result["blocked"])[:160]
        return (
            f"B6 {self.name:22} {m.seconds:9.1f}s  client peak RSS {m.max_rss_mb:6.0f} MB  "
            f"server peak {self.server_mb:6.0f} MB  database {self.db_gb:6.2f} GB  {state}{extra}"
        )


def _db_gb(server: Server) -> float:
    rows = server.execute(f"select pg_database_size('{DB}')")
    return int(rows[0][0]) / 1e9 if rows else 0.0


def run(root: Path, server: Server, report: Report, args: argparse.Namespace) -> None:
    landing = root / "landing-national"
    home = Home(root, "national")
    installations, volume = args.national_installations, args.national_daily_volume
    cap = args.stage_timeout
    extra = {"PGOPTIONS": args.pgoptions} if args.pgoptions else {}
    results: list[StageResult] = []

    def stage(name: str, cmd: list[str], env: dict[str, str]) -> StageResult:
        with ServerMemory(server) as memory:
            m = run_measured(f"B6 {name}", cmd, env, home.logs(f"{name.replace(' ', '_')}.log"), cap)
        if m.timed_out:
            server.cancel(DB)
        result = StageResult(name, m, memory.peak_mb, _db_gb(server) if name != "generate" else 0.0)
        results.append(result)
        print(result.line(), flush=True)
        return result

    gen_cmd = child_cmd(
        "generate",
        "--out",
        str(landing),
        "--start",
        START.isoformat(),
        "--days",
        "2",
        "--installations",
        str(installations),
        "--daily-volume",
        str(volume),
    )
    progress(f"B6: {installations:,} installations, {volume:g} MA requests a day; stage cap {cap:.0f}s")
    if not stage("generate", gen_cmd, clean_env()).measured.ok:
        return
    for day in (START, START + dt.timedelta(days=1)):
        rows = drop_rows(landing, day)
        size = sum(p.stat().st_size for p in (landing / day.isoformat()).iterdir()) / 1e9
        progress(f"B6 drop {day}: {sum(rows.values()):,} rows, {size:.1f} GB: {rows}")
    url = server.create(DB)
    env = home.env(url, **extra)
    for k, day in enumerate((START, START + dt.timedelta(days=1)), start=1):
        label = "history" if k == 1 else "daily"
        d = day.isoformat()
        steps = [
            ("land", child_cmd("land", "--landing", str(landing), "--date", d)),
            ("dbt build", child_cmd("dbt", "--date", d)),
            ("gate", child_cmd("gate", "--date", d)),
            ("export", child_cmd("export", "--date", d, "--out", str(home.path / "exports"))),
        ]
        for step, cmd in steps:
            if not stage(f"day {k} {label} {step}", cmd, env).measured.ok:
                progress(f"B6: {step} of day {k} did not finish; later stages skipped")
                _summary(results, report)
                return
    _summary(results, report)
    shutil.rmtree(landing, ignore_errors=True)


def _summary(results: list[StageResult], report: Report) -> None:
    print("\n=== B6 national scale: per stage ===", flush=True)
    for result in results:
        print(result.line(), flush=True)
    daily = [r for r in results if r.name.startswith("day 2")]
    if daily:
        total = sum(r.measured.seconds for r in daily)
        report.note(f"B6 daily run (day 2) total {total:.0f}s over {len(daily)} stage(s)")
