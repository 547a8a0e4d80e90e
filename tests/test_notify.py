"""Failure mails and the release Deadline Alert (s1mig.notify) against a real SMTP server on
127.0.0.1: a failing task run by `airflow dags test`, and a deadline passed under a real
scheduler and triggerer (metadata in PostgreSQL on the test's embedded server)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from s1mig import airflow_home, notify
from tests.support.databases import fresh_database
from tests.support.smtp_server import SmtpServer

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _airflow_env(tmp: Path, dags: Path, smtp_port: int, **extra: str) -> dict[str, str]:
    """The environment s1mig gives Airflow (airflow_home.airflow_env), with a home of this test's
    own and the SMTP settings pointing at the test server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "S1MIG_SMTP", "S1MIG_NOTIFY"))}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "PYTHONUNBUFFERED": "1",
            "S1MIG_NOTIFY_TO": "ops@example.test, second@example.test",
            "S1MIG_NOTIFY_FROM": "s1mig@example.test",
            "S1MIG_SMTP_HOST": "127.0.0.1",
            "S1MIG_SMTP_PORT": str(smtp_port),
            "S1MIG_SMTP_STARTTLS": "false",
            "S1MIG_SMTP_USER": "mailer",
            "S1MIG_SMTP_PASSWORD": "not-a-real-secret",
            "S1MIG_SMTP_TIMEOUT": "10",
        }
    )
    env.update(extra)
    return env


FAILING_DAG = """
import pendulum
from airflow.sdk import Param, dag, task

from s1mig import notify


@dag(
    dag_id="notify_probe",
    schedule=None,
    start_date=pendulum.datetime(2020, 1, 1, tz="Europe/London"),
    # as the daily DAG may wire them: at task level (the exception is known) and at DAG level
    default_args={"retries": 0, "on_failure_callback": notify.failure_notifiers()},
    on_failure_callback=notify.failure_notifiers(),
    params={"report_date": Param(None, type=["null", "string"])},
)
def notify_probe():
    @task
    def land():
        raise RuntimeError("drop for 2026-07-01 is missing: /landing/2026-07-01/manifest.json\\nsecond line")

    land()


notify_probe()
"""


