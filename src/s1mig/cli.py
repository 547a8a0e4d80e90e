"""The `s1mig` command line. Later features extend these commands, never break them."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from s1mig import cli_db, cli_service
from s1mig.cli_common import date_arg as _date
from s1mig.cli_common import err as _err
from s1mig.cli_common import lease_echo as _lease_echo
from s1mig.errors import DatabaseUnreachable, DropMissing, S1migError, Stopped

# the signals that stop a command: Ctrl-C, cron / systemd / `timeout`, a closed terminal
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _check_drop(landing: Path, day: dt.date) -> None:
    manifest = landing / day.isoformat() / "manifest.json"
    if not manifest.is_file():
        raise DropMissing(day.isoformat(), str(manifest))


def _run_one(landing: Path, day: dt.date, out: Path, skip: tuple[str, ...] = (), then: str = "") -> int:
    """One date through Airflow; a failure is one line (`then` added to it: what stops with it)."""
    from s1mig import airflow_run

    after = f"; {then}" if then else ""
    try:
        airflow_run.check_skip(skip)
        airflow_run.check_gate_before_export(skip)
        if "land" not in skip:
            _check_drop(landing, day)
        started = time.monotonic()
        print(f"s1mig: running {airflow_run.DAG_ID} for {day} through Airflow ...", flush=True)
        ok, reason, log_file = airflow_run.run_dag(day, landing, out, echo=lambda s: print(s, flush=True), skip=skip)
    except DatabaseUnreachable as err:  # checked before Airflow starts: nothing ran
        return _err(f"{day}: {err}{after}")
    except (S1migError, DropMissing) as err:
        return _err(f"{err}{after}")
    if not ok:
        return _err(f"{day}: {reason} (Airflow log: {log_file}){after}")
    folder = out.resolve() / day.isoformat()
    print(f"s1mig: {day} done in {time.monotonic() - started:.0f}s: reports in {folder} (log: {log_file})")
    if (folder / "run-summary.html").is_file():
        print(f"s1mig: run summary: file://{folder / 'run-summary.html'}")
    return 0


def _choose_first_drop(day: dt.date) -> None:
    """--first: `day` is the warehouse's first drop, for this command and what it starts
    (the DAG's land task reads S1MIG_FIRST_DROP like `s1mig land`)."""
    os.environ["S1MIG_FIRST_DROP"] = day.isoformat()


def cmd_run(args: argparse.Namespace) -> int:
    skip = tuple(t for t in (args.skip or "").split(",") if t)
    if args.first:
        _choose_first_drop(args.date)
    return _run_one(args.landing, args.date, args.out, skip)


def _date_ranges(days: list[dt.date]) -> str:
    """Consecutive dates as ranges: 2020-08-01..2020-08-03, 2020-08-07."""
    runs: list[list[dt.date]] = []
    for day in days:
        if runs and day == runs[-1][-1] + dt.timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs)


def missing_drops(landing: Path, start: dt.date, end: dt.date) -> list[dt.date]:
    """The dates of start..end whose drop has no <landing>/<D>/manifest.json."""
    days = (start + dt.timedelta(days=i) for i in range((end - start).days + 1))
    return [d for d in days if not (landing / d.isoformat() / "manifest.json").is_file()]


def cmd_backfill(args: argparse.Namespace) -> int:
    if args.end < args.start:
        return _err("--end is before --start")
    missing = missing_drops(args.landing, args.start, args.end)
    if missing:  # checked before the first date runs: a backfill does not stop half way for a drop never delivered
        return _err(
            f"backfill {args.start}..{args.end}: no drop for {len(missing)} date(s): {_date_ranges(missing)} "
            f"(each needs {args.landing}/<D>/manifest.json); nothing was run"
        )
    if args.first:
        _choose_first_drop(args.start)
    day = args.start
    total = (args.end - args.start).days + 1
    for i in range(total):
        day = args.start + dt.timedelta(days=i)
        print(f"s1mig: backfill {i + 1}/{total}: {day}", flush=True)
        then = f"backfill stopped at {day} ({i} of {total} dates done)"
        try:
            rc = _run_one(args.landing, day, args.out, then=then)
        except Stopped as stop:
            stop.notes.append(then)
            raise
        if rc != 0:
            return rc
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from s1mig.generate import generate

    folders = generate(args.out, args.start, args.days, args.installations, args.seed)
    print(f"s1mig: wrote {len(folders)} drops to {args.out.resolve()}")
    return 0


