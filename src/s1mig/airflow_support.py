"""What the DAG's tasks need from Airflow: the report date, locations and warehouse
connection of a run, the run's hold on the warehouse (s1mig.lease), turning our errors
into task failures that do not retry, the drop sensor's look and its one-line timeout,
and the four-eyes release's request, answer and publish (s1mig.release)."""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import gc
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s1mig import config, db, run_tasks
from s1mig.contract import LOCAL_TZ
from s1mig.errors import S1migError

log = logging.getLogger(__name__)


def quick_exit() -> None:
    """Under `s1mig run` (run_tasks.ONE_PROCESS_RUN_ENV), which waits for its `airflow dags
    test` to exit: with Airflow, great_expectations and their dependencies loaded, Python's
    last garbage collection at exit walks every object, 1.5-2 s when the run's work is long
    committed. At exit the objects are frozen out of it (gc.freeze, an atexit handler run
    before the ones registered earlier: logging's flush among them still runs), and the
    operating system closes what is left open. Elsewhere nothing changes."""
    if os.environ.get(run_tasks.ONE_PROCESS_RUN_ENV) == "1":
        atexit.register(gc.freeze)


quick_exit()


def report_date(context: dict[str, Any]) -> dt.date:
    """conf/params report_date if given, else the run's data interval start in Europe/London
    (the daily timetable's interval is exactly the local day D)."""
    value = (context.get("params") or {}).get("report_date")
    if value:
        return dt.date.fromisoformat(str(value))
    start = context["data_interval_start"]
    return start.in_timezone(LOCAL_TZ).date()


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


# ----------------------------------------------------------------------------- the lease

LEASE_TASK = "take_lease"


def _origin() -> tuple[str, bool]:
    """Who started the run, and whether one process runs all its tasks: `s1mig run` runs
    the DAG with `airflow dags test`, every task inside that one process."""
    origin = os.environ.get("S1MIG_RUN_ORIGIN", "scheduler")
    return origin, origin == "cli"


def take_lease(context: dict[str, Any]) -> str:
    """The first task: take the warehouse for this run (waiting, bounded). Returns the
    token the other tasks confirm."""
    from s1mig import lease

    origin, run_process = _origin()
    return lease.acquire(
        warehouse_url(), context["run_id"], report_date(context), origin, run_process=run_process, echo=log.info
    )


def release_lease(context: dict[str, Any]) -> bool:
    """The teardown: let go of the warehouse, whatever happened to the run's tasks."""
    from s1mig import lease

    token = _lease_token(context)
    return lease.release(warehouse_url(), token, f"run {context['run_id']} ended") if token else False


def _lease_token(context: dict[str, Any]) -> str | None:
    ti = context.get("ti")
    return ti.xcom_pull(task_ids=LEASE_TASK) if ti is not None else None


def _will_retry(context: dict[str, Any]) -> float | None:
    """Seconds until this failed try is retried, None when it is not."""
    ti, task = context.get("ti"), context.get("task")
    if ti is None or task is None or (ti.try_number or 0) > (getattr(ti, "max_tries", 0) or 0):
        return None
    delay = getattr(task, "retry_delay", None)
    return delay.total_seconds() if delay else 0.0


def leased(context: dict[str, Any], func: Callable) -> Callable:
    """A task's work under the run's lease: confirmed before and after, renewed while it
    works. A try that fails and will be retried keeps the lease over the retry delay.
    Outside a run that took the lease (e.g. `airflow tasks test`) the task holds it alone."""
    from s1mig import lease

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        url = warehouse_url()
        token, run_id = _lease_token(context), context["run_id"]
        if token is None:
            origin, _ = _origin()
            with lease.held(url, run_id, report_date(context), origin):
                return func(*args, **kwargs)
        try:
            with lease.working(url, token, run_id):
                return func(*args, **kwargs)
        except S1migError:  # fails at once (fail_fast): the teardown releases
            raise
        except Exception:
            delay = _will_retry(context)
            if delay is not None:
                try:
                    lease.confirm(url, token, run_id, extend=delay + lease.expiry_seconds())
                except Exception as err:  # noqa: BLE001 - the task's own error is the one to report
                    log.warning("could not keep the lease over the retry delay: %s", err)
            raise

    return wrapper


def run_step(name: str, context: dict[str, Any]) -> object:
    """The leased task `name` of run_tasks.LEASED: its step (pipeline.STEPS) for this run's
    report date, folders and pending area, under the lease, failing fast on our errors."""
    from s1mig import pipeline

    landing, out = locations(context)
    landed = context["ti"].xcom_pull(task_ids="land") or {}  # none before land, or when it was skipped
    run = pipeline.Run(
        landing,
        report_date(context),
        out,
        warehouse_url(),
        context["run_id"],
        pending(context),
        landed.get("status"),
    )
    return fail_fast(leased(context, pipeline.STEPS[name]))(run)


