"""`s1mig db`, `s1mig env` and `s1mig bi-user`: the warehouse server, the connection settings for
tools by hand, and the BI users who read the marts (over TCP on the embedded server: `db start
--listen`)."""

from __future__ import annotations

import argparse
import ipaddress
import os

from s1mig.cli_common import err as _err


def _embedded() -> bool:
    return not os.environ.get("S1MIG_DATABASE_URL")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listening_lines() -> list[str]:
    """What the embedded server listens on, for the operator."""
    from s1mig import db

    listening = db.embedded_listening()
    if listening is None:
        return [f"s1mig: no TCP listener (for BI tools: `s1mig db start --listen 127.0.0.1:{db.DEFAULT_PORT + 1}`)"]
    lines = [
        f"s1mig: listening on {listening} for BI users only (scram-sha-256, database {db.WAREHOUSE_DB}; "
        "`s1mig bi-user add NAME`); s1mig itself uses the socket"
    ]
    if not _loopback(listening.host):
        lines.append(
            "s1mig: note: reachable beyond this machine, and the embedded server has no TLS: passwords never cross "
            "the network (SCRAM) but query results do, in clear; prefer 127.0.0.1 and an SSH tunnel"
        )
    return lines


def cmd_db(args: argparse.Namespace) -> int:
    from s1mig import db

    if args.action != "start" and args.listen is not None:
        return _err("--listen goes with `s1mig db start`")
    if args.action == "stop":
        if not _embedded():
            return _err("S1MIG_DATABASE_URL is set: that server is not ours to stop")
        print(
            "s1mig: embedded PostgreSQL stopped" if db.stop_embedded() else "s1mig: embedded PostgreSQL was not running"
        )
    elif args.action == "url":
        print(db.warehouse_url())
    elif args.action == "start":
        if not _embedded():
            if args.listen is not None:
                return _err(
                    "--listen is for the embedded PostgreSQL; S1MIG_DATABASE_URL's server listens where its DBA "
                    "configured it (listen_addresses, pg_hba.conf): BI users there need no --listen"
                )
            print(f"s1mig: warehouse at {db.warehouse_url()}")
            return 0
        if args.listen is not None:
            listen = db.parse_listen(args.listen, "--listen")
            env = os.environ.get(db.LISTEN_ENV, "").strip()
            if env and db.parse_listen(env) != listen:
                return _err(f"{db.LISTEN_ENV}={env} is set and wins over --listen: change or unset it")
            db.apply_listen(listen)  # kept in $S1MIG_HOME/db-listen for every later start
        url = db.warehouse_url()
        configured = db.embedded_listen()
        if db.embedded_listening() != configured:
            db.apply_listen(configured, save=False)  # configured since it started (or its port was taken)
            url = db.warehouse_url()
        print(f"s1mig: warehouse at {url}")
        for line in _listening_lines():
            print(line)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    """Print shell exports so dbt/psql/airflow by hand reach the same warehouse."""
    import shlex

    from s1mig import db

    for key, value in db.warehouse_env(db.warehouse_url()).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _connect_hint(url: str, name: str) -> str:
    """How a BI tool reaches the warehouse over TCP as `name` (libpq keywords)."""
    from s1mig import db

    p = db.url_parts(url)
    if _embedded():
        listening = db.embedded_listening()
        if listening is None:
            return (
                "s1mig: the embedded PostgreSQL listens on no TCP address yet: "
                f"`s1mig db start --listen 127.0.0.1:{db.DEFAULT_PORT + 1}`"
            )
        host = "127.0.0.1" if listening.host in ("*", "0.0.0.0", "localhost") else listening.host
        return f"s1mig: connect with host={host} port={listening.port} dbname={p['dbname']} user={name} sslmode=disable"
    if p["host"].startswith("/"):
        return f"s1mig: S1MIG_DATABASE_URL's server is reached through a socket here: dbname={p['dbname']} user={name}"
    return f"s1mig: connect with host={p['host']} port={p['port']} dbname={p['dbname']} user={name}"


