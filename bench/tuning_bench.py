"""`bench/run.py --profile`: where the daily run's time goes, and the tuning proposals
measured side by side against the product as it is (nothing in the product changes:
proposals are environment settings, a variant copy of the dbt project under the work
folder, or a bench-only variant of one function).

Lines printed (P = profile, not a target):

* P1 growth: run_direct for day k on top of k-1 landed drops, k = 2, 8, 16, last, as is
  and with each proposal, so the growth of B2 is visible (each run capped).
* P2 plan: EXPLAIN ANALYZE of the model every completion report reads
  (intermediate.int_attempt_completions) after the day-2 build, as is and with
  enable_nestloop off: the misestimated nested loops are the cost.
* P3 dbt threads (with the best proposal, so that dbt is not dominated by one plan).
* P4 gate: GX's fixed cost (the checkpoint with trivial queries), the rules one by one.
* P5 orchestration with the best proposal: B3's ratio once the run is short.
* P6 export: the buffered variant of export's file writer against the product and psql.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import daily_bench
import export_bench
import yaml
from benchlib import (
    REPO,
    S1MIG,
    Home,
    Measured,
    Report,
    Server,
    child_cmd,
    psql_path,
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
    if day > world.day2:
        cmd = child_cmd(
            "land",
            "--landing",
            str(world.landing),
            "--date",
            world.day2.isoformat(),
            "--until",
            (day - dt.timedelta(days=1)).isoformat(),
        )
        run_measured(f"{name}: land history up to {day - dt.timedelta(days=1)}", cmd, env, home.logs("h.log")).check()
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


def _explain(server: Server, dbname: str, nestloop: bool) -> list[str]:
    import psycopg

    with psycopg.connect(server.url(dbname), autocommit=True) as conn:
        conn.execute(f"set enable_nestloop = {'on' if nestloop else 'off'}")
        conn.execute("set statement_timeout = '600s'")
        rows = conn.execute(
            "explain (analyze, timing off, summary on) select count(*) from intermediate.int_attempt_completions"
        ).fetchall()
    plan = [r[0] for r in rows]
    worst = max(
        (line for line in plan if "loops=" in line),
        key=lambda line: int(float(line.rsplit("loops=", 1)[1].rstrip(")"))),
        default="",
    )
    total = next((line.strip() for line in plan if line.strip().startswith("Execution Time")), "")
    return [total, "most repeated node: " + " ".join(worst.split())[:220]]


def run(root: Path, server: Server, report: Report, scale: Any, start: dt.date, args: argparse.Namespace) -> None:
    world = daily_bench.prepare(root, server, start, scale.days, scale.installations, scale.daily_volume, scale.run_cap)
    cap = max(scale.b2_cap, 900.0)
    days = sorted({world.day2, start + dt.timedelta(days=7), start + dt.timedelta(days=15), world.last})
    tables = _variant_project(root, "tables", {"+materialized": "table"}, {"+materialized": "table"})
    tables_analyzed = _variant_project(
        root,
        "tables_analyzed",
        {"+materialized": "table", "+post-hook": "analyze {{ this }}"},
        {"+materialized": "table", "+post-hook": "analyze {{ this }}"},
    )
    variants: dict[str, dict[str, str]] = {
        "as-is": {},
        "nestloop-off": {"PGOPTIONS": NESTLOOP_OFF},
        "tables": {"S1MIG_PROJECT_DIR": str(tables)},
        "tables+analyze": {"S1MIG_PROJECT_DIR": str(tables_analyzed)},
    }
    if args.pgoptions:
        variants["pgoptions"] = {"PGOPTIONS": args.pgoptions}

    # P1: growth with history, as is and with each proposal
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

    # P2: the plan of the shared completion model after the day-2 build
    home, url = world.contender("p2_plan")
    out = home.path / "exports"
    cmd = child_cmd("direct", "--landing", str(world.landing), "--date", world.day2.isoformat(), "--out", str(out))
    run_measured("p2: day 2 built for EXPLAIN", cmd, home.env(url, PGOPTIONS=NESTLOOP_OFF), home.logs("d.log")).check()
    for nestloop in (True, False):
        for line in _explain(server, "p2_plan", nestloop):
            report.note(f"P2 int_attempt_completions enable_nestloop={'on' if nestloop else 'off'}: {line}")
    for line in daily_bench.top_dbt_nodes(home):
        report.note(f"P2 dbt nodes (day 2, nestloop off): {line}")

    # P3: dbt threads, with enable_nestloop off
    for threads in ("1", "2", "4"):
        h, u = world.contender(f"p3_threads_{threads}", daily_bench.DAY2_DB)
        env = h.env(u, PGOPTIONS=NESTLOOP_OFF, S1MIG_DBT_THREADS=threads)
        m = run_measured(
            f"p3 dbt build, {threads} thread(s)",
            child_cmd("dbt", "--date", world.day2.isoformat()),
            env,
            h.logs("dbt.log"),
            cap,
        )
        report.note(f"P3 dbt build day 2, nestloop off, S1MIG_DBT_THREADS={threads}: {m.inner():.1f}s")
        server.drop(f"p3_threads_{threads}")

    # P4: the gate, where its time goes (on the p2 database: day 2 built)
    d = world.day2.isoformat()
    for label, extra in (("as-is", {}), ("nestloop-off", {"PGOPTIONS": NESTLOOP_OFF})):
        env = home.env(url, **extra)
        trivial = run_measured(
            f"p4 GX trivial rules ({label})", child_cmd("gate-gx", "--date", d, "--trivial"), env, home.logs("t.log")
        ).check()
        gx = run_measured(
            f"p4 GX checkpoint ({label})", child_cmd("gate-gx", "--date", d), env, home.logs("g.log")
        ).check()
        sql = run_measured(
            f"p4 rules one by one ({label})", child_cmd("gate-sql", "--date", d, "--per-rule"), env, home.logs("s.log")
        ).check()
        per_rule = ", ".join(f"{k} {v:.2f}" for k, v in sql.result.get("per_rule", {}).items())
        report.note(
            f"P4 gate {label}: GX checkpoint {gx.inner():.1f}s = fixed {trivial.inner():.1f}s (trivial queries) "
            f"+ {gx.inner() - trivial.inner():.1f}s of queries; plain SQL {sql.inner():.1f}s [{per_rule}]"
        )

    # P5: B3 once the run is short (enable_nestloop off for both contenders)
    for label, extra in (("nestloop-off", {"PGOPTIONS": NESTLOOP_OFF}),):
        ha, ua = world.contender("p5_airflow")
        cmd = [S1MIG, "run", "--landing", str(world.landing), "--date", d, "--out", str(ha.path / "exports")]
        air = run_measured(f"p5 s1mig run ({label})", cmd, ha.env(ua, **extra), ha.logs("run.log"), cap).check()
        hd, ud = world.contender("p5_direct")
        cmd = child_cmd("direct", "--landing", str(world.landing), "--date", d, "--out", str(hd.path / "exports"))
        direct = run_measured(f"p5 run_direct ({label})", cmd, hd.env(ud, **extra), hd.logs("direct.log"), cap).check()
        starts = daily_bench._airflow_tasks(air.log)
        report.note(
            f"P5 B3 with {label}: s1mig run {air.seconds:.1f}s vs run_direct {direct.seconds:.1f}s, ratio "
            f"{air.seconds / direct.seconds:.2f}; task starts {starts}; direct steps {_fmt(direct)}"
        )

    # P6: export writer variant, on B5's inflated marts (from the p5 direct database)
    _export_variants(root, server, report, "p5_direct", world, scale.export_rows[1])


def _export_variants(
    root: Path, server: Server, report: Report, source: str, world: daily_bench.World, rows: int
) -> None:
    import math

    home = Home(root, "p6_export")
    home.copy_state_from(world.base)
    db = export_bench.DB
    server.create(db, source)
    marts = export_bench._inflatable(server)
    original = export_bench._rows_of_day(server, world.day2, list(marts))
    copies = max(2, math.ceil(rows / original))
    export_bench._inflate(server, world.day2, marts, 1, copies - 1)
    env = home.env(server.url(db))
    d = world.day2.isoformat()
    timings: dict[str, list[float]] = {"product": [], "buffered": [], "psql": []}
    files = export_bench._baseline_script(server, world.day2, home.path / "psql", home.path / "copy.sql")
    for r in range(2):
        for label, flag in (("product", []), ("buffered", ["--buffered"])):
            server.checkpoint()
            m = run_measured(
                f"p6 export {label} ({r + 1})",
                child_cmd("export", "--date", d, "--out", str(home.path / f"out-{label}"), *flag),
                env,
                home.logs(f"{label}.log"),
            ).check()
            timings[label].append(m.inner())
        server.checkpoint()
        cmd = [psql_path(), server.url(db), "-X", "-q", "-f", str(home.path / "copy.sql")]
        timings["psql"].append(run_measured(f"p6 psql ({r + 1})", cmd, env, home.logs("psql.log")).check().seconds)
    same, total = export_bench._same_bytes(files, home.path / "out-buffered" / d)
    best = {k: min(v) for k, v in timings.items()}
    report.note(
        f"P6 export of {export_bench._rows_of_day(server, world.day2, list(marts)):,} mart rows (best of 2): product "
        f"{best['product']:.2f}s, buffered writer {best['buffered']:.2f}s, psql {best['psql']:.2f}s; ratio "
        f"{best['product'] / best['psql']:.2f} -> {best['buffered'] / best['psql']:.2f} "
        f"(buffered files identical: {same}/{total})"
    )
    server.drop(db)
