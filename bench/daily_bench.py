"""The daily-run figures: B3 orchestration, B2 incremental and B4 gate.

One generated landing (`days` consecutive drops at a fixed daily volume) serves them
all. The base database holds day 1 landed and built by the direct pipeline (so the
marts exist and the next run is the ordinary incremental one); every contender gets a
copy of it (CREATE DATABASE ... TEMPLATE) and of the base S1MIG_HOME (dbt target, GX
project, migrated Airflow home), so all start equally warm.

* B3: `s1mig run` (the s1mig_daily DAG through `airflow dags test`) for day 2 against
  s1mig.pipeline.run_direct for day 2, each in a child process, wall time.
* B2: run_direct for the last day (all earlier drops landed and one dbt build for the
  day before, untimed: the warehouse as daily running leaves it) against B3's
  run_direct for day 2: the same measurement, 30 days more history.
* B4: the GX checkpoint (s1mig_expectations.run_checkpoint) against the rules' SQL as
  one plain script, on B3's direct database after its run (SQL, GX, SQL; the mean of
  the two SQL runs is the baseline).
"""

from __future__ import annotations

import datetime as dt
import json
import re
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

B2_TARGET = 1.5
B3_TARGET = 1.25
B4_TARGET = 2.0
BASE_DB = "bench_base"
DAY2_DB = "bench_day2_landed"
_TASK_LINE = re.compile(r"\[\s*([0-9.]+)s\] \S+ (\w+) \.\.\.")


@dataclass
class World:
    """The generated landing and the prepared base (day 1 built)."""

    root: Path
    server: Server
    landing: Path
    start: dt.date
    days: int
    base: Home
    run_cap: float

    @property
    def day2(self) -> dt.date:
        return self.start + dt.timedelta(days=1)

    @property
    def last(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)

    def contender(self, name: str, template: str = BASE_DB) -> tuple[Home, str]:
        home = Home(self.root, name)
        home.copy_state_from(self.base)
        return home, self.server.create(name, template)

    def land_history(self, name: str, home: Home, env: dict[str, str], day: dt.date) -> None:
        """Untimed: land every drop from day 2 to the day before `day`, build the day before
        once and move the gate's state to it, leaving the warehouse as running daily would
        (staging holds every earlier drop, the tables and the gate's state were last moved
        for the day before)."""
        before = day - dt.timedelta(days=1)
        if before <= self.day2 - dt.timedelta(days=1):
            return
        cmd = child_cmd(
            "land", "--landing", str(self.landing), "--date", self.day2.isoformat(), "--until", before.isoformat()
        )
        run_measured(f"{name}: land {self.day2} .. {before}", cmd, env, home.logs("history.log")).check()
        cmd = child_cmd("dbt", "--date", before.isoformat())
        run_measured(f"{name}: catch-up build of {before}", cmd, env, home.logs("catchup.log")).check()
        # and the gate's own state (R8's expectation), which the daily gate of the day before
        # leaves as at its end: without it, the measured day's gate would catch up the
        # whole history, which a daily service never does
        cmd = child_cmd("gate-state", "--date", before.isoformat())
        run_measured(f"{name}: gate state as at {before}", cmd, env, home.logs("catchup.log")).check()

    def attempts(self, day: dt.date) -> int:
        return drop_rows(self.landing, day)["migration_attempts"]

    def history_attempts(self, day: dt.date) -> int:
        total, d = 0, self.start
        while d <= day:
            total += self.attempts(d)
            d += dt.timedelta(days=1)
        return total


def prepare(
    root: Path,
    server: Server,
    start: dt.date,
    days: int,
    installations: int,
    daily_volume: float,
    run_cap: float,
    day2_db: bool = True,
) -> World:
    """`day2_db`: also keep a copy of the base with day 2 landed (C1's starting point)."""
    landing = root / "landing-daily"
    base = Home(root, "base")
    generate(landing, start, days, installations, daily_volume, base.logs("generate.log"))
    world = World(root, server, landing, start, days, base, run_cap)
    url = server.create(BASE_DB)
    env = base.env(url)
    out = base.path / "exports"
    cmd = child_cmd("direct", "--landing", str(landing), "--date", start.isoformat(), "--out", str(out))
    first = run_measured(f"base: day 1 ({start}) landed and built", cmd, env, base.logs("day1.log"), run_cap).check()
    progress(f"base: day 1 steps {_steps(first)}")
    run_measured("base: airflow db migrate", child_cmd("airflow-migrate"), env, base.logs("migrate.log")).check()
    if day2_db:
        url2 = server.create(DAY2_DB, BASE_DB)
        cmd = child_cmd("land", "--landing", str(landing), "--date", world.day2.isoformat())
        run_measured(f"base: day 2 ({world.day2}) landed only", cmd, base.env(url2), base.logs("land-day2.log")).check()
    return world


