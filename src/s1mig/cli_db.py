"""`s1mig db` and `s1mig env`: the warehouse server and the connection settings for tools by hand."""

from __future__ import annotations

import argparse
import os

from s1mig.cli_common import err as _err


def cmd_db(args: argparse.Namespace) -> int:
    from s1mig import db

    if args.action == "stop":
        if os.environ.get("S1MIG_DATABASE_URL"):
            return _err("S1MIG_DATABASE_URL is set: that server is not ours to stop")
        print(
            "s1mig: embedded PostgreSQL stopped" if db.stop_embedded() else "s1mig: embedded PostgreSQL was not running"
        )
    elif args.action == "url":
        print(db.warehouse_url())
    elif args.action == "start":
        print(f"s1mig: warehouse at {db.warehouse_url()}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    """Print shell exports so dbt/psql/airflow by hand reach the same warehouse."""
    import shlex

    from s1mig import db

    for key, value in db.warehouse_env(db.warehouse_url()).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="the embedded PostgreSQL: start, stop, url")
    p.add_argument("action", choices=["start", "stop", "url"])
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("env", help="print shell exports for dbt/psql/airflow by hand")
    p.set_defaults(func=cmd_env)
