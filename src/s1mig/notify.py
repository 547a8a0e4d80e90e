"""Failure mails and the release Deadline Alert of the daily DAG, through Airflow's notifier
interface and the SMTP provider; configured by environment only (secrets included).

The DAG wires them in:
    default_args["on_failure_callback"] = notify.failure_notifiers()   # [] when not configured
    @dag(..., deadline=notify.deadline_alerts())                       # None when not configured
(at task level, the failure's context holds the exception: the mail states its first line;
a DAG-level on_failure_callback works too, but Airflow gives it no exception to quote.)

Configuration (read when the DAG is parsed, and again where a mail is sent):
  S1MIG_NOTIFY_TO          recipients, separated by commas; unset or empty: no mails at all
  S1MIG_NOTIFY_FROM        sender; default: the connection's `from_email` extra, else s1mig@<this host's name>
  S1MIG_SMTP_HOST          SMTP server; when set, the connection `s1mig_smtp` is made from the S1MIG_SMTP_*
                           variables; unset: Airflow's connection S1MIG_SMTP_CONN_ID (AIRFLOW_CONN_SMTP_DEFAULT...)
  S1MIG_SMTP_PORT          default 587 (465 with S1MIG_SMTP_SSL, 25 with neither TLS)
  S1MIG_SMTP_USER          login; default none (no AUTH)
  S1MIG_SMTP_PASSWORD      its password; default none
  S1MIG_SMTP_STARTTLS      true/false, default true (STARTTLS after connecting; false with S1MIG_SMTP_SSL)
  S1MIG_SMTP_SSL           true/false, default false (TLS from the first byte, usually port 465)
  S1MIG_SMTP_TIMEOUT       seconds, default 30
  S1MIG_SMTP_CONN_ID       Airflow connection used when S1MIG_SMTP_HOST is unset; default smtp_default
  S1MIG_RELEASE_DEADLINE   HH:MM (or HH:MM:SS) Europe/London on the day after the report date, on the
                           wall clock; default 09:00; "off" keeps failure mails but sets no deadline
  S1MIG_RELEASE_TASK       the task whose success means "released"; default publish

This module is imported when the DAG is parsed: it imports nothing from Airflow at import time.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import socket
from typing import Any

from s1mig.contract import LOCAL_TZ

LONDON = LOCAL_TZ
DEFAULT_CONN_ID = "smtp_default"
ENV_CONN_ID = "s1mig_smtp"  # the connection made from S1MIG_SMTP_*
DEFAULT_DEADLINE = "09:00"
DEFAULT_RELEASE_TASK = "publish"
_DONE = {"success", "skipped"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# ----------------------------------------------------------------------------- configuration


def recipients() -> list[str]:
    """S1MIG_NOTIFY_TO split on commas/semicolons/whitespace; [] means notifications are off."""
    return [a for a in re.split(r"[,;\s]+", os.environ.get("S1MIG_NOTIFY_TO", "")) if a]


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r}: use true or false")


def smtp_conn_id() -> str:
    """The Airflow connection the mails go through."""
    if os.environ.get("S1MIG_SMTP_HOST"):
        return ENV_CONN_ID
    return os.environ.get("S1MIG_SMTP_CONN_ID") or DEFAULT_CONN_ID


def smtp_connection_json() -> str | None:
    """The Airflow connection (JSON form of AIRFLOW_CONN_*) built from S1MIG_SMTP_*, or None
    when S1MIG_SMTP_HOST is unset."""
    host = os.environ.get("S1MIG_SMTP_HOST")
    if not host:
        return None
    ssl = _flag("S1MIG_SMTP_SSL", False)
    starttls = _flag("S1MIG_SMTP_STARTTLS", not ssl)
    port_raw = os.environ.get("S1MIG_SMTP_PORT") or ("465" if ssl else "587" if starttls else "25")
    if not port_raw.isdigit():
        raise ValueError(f"S1MIG_SMTP_PORT={port_raw!r}: not a port number")
    conn: dict[str, Any] = {
        "conn_type": "smtp",
        "host": host,
        "port": int(port_raw),
        "extra": {
            "disable_ssl": not ssl,
            "disable_tls": not starttls,
            "timeout": int(os.environ.get("S1MIG_SMTP_TIMEOUT") or 30),
            "retry_limit": 1,
        },
    }
    if os.environ.get("S1MIG_SMTP_USER"):
        conn["login"] = os.environ["S1MIG_SMTP_USER"]
        conn["password"] = os.environ.get("S1MIG_SMTP_PASSWORD", "")
    if os.environ.get("S1MIG_NOTIFY_FROM"):
        conn["extra"]["from_email"] = os.environ["S1MIG_NOTIFY_FROM"]
    return json.dumps(conn)


def _export_smtp_connection() -> str:
    """Make the connection from S1MIG_SMTP_* visible to Airflow in this process (an
    AIRFLOW_CONN_S1MIG_SMTP variable: secrets stay in the environment); return the conn id."""
    conn = smtp_connection_json()
    if conn is not None:
        os.environ["AIRFLOW_CONN_" + ENV_CONN_ID.upper()] = conn
    return smtp_conn_id()


def parse_time_of_day(raw: str) -> dt.time | None:
    """HH:MM or HH:MM:SS as a time of day, None when it is not one."""
    parts = raw.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and 1 <= len(p) <= 2 for p in parts):
        return None
    h, m, s = (int(p) for p in [*parts, "0"][:3])
    return dt.time(h, m, s) if h <= 23 and m <= 59 and s <= 59 else None


def deadline_time_of_day() -> dt.time | None:
    """S1MIG_RELEASE_DEADLINE as a local time, None when "off"."""
    raw = os.environ.get("S1MIG_RELEASE_DEADLINE", DEFAULT_DEADLINE).strip().lower() or DEFAULT_DEADLINE
    if raw in {"off", "none", "no", "false"}:
        return None
    at = parse_time_of_day(raw)
    if at is None:
        raise ValueError(f"S1MIG_RELEASE_DEADLINE={raw!r}: use HH:MM (Europe/London, the day after D) or off")
    return at


def release_deadline(day: dt.date, at: dt.time) -> dt.datetime:
    """The instant (UTC) of `at` Europe/London on the day after report date `day`, on the wall
    clock whatever the clock changes. A time that the clock skips (01:00-01:59 on the last
    Sunday of March) is read as GMT, i.e. an hour later by the clock after the change; one that
    it repeats (October) is its first occurrence."""
    from zoneinfo import ZoneInfo

    local = dt.datetime.combine(day + dt.timedelta(days=1), at, tzinfo=ZoneInfo(LONDON))
    return local.astimezone(dt.UTC)


def run_report_date(conf: dict | None, data_interval_start: Any, logical_date: Any) -> dt.date | None:
    """D as the run's tasks read it (airflow_support.report_date): conf report_date, else the
    London day of the data interval start, else of the logical date; None when none is set
    (or conf's report_date is not a date: the run fails on it at once)."""
    value = (conf or {}).get("report_date")
    if value:
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            return None
    return _london_date(data_interval_start) or _london_date(logical_date)


def release_task() -> str:
    return os.environ.get("S1MIG_RELEASE_TASK") or DEFAULT_RELEASE_TASK


# ----------------------------------------------------------------------------- what the DAG wires in


def failure_notifiers() -> list:
    """Airflow notifiers for on_failure_callback: one mail per failure naming the DAG, the
    report date, the failed task, its one-line reason and its log URL; [] when not configured."""
    to = recipients()
    if not to:
        return []
    notifier = _notifier_classes()["FailureNotifier"]
    return [notifier(to=to, from_email=os.environ.get("S1MIG_NOTIFY_FROM") or None)]


def deadline_alerts():
    """The DAG's Deadline Alert "reports not released by HH:MM London on the day after D", or
    None when not configured (no recipients, or S1MIG_RELEASE_DEADLINE=off).

    Reference: s1mig.deadline.ReportReleaseDeadline, D+1 HH:MM Europe/London on the wall clock
    (clock changes included) for the run's report date D as its tasks read it: conf
    report_date, else the London day of its data interval (the daily timetable's D); so a run
    queued without a logical date (`s1mig trigger`, the UI's Trigger) has a deadline too.
    Interval: zero. The scheduler creates the deadline with the run (already passed when the
    run is made after it: the callback then runs at once), deletes it when the run succeeds
    before it, and otherwise (run still going, failed, or succeeded late) queues the callback
    on the triggerer when it passes; the callback sends nothing if the release task (publish)
    of that run has succeeded meanwhile, or if <export folder>/<D> holds a released export
    (another run of D released it). The scheduler finds the reference through this package's
    Airflow plugin (s1mig.airflow_plugin, an entry point): it must be installed where the
    scheduler runs."""
    to = recipients()
    at = deadline_time_of_day()
    if not to or at is None:
        return None
    from airflow.sdk import AsyncCallback, DeadlineAlert

    from s1mig.deadline import ReportReleaseDeadline

    label = f"{at:%H:%M}" if not at.second else f"{at:%H:%M:%S}"
    return DeadlineAlert(
        reference=ReportReleaseDeadline(at=at.isoformat()),
        interval=dt.timedelta(0),
        callback=AsyncCallback(
            "s1mig.notify.DeadlineNotifier",
            kwargs={
                "to": to,
                "from_email": os.environ.get("S1MIG_NOTIFY_FROM") or None,
                "deadline_label": f"{label} {LONDON}",
                "release_task": release_task(),
            },
        ),
        name="reports released",
    )


# ----------------------------------------------------------------------------- messages


def _london_date(value: Any) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(LONDON)).date()