def _steps(m: Measured) -> str:
    return ", ".join(f"{k} {v:.1f}s" for k, v in m.steps().items())


def _airflow_tasks(log: Path) -> dict[str, float]:
    """Start offsets of the DAG's tasks, from the progress lines `s1mig run` prints."""
    starts: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = _TASK_LINE.search(line)
        if m and m.group(2) not in starts:
            starts[m.group(2)] = float(m.group(1))
    return starts


@dataclass
class DailyResults:
    direct_home: Home
    direct_db: str
    direct: Measured


def orchestration(world: World, report: Report, with_airflow: bool = True) -> DailyResults:
    """Day 2 run directly (B2's baseline, B4's and B5's database) and, for B3, through
    Airflow; the Airflow contender's database is dropped once measured (disk: at full
    scale every copy is a national warehouse)."""
    d = world.day2.isoformat()
    home_d, url_d = world.contender("b3_direct")
    cmd = child_cmd("direct", "--landing", str(world.landing), "--date", d, "--out", str(home_d.path / "exports"))
    direct = run_measured(f"B3 run_direct {d}", cmd, home_d.env(url_d), home_d.logs("direct.log"), world.run_cap)
    direct.check()
    if not with_airflow:
        return DailyResults(home_d, "b3_direct", direct)

    home_a, url_a = world.contender("b3_airflow")
    cmd = [S1MIG, "run", "--landing", str(world.landing), "--date", d, "--out", str(home_a.path / "exports")]
    airflow = run_measured(f"B3 s1mig run (Airflow) {d}", cmd, home_a.env(url_a), home_a.logs("run.log"), world.run_cap)
    airflow.check()
    world.server.drop("b3_airflow")

    starts = _airflow_tasks(airflow.log)
    first = min(starts.values()) if starts else float("nan")
    report.add(
        Figure(
            "B3",
            "orchestration",
            airflow.seconds / direct.seconds,
            B3_TARGET,
            [
                f"day {d}: s1mig run {airflow.seconds:.1f}s vs run_direct {direct.seconds:.1f}s "
                f"(+{airflow.seconds - direct.seconds:.1f}s for Airflow)",
                f"Airflow: first task started {first:.1f}s after `airflow dags test` was launched; task starts "
                + ", ".join(f"{k} @{v:.1f}s" for k, v in starts.items()),
                f"direct steps: {_steps(direct)}; peak RSS s1mig run {airflow.max_rss_mb:.0f} MB, "
                f"direct {direct.max_rss_mb:.0f} MB",
            ],
        )
    )
    return DailyResults(home_d, "b3_direct", direct)


def incremental(world: World, report: Report, daily: DailyResults, cap: float) -> None:
    day2 = daily.direct
    last = world.last
    home, url = world.contender("b2_last_day")
    world.land_history("B2 history", home, home.env(url), last)
    out = home.path / "exports"
    cmd = child_cmd("direct", "--landing", str(world.landing), "--date", last.isoformat(), "--out", str(out))
    m = run_measured(f"B2 run_direct {last} (day {world.days})", cmd, home.env(url), home.logs("direct.log"), cap)
    if m.timed_out:
        world.server.cancel("b2_last_day")
    else:
        m.check()
    same_volume = world.attempts(last) >= 0.5 * world.attempts(world.day2)
    details = [
        f"day 2 ({world.day2}): {day2.seconds:.1f}s [{_steps(day2)}] with {world.attempts(world.day2):,} attempts "
        f"that day, {world.history_attempts(world.day2):,} in history (B3's direct run)",
        f"day {world.days} ({last}): {m.seconds:.1f}s [{_steps(m) or 'no step finished'}] with "
        f"{world.attempts(last):,} attempts that day, {world.history_attempts(last):,} in history",
    ]
    if not same_volume:
        details.append(
            "WARNING: the last day has under half of day 2's attempts (the generated base ran dry): "
            "not the same daily volume, raise the scale's installations"
        )
    if m.timed_out:
        details.append(
            f"day {world.days} was stopped at the {cap:.0f}s cap: the ratio is a lower bound "
            "(see docs/performance.md for the uncapped growth)"
        )
    report.add(Figure("B2", "incremental", m.seconds / day2.seconds, B2_TARGET, details))
    for line in top_dbt_nodes(home):
        report.note(f"where dbt's time went (run_direct, day {world.days}): {line}")
    for line in dbt_node_growth(daily.direct_home, home):
        report.note(f"what grew from day 2 to day {world.days}: {line}")


