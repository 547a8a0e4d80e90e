"""One measured product step, run by the benchmarks in a child process of its own.

Each sub-command calls the product exactly as its task would (s1mig.land.land,
s1mig.pipeline.run_direct, s1mig_expectations.run_checkpoint, s1mig.export.export_date,
...), times the call itself and prints one final line `BENCH-RESULT {json}`. The parent
(benchlib.run_measured) adds the wall time and the peak RSS of this process tree, read
from wait4(), so a measurement never includes the benchmark's own memory.

The environment (S1MIG_HOME, S1MIG_DATABASE_URL and the S1MIG_PG_* / S1MIG_GX_URL
variables that `s1mig` gives dbt and GX) is set by the parent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "
STEP_PREFIX = "BENCH-STEP "  # one line per finished step, so a run stopped at a time cap still tells


def _emit(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def cmd_generate(args: argparse.Namespace) -> dict[str, Any]:
    """The product generator; --daily-volume overrides its volume knobs (see README of bench)."""
    from s1mig import generate

    if args.daily_volume:
        generate.MAX_DAILY_VOLUME = float(args.daily_volume)
        generate.DAILY_VOLUME_RATE = float(args.daily_volume) / args.installations
    started = time.monotonic()
    folders = generate.generate(args.out, args.start, args.days, args.installations, args.seed, progress=True)
    return {"seconds": time.monotonic() - started, "drops": len(folders)}


def cmd_land(args: argparse.Namespace) -> dict[str, Any]:
    from s1mig import land

    rows: dict[str, int] = {}
    started = time.monotonic()
    day = args.date
    last = args.until or args.date
    while day <= last:
        result = land.land(args.landing / day.isoformat(), day)
        for name, count in result.rows.items():
            rows[name] = rows.get(name, 0) + count
        day += dt.timedelta(days=1)
    return {"seconds": time.monotonic() - started, "rows": sum(rows.values()), "by_extract": rows}


def _timed_steps(timings: dict[str, float]) -> None:
    """Wrap the pipeline's step functions so run_direct reports where its time went."""
    from s1mig import pipeline

    def wrap(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            started = time.monotonic()
            try:
                return func(*a, **kw)
            finally:
                seconds = time.monotonic() - started
                timings[name] = timings.get(name, 0.0) + seconds
                print(f"{STEP_PREFIX}{name} {seconds:.3f}", flush=True)

        return timed

    for step in ("land_step", "dbt_step", "gate_step", "export_step", "summary_step"):
        setattr(pipeline, step, wrap(step.removesuffix("_step"), getattr(pipeline, step)))


def cmd_direct(args: argparse.Namespace) -> dict[str, Any]:
    """s1mig.pipeline.run_direct: every step of the daily run in this one process."""
    from s1mig import pipeline

    timings: dict[str, float] = {}
    _timed_steps(timings)
    started = time.monotonic()
    folder = pipeline.run_direct(args.landing, args.date, args.out)
    return {"seconds": time.monotonic() - started, "steps": timings, "folder": folder}


def cmd_dbt(args: argparse.Namespace) -> dict[str, Any]:
    from s1mig import pipeline

    started = time.monotonic()
    pipeline.dbt_step(args.date)
    return {"seconds": time.monotonic() - started}


def cmd_gate_state(args: argparse.Namespace) -> dict[str, Any]:
    """Only the gate's own state as at the end of --date (R8's expectation,
    s1mig_expectations.migrated_state), as the gate of that date leaves it: B7 builds day 1
    without its gate (rule R3 on a first drop of a week of history takes minutes). A no-op
    on code without that state."""
    from s1mig import db

    try:
        from s1mig_expectations import migrated_state
    except ImportError:
        return {"seconds": 0.0, "how": "no gate state in this code"}
    started = time.monotonic()
    with db.connect() as conn, conn.transaction():
        how = migrated_state.move(conn, args.date)
    return {"seconds": time.monotonic() - started, "how": how}


def cmd_gate_gx(args: argparse.Namespace) -> dict[str, Any]:
    """The GX checkpoint of the gate (without recording audit rows). --trivial keeps the
    rules but gives each a query that returns nothing at once: GX's own fixed cost."""
    from dataclasses import replace

    from s1mig_expectations import run_checkpoint
    from s1mig_expectations.rules import RULES

    from s1mig import config

    rules = RULES
    if args.trivial:
        rules = tuple(replace(r, sql="select 1 as record from {batch} where false") for r in RULES)
    started = time.monotonic()
    import great_expectations  # noqa: F401  (the checkpoint's cost includes loading GX; shown apart)

    imported = time.monotonic()
    outcomes = run_checkpoint(args.date, config.home() / "gx", rules)
    seconds = time.monotonic() - started
    return {
        "seconds": seconds,
        "import_seconds": imported - started,
        "outcomes": {o.rule.rule_id: [o.status, o.failing_count] for o in outcomes},
    }


def cmd_gate(args: argparse.Namespace) -> dict[str, Any]:
    """The DAG's gate step (checkpoint and audit rows); a blocked gate is reported, not raised."""
    from s1mig import pipeline
    from s1mig.errors import GateBlocked

    started = time.monotonic()
    blocked = ""
    try:
        pipeline.gate_step(args.date, "bench")
    except GateBlocked as err:
        blocked = str(err)[:500]
    return {"seconds": time.monotonic() - started, "blocked": blocked}


def cmd_gate_sql(args: argparse.Namespace) -> dict[str, Any]:
    """The same rules' SQL ({batch} = marts.s1mig_006, date substituted) as one plain script."""
    from s1mig_expectations.rules import RULES

    from s1mig import db

    statements = [rule.query(args.date).replace("{batch}", "marts.s1mig_006").strip() for rule in RULES]
    per_rule: dict[str, float] = {}
    counts: list[int] = []
    started = time.monotonic()
    with db.connect() as conn, conn.cursor() as cur:
        if args.per_rule:  # each rule on its own, to see which ones cost
            for rule, statement in zip(RULES, statements, strict=True):
                t = time.monotonic()
                cur.execute(statement)  # type: ignore[arg-type]
                counts.append(len(cur.fetchall()))
                per_rule[rule.rule_id] = time.monotonic() - t
        else:
            cur.execute(";\n".join(statements) + ";")  # type: ignore[arg-type]
            while True:
                counts.append(len(cur.fetchall()) if cur.description else 0)
                if not cur.nextset():
                    break
    seconds = time.monotonic() - started
    rows = dict(zip([r.rule_id for r in RULES], counts, strict=False))
    return {"seconds": seconds, "unexpected_rows": rows, "per_rule": per_rule}


def cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from s1mig import export

    started = time.monotonic()
    folder = export.export_date(args.date, args.out, run_id="bench")
    seconds = time.monotonic() - started
    manifest = json.loads((folder / "manifest.json").read_text())
    rows = sum(f["rows"] for f in manifest["files"])
    return {"seconds": seconds, "files": len(manifest["files"]), "rows": rows, "folder": str(folder)}


def cmd_airflow_migrate(args: argparse.Namespace) -> dict[str, Any]:
    """`airflow db migrate` of $S1MIG_HOME/airflow, as `s1mig run` does on its first use."""
    from s1mig import airflow_home, db

    started = time.monotonic()
    airflow_home.ensure_airflow_db(airflow_home.airflow_env(db.warehouse_url()), print)
    return {"seconds": time.monotonic() - started}


def cmd_cosmos(args: argparse.Namespace) -> dict[str, Any]:
    """`airflow dags test` of the cosmos DAG (bench/cosmos_dags), with the environment
    `s1mig run` gives Airflow, for one report date."""
    import subprocess

    from s1mig import airflow_home, config, db

    env = airflow_home.airflow_env(db.warehouse_url())
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parent / "cosmos_dags")
    env["S1MIG_BENCH_COSMOS_MANIFEST"] = str(config.home() / "dbt" / "target" / "manifest.json")
    env["S1MIG_BENCH_COSMOS_INVOCATION"] = args.invocation
    env["S1MIG_BENCH_COSMOS_TESTS"] = args.tests
    env["S1MIG_BENCH_DBT"] = str(Path(sys.executable).with_name("dbt"))
    airflow_home.ensure_airflow_db(env, print)
    conf = json.dumps({"report_date": args.date.isoformat()})
    cmd = [str(Path(sys.executable).with_name("airflow")), "dags", "test", "s1mig_cosmos_dbt", args.date.isoformat()]
    started = time.monotonic()
    proc = subprocess.run([*cmd, "-c", conf], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.monotonic() - started
    sys.stdout.write(proc.stdout)
    tasks = proc.stdout.count("[DAG TEST] starting task_id=")
    failed = proc.stdout.count("state=failed") + proc.stdout.count("TaskInstanceState.FAILED")
    if proc.returncode != 0:
        raise SystemExit(f"cosmos DAG run failed (exit code {proc.returncode})")
    return {"seconds": seconds, "tasks": tasks, "failed_markers": failed}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--days", type=int, required=True)
    p.add_argument("--installations", type=int, required=True)
    p.add_argument("--daily-volume", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("land")
    p.add_argument("--landing", type=Path, required=True)
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--until", type=_date, help="land every date from --date to this one, in order")
    p.set_defaults(func=cmd_land)

    p = sub.add_parser("direct")
    p.add_argument("--landing", type=Path, required=True)
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_direct)

    p = sub.add_parser("dbt")
    p.add_argument("--date", type=_date, required=True)
    p.set_defaults(func=cmd_dbt)

    p = sub.add_parser("gate")
    p.add_argument("--date", type=_date, required=True)
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("gate-state")
    p.add_argument("--date", type=_date, required=True)
    p.set_defaults(func=cmd_gate_state)

    p = sub.add_parser("gate-gx")
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--trivial", action="store_true")
    p.set_defaults(func=cmd_gate_gx)

    p = sub.add_parser("gate-sql")
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--per-rule", action="store_true")
    p.set_defaults(func=cmd_gate_sql)

    p = sub.add_parser("export")
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("airflow-migrate")
    p.set_defaults(func=cmd_airflow_migrate)

    p = sub.add_parser("cosmos")
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--invocation", choices=["dbt_runner", "subprocess"], default="dbt_runner")
    p.add_argument("--tests", default="after_each", help="cosmos TestBehavior: after_each or build")
    p.set_defaults(func=cmd_cosmos)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command != "generate" and not os.environ.get("S1MIG_DATABASE_URL"):
        print("bench child: S1MIG_DATABASE_URL must name the benchmark's own database", file=sys.stderr)
        return 2
    _emit(args.func(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
