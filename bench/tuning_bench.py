"""`bench/run.py --profile`: where the daily run's time goes, and the tuning proposals
measured side by side against the product as it is (nothing in the product changes:
proposals are environment settings, a variant copy of the dbt project under the work
folder, or a bench-only variant of one function).

Parts (`--only P2,P4` runs a subset; P = profile, not a target):

* P1 growth: run_direct for day k on top of k-1 landed drops (and one catch-up build of
  day k-1), k = 2, 8, 16, last: as is, with staging and intermediate as views (the
  design before tuning, except that the history models keep the incremental config
  their own files set: a model's config wins over dbt_project.yml) and with
  enable_nestloop off, so the growth behind B2 is visible (each run capped).
* P2 plans: the slowest dbt nodes of an as-is build of day 8, each EXPLAIN ANALYZEd
  with and without nested loops: the misestimated nested loops are the cost.
* P3 dbt threads (S1MIG_DBT_THREADS 1, 2, 4) for the day-2 build.
* P4 gate: GX's fixed cost (the checkpoint with trivial queries), the rules one by one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import daily_bench
import yaml
from benchlib import (
    REPO,
    Home,
    Measured,
    Report,
    Server,
    child_cmd,
    run_measured,
)

NESTLOOP_OFF = "-c enable_nestloop=off"


def _variant_project(root: Path, name: str, staging: dict[str, Any], intermediate: dict[str, Any]) -> Path:
    """A copy of dbt_project/ whose staging / intermediate configs are overridden."""
    variant = root / "variants" / name
    shutil.rmtree(variant, ignore_errors=True)
    shutil.copytree(REPO / "dbt_project", variant / "dbt_project", ignore=shutil.ignore_patterns("target", "logs"))
    path = variant / "dbt_project" / "dbt_project.yml"
    config = yaml.safe_load(path.read_text())
    config["models"]["s1mig"]["staging"].update(staging)
    config["models"]["s1mig"]["intermediate"].update(intermediate)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return variant


def _env_for(variant: dict[str, str], home: Home, url: str) -> dict[str, str]:
    return home.env(url, **variant)


def _day_run(world: daily_bench.World, name: str, day: dt.date, extra: dict[str, str], cap: float) -> Measured:
    """run_direct for `day` on a copy of the base with every earlier drop landed."""
    home, url = world.contender(name)
    env = _env_for(extra, home, url)
    world.land_history(name, home, env, day)
    out = home.path / "exports"
    cmd = child_cmd("direct", "--landing", str(world.landing), "--date", day.isoformat(), "--out", str(out))
    m = run_measured(f"{name}: run_direct {day}", cmd, env, home.logs("direct.log"), cap)
    if m.timed_out:
        world.server.cancel(name)
    world.server.drop(name)
    return m


def _fmt(m: Measured) -> str:
    steps = ", ".join(f"{k} {v:.1f}" for k, v in m.steps().items() if v >= 0.05)
    mark = ">=" if m.timed_out else ""
    return f"{mark}{m.seconds:.1f}s [{steps}]"


def _compiled(home: Home, unique_id: str, result: dict[str, Any]) -> str:
    code = result.get("compiled_code")
    if not code:
        manifest = json.loads((home.path / "dbt" / "target" / "manifest.json").read_text())
        code = manifest["nodes"].get(unique_id, {}).get("compiled_code", "")
    return str(code or "")


def _explain(server: Server, dbname: str, query: str, nestloop: bool) -> tuple[str, str]:
    """EXPLAIN ANALYZE of `query`: its execution time and its most repeated plan node."""
    import psycopg

    with psycopg.connect(server.url(dbname), autocommit=True) as conn:
        conn.execute(f"set enable_nestloop = {'on' if nestloop else 'off'}")
        conn.execute("set statement_timeout = '900s'")
        rows = conn.execute(f"explain (analyze, timing off, summary on) {query}").fetchall()  # type: ignore[call-overload]
    plan = [r[0] for r in rows]
    worst = max(
        (line for line in plan if "loops=" in line),
        key=lambda line: int(float(line.rsplit("loops=", 1)[1].rstrip(")"))),
        default="",
    )
    total = next((line.strip() for line in plan if line.strip().startswith("Execution Time")), "")
    return total.removeprefix("Execution Time: "), " ".join(worst.split())[:200]


def _label(extra: dict[str, str]) -> str:
    return "_".join(extra) or "asis"


def part_growth(world: daily_bench.World, report: Report, variants: dict[str, dict[str, str]], cap: float) -> None:
    """P1: run_direct for day k on top of k-1 drops, as is and with each proposal."""
    start = world.start
    days = sorted({world.day2, start + dt.timedelta(days=7), start + dt.timedelta(days=15), world.last})
    results: dict[str, dict[dt.date, Measured]] = {}
    for label, extra in variants.items():
        results[label] = {}
        for day in days:
            k = (day - start).days + 1
            m = _day_run(world, f"p1_{label.replace('+', '_').replace('-', '_')}_d{k}", day, extra, cap)
            results[label][day] = m
            report.note(f"P1 growth {label:15} day {k:2} ({world.history_attempts(day):6,} attempts): {_fmt(m)}")
            if m.timed_out:
                break  # later days only take longer
    for label, by_day in results.items():
        if world.day2 in by_day and world.last in by_day:
            d2, dl = by_day[world.day2], by_day[world.last]
            bound = ">=" if dl.timed_out else ""
            report.note(f"P1 B2 ratio with {label}: {bound}{dl.seconds / d2.seconds:.2f} (target 1.5)")


def part_plans(world: daily_bench.World, report: Report, cap: float) -> None:
    """P2: the slowest dbt nodes of an as-is day-8 build, EXPLAIN ANALYZE with and without
    nested loops."""
    day = world.start + dt.timedelta(days=7)
    home, url = world.contender("p2_plan")
    env = home.env(url)
    world.land_history("p2", home, env, day)
    out = home.path / "exports"
    cmd = child_cmd("direct", "--landing", str(world.landing), "--date", day.isoformat(), "--out", str(out))
    built = run_measured(f"p2: run_direct {day} as is", cmd, env, home.logs("d.log"), cap).check()
    report.note(f"P2 day 8 as is: {_fmt(built)}")
    for line in daily_bench.top_dbt_nodes(home, limit=6):
        report.note(f"P2 dbt nodes (day 8, as is): {line}")
    results = json.loads((home.path / "dbt" / "target" / "run_results.json").read_text())["results"]
    slowest = sorted(results, key=lambda r: -float(r.get("execution_time") or 0))[:3]
    for result in slowest:
        query = _compiled(home, result["unique_id"], result)
        if not query.strip():
            continue
        on, node_on = _explain(world.server, "p2_plan", query, True)
        off, node_off = _explain(world.server, "p2_plan", query, False)
        name = result["unique_id"].split(".")[-1][:60]
        report.note(f"P2 {name}: EXPLAIN ANALYZE {on} with nested loops, {off} with enable_nestloop off")
        report.note(f"P2 {name}: most repeated node with nested loops: {node_on}")


def part_dbt_threads(world: daily_bench.World, report: Report, cap: float) -> None:
    """P3: dbt threads (S1MIG_DBT_THREADS) for the day-2 build."""
    for threads in ("1", "2", "4"):
        name = f"p3_threads_{threads}"
        h, u = world.contender(name, daily_bench.DAY2_DB)
        env = h.env(u, S1MIG_DBT_THREADS=threads)
        cmd = child_cmd("dbt", "--date", world.day2.isoformat())
        m = run_measured(f"p3 dbt build, {threads} thread(s)", cmd, env, h.logs("dbt.log"), cap).check()
        report.note(f"P3 dbt build day 2, S1MIG_DBT_THREADS={threads}: {m.inner():.1f}s")
        world.server.drop(name)


def part_gate(world: daily_bench.World, report: Report, cap: float) -> None:
    """P4: GX's fixed cost (trivial queries) and the rules one by one, best of 2 each."""
    d = world.day2.isoformat()
    home, url = world.contender("p4_gate")
    out = home.path / "exports"
    cmd = child_cmd("direct", "--landing", str(world.landing), "--date", d, "--out", str(out))
    run_measured("p4: day 2 built", cmd, home.env(url), home.logs("d.log"), cap).check()
    for label in ("as-is",):
        env = home.env(url)
        best: dict[str, Measured] = {}
        for r in (1, 2):
            for kind, args in (
                ("trivial", ["gate-gx", "--date", d, "--trivial"]),
                ("gx", ["gate-gx", "--date", d]),
                ("sql", ["gate-sql", "--date", d, "--per-rule"]),
            ):
                m = run_measured(f"p4 {kind} ({label}, {r})", child_cmd(*args), env, home.logs(f"{kind}.log")).check()
                if kind not in best or m.inner() < best[kind].inner():
                    best[kind] = m
        gx, trivial, sql = best["gx"].inner(), best["trivial"].inner(), best["sql"].inner()
        per_rule = ", ".join(f"{k} {v:.2f}" for k, v in best["sql"].result.get("per_rule", {}).items())
        report.note(
            f"P4 gate {label} (best of 2): GX checkpoint {gx:.1f}s, of which fixed {trivial:.1f}s (same checkpoint, "
            f"trivial queries); plain SQL {sql:.2f}s [{per_rule}]; B4 ratio {gx / sql:.2f}"
        )


