"""s1mig benchmarks (`make bench`): B1 landing, B2 incremental, B3 orchestration, B4 gate,
B5 export, B7 population and the cosmos comparison (C1), each a ratio of two contenders measured side
by side in this one run, printed as `B<n> <name> ratio=<x> target=<y> PASS|FAIL`.

    .venv/bin/python bench/run.py                  # small scale, under 15 minutes (about 8 here)
    .venv/bin/python bench/run.py --scale full     # 1M/10M-row drops, ~200,000 attempts a day (about 2 hours)
    .venv/bin/python bench/run.py --only B1,B5     # a subset
    .venv/bin/python bench/run.py --only B7 --population 3000000,300000   # B7 at two other sizes
    .venv/bin/python bench/run.py --national       # B6: 15M installations, per-stage times (long)
    .venv/bin/python bench/run.py --national-month # B8-B10: a national month through `s1mig run` (~1.5 h)
    .venv/bin/python bench/run.py --profile        # where the daily run's time goes + tuning proposals
    .venv/bin/python bench/run.py --profile --only P2,P4   # a part of it

Everything lives under --root (default /tmp/s1mig-bench): its own embedded PostgreSQL
(stopped at the end), one database and one S1MIG_HOME per contender. Progress goes to
stderr, results to stdout. See docs/performance.md for the method and the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import benchlib
from benchlib import Report, Server, progress, stage

START = dt.date(2020, 7, 31)  # MRR v3.0 effective date; the generator adds a week of history
FIGURES = ("B1", "B2", "B3", "B4", "B5", "B7", "C1")


@dataclass(frozen=True)
class Scale:
    name: str
    land_rows: tuple[int, int]  # B1 drop sizes (rows), a factor of ten apart
    land_rounds: int  # B1 best-of rounds
    installations: int  # base of the daily landing (B2-B5, C1)
    daily_volume: float  # MA requests a day (attempts are ~1.25x: retries)
    days: int  # B2: the last day runs on top of days-1 landed drops
    run_cap: float  # seconds: a daily run that takes longer is stopped (setup, B3, B4, C1)
    b2_cap: float  # seconds: the last-day run of B2 is stopped here (then its ratio is a lower bound)
    export_rows: tuple[int, int]  # B5 mart rows of one date, a factor of ten apart
    population: tuple[int, int]  # B7 installations: the same daily volume on top of each


SCALES = {
    "small": Scale(
        name="small",
        land_rows=(300_000, 3_000_000),
        land_rounds=2,
        installations=1_000_000,
        daily_volume=15_000,
        days=31,
        run_cap=600,
        b2_cap=300,
        export_rows=(100_000, 1_000_000),
        population=(1_000_000, 100_000),
    ),
    "full": Scale(
        name="full",
        land_rows=(1_000_000, 10_000_000),
        land_rounds=1,
        installations=15_000_000,
        daily_volume=160_000,
        days=31,
        run_cap=6 * 3600,
        b2_cap=6 * 3600,
        export_rows=(1_000_000, 10_000_000),
        population=(15_000_000, 1_000_000),
    ),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument(
        "--only", help=f"comma-separated subset of {','.join(FIGURES)} (with --profile: of P1,P2,P3,P4)"
    )
    parser.add_argument("--root", type=Path, default=Path("/tmp/s1mig-bench"), help="work folder (wiped first)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (databases, logs) at the end")
    parser.add_argument(
        "--landing-cache",
        type=Path,
        help="keep generated landings in this folder and reuse them (same parameters and generator source)",
    )
    parser.add_argument(
        "--population",
        help="B7: BIG,SMALL installations under the same daily volume (default: the scale's, "
        "1000000,100000 small and 15000000,1000000 full)",
    )
    parser.add_argument("--national", action="store_true", help="B6 only: national scale, per-stage times")
    parser.add_argument(
        "--national-month",
        action="store_true",
        help="B8 national day, B9 backfill, B10 storage: day 1 then days 2..N through `s1mig run`",
    )
    parser.add_argument("--month-days", type=int, default=31, help="--national-month: days of drops (default 31)")
    parser.add_argument(
        "--month-last-day",
        type=int,
        default=None,
        help="--national-month: stop after this day (the landing still has --month-days days, so a "
        "cached month is reused; with --keep, a national warehouse to experiment on)",
    )
    parser.add_argument("--profile", action="store_true", help="where the time goes, and the tuning proposals")
    parser.add_argument("--national-installations", type=int, default=15_000_000)
    parser.add_argument("--national-daily-volume", type=float, default=160_000)
    parser.add_argument("--stage-timeout", type=float, default=4 * 3600, help="B6: cap per stage (seconds)")
    parser.add_argument("--pgoptions", default="", help="B6/--profile: PGOPTIONS for every child (a proposal)")
    return parser.parse_args(argv)


def run_figures(args: argparse.Namespace, root: Path, server: Server, report: Report) -> None:
    import cosmos_bench
    import daily_bench
    import export_bench
    import landing_bench

    scale = SCALES[args.scale]
    only = set((args.only or ",".join(FIGURES)).upper().split(","))
    unknown = only - set(FIGURES)
    if unknown:
        raise SystemExit(f"unknown figure(s): {', '.join(sorted(unknown))}")
    progress(
        f"scale {scale.name}: B1 drops of {scale.land_rows[0]:,} and {scale.land_rows[1]:,} rows; daily landing "
        f"{scale.installations:,} installations, {scale.daily_volume:g} MA requests a day, "
        f"{scale.days} days from {START}"
    )
    if "B1" in only:
        with stage("B1 landing"):
            landing_bench.run(root, server, report, scale.land_rows, scale.land_rounds, START)
    if "B7" in only:
        import population_bench

        population = scale.population
        if args.population:
            try:
                big, small = (int(n.replace("_", "")) for n in args.population.split(","))
            except ValueError:
                raise SystemExit("--population must be BIG,SMALL installations, e.g. 3000000,300000") from None
            population = (big, small)
        # the same day on both: the scale's volume, at most a twentieth of the small population
        # a day (the first drop carries a week of history, which the small one must hold)
        volume = float(min(scale.daily_volume, min(population) / 20))
        with stage(f"B7 population ({population[0]:,} vs {population[1]:,} installations, {volume:g} a day)"):
            population_bench.run(root, server, report, START, population, volume, scale.run_cap)
    if not only & {"B2", "B3", "B4", "B5", "C1"}:
        return
    with stage("daily landing and base (day 1 built)"):
        world = daily_bench.prepare(
            root, server, START, scale.days, scale.installations, scale.daily_volume, scale.run_cap, "C1" in only
        )
    daily = None
    if only & {"B2", "B3", "B4", "B5"}:
        with stage("B3 orchestration" if "B3" in only else "day 2, direct (B2's baseline)"):
            daily = daily_bench.orchestration(world, report, "B3" in only)
        for line in daily_bench.top_dbt_nodes(daily.direct_home):
            report.note(f"where dbt's time went (run_direct, day 2): {line}")
    if "B4" in only and daily:
        with stage("B4 gate"):
            daily_bench.gate(world, report, daily)
    if "B5" in only and daily:
        with stage("B5 export"):
            export_bench.run(root, server, report, daily.direct_db, world.base, world.day2, scale.export_rows)
    if daily:
        server.drop(daily.direct_db)  # disk: B2 and C1 start from the base again
    if "B2" in only and daily:
        with stage("B2 incremental"):
            daily_bench.incremental(world, report, daily, scale.b2_cap)
    if "C1" in only:
        with stage("C1 cosmos against our dbt_build task"):
            cosmos_bench.run(world, report)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root: Path = args.root.resolve()
    if not str(root).startswith("/tmp/"):
        raise SystemExit("--root must be under /tmp (the benchmark wipes it)")
    if (root / "server" / "pgdata" / "postmaster.pid").exists():
        Server(root).stop()  # a server left running by an earlier --keep run
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if args.landing_cache:
        benchlib.LANDING_CACHE = args.landing_cache.resolve()
    started = time.monotonic()
    report = Report()
    server = Server(root)
    status = 0
    try:
        server.start()
        if args.national:
            import national_bench

            national_bench.run(root, server, report, args)
        elif args.national_month:
            import month_bench

            month_bench.run(root, server, report, args)
        elif args.profile:
            import tuning_bench

            tuning_bench.run(root, server, report, SCALES[args.scale], START, args)
        else:
            run_figures(args, root, server, report)
    except benchlib.BenchError as err:
        progress(f"benchmark error: {err}")
        status = 2
    except KeyboardInterrupt:
        progress("interrupted")
        status = 130
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    minutes = (time.monotonic() - started) / 60
    if report.figures:
        what = "national month" if args.national_month else f"scale {args.scale}"
        print(f"\n=== s1mig benchmark, {what}, {minutes:.1f} min ===", flush=True)
        for figure in sorted(report.figures, key=lambda f: (f.code, report.figures.index(f))):
            print(figure.line(), flush=True)
    if status == 0 and any(not f.ok() for f in report.figures):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