def gate(world: World, report: Report, daily: DailyResults) -> None:
    d = world.day2.isoformat()
    home, url = daily.direct_home, world.server.url(daily.direct_db)
    env = home.env(url)
    cap = world.run_cap
    sql_cmd = child_cmd("gate-sql", "--date", d)
    sql1 = run_measured("B4 rules as one SQL script (1)", sql_cmd, env, home.logs("gate-sql-1.log"), cap).check()
    gx_cmd = child_cmd("gate-gx", "--date", d)
    gx = run_measured("B4 GX checkpoint", gx_cmd, env, home.logs("gate-gx.log"), cap).check()
    sql2 = run_measured("B4 rules as one SQL script (2)", sql_cmd, env, home.logs("gate-sql-2.log"), cap).check()
    baseline = (sql1.inner() + sql2.inner()) / 2
    outcomes = gx.result.get("outcomes", {})
    imported = float(gx.result.get("import_seconds", 0.0))
    failing = {k: v[1] for k, v in outcomes.items() if v[1]}
    sql_rows = {k: v for k, v in sql1.result.get("unexpected_rows", {}).items() if v}
    report.add(
        Figure(
            "B4",
            "gate",
            gx.inner() / baseline,
            B4_TARGET,
            [
                f"day {d}: run_checkpoint {gx.inner():.2f}s vs SQL script {sql1.inner():.2f}s / {sql2.inner():.2f}s "
                f"({len(outcomes)} rules; unexpected rows GX {failing or 'none'}, SQL {sql_rows or 'none'})",
                f"of the checkpoint, importing great_expectations took {imported:.2f}s; without it the ratio is "
                f"{(gx.inner() - imported) / baseline:.2f}",
            ],
        )
    )


def _node_times(home: Home) -> dict[str, float]:
    path = home.path / "dbt" / "target" / "run_results.json"
    if not path.is_file():
        return {}
    return {r["unique_id"]: float(r.get("execution_time") or 0) for r in json.loads(path.read_text())["results"]}


def dbt_node_growth(before: Home, after: Home, limit: int = 12) -> list[str]:
    """The dbt nodes whose time grew most between two builds, and the totals per kind."""
    a, b = _node_times(before), _node_times(after)
    if not a or not b:
        return []
    kinds: dict[str, list[float]] = {}
    for node in a.keys() | b.keys():
        total = kinds.setdefault(node.split(".")[0], [0.0, 0.0])
        total[0] += a.get(node, 0.0)
        total[1] += b.get(node, 0.0)
    lines = ["node time by kind: " + ", ".join(f"{k} {v[0]:.1f}s -> {v[1]:.1f}s" for k, v in sorted(kinds.items()))]
    grown = sorted(a.keys() | b.keys(), key=lambda n: a.get(n, 0.0) - b.get(n, 0.0))
    for node in grown[:limit]:
        lines.append(
            f"{b.get(node, 0.0) - a.get(node, 0.0):+7.2f}s ({a.get(node, 0.0):.2f}s -> {b.get(node, 0.0):.2f}s) {node}"
        )
    return lines


def top_dbt_nodes(home: Home, limit: int = 8) -> list[str]:
    """The slowest dbt nodes of the last build in `home` (dbt's run_results.json)."""
    path = home.path / "dbt" / "target" / "run_results.json"
    if not path.is_file():
        return []
    results = json.loads(path.read_text())
    nodes = sorted(results["results"], key=lambda r: -float(r.get("execution_time") or 0))
    total = sum(float(r.get("execution_time") or 0) for r in results["results"])
    lines = [f"dbt build elapsed {results.get('elapsed_time', 0):.1f}s, node time {total:.1f}s over {len(nodes)} nodes"]
    for r in nodes[:limit]:
        lines.append(f"{float(r.get('execution_time') or 0):7.2f}s {r['unique_id']}")
    return lines