def report_date_of(params: dict | None, conf: dict | None, *instants: Any) -> str:
    """The run's report date D: params/conf report_date, else the London day of the first of
    `instants` that is set."""
    for source in (params or {}, conf or {}):
        if source.get("report_date"):
            return str(source["report_date"])
    day = next((d for d in map(_london_date, instants) if d is not None), None)
    return day.isoformat() if day else "unknown"


def one_line(text: str, limit: int = 300) -> str:
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _reason_of(context: dict) -> str:
    exc = context.get("exception")
    if exc is not None:
        text = one_line(str(exc)) if not isinstance(exc, str) else one_line(exc)
        return text or type(exc).__name__
    # a DAG-level callback gets no exception, only why the run failed ("task_failure")
    why = context.get("reason") or "failed"
    return f"{why} (the exception is in the task's log)"


def _base_url() -> str | None:
    try:
        from airflow.sdk.configuration import conf

        url = conf.get("api", "base_url", fallback=None)
    except Exception:  # noqa: BLE001 - no configuration: no URL to give
        url = None
    return url.rstrip("/") if url else None


def _html(title: str, rows: list[tuple[str, str]]) -> str:
    cells = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{_link(v) if k.endswith('URL') else html.escape(v)}</td></tr>"
        for k, v in rows
    )
    return f"<p>{html.escape(title)}</p><table>{cells}</table>"