# ----------------------------------------------------------------------------- the drop sensor

DROP_TIMEOUT_ENV = "S1MIG_DROP_TIMEOUT"  # seconds; the DAG reads it and S1MIG_DROP_POKE at parse time


def drop_manifest(context: dict[str, Any]) -> Path:
    """<landing>/<D>/manifest.json: what the sensor waits for (written last by a delivery)."""
    landing, _ = locations(context)
    return landing / report_date(context).isoformat() / "manifest.json"


def drop_arrived(context: dict[str, Any]) -> bool:
    path = drop_manifest(context)
    if path.is_file():
        log.info("drop %s arrived: %s", report_date(context), path)
        return True
    log.info("drop %s not delivered yet: waiting for %s", report_date(context), path)
    return False


def drop_missing(context: dict[str, Any], waited: float) -> None:
    """The sensor gave up: the one line that names the drop (S1migError; under fail_fast
    the task fails without retries)."""
    path = drop_manifest(context)
    hours = f"{waited / 3600:.1f} h" if waited >= 3600 else f"{waited:.0f} s"
    raise S1migError(
        f"drop {report_date(context)} missing: {path} did not arrive within {hours} "
        f"({DROP_TIMEOUT_ENV}={waited:g} s); deliver it, then clear the run's wait_for_drop task "
        "or trigger the date again"
    )


# ----------------------------------------------------------------------------- four-eyes release

PUBLISH_TASK, RELEASE_TASK = "publish", "release"


def pending(context: dict[str, Any]) -> Path:
    """The run's pending area (s1mig.release): where export, run_summary and
    restate_later_dates write, and publish publishes from."""
    from s1mig import release

    _, out = locations(context)
    return release.pending_root(out, context["run_id"])


def release_request(context: dict[str, Any]) -> tuple[dict | None, str, str]:
    """The `release` task's start: (the decision when four-eyes release is off, else None;
    the approval's subject and body)."""
    import json

    from s1mig import export, release

    root = pending(context)
    if not release.pending_dates(root):
        raise S1migError(f"nothing to release for run {context['run_id']}: no pending export in {root}")
    for day in release.pending_dates(root):  # a blocked gate marked successful by hand releases nothing
        record = json.loads((root / day.isoformat() / "evidence.json").read_text())
        if export.blocked_rules(record):
            raise S1migError(
                f"{day}: the gate blocked this export ({', '.join(export.blocked_rules(record))} did not pass): "
                "nothing to release; see docs/gate.md, then run the date again"
            )
    subject, body = release.approval_request(root, report_date(context), context["run_id"])
    if not release.four_eyes():
        decided = release.auto_release()
        log.info("four-eyes release is off (%s): %s auto-released", release.FOUR_EYES_ENV, report_date(context))
        return decided, subject, body
    if _origin()[1]:  # `airflow dags test` from `s1mig run`: no API server can answer
        raise S1migError(
            f"four-eyes release is on ({release.FOUR_EYES_ENV}=true) but `s1mig run` cannot wait for an approval: "
            "run the date with `s1mig serve` and `s1mig trigger`, or set S1MIG_FOUR_EYES=false"
        )
    log.info("%s waits for approval: %s", report_date(context), subject)
    return None, subject, body


def release_answered(context: dict[str, Any], answer: dict) -> dict:
    """The answer to the approval (ApprovalOperator's payload): the decision; a rejection
    is recorded (audit.releases, one log line) and the pending area removed."""
    from s1mig import release

    decided = release.decision(
        answer.get("chosen_options") or [],
        answer.get("params_input"),
        answer.get("responded_by_user"),
        answer.get("responded_at"),
    )
    if decided["outcome"] == release.REJECTED:
        _, out = locations(context)
        release.reject(pending(context), out, warehouse_url(), context["run_id"], decided)
    else:
        log.info("%s approved by %s at %s", report_date(context), decided["by"], decided["at"])
    return decided


def publish(context: dict[str, Any]) -> list[str]:
    """The `publish` task: the run's pending exports to the export folder, as released."""
    from s1mig import pipeline

    decided = context["ti"].xcom_pull(task_ids=RELEASE_TASK)
    if not decided:
        raise S1migError(f"nothing published for run {context['run_id']}: the release task recorded no decision")
    _, out = locations(context)
    return pipeline.publish_step(
        report_date(context), out, warehouse_url(), context["run_id"], pending(context), decided
    )