def cmd_land(args: argparse.Namespace) -> int:
    """Land one drop (--first: as the warehouse's first drop), or take one back (--undo D).
    Every failure is one line: a rejected drop (its quarantine record is written), a
    setting, the database; anything unexpected too, its traceback in a log file."""
    import traceback

    import psycopg

    from s1mig import config, land, lease, raw_archive

    landing: Path | None = args.landing
    drop_date: dt.date | None = args.date
    if args.restore_archived:
        if landing is not None or drop_date is not None or args.first or args.undo is not None:
            return _err("s1mig land --restore-archived takes no other option")
        day, what = None, "s1mig land --restore-archived"
    elif args.undo is not None:
        if landing is not None or drop_date is not None or args.first:
            return _err("s1mig land --undo D takes no other option (it needs no drop folder)")
        day, what = args.undo, f"s1mig land --undo {args.undo}"
    elif landing is None or drop_date is None:
        return _err("s1mig land needs --landing DIR and --date D (or --undo D to take a landing back)")
    else:
        day, what = drop_date, f"s1mig land {drop_date}"
    try:
        with lease.held(None, what, day, "cli", echo=_lease_echo):  # one run at a time
            result: land.LandResult | land.UndoResult | raw_archive.Restored
            if args.restore_archived:
                result = raw_archive.Restored(raw_archive.restore())
            elif args.undo is not None:
                result = land.undo(args.undo)
            else:
                assert landing is not None and drop_date is not None  # checked above
                first = drop_date if args.first else None
                result = land.land(landing / drop_date.isoformat(), drop_date, first_drop=first)
    except (S1migError, DropMissing):
        raise
    except DatabaseUnreachable as exc:  # already one line naming the server
        return _err(f"{what}: {exc}")
    except psycopg.OperationalError as exc:
        lines = [ln.strip() for ln in str(exc).strip().splitlines()] or [type(exc).__name__]
        detail = lines[0] if len(lines) == 1 else f"{lines[0]} ({lines[-1]})"
        return _err(f"{what}: the warehouse database failed or cannot be reached: {detail}")
    except Exception as exc:  # noqa: BLE001 - no traceback reaches the user
        logs = config.home() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / f"s1mig-land-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}.log"
        path.write_text(traceback.format_exc())
        return _err(f"{what}: unexpected error ({type(exc).__name__}); the traceback is in {path}")
    print(f"s1mig: {result.line()}")
    return 0


# dbt commands that write the warehouse: they wait for the run lease like a run
DBT_WRITES = frozenset({"build", "run", "seed", "snapshot", "test", "run-operation", "clone", "retry"})


def cmd_dbt(args: argparse.Namespace) -> int:
    """dbt with the project, profile and warehouse filled in: s1mig dbt build --vars ..."""
    from s1mig import airflow_run, db, dbt, lease

    if not args.dbt_args or any(a in ("-h", "--help", "--version", "-V") for a in args.dbt_args):
        # dbt's own help (or version): no warehouse, no lease, no project options added
        return subprocess.call([*dbt.dbt_program(), *(args.dbt_args or ["--help"])])
    url = db.warehouse_url()
    with db.connect(url) as conn:
        db.ensure_bi_role(conn)  # the marts grant to it: a fresh warehouse has it from the first build
    airflow_run.become_subreaper()  # a stop finds dbt's children too
    command = next((a for a in args.dbt_args if not a.startswith("-")), "")
    if command not in DBT_WRITES:
        return subprocess.call(dbt.dbt_command(args.dbt_args), env=dbt.dbt_env(url))
    with lease.held(url, f"s1mig dbt {command}", None, "cli", echo=_lease_echo):  # one run at a time
        return subprocess.call(dbt.dbt_command(args.dbt_args), env=dbt.dbt_env(url))


def cmd_breaks(args: argparse.Namespace) -> int:
    """The break register: list the open breaks, or acknowledge one."""
    from s1mig import breaks, db

    with db.connect(db.warehouse_url()) as conn:
        if args.action == "ack":
            if args.break_id is None:
                return _err("s1mig breaks ack ID --by NAME --why TEXT: the break's ID is missing")
            done = breaks.acknowledge(conn, args.break_id, args.by or "", args.why or "")
            print(f"s1mig: {done.line()}")
            return 0
        found = breaks.all_breaks(conn) if args.all else breaks.open_breaks(conn)
    if not found:
        print("s1mig: no breaks" if args.all else "s1mig: no open breaks")
    for b in found:
        print(b.line())
    return 0