PARTS = ("P1", "P2", "P3", "P4")


def run(root: Path, server: Server, report: Report, scale: Any, start: dt.date, args: argparse.Namespace) -> None:
    parts = set((args.only or ",".join(PARTS)).upper().split(","))
    if parts - set(PARTS):
        raise SystemExit(f"unknown part(s) {', '.join(sorted(parts - set(PARTS)))}; --profile has {', '.join(PARTS)}")
    world = daily_bench.prepare(root, server, start, scale.days, scale.installations, scale.daily_volume, scale.run_cap)
    cap = max(scale.b2_cap, 900.0)
    # the design before docs/performance.md's tuning: staging and intermediate as views
    # (the history models' own config() keeps them incremental tables)
    views = _variant_project(
        root,
        "views",
        {"+materialized": "view", "+pre-hook": [], "+post-hook": []},
        {"+materialized": "view", "+post-hook": []},
    )
    variants: dict[str, dict[str, str]] = {
        "as-is": {},
        "views (before tuning)": {"S1MIG_PROJECT_DIR": str(views)},
        "nestloop-off": {"PGOPTIONS": NESTLOOP_OFF},
    }
    if args.pgoptions:
        variants["pgoptions"] = {"PGOPTIONS": args.pgoptions}
    if "P1" in parts:
        part_growth(world, report, variants, cap)
    if "P2" in parts:
        part_plans(world, report, cap)
    if "P3" in parts:
        part_dbt_threads(world, report, cap)
    if "P4" in parts:
        part_gate(world, report, cap)