def cmd_bi_user(args: argparse.Namespace) -> int:
    from s1mig import bi, db, relations

    if args.action in ("add", "remove") and not args.name:
        return _err(f"s1mig bi-user {args.action} NAME: the name is missing")
    if args.action == "list" and args.name:
        return _err("s1mig bi-user list takes no name")
    if args.statement_timeout:
        os.environ["S1MIG_BI_STATEMENT_TIMEOUT"] = args.statement_timeout  # checked like the setting
    # with add: this user's idle timeout only (S1MIG_BI_IDLE_TIMEOUT stays what older BI users are given)
    idle_timeout = args.idle_timeout and db.bi_duration(args.idle_timeout, "--idle-timeout")
    url = db.warehouse_url()
    with db.connect(url, autocommit=True) as conn:
        if args.action == "add":
            idle_timeout = idle_timeout or db.bi_idle_timeout()
            password = bi.add(conn, args.name, args.connection_limit, db.bi_statement_timeout(), idle_timeout)
            schemas = " and ".join(relations.SCHEMAS)
            print(
                f"s1mig: BI user {args.name} created in {db.bi_role()}: reads schemas {schemas} "
                f"of database {conn.info.dbname}, at most {args.connection_limit} sessions, statement_timeout "
                f"{db.bi_statement_timeout()}, idle_in_transaction_session_timeout {idle_timeout}"
            )
            print(f"s1mig: password (shown this once, kept by nobody but PostgreSQL as a SCRAM verifier): {password}")
            print(_connect_hint(url, args.name))
        elif args.action == "remove":
            ended = bi.remove(conn, args.name)
            print(f"s1mig: BI user {args.name} removed" + (f" ({ended} session(s) ended)" if ended else ""))
        else:
            users = bi.list_users(conn)
            if not users:
                print(f"s1mig: no BI users in {db.bi_role()} (`s1mig bi-user add NAME`)")
            for u in users:
                settings = ", ".join(u.settings) or "no settings"
                limit = "no session limit" if u.connection_limit < 0 else f"at most {u.connection_limit} sessions"
                made = "" if u.comment == bi.COMMENT else ", made by hand"
                print(f"{u.name}: {limit}, {settings}, {u.sessions} session(s) now{made}")
    return 0


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"a whole number of sessions from 1 to 1000, not {text!r}")
    return int(text)


def register(sub: argparse._SubParsersAction) -> None:
    from s1mig import bi, db

    p = sub.add_parser(
        "db",
        help="the embedded PostgreSQL: start (optionally listening on TCP for BI tools), stop, url",
        description="s1mig db start|stop|url. The embedded server is reached through its Unix socket by every "
        "s1mig command; `s1mig db start --listen HOST:PORT` makes it listen on TCP too, for BI users only "
        "(scram-sha-256; see `s1mig bi-user`).",
    )
    p.add_argument(
        "action", choices=["start", "stop", "url"], help="start (listening as configured), stop, or url (no default)"
    )
    p.add_argument(
        "--listen",
        metavar="HOST:PORT|off",
        help=f"with start: listen on TCP at HOST:PORT (127.0.0.1:{db.DEFAULT_PORT + 1}, [::1]:5433, *:5433) for BI "
        f"users, or 'off'; kept in $S1MIG_HOME/{db.LISTEN_FILE} for every later start (restarts the server if it "
        f"runs otherwise); {db.LISTEN_ENV} wins over it when set. Default: as configured, which is off (the "
        "socket only) until set",
    )
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("env", help="print shell exports for dbt/psql/airflow by hand")
    p.set_defaults(func=cmd_env)

    p = sub.add_parser(
        "bi-user",
        help="BI users: login roles that read the marts only (add prints a generated password once)",
        description="s1mig bi-user add NAME | remove NAME | list. A BI user is a login role in the read-only "
        f"BI role ({db.BI_ROLE_DEFAULT}, or S1MIG_BI_ROLE): SELECT on the marts, nothing else. Works on the "
        "embedded server and on S1MIG_DATABASE_URL's (whose user then needs CREATEROLE).",
    )
    p.add_argument("action", choices=["add", "remove", "list"], help="add NAME, remove NAME, or list")
    p.add_argument(
        "name", nargs="?", help="the user's login name (lower-case letters, digits, _); default: none, for list"
    )
    p.add_argument(
        "--connection-limit",
        type=_limit,
        default=bi.DEFAULT_CONNECTION_LIMIT,
        metavar="N",
        help=f"with add: the most sessions the user may hold at once (default {bi.DEFAULT_CONNECTION_LIMIT})",
    )
    p.add_argument(
        "--statement-timeout",
        metavar="DURATION",
        help="with add: the longest statement the user may run in the warehouse database, such as 300s, 5min, 1h, "
        f"0 for none (default S1MIG_BI_STATEMENT_TIMEOUT, else {db.BI_STATEMENT_TIMEOUT_DEFAULT})",
    )
    p.add_argument(
        "--idle-timeout",
        metavar="DURATION",
        help="with add: how long the user's session may sit idle inside a transaction before it is ended "
        "(its locks and snapshot released), such as 60s, 10min, 0 for none "
        f"(default S1MIG_BI_IDLE_TIMEOUT, else {db.BI_IDLE_TIMEOUT_DEFAULT})",
    )
    p.set_defaults(func=cmd_bi_user)