def cmd_dates(args: argparse.Namespace) -> int:
    """The report dates built, and whether each one's marts are what its parties were sent."""
    from s1mig import db, release

    with db.connect(db.warehouse_url()) as conn:
        lines = release.date_states(conn, args.since, args.until)
    if not lines:
        print("s1mig: no report date built in that range")
    for line in lines:
        print(line)
    return 0


def _landing_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--landing", type=Path, metavar="DIR", required=True, help="folder holding <YYYY-MM-DD>/ drops (required)"
    )


def _out_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        required=True,
        help="export folder: the reports go to OUT/<D>/<party>/ (required)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s1mig", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (default: off, info)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the daily DAG for one report date through Airflow")
    _landing_option(p)
    p.add_argument("--date", type=_date, metavar="D", required=True, help="report date D, YYYY-MM-DD (required)")
    _out_option(p)
    p.add_argument(
        "--skip",
        metavar="TASK[,TASK]",
        help="mark these tasks successful without running them, e.g. land,dbt_build "
        "to re-run only the gate and the export (default: none, every task runs)",
    )
    p.add_argument(
        "--first",
        action="store_true",
        help="D is the warehouse's first drop (it carries all history before it; no earlier date can follow): "
        "needed once, on an empty warehouse, unless S1MIG_FIRST_DROP is set (default: off)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "backfill",
        help="run each date of a range in order, stopping at the first failure",
        description="s1mig backfill runs `s1mig run` for every date from --start to --end, in order. It first "
        "checks that every drop of the range is delivered (<landing>/<D>/manifest.json) and runs nothing when "
        "one is missing, naming the missing dates.",
    )
    _landing_option(p)
    p.add_argument("--start", type=_date, metavar="D", required=True, help="first report date, YYYY-MM-DD (required)")
    p.add_argument(
        "--end", type=_date, metavar="D", required=True, help="last report date, YYYY-MM-DD, included (required)"
    )
    _out_option(p)
    p.add_argument(
        "--first",
        action="store_true",
        help="--start is the warehouse's first drop "
        "(needed once, on an empty warehouse, unless S1MIG_FIRST_DROP is set; default: off)",
    )
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("generate", help="write anonymised, contract-valid drops")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        required=True,
        help="landing folder to write OUT/<YYYY-MM-DD>/ drops into (required)",
    )
    p.add_argument(
        "--start", type=_date, metavar="D", required=True, help="date of the first drop, YYYY-MM-DD (required)"
    )
    p.add_argument("--days", type=int, metavar="N", default=7, help="how many daily drops (default: %(default)s)")
    p.add_argument(
        "--installations",
        type=int,
        metavar="N",
        default=500,
        help="installations in the population (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        metavar="N",
        default=1,
        help="random seed: the same seed writes the same drops (default: %(default)s)",
    )
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "land",
        help="verify and land one drop into the raw layer (or take one back: --undo D)",
        description="s1mig land --landing DIR --date D [--first] verifies the drop DIR/D/ and lands it; "
        "s1mig land --undo D takes the latest landing of D back (docs/landing.md).",
    )
    p.add_argument(
        "--landing",
        type=Path,
        metavar="DIR",
        help="folder holding <YYYY-MM-DD>/ drops (needed with --date; no default)",
    )
    p.add_argument(
        "--date", type=_date, metavar="D", help="the drop's date D, YYYY-MM-DD (needed with --landing; no default)"
    )
    p.add_argument(
        "--first",
        action="store_true",
        help="land D as the warehouse's first drop (it carries all history before D); or set S1MIG_FIRST_DROP=D "
        "(default: off)",
    )
    p.add_argument(
        "--undo",
        type=_date,
        metavar="D",
        help="take back the latest landing of drop D (only when no later drop is landed); recorded in "
        "raw.drop_ledger (default: none, land a drop)",
    )
    p.add_argument(
        "--restore-archived",
        action="store_true",
        help="put the archived raw rows of older drops back as rows (before a dbt --full-refresh of staging; "
        "S1MIG_RAW_KEEP_DROPS, docs/landing.md) (default: off)",
    )
    p.set_defaults(func=cmd_land)

    cli_db.register(sub)
    cli_service.register(sub)

    p = sub.add_parser(
        "breaks",
        help="the break register: list open warnings (W1, W2), or acknowledge one",
        description="s1mig breaks [--all] lists the register; s1mig breaks ack ID --by NAME --why TEXT "
        "acknowledges a break (recorded, never deleted).",
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["list", "ack"],
        default="list",
        help="list the register or acknowledge a break (default: %(default)s)",
    )
    p.add_argument("break_id", nargs="?", type=int, help="the break's number (ack; no default)")
    p.add_argument("--by", help="who acknowledges it (ack: required, no default)")
    p.add_argument("--why", help="why it can be left (ack: required, no default)")
    p.add_argument(
        "--all", action="store_true", help="list acknowledged and withdrawn breaks too (default: off, open ones only)"
    )
    p.set_defaults(func=cmd_breaks)

    p = sub.add_parser(
        "dates",
        help="the report dates built: released, passed (awaiting release), rejected, blocked or built",
        description="s1mig dates lists each report date whose marts were built, with its state: released "
        "(the marts hold what its parties were sent), passed (gate passed, not released yet), rejected, "
        "blocked (its latest gate blocked) or built (not gated since its latest build); and whether it is up "
        "to date with every drop delivered (public_models.release_status, which BI users read too).",
    )
    p.add_argument("--from", dest="since", type=_date, metavar="D", help="first date listed (default: the first built)")
    p.add_argument("--to", dest="until", type=_date, metavar="D", help="last date listed (default: the last built)")
    p.set_defaults(func=cmd_dates)

    p = sub.add_parser(
        "dbt",
        help="run dbt on the warehouse (arguments passed through)",
        description="s1mig dbt COMMAND [OPTIONS] runs dbt with the project, profile and warehouse filled in; "
        "commands that write the warehouse (build, run, seed, snapshot, test, ...) wait for the run lease like a "
        "run. With no arguments it shows dbt's own help; s1mig dbt COMMAND --help shows dbt's help of a command.",
    )
    p.add_argument(
        "dbt_args",
        nargs=argparse.REMAINDER,
        metavar="COMMAND [OPTIONS]",
        help="dbt's command and options, e.g. build --select s1mig_005 --vars '{report_date: 2020-07-30}' "
        "(default: none, dbt's help)",
    )
    p.set_defaults(func=cmd_dbt)
    return parser


