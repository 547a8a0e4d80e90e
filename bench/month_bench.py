"""B8, B9 and B10 at the national scale (`bench/run.py --national-month`, not part of
`make bench`): one national month, as a warehouse that catches up lives it.

* generate 15 million installations and 31 days of drops (the first carries a week of
  history; --landing-cache keeps and reuses them);
* day 1 (the history) through s1mig.pipeline.run_direct, untimed for the figures;
* days 2 .. 31 each through `s1mig run` (the DAG through Airflow), one after the other,
  exactly as `s1mig backfill` runs them; each day is timed, and the database is measured
  after it.

B9 backfill: the mean of those 30 days (target <= 40 s a day).
B8 national day: day 31's run, with the split by task from `s1mig run`'s progress lines
(target <= 45 s).
B10 storage: the database's growth from the end of day 1 to the end of day 31, per day
(target <= 0.25 GB), with the growth by schema.

A day that fails or passes --stage-timeout ends the month; the figures then cover the
days that finished.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    S1MIG,
    Figure,
    Home,
    Measured,
    Report,
    Server,
    child_cmd,
    drop_rows,
    generate,
    progress,
    run_measured,
)
from daily_bench import _airflow_tasks, top_dbt_nodes

START = dt.date(2020, 7, 31)
DB = "b8_national_month"
B8_TARGET_S = 45.0
B9_TARGET_S = 40.0
B10_TARGET_GB = 0.25


@dataclass
class Day:
    day: dt.date
    measured: Measured
    sizes: dict[str, int]  # bytes by schema after the day
    attempts: int
    relations: dict[str, int]  # bytes by relation after the day

    @property
    def total(self) -> int:
        return sum(self.sizes.values())


def relation_sizes(server: Server) -> dict[str, int]:
    """Bytes of every table (with its indexes and TOAST) as schema.table."""
    rows = server.execute(
        "select n.nspname || '.' || c.relname, pg_total_relation_size(c.oid) from pg_class c "
        "join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('r', 'm', 'p') "
        "and n.nspname not in ('pg_catalog', 'information_schema')",
        DB,
    )
    return {str(name): int(size) for name, size in rows}


def schema_sizes(relations: dict[str, int], server: Server) -> dict[str, int]:
    """`relations` (relation_sizes) summed by schema, plus everything else the database
    holds (catalogs, free space map) as `(other)`."""
    sizes: dict[str, int] = {}
    for name, size in relations.items():
        schema = name.split(".", 1)[0]
        sizes[schema] = sizes.get(schema, 0) + size
    whole = int(server.execute(f"select pg_database_size('{DB}')")[0][0])
    sizes["(other)"] = whole - sum(sizes.values())
    return sizes


def _largest_growth(base: dict[str, int], last: Day, limit: int = 12) -> list[tuple[str, int]]:
    grown = {name: last.relations.get(name, 0) - base.get(name, 0) for name in last.relations.keys() | base.keys()}
    return sorted(grown.items(), key=lambda kv: -kv[1])[:limit]


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _task_split(m: Measured) -> str:
    starts = sorted(_airflow_tasks(m.log).items(), key=lambda kv: kv[1])
    if not starts:
        return "no task lines"
    parts = [f"before the first task {starts[0][1]:.1f}s"]
    for (name, at), nxt in zip(starts, [s[1] for s in starts[1:]] + [m.seconds], strict=True):
        parts.append(f"{name} {nxt - at:.1f}s")
    return ", ".join(parts)


def run(root: Path, server: Server, report: Report, args: argparse.Namespace) -> None:
    landing = root / "landing-month"
    home = Home(root, "month")
    days, installations, volume = args.month_days, args.national_installations, args.national_daily_volume
    cap = args.stage_timeout
    progress(f"B8-B10: {installations:,} installations, {volume:g} MA requests a day, {days} days; cap {cap:.0f}s")
    generate(landing, START, days, installations, volume, home.logs("generate.log"))
    url = server.create(DB)
    env = home.env(url)
    out = home.path / "exports"

    cmd = child_cmd("direct", "--landing", str(landing), "--date", START.isoformat(), "--out", str(out))
    first = run_measured(f"day 1 ({START}) direct", cmd, env, home.logs("day1.log"), cap).check()
    progress(f"day 1: {first.seconds:.0f}s " + ", ".join(f"{k} {v:.0f}s" for k, v in first.steps().items()))
    run_measured("airflow db migrate", child_cmd("airflow-migrate"), env, home.logs("migrate.log")).check()
    server.execute("checkpoint")
    base_relations = relation_sizes(server)
    base = schema_sizes(base_relations, server)
    progress(f"after day 1: database {_gb(sum(base.values()))}")

    done: list[Day] = []
    last_day = min(args.month_last_day or days, days)
    for k in range(2, last_day + 1):
        day = START + dt.timedelta(days=k - 1)
        d = day.isoformat()
        cmd = [S1MIG, "run", "--landing", str(landing), "--date", d, "--out", str(out)]
        m = run_measured(f"day {k} ({d}) s1mig run", cmd, env, home.logs(f"run-{d}.log"), cap)
        if not m.ok:
            if m.timed_out:
                server.cancel(DB)
            progress(f"day {k} did not finish ({'time cap' if m.timed_out else f'exit {m.returncode}'}): month ends")
            break
        results = home.path / "dbt" / "target" / "run_results.json"
        if results.is_file():  # each day's dbt node times, for where day 31's time went
            shutil.copy(results, home.logs(f"run_results-{d}.json"))
        server.execute("checkpoint")
        relations = relation_sizes(server)
        attempts = drop_rows(landing, day)["migration_attempts"]
        done.append(Day(day, m, schema_sizes(relations, server), attempts, relations))
        last = done[-1]
        progress(
            f"day {k}: {m.seconds:.1f}s, {last.attempts:,} attempts; database {_gb(last.total)} "
            f"(+{_gb(last.total - (done[-2].total if len(done) > 1 else sum(base.values())))})"
        )
    _figures(report, last_day, base, base_relations, done, home)


def _figures(
    report: Report, days: int, base: dict[str, int], base_relations: dict[str, int], done: list[Day], home: Home
) -> None:
    if not done:
        return
    seconds = [d.measured.seconds for d in done]
    mean = sum(seconds) / len(seconds)
    worst = max(done, key=lambda d: d.measured.seconds)
    partial = "" if len(done) == days - 1 else f" (only {len(done)} of {days - 1} days finished)"
    report.add(
        Figure(
            "B9",
            "backfill (a day)",
            mean,
            B9_TARGET_S,
            unit="s",
            details=[
                f"days 2-{len(done) + 1} each through `s1mig run`{partial}: mean {mean:.1f}s, "
                f"min {min(seconds):.1f}s, max {worst.measured.seconds:.1f}s ({worst.day}), "
                f"{sum(d.attempts for d in done) / len(done):,.0f} attempts a day",
                "per day (day number: seconds): "
                + ", ".join(f"{(d.day - START).days + 1}:{d.measured.seconds:.0f}" for d in done),
            ],
        )
    )
    last = done[-1]
    report.add(
        Figure(
            "B8",
            f"national day {len(done) + 1}",
            last.measured.seconds,
            B8_TARGET_S,
            unit="s",
            details=[f"{last.day}: `s1mig run` {last.measured.seconds:.1f}s: {_task_split(last.measured)}"],
        )
    )
    results = home.logs(f"run_results-{last.day.isoformat()}.json")
    if results.is_file():
        target = home.path / "dbt" / "target" / "run_results.json"
        target.write_text(results.read_text())
        for line in top_dbt_nodes(home, limit=12):
            report.note(f"where dbt's time went on {last.day}: {line}")
    grown = last.total - sum(base.values())
    per_day = grown / len(done)
    by_schema = {s: last.sizes.get(s, 0) - base.get(s, 0) for s in last.sizes.keys() | base.keys()}
    report.add(
        Figure(
            "B10",
            "storage (a day)",
            per_day / 1e9,
            B10_TARGET_GB,
            unit=" GB",
            details=[
                f"database {_gb(sum(base.values()))} after day 1, {_gb(last.total)} after day {len(done) + 1}: "
                f"{_gb(per_day)} a day over {len(done)} days",
                "growth by schema a day: "
                + ", ".join(f"{s} {_gb(v / len(done))}" for s, v in sorted(by_schema.items(), key=lambda kv: -kv[1])),
                f"after day {len(done) + 1}: " + json.dumps({s: round(v / 1e9, 2) for s, v in last.sizes.items()}),
                "growth by relation a day, the largest 12 (tables remade each run count their last size): "
                + ", ".join(f"{n} {v / len(done) / 1e6:.1f} MB" for n, v in _largest_growth(base_relations, last)),
            ],
        )
    )
