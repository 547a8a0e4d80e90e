"""B7 population: the same daily volume on top of a big and a small population.

Two landings from the product generator, the same start, days (2) and daily volume (MA
requests a day; the first drop carries the same week of history), one with `big`
installations and one with `small`. Each gets its own database: day 1 (the history)
landed and built, and the gate's own state brought to its end (untimed; the day-1 gate
itself is skipped, below); then day 2, the daily run timed (land,
dbt build, gate, export, summary: s1mig.pipeline.run_direct in a child process). The
ratio is day 2 on the big population over day 2 on the small one: a daily run whose
cost follows the day's changes, not the population, stays near 1. The small contender
runs first, then the big one (never both at once); each database is dropped once
measured (disk).

    .venv/bin/python bench/run.py --only B7                              # 1,000,000 vs 100,000
    .venv/bin/python bench/run.py --only B7 --population 3000000,300000  # any two sizes
    .venv/bin/python bench/run.py --scale full --only B7                 # 15,000,000 vs 1,000,000
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import daily_bench
from benchlib import Figure, Home, Measured, Report, Server, child_cmd, drop_rows, generate, run_measured

B7_TARGET = 1.5
DAYS = 2


def _contender(
    root: Path, server: Server, start: dt.date, installations: int, daily_volume: float, cap: float
) -> tuple[Measured, Home, Path]:
    name = f"b7_{installations}"
    landing = root / f"landing-{name}"
    home = Home(root, name)
    generate(landing, start, DAYS, installations, daily_volume, home.logs("generate.log"))
    url = server.create(name)
    env = home.env(url)
    out = home.path / "exports"
    day1, day2 = start.isoformat(), (start + dt.timedelta(days=1)).isoformat()
    # day 1: landed and built, and the gate's own state brought to its end, as the day-1 run
    # leaves them (its gate itself is not run: rule R3 on a first drop carrying a week of
    # history plans a nested loop over that week's attempts and takes minutes)
    for step, cmd in (
        ("landed", child_cmd("land", "--landing", str(landing), "--date", day1)),
        ("built", child_cmd("dbt", "--date", day1)),
        ("gate state", child_cmd("gate-state", "--date", day1)),
    ):
        label = f"B7 {installations:,}: day 1 ({day1}) {step}"
        run_measured(label, cmd, env, home.logs(f"day1-{step.replace(' ', '-')}.log"), cap).check()
    cmd = child_cmd("direct", "--landing", str(landing), "--date", day2, "--out", str(out))
    m = run_measured(f"B7 {installations:,}: day 2 ({day2}), the daily run", cmd, env, home.logs("day2.log"), cap)
    server.drop(name)
    return m.check(), home, landing


def run(
    root: Path,
    server: Server,
    report: Report,
    start: dt.date,
    population: tuple[int, int],
    daily_volume: float,
    cap: float,
) -> None:
    big, small = max(population), min(population)
    results = {}
    for installations in (small, big):
        results[installations] = _contender(root, server, start, installations, daily_volume, cap)
    (m_small, home_small, landing_small), (m_big, home_big, landing_big) = results[small], results[big]
    day2 = start + dt.timedelta(days=1)
    rows_small, rows_big = drop_rows(landing_small, day2), drop_rows(landing_big, day2)

    def steps(m: Measured) -> str:
        return ", ".join(f"{k} {v:.1f}s" for k, v in m.steps().items())

    details = [
        f"day 2 on {big:,} installations: {m_big.seconds:.1f}s [{steps(m_big)}]; "
        f"{rows_big['migration_attempts']:,} attempts, {sum(rows_big.values()):,} rows that day",
        f"day 2 on {small:,} installations: {m_small.seconds:.1f}s [{steps(m_small)}]; "
        f"{rows_small['migration_attempts']:,} attempts, {sum(rows_small.values()):,} rows that day",
        f"population {big / small:.0f}x, daily volume {daily_volume:g} MA requests a day, {DAYS} days from {start}",
    ]
    if not 0.8 <= rows_big["migration_attempts"] / max(rows_small["migration_attempts"], 1) <= 1.25:
        details.append("WARNING: the two day-2 drops differ by more than 25% in attempts: not the same daily volume")
    report.add(Figure("B7", "population", m_big.seconds / m_small.seconds, B7_TARGET, details))
    for line in daily_bench.top_dbt_nodes(home_big):
        report.note(f"where dbt's time went (day 2, {big:,} installations): {line}")
    for line in daily_bench.dbt_node_growth(home_small, home_big):
        report.note(f"what grew from {small:,} to {big:,} installations: {line}")