def _link(url: str) -> str:
    return f"<a href='{html.escape(url, quote=True)}'>{html.escape(url)}</a>"


def failure_message(context: dict) -> tuple[str, str]:
    """(subject, html body) of a failure mail from an Airflow callback context."""
    ti = context.get("ti")
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    dag_id = getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None) or "unknown DAG"
    run_id = context.get("run_id") or getattr(ti, "run_id", "")
    task_id = getattr(ti, "task_id", None) or "unknown task"
    # as the tasks see it (airflow_support.report_date): params, else the data interval's London day
    day = report_date_of(
        context.get("params"),
        getattr(dag_run, "conf", None),
        context.get("data_interval_start") or getattr(dag_run, "data_interval_start", None),
        context.get("logical_date") or getattr(dag_run, "logical_date", None),
    )
    reason = _reason_of(context)
    subject = one_line(f"[s1mig] {dag_id} {day}: task {task_id} failed: {reason}", 200)
    rows = [("DAG", dag_id), ("Report date", day), ("Run", str(run_id)), ("Failed task", task_id)]
    try_number = getattr(ti, "try_number", None)
    if try_number:
        rows.append(("Try", str(try_number)))
    rows.append(("Reason", reason))
    if _base_url() and ti is not None:
        rows.append(("Log URL", ti.log_url))
    return subject, _html(f"The {dag_id} run for report date {day} failed at task {task_id}.", rows)