def _stop(signum: int, _frame) -> None:
    """SIGINT, SIGTERM or SIGHUP: stop the command (errors.Stopped); a second signal while
    it stops is ignored (stopping takes seconds, and is not to be cut short)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Stopped(signum)


def _unexpected(command: str, exc: BaseException) -> int:
    """An error nobody foresaw: one line, the traceback in a log file."""
    import tempfile
    import traceback

    stamp = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}-{os.getpid()}"
    text = "".join(traceback.format_exception(exc))
    try:
        from s1mig import config

        logs = config.home() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / f"s1mig-{command}-{stamp}.log"
        path.write_text(text)
    except Exception:  # noqa: BLE001 - S1MIG_HOME itself may be the fault
        path = Path(tempfile.gettempdir()) / f"s1mig-{command}-{stamp}.log"
        path.write_text(text)
    return _err(f"s1mig {command}: unexpected error ({type(exc).__name__}); the traceback is in {path}")


def main(argv: list[str] | None = None) -> int:
    """Every outcome is a line, never a traceback: our errors, an unreachable or failing
    database (naming the server), a stop by signal (everything the command started is
    stopped first; exit code 128 + the signal's number), anything unexpected (the
    traceback goes to a log file)."""
    import psycopg

    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except (S1migError, DropMissing, DatabaseUnreachable) as err:
        return _err(str(err))
    except Stopped as stop:
        from s1mig import airflow_run

        airflow_run.stop_descendants()  # whatever a command started and has not stopped yet
        notes = ": " + "; ".join(stop.notes) if stop.notes else ""
        print(f"s1mig: stopped by {stop.signame}{notes}", file=sys.stderr, flush=True)
        return 128 + stop.signum
    except BrokenPipeError:  # the reader went away (`s1mig breaks | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except psycopg.OperationalError as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]
        return _err(f"the warehouse database failed: {' '.join(line.strip() for line in lines)}")
    except Exception as exc:  # noqa: BLE001 - no traceback reaches the user
        return _unexpected(args.command, exc)


if __name__ == "__main__":
    sys.exit(main())