def test_failure_mail_from_a_real_failing_task(tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "notify_probe.py").write_text(FAILING_DAG)
    with SmtpServer(lifetime=240, credentials=("mailer", "not-a-real-secret")) as smtp:
        env = _airflow_env(tmp_path, dags, smtp.port)
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, check=True, timeout=180)
        # logical date 23:30 UTC on 30 June: the report date is London's day, 1 July
        proc = subprocess.run(
            [AIRFLOW, "dags", "test", "notify_probe", "2026-06-30T23:30:00+00:00"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert "drop for 2026-07-01 is missing" in proc.stdout + proc.stderr  # the task really failed
        mails = smtp.wait_for(2, timeout=30)
    assert len(mails) == 2, [m.subject for m in mails]
    for mail in mails:
        assert mail.rcpt_to == ["ops@example.test", "second@example.test"]
        assert mail.mail_from == "s1mig@example.test"
        assert mail.login == "mailer"  # S1MIG_SMTP_USER/PASSWORD reached the server
        assert mail.subject.startswith("[s1mig] notify_probe 2026-07-01: task land failed: ")
        assert "notify_probe" in mail.text and "2026-07-01" in mail.text and "land" in mail.text
    task_level = [m for m in mails if "manifest.json" in m.subject]
    assert len(task_level) == 1, [m.subject for m in mails]
    # one line: the exception's first line, not its traceback
    assert task_level[0].subject.endswith("drop for 2026-07-01 is missing: /landing/2026-07-01/manifest.json")
    assert "second line" not in task_level[0].text and "Traceback" not in task_level[0].text
    dag_level = [m for m in mails if m is not task_level[0]][0]
    assert "task_failure" in dag_level.subject


def test_not_configured_means_no_notifiers_and_no_deadline(monkeypatch):
    for name in ("S1MIG_NOTIFY_TO", "S1MIG_RELEASE_DEADLINE"):
        monkeypatch.delenv(name, raising=False)
    assert notify.failure_notifiers() == []
    assert notify.deadline_alerts() is None
    monkeypatch.setenv("S1MIG_NOTIFY_TO", "ops@example.test")
    monkeypatch.setenv("S1MIG_RELEASE_DEADLINE", "off")
    assert len(notify.failure_notifiers()) == 1
    assert notify.deadline_alerts() is None
    monkeypatch.setenv("S1MIG_RELEASE_DEADLINE", "9am")
    with pytest.raises(ValueError, match="S1MIG_RELEASE_DEADLINE"):
        notify.deadline_alerts()


DEADLINE_DAG = """
import os
import time

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from s1mig import notify


@dag(
    dag_id="release_probe",
    # the daily DAG's timetable: unpaused, the scheduler queues the run of yesterday at once
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="Europe/London"),
    catchup=False,
    start_date=pendulum.datetime(2020, 1, 1, tz="Europe/London"),
    default_args={"retries": 0},
    deadline=notify.deadline_alerts(),
)
def release_probe():
    @task
    def publish(**context):
        if (context["dag_run"].conf or {}).get("slow_publish"):
            time.sleep(int(os.environ["PROBE_HOLD_SECONDS"]))

    @task
    def hold():  # the run goes on after publishing: it is still running at its deadline
        time.sleep(int(os.environ["PROBE_HOLD_SECONDS"]))

    publish() >> hold()


release_probe()
"""


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _session(sid: int) -> list[int]:
    """The live processes of session `sid`: an Airflow daemon started in a session of its own and
    everything it started (the LocalExecutor's task processes take process groups of their own)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid and Path(f"/proc/{entry}/stat").read_text().split(") ")[1][0] != "Z":
                pids.append(int(entry))
        except (OSError, IndexError):
            continue
    return pids


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM to every process of the daemons' sessions, SIGKILL to what is left after 20 s."""
    sessions = [proc.pid for proc in procs]
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        for pid in [p for sid in sessions for p in _session(sid)]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + grace
        while time.monotonic() < end and any(_session(sid) for sid in sessions):
            for proc in procs:
                proc.poll()  # reap our own children
            time.sleep(0.5)
    for proc in procs:
        proc.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _deadlines(libpq_url: str) -> dict[str, tuple[dt.datetime, bool, str | None]]:
    """run_id -> (deadline_time, missed, callback state) from Airflow's metadata."""
    with psycopg.connect(libpq_url) as conn:
        rows = conn.execute(
            "select r.run_id, d.deadline_time, d.missed, c.state from deadline d"
            " join dag_run r on r.id = d.dagrun_id left join callback c on c.id = d.callback_id"
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _published(libpq_url: str) -> dict[str, dt.datetime]:
    """run_id -> when its publish task succeeded."""
    with psycopg.connect(libpq_url) as conn:
        return dict(
            conn.execute(
                "select run_id, end_date from task_instance where task_id = 'publish' and state = 'success'"
            ).fetchall()
        )


def _scheduled(by_run: dict) -> dict:
    """`by_run` with the scheduled run's id (scheduled__<its logical date>) named `released`."""
    return {("released" if k.startswith("scheduled__") else k): v for k, v in by_run.items()}


def _wait(predicate, timeout: float, what: str, logs: Path):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := predicate():
            return value
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n" + p.read_text()[-3000:] for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


def test_release_deadline_is_on_the_london_wall_clock_the_day_after_d():
    """09:00 London on D+1 whatever the clock does: the Saturday and Sunday of a change too
    (an interval from the logical date would give 10:00 in March and 08:00 in October)."""
    nine = dt.time(9)
    utc = dt.UTC
    assert notify.release_deadline(dt.date(2026, 1, 10), nine) == dt.datetime(2026, 1, 11, 9, tzinfo=utc)
    assert notify.release_deadline(dt.date(2026, 7, 1), nine) == dt.datetime(2026, 7, 2, 8, tzinfo=utc)
    # clocks go forward on Sunday 29 March 2026, back on Sunday 25 October 2026
    assert notify.release_deadline(dt.date(2026, 3, 28), nine) == dt.datetime(2026, 3, 29, 8, tzinfo=utc)
    assert notify.release_deadline(dt.date(2026, 3, 29), nine) == dt.datetime(2026, 3, 30, 8, tzinfo=utc)
    assert notify.release_deadline(dt.date(2026, 10, 24), nine) == dt.datetime(2026, 10, 25, 9, tzinfo=utc)
    assert notify.release_deadline(dt.date(2026, 10, 25), nine) == dt.datetime(2026, 10, 26, 9, tzinfo=utc)
    # D as the tasks read it: conf first, then the data interval's London day, then the logical date
    start_of_d = dt.datetime(2026, 6, 30, 23, 0, tzinfo=utc)  # 00:00 BST on 1 July
    assert notify.run_report_date({"report_date": "2026-03-28"}, start_of_d, None) == dt.date(2026, 3, 28)
    assert notify.run_report_date(None, start_of_d, None) == dt.date(2026, 7, 1)
    assert notify.run_report_date({}, None, start_of_d.isoformat()) == dt.date(2026, 7, 1)
    assert notify.run_report_date({"report_date": "1 July"}, start_of_d, None) is None
    assert notify.run_report_date(None, None, None) is None
    assert notify.parse_time_of_day("9:05") == dt.time(9, 5)
    assert notify.parse_time_of_day("23:59:30") == dt.time(23, 59, 30)
    assert notify.parse_time_of_day("24:00") is None and notify.parse_time_of_day("9") is None


def test_release_deadline_alert_under_a_real_scheduler_and_triggerer(tmp_path, server_url):
    """Three runs still going at their release deadline (S1MIG_RELEASE_DEADLINE London on the
    day after D; here a time of day about 100 s after the DAG is parsed, with D the day before):
    run `late` was queued without a logical date, D in its conf (as `s1mig trigger` does), and
    has not published, so its alert mails; run `released` (the daily timetable's run of D,
    queued by the scheduler) has published (only its last task is still running); run `elsewhere`
    (D = 2026-11-27, its deadline long passed when it was queued, so it comes due at once) was
    released by another run (the export folder's evidence). Neither of the last two mails."""
    from zoneinfo import ZoneInfo

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "release_probe.py").write_text(DEADLINE_DAG)
    port = _free_port()
    # D = 2026-11-27 was released by another run (a re-run after a failure): its evidence says so
    out = tmp_path / "out"
    (out / "2026-11-27").mkdir(parents=True)
    release = {"outcome": "approved", "by": "approver", "at": "2026-11-28T08:00:00+00:00"}
    (out / "2026-11-27" / "evidence.json").write_text(json.dumps({"run_id": "manual__other", "release": release}))
    procs: list[subprocess.Popen] = []
    with fresh_database(server_url) as meta_url, SmtpServer(lifetime=480) as smtp:
        env = _airflow_env(
            tmp_path,
            dags,
            smtp.port,
            **airflow_home.metadata_env(meta_url),
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
            AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
            AIRFLOW__API_AUTH__JWT_SECRET="test-only-jwt-secret-for-this-run",
            AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME="1",
            AIRFLOW__TRIGGERER__DEFAULT_CAPACITY="10",
            PROBE_HOLD_SECONDS="240",
        )
        env.pop("S1MIG_SMTP_USER")  # this one without AUTH
        env.pop("S1MIG_SMTP_PASSWORD")
        run = {"env": env, "capture_output": True, "text": True, "timeout": 240, "check": True}
        subprocess.run([AIRFLOW, "db", "migrate"], **run)
        logs = tmp_path / "logs"
        logs.mkdir()
        try:
            procs.append(
                _start(
                    [AIRFLOW, "api-server", "--apps", "execution", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
                    env,
                    logs / "api-server.log",
                )
            )
            procs.append(_start([AIRFLOW, "scheduler"], env, logs / "scheduler.log"))
            procs.append(_start([AIRFLOW, "triggerer"], env, logs / "triggerer.log"))
            # the deadline's time of day is read when the DAG is parsed; D is yesterday (London)
            london = ZoneInfo(notify.LONDON)
            due = dt.datetime.now(london).replace(microsecond=0) + dt.timedelta(seconds=100)
            if due.date() != dt.datetime.now(london).date():  # not across midnight: wait for it
                time.sleep(101)
                due = dt.datetime.now(london).replace(microsecond=0) + dt.timedelta(seconds=100)
            env["S1MIG_RELEASE_DEADLINE"] = f"{due:%H:%M:%S}"
            day = due.date() - dt.timedelta(days=1)
            subprocess.run([AIRFLOW, "dags", "reserialize"], **run)
            confs = {
                "late": {"slow_publish": True, "report_date": day.isoformat()},
                "elsewhere": {"slow_publish": True, "report_date": "2026-11-27", "out": str(out)},
            }

            def trigger(name: str) -> None:
                cmd = [AIRFLOW, "dags", "trigger", "release_probe", "-r", name, "-c", json.dumps(confs[name])]
                subprocess.run(cmd, **run)

            # the scheduled run of D (`released`) publishes well before its deadline (about 10 s
            # after it is queued while the whole suite runs on 2 cores); the other two are
            # queued once it has
            _wait(lambda: _scheduled(_published(meta_url)), 80, "the scheduled run to publish", logs)
            trigger("late")
            trigger("elsewhere")
            deadlines = _scheduled(_deadlines(meta_url))
            assert {k: v[0] for k, v in deadlines.items()} == {
                "released": due.astimezone(dt.UTC),
                "late": due.astimezone(dt.UTC),
                "elsewhere": notify.release_deadline(dt.date(2026, 11, 27), due.time()),
            }
            mails = _wait(lambda: smtp.messages, 200, "the deadline mail of run late", logs)

            # all three callbacks done: `released` and `elsewhere` sent nothing
            def callbacks_done() -> dict:
                d = _scheduled(_deadlines(meta_url))
                return d if all(v[2] in ("success", "failed") for v in d.values()) else {}

            done = _wait(
                callbacks_done,
                120,
                "the three deadline callbacks to finish",
                logs,
            )
            published = _scheduled(_published(meta_url))
        finally:
            _stop(procs)
        time.sleep(1)
        mails = list(smtp.messages)
    assert {k: (v[1], v[2]) for k, v in done.items()} == {k: (True, "success") for k in ("released", *confs)}
    # the precondition of `released`: published before its deadline, the run still going then
    assert "released" in published and published["released"] < done["released"][0]
    assert "late" not in published
    assert len(mails) == 1, [m.subject for m in mails]
    mail = mails[0]
    assert mail.at >= done["late"][0].timestamp()  # not before the deadline
    label = f"{due:%H:%M:%S} Europe/London"
    assert mail.subject == f"[s1mig] release_probe {day}: reports not released by {label} (deadline passed)"
    assert mail.rcpt_to == ["ops@example.test", "second@example.test"]
    for expected in (
        "release_probe",
        "late",
        day.isoformat(),
        "Task publish",
        "<td>hold (not started), publish (",  # what the run still waits on (publish: queued or running)
        f"http://127.0.0.1:{port}/dags/release_probe/runs/late",
    ):
        assert expected in mail.text, (expected, mail.text)


def test_the_deadline_needs_the_plugin(monkeypatch):
    """With the deadline on, a run or the service refuses to start without s1mig's Airflow plugin
    (the scheduler could not read the DAG's deadline): one line saying what to do."""
    import importlib.metadata

    from s1mig import airflow_run
    from s1mig.errors import ConfigInvalid

    monkeypatch.setenv("S1MIG_NOTIFY_TO", "ops@example.test")
    monkeypatch.delenv("S1MIG_RELEASE_DEADLINE", raising=False)
    airflow_run.check_deadline_plugin()  # installed with the package (pyproject's entry point)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [])
    with pytest.raises(ConfigInvalid, match="needs s1mig's Airflow plugin"):
        airflow_run.check_deadline_plugin()
    monkeypatch.setenv("S1MIG_RELEASE_DEADLINE", "off")
    airflow_run.check_deadline_plugin()