def deadline_message(
    context: dict, deadline_label: str, release_task: str, states: dict[str, str | None] | str
) -> tuple[str, str]:
    """(subject, html body) of the release deadline mail from the triggerer's context and the
    run's task states (or why they are unknown)."""
    run = context.get("dag_run") or {}
    deadline = (context.get("deadline") or {}).get("deadline_time")
    dag_id = run.get("dag_id", "unknown DAG")
    run_id = run.get("dag_run_id") or run.get("run_id") or ""
    # D as the deadline reference read it (s1mig.deadline): conf, the data interval, the logical date
    day = report_date_of(None, run.get("conf"), run.get("data_interval_start"), run.get("logical_date"))
    subject = f"[s1mig] {dag_id} {day}: reports not released by {deadline_label} (deadline passed)"
    rows = [("DAG", dag_id), ("Report date", day), ("Run", run_id)]
    if deadline is not None:
        when = deadline if isinstance(deadline, dt.datetime) else dt.datetime.fromisoformat(str(deadline))
        from zoneinfo import ZoneInfo

        rows.append(("Deadline", when.astimezone(ZoneInfo(LONDON)).strftime("%Y-%m-%d %H:%M %Z")))
    rows.append(("Run state", str(run.get("state", "unknown"))))
    if isinstance(states, dict):
        rows.append((f"Task {release_task}", states.get(release_task) or "not started"))
        waiting = [f"{t} ({st or 'not started'})" for t, st in sorted(states.items()) if st not in _DONE]
        rows.append(("Not done", ", ".join(waiting) or "none"))
    else:
        rows.append(("Task states", states))
    if (base := _base_url()) and run_id:
        from urllib.parse import quote

        rows.append(("Run URL", f"{base}/dags/{dag_id}/runs/{quote(run_id)}"))
    title = f"The reports of {dag_id} for {day} were not released by {deadline_label} (the {release_task} task)."
    return subject, _html(title, rows)


# ----------------------------------------------------------------------------- sending


def _sender(conn_id: str, from_email: str | None) -> str:
    if from_email:
        return from_email
    try:
        from airflow.sdk import BaseHook

        extra = BaseHook.get_connection(conn_id).extra_dejson
        if extra.get("from_email"):
            return extra["from_email"]
    except Exception:  # noqa: BLE001 - no connection yet: the send names it
        pass
    return f"s1mig@{socket.getfqdn()}"


def _smtp_notifier(to: list[str], from_email: str | None, subject: str, body: str):
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    conn_id = _export_smtp_connection()
    return SmtpNotifier(
        to=to, from_email=_sender(conn_id, from_email), subject=subject, html_content=body, smtp_conn_id=conn_id
    )


