"""What the DAG's tasks need from Airflow: the report date, locations and warehouse
connection of a run, and turning our errors into task failures that do not retry."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s1mig import config, db
from s1mig.errors import S1migError

log = logging.getLogger(__name__)


def report_date(context: dict[str, Any]) -> dt.date:
    """conf/params report_date if given, else the run's data interval start in Europe/London
    (the daily timetable's interval is exactly the local day D)."""
    value = (context.get("params") or {}).get("report_date")
    if value:
        return dt.date.fromisoformat(str(value))
    start = context["data_interval_start"]
    return start.in_timezone("Europe/London").date()


def locations(context: dict[str, Any]) -> tuple[Path, Path]:
    params = context.get("params") or {}
    landing = Path(params["landing"]) if params.get("landing") else config.landing_dir()
    out = Path(params["out"]) if params.get("out") else config.export_dir()
    return landing, out


def warehouse_url() -> str:
    """The Airflow connection `s1mig_warehouse` when defined, else S1MIG_DATABASE_URL or
    the embedded default: one DAG file runs unchanged locally and in compose."""
    try:
        from airflow.sdk import Connection

        conn = Connection.get(db.AIRFLOW_CONN_ID)
    except Exception:  # noqa: BLE001 - not defined: fall back to the local resolution
        return db.warehouse_url()
    return db.url_from_parts(
        conn.host or "localhost", conn.port, conn.login or "postgres", conn.password, conn.schema or db.WAREHOUSE_DB
    )


def fail_fast(func: Callable) -> Callable:
    """Our errors (rejected drop, blocked gate, failed dbt) are deterministic: fail the task
    without retries and record the one-line reason for the CLI (S1MIG_ERROR_FILE)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except S1migError as err:
            error_file = os.environ.get("S1MIG_ERROR_FILE")
            if error_file:
                with open(error_file, "a") as fh:
                    fh.write(str(err).replace("\n", " ") + "\n")
            log.error("%s", err)
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(err)) from err

    return wrapper
