"""`s1mig serve`, `trigger`, `approve`, `reject`: the DAG as a daily service (issue 16)."""

from __future__ import annotations

import argparse
from pathlib import Path

from s1mig.cli_common import date_arg as _date


def _echo(line: str) -> None:
    print(line, flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    from s1mig import config, service

    if args.stop:
        return service.stop(_echo)
    if args.status:
        return service.status(_echo)
    opts = service.ServeOptions(
        port=args.port if args.port is not None else service.default_port(),
        landing=(args.landing or config.landing_dir()).resolve(),
        out=(args.out or config.export_dir()).resolve(),
        four_eyes=service.default_four_eyes() if args.four_eyes is None else args.four_eyes,
        executor=args.executor or service.default_executor(),
        approvers=list(dict.fromkeys([*service.default_approvers(), *(args.approver or [])])),
    )
    state = service.running()
    if state:
        raise service.AlreadyRunning(state)
    if args.detach:
        return service.detach(_serve_argv(opts), _echo)
    opts.landing.mkdir(parents=True, exist_ok=True)
    opts.out.mkdir(parents=True, exist_ok=True)
    return service.serve(opts, _echo)


def _serve_argv(opts) -> list[str]:
    argv = ["--port", str(opts.port), "--landing", str(opts.landing), "--out", str(opts.out)]
    argv += ["--four-eyes" if opts.four_eyes else "--no-four-eyes", "--executor", opts.executor]
    for name in opts.approvers:
        argv += ["--approver", name]
    return argv


def cmd_worker(args: argparse.Namespace) -> int:
    from s1mig import service

    return service.worker(args.name, args.concurrency, _echo)


def cmd_trigger(args: argparse.Namespace) -> int:
    from s1mig import service

    service.trigger(args.date, _echo)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from s1mig import service

    return service.answer(args.date, True, args.why, args.user, _echo)


def cmd_reject(args: argparse.Namespace) -> int:
    from s1mig import service

    return service.answer(args.date, False, args.why, args.user, _echo)


_WHO = (
    "the Airflow login that answers, recorded as the approver (default: admin, its password read from "
    "$S1MIG_HOME/serve/passwords.json; another login's password from S1MIG_AIRFLOW_PASSWORD or a prompt)"
)


def register(sub: argparse._SubParsersAction) -> None:
    """Adds this module's subcommands to the `s1mig` parser."""
    p = sub.add_parser(
        "serve",
        help="run the daily DAG as a service: Airflow's scheduler, UI and REST API on 127.0.0.1 (foreground)",
        description="s1mig serve starts Airflow's api-server, scheduler, dag-processor and triggerer "
        "(metadata in the database `airflow` on the warehouse's server), unpauses s1mig_daily and runs in the "
        "foreground until Ctrl-C or `s1mig serve --stop`. Airflow's logs go to $S1MIG_HOME/serve/logs/.",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--stop", action="store_true", help="stop the running serve of this home and all it started (default: off)"
    )
    what.add_argument(
        "--status", action="store_true", help="show the running serve, its URL and the last runs (default: off)"
    )
    what.add_argument(
        "--detach",
        action="store_true",
        help="start in the background (new session; output in $S1MIG_HOME/serve/serve.out) and return when "
        "ready (default: foreground)",
    )
    p.add_argument(
        "--port", type=int, help="the UI and REST API port on 127.0.0.1 (default: S1MIG_SERVE_PORT, else 8080)"
    )
    p.add_argument(
        "--landing",
        type=Path,
        help="folder holding <YYYY-MM-DD>/ drops (default: S1MIG_LANDING_DIR, else $S1MIG_HOME/landing)",
    )
    p.add_argument("--out", type=Path, help="export folder (default: S1MIG_EXPORT_DIR, else $S1MIG_HOME/exports)")
    p.add_argument(
        "--four-eyes",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reports leave only after a person approves the release (default: S1MIG_FOUR_EYES, else on)",
    )
    p.add_argument(
        "--executor",
        help="Airflow executor (default: S1MIG_SERVE_EXECUTOR, else LocalExecutor; CeleryExecutor needs "
        "AIRFLOW__CELERY__BROKER_URL and its own workers)",
    )
    p.add_argument(
        "--approver",
        action="append",
        metavar="NAME",
        help="an Airflow login (role user) for a person who approves releases; repeat for several; its "
        "password is generated and printed once (default: S1MIG_APPROVERS, comma-separated, else none)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "worker",
        help="a Celery worker joining the running serve (started with --executor CeleryExecutor), foreground",
        description="s1mig worker NAME runs `airflow celery worker` on this machine with the running serve's "
        "environment (its metadata database, secrets, execution API and broker) until Ctrl-C; its log is "
        "$S1MIG_HOME/serve/logs/worker-NAME.log. Start one per terminal (or under systemd) to add task slots.",
    )
    p.add_argument("name", help="the worker's name, unique on this machine (Celery hostname NAME@host)")
    p.add_argument(
        "--concurrency", type=int, default=1, metavar="N", help="task slots of this worker (default: %(default)s)"
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("trigger", help="queue a run for report date D on the running serve (REST API)")
    p.add_argument("date", type=_date, help="report date D (YYYY-MM-DD); the run waits for <landing>/D/")
    p.set_defaults(func=cmd_trigger)

    p = sub.add_parser("approve", help="approve the pending release of D's latest run (REST API)")
    p.add_argument("date", type=_date, help="report date D (YYYY-MM-DD)")
    p.add_argument("--why", help="a note recorded with the approval (default: none)")
    p.add_argument("--user", help=_WHO)
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("reject", help="reject the pending release of D's latest run: nothing is published")
    p.add_argument("date", type=_date, help="report date D (YYYY-MM-DD)")
    p.add_argument("--why", required=True, help="why the release is rejected (required; recorded)")
    p.add_argument("--user", help=_WHO)
    p.set_defaults(func=cmd_reject)