def _notifier_classes() -> dict[str, type]:
    """The notifier classes, made on first use so that importing this module stays cheap."""
    global _CLASSES
    if _CLASSES:
        return _CLASSES
    from airflow.sdk import BaseNotifier

    class FailureNotifier(BaseNotifier):
        """on_failure_callback: one mail naming the DAG, report date, task, reason and log URL."""

        template_fields = ()  # the message is built from the context, not rendered by Jinja

        def render_template_fields(self, context, jinja_env=None) -> None:
            # nothing to render; and under `airflow dags test` a DAG-level callback's context
            # holds a SerializedDAG, which has no Jinja environment to ask for
            return None

        def __init__(self, to: list[str], from_email: str | None = None, **kwargs):
            super().__init__(**kwargs)
            self.to = list(to)
            self.from_email = from_email

        def notify(self, context) -> None:
            subject, body = failure_message(context)
            _smtp_notifier(self.to, self.from_email, subject, body).notify(context)
            self.log.info("failure mail sent to %s: %s", ", ".join(self.to), subject)

    class DeadlineNotifier(BaseNotifier):
        """Deadline Alert callback (on the triggerer): "reports not released by HH:MM"."""

        template_fields = ()

        def render_template_fields(self, context, jinja_env=None) -> None:
            return None

        def __init__(
            self,
            to: list[str],
            from_email: str | None = None,
            deadline_label: str = f"{DEFAULT_DEADLINE} {LONDON}",
            release_task: str = DEFAULT_RELEASE_TASK,
            **kwargs,
        ):
            super().__init__(**kwargs)
            self.to = list(to)
            self.from_email = from_email
            self.deadline_label = deadline_label
            self.release_task = release_task

        async def async_notify(self, context) -> None:
            states = await _task_states(context)
            run = context.get("dag_run") or {}
            if isinstance(states, dict) and states.get(self.release_task) == "success":
                self.log.info(
                    "deadline passed for %s but %s has succeeded: no mail", run.get("dag_run_id"), self.release_task
                )
                return
            if where := _released_on_disk(context):
                self.log.info("deadline passed for %s but %s is released: no mail", run.get("dag_run_id"), where)
                return
            subject, body = deadline_message(context, self.deadline_label, self.release_task, states)
            await _smtp_notifier(self.to, self.from_email, subject, body).async_notify(context)
            self.log.info("deadline mail sent to %s: %s", ", ".join(self.to), subject)

        def notify(self, context) -> None:  # the same alert from synchronous code
            import asyncio

            asyncio.run(self.async_notify(context))

    for cls in (FailureNotifier, DeadlineNotifier):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    _CLASSES = {"FailureNotifier": FailureNotifier, "DeadlineNotifier": DeadlineNotifier}
    return _CLASSES


_CLASSES: dict[str, type] = {}


async def _task_states(context: dict) -> dict[str, str | None] | str:
    """The states of the deadline's run's tasks ({task id: state, None when not started}),
    asked of Airflow through the triggerer's supervisor; "unknown (why)" when it cannot be asked."""
    run = context.get("dag_run") or {}
    dag_id, run_id = run.get("dag_id"), run.get("dag_run_id")
    if not dag_id or not run_id:
        return "unknown (no run in the callback's context)"
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
        from asgiref.sync import sync_to_async

        states = await sync_to_async(RuntimeTaskInstance.get_task_states)(dag_id=dag_id, run_ids=[run_id])
    except Exception as exc:  # noqa: BLE001 - Airflow could not be asked: the alert is sent
        return f"unknown ({one_line(str(exc), 120) or type(exc).__name__})"
    return {task: (str(state) if state else None) for task, state in (states.get(run_id) or {}).items()}


def _released_on_disk(context: dict) -> str | None:
    """<export folder>/<D> when it holds a released export (evidence.json with its release):
    another run of the same date (a re-run after a failure) may have released D already."""
    run = context.get("dag_run") or {}
    conf = run.get("conf") or {}
    day = report_date_of(None, conf, run.get("logical_date"), run.get("data_interval_start"))
    try:
        from pathlib import Path

        from s1mig import config

        folder = (Path(conf["out"]) if conf.get("out") else config.export_dir()) / day
        record = json.loads((folder / "evidence.json").read_text())
    except (OSError, ValueError, TypeError):
        return None
    return str(folder) if isinstance(record, dict) and record.get("release") else None


def __getattr__(name: str):
    if name in {"FailureNotifier", "DeadlineNotifier"}:
        return _notifier_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
