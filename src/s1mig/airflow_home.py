"""The Airflow home of this warehouse ($S1MIG_HOME/airflow): the environment every Airflow
command of s1mig runs with, the Airflow executable of this venv, and the metadata
database's migration.

`s1mig run` (`airflow dags test`, one process) keeps its metadata in SQLite inside the home;
`s1mig serve` (scheduler, api-server, dag-processor, triggerer: several processes) keeps it
in its own PostgreSQL database, `airflow` on the warehouse's server by default
(S1MIG_AIRFLOW_DATABASE_URL: any other libpq URL), through psycopg 3."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from s1mig import config, db
from s1mig.errors import S1migError

AIRFLOW_DB = "airflow"  # the metadata database's name on the warehouse's server


def home_dir() -> Path:
    home = config.home() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    return home


def base_env(url: str) -> dict[str, str]:
    """What every Airflow process of s1mig shares: its home, the DAG folder, the warehouse."""
    env = dict(os.environ)
    env.update(db.warehouse_env(url))
    env.update(
        {
            "AIRFLOW_HOME": str(home_dir()),
            "AIRFLOW__CORE__DAGS_FOLDER": str(config.dags_dir()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
            "S1MIG_HOME": str(config.home()),
            "S1MIG_PROJECT_DIR": str(config.project_dir()),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def airflow_env(url: str) -> dict[str, str]:
    """The environment of `s1mig run` (`airflow dags test`, metadata in SQLite in the home)."""
    env = base_env(url)
    env.update(
        {
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # a failed task fails the run at once: `airflow dags test` would wait out the retry delay
            "S1MIG_TASK_RETRIES": "0",
            # the lease records the run as started by the CLI, all its tasks in one process
            "S1MIG_RUN_ORIGIN": "cli",
        }
    )
    return env


def airflow_exe() -> str:
    exe = Path(sys.executable).with_name("airflow")
    return str(exe) if exe.exists() else "airflow"


# ----------------------------------------------------------------------------- PostgreSQL metadata


def metadata_libpq_url(warehouse_url: str) -> str:
    """The libpq URL of Airflow's metadata database: S1MIG_AIRFLOW_DATABASE_URL, else the
    database `airflow` on the warehouse's server (same login)."""
    override = os.environ.get("S1MIG_AIRFLOW_DATABASE_URL", "").strip()
    if override:
        return override
    p = db.url_parts(warehouse_url)
    return db.url_from_parts(p["host"], p["port"], p["user"], p["password"] or None, AIRFLOW_DB)


def sqlalchemy_url(libpq_url: str, driver: str = "psycopg") -> str:
    """A libpq URL as SQLAlchemy's psycopg 3 URL (`psycopg` sync, `psycopg_async` async);
    a socket folder goes in the query (host=/path)."""
    p = db.url_parts(libpq_url)
    auth = quote(p["user"], safe="") + (":" + quote(p["password"], safe="") if p["password"] else "")
    if p["host"].startswith("/"):
        return f"postgresql+{driver}://{auth}@/{quote(p['dbname'], safe='')}?host={p['host']}&port={p['port']}"
    return f"postgresql+{driver}://{auth}@{p['host']}:{p['port']}/{quote(p['dbname'], safe='')}"


def ensure_metadata_database(warehouse_url: str) -> str:
    """Create Airflow's metadata database on the warehouse's server when it is missing
    (not with S1MIG_AIRFLOW_DATABASE_URL: that one must exist). Returns its libpq URL."""
    url = metadata_libpq_url(warehouse_url)
    if os.environ.get("S1MIG_AIRFLOW_DATABASE_URL", "").strip():
        db.check_reachable(url)
        return url
    with db.connect(warehouse_url, autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = %s", (AIRFLOW_DB,)).fetchone():
            return url
        try:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(AIRFLOW_DB)))
        except psycopg.errors.DuplicateDatabase:
            pass
        except psycopg.errors.InsufficientPrivilege as exc:
            raise S1migError(
                f"cannot create Airflow's metadata database {AIRFLOW_DB!r} on {db.server_description(url)}: "
                f"{str(exc).strip().splitlines()[0]}; create it (owned by {db.url_parts(url)['user']}) or set "
                "S1MIG_AIRFLOW_DATABASE_URL to one that exists"
            ) from None
    return url


def metadata_env(libpq_url: str) -> dict[str, str]:
    """Airflow's settings for a PostgreSQL metadata database (sync and async through psycopg 3)."""
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(libpq_url),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": sqlalchemy_url(libpq_url, "psycopg_async"),
    }


def _alembic_version(libpq_url: str) -> str | None:
    try:
        with db.connect(libpq_url, autocommit=True) as conn:
            if db.scalar(conn, "select to_regclass('public.alembic_version') is null"):
                return None
            row = conn.execute("select version_num from alembic_version").fetchone()
            return row[0] if row else None
    except psycopg.Error:
        return None


def ensure_airflow_db(env: dict[str, str], echo: Callable[[str], None], libpq_url: str | None = None) -> None:
    """`airflow db migrate` once per Airflow version and metadata database (serialised by a
    lock file). For PostgreSQL (`libpq_url`) the marker also holds the schema revision found
    after the migration, so a database dropped or recreated since is migrated again."""
    home = Path(env["AIRFLOW_HOME"])
    from importlib.metadata import version

    if libpq_url is None:
        marker = home / f".migrated-{version('apache-airflow')}"
    else:
        p = db.url_parts(libpq_url)
        where = hashlib.sha256(f"{p['host']}:{p['port']}/{p['dbname']}".encode()).hexdigest()[:12]
        marker = home / f".migrated-{version('apache-airflow')}-pg-{where}"
    with open(home / ".migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and (libpq_url is None or marker.read_text().strip() == _alembic_version(libpq_url)):
            return
        echo("preparing Airflow metadata database (first run only)...")
        proc = subprocess.run([airflow_exe(), "db", "migrate"], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            out = home / "db-migrate.log"
            out.write_text(proc.stdout + proc.stderr)
            raise S1migError(f"airflow db migrate failed (exit code {proc.returncode}): its output is in {out}")
        marker.write_text((_alembic_version(libpq_url) or "") if libpq_url else "")
