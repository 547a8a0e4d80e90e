"""`s1mig serve` as an operator runs it: Airflow's api-server, scheduler, dag-processor and
triggerer as real processes on 127.0.0.1 (metadata in PostgreSQL), runs queued through the
REST API (`s1mig trigger`), the four-eyes release answered through it (`s1mig approve`,
`s1mig reject`), `s1mig serve --status` and `--stop`.

One service for the whole module (its scenarios run in file order); it is stopped at the
end whatever happened: `s1mig serve --stop`, then every process left in its session is
killed. Every wait is bounded."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from s1mig import airflow_home, db, service
from s1mig.airflow_api import AirflowApi
from s1mig.airflow_run import session_processes
from tests.support.cli import REPO, run_cli
from tests.support.databases import fresh_database
from tests.support.serving import (
    START_TIMEOUT,
    Serve,
    free_port,
    kill_session,
    listening,
    running_serve,
    trigger,
    wait_for,
)

RUN_TIMEOUT = 600.0  # s: one date from its drop to the release (land, dbt, gate, export)
D1, D2 = dt.date(2020, 7, 30), dt.date(2020, 7, 31)
APPROVER = "alice"


@pytest.fixture(scope="module")
def serve(server_url, tmp_path_factory) -> Iterator[Serve]:
    root = tmp_path_factory.mktemp("serve")
    with fresh_database(server_url) as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv("S1MIG_DATABASE_URL", url)
        mp.setenv("S1MIG_DROP_POKE", "20")  # the scheduled run of yesterday waits for a drop that never comes
        mp.delenv("S1MIG_FOUR_EYES", raising=False)  # serve's default: on
        with running_serve(url, root / "landing", root / "exports", ["--approver", APPROVER]) as handle:
            yield handle


# ----------------------------------------------------------------------------- helpers


def _as_approver(serve: Serve, *args: str) -> subprocess.CompletedProcess:
    """`s1mig ARGS --user alice`, the approver's password from the environment (as an approver runs it)."""
    return subprocess.run(
        [sys.executable, "-m", "s1mig.cli", *args, "--user", APPROVER],
        capture_output=True, text=True, cwd=REPO,
        env=dict(os.environ, S1MIG_AIRFLOW_PASSWORD=serve.password(APPROVER)),
    )  # fmt: skip


def _run(api: AirflowApi, run_id: str) -> dict:
    return next(r for r in api.runs(limit=50) if r["dag_run_id"] == run_id)


def _failed_tasks(api: AirflowApi, run_id: str) -> list[str]:
    return [t["task_id"] for t in api.task_instances(run_id) if t.get("state") in ("failed", "upstream_failed")]


def _awaiting_release(api: AirflowApi, run_id: str) -> dict | None:
    failed = _failed_tasks(api, run_id)
    assert not failed, f"run {run_id}: tasks failed before the release: {failed} (logs: {airflow_home.home_dir()})"
    detail = api.hitl_detail(run_id, service.RELEASE_TASK)
    return detail if detail and not detail.get("response_received") else None


def _finished(api: AirflowApi, run_id: str) -> str | None:
    state = _run(api, run_id).get("state")
    return state if state in ("success", "failed") else None


# ----------------------------------------------------------------------------- scenarios


def test_serve_starts_with_postgres_metadata_and_a_login(serve):
    assert f"s1mig: serving at {serve.url}" in serve.output()
    api = serve.api()
    assert api.healthy()
    assert api.dag()["is_paused"] is False
    # the logins: printed once, stored for this user only, and Airflow accepts them
    stored = json.loads(service.passwords_file().read_text())
    assert stored["admin"] == serve.password("admin") and stored[APPROVER] == serve.password(APPROVER)
    assert service.passwords_file().stat().st_mode & 0o777 == 0o600
    assert service.secrets_file().stat().st_mode & 0o777 == 0o600
    assert serve.api(APPROVER).token()
    with pytest.raises(service.S1migError, match="refused the login"):
        AirflowApi(serve.url, "admin", "not-the-password").token()
    # the four Airflow processes run, listening on loopback only
    names = {
        Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        for pid in session_processes(serve.proc.pid)
    }
    for part in ("api_server", "airflow scheduler", "airflow dag-processor", "airflow triggerer"):
        assert any(part in n for n in names), (part, names)
    # the service listens on its port on 127.0.0.1 and nowhere else (no log servers on every address)
    assert listening(session_processes(serve.proc.pid)) == {("127.0.0.1", serve.port)}
    other = _other_address()
    if other:
        with pytest.raises(OSError), socket.create_connection((other, serve.port), timeout=2):
            pass
    # Airflow's metadata lives in PostgreSQL (database `airflow`), never SQLite
    meta = airflow_home.metadata_libpq_url(serve.warehouse)
    with psycopg.connect(meta) as conn:
        dags = [r[0] for r in conn.execute("select dag_id from dag").fetchall()]
    assert "s1mig_daily" in dags
    # Airflow's own logs are in files, not on the terminal
    assert (service.logs_dir() / "scheduler.log").stat().st_size > 0
    assert "[info" not in serve.output()


def _other_address() -> str | None:
    """A non-loopback address of this machine (the service must not answer there), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_status_shows_url_and_runs(serve):
    proc = run_cli("serve", "--status")
    assert proc.returncode == 0, proc.stderr
    assert serve.url in proc.stdout and f"pid {serve.proc.pid}" in proc.stdout
    assert "four-eyes release on" in proc.stdout


def test_second_serve_says_where_the_first_runs(serve):
    proc = run_cli("serve", "--port", str(free_port()))
    assert proc.returncode == 1
    assert "already running" in proc.stderr and serve.url in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_answers_without_a_pending_release_are_one_line_errors(serve):
    proc = _as_approver(serve, "approve", "2019-01-01")
    assert proc.returncode == 1 and "no run of s1mig_daily for 2019-01-01" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("approve", "2019-01-01")  # as admin: the same line
    assert proc.returncode == 1 and "no run of s1mig_daily for 2019-01-01" in proc.stderr


def test_approved_release_publishes_only_after_the_approval(serve):
    run_cli("generate", "--out", str(serve.landing), "--start", D1.isoformat(), "--days", "2",
            "--installations", "40", "--seed", "3", check=True)  # fmt: skip
    api = serve.api()
    run_id = trigger(D1)
    detail = wait_for(f"{D1} awaiting its release", lambda: _awaiting_release(api, run_id), RUN_TIMEOUT, serve)
    assert detail["options"] == ["Approve", "Reject"]
    # exported, but only to the run's pending area: nothing published before the approval
    assert not (serve.out / D1.isoformat()).exists()
    assert list((serve.out / ".pending").rglob("manifest.json"))
    status = run_cli("serve", "--status").stdout
    assert re.search(rf"{D1}\s+running\s+{re.escape(run_id)}.*AWAITING APPROVAL", status), status
    # the approver answers with their own login (password from the environment)
    proc = _as_approver(serve, "approve", D1.isoformat(), "--why", "checked")
    assert proc.returncode == 0, proc.stderr
    assert f"{D1} approved" in proc.stdout and APPROVER in proc.stdout
    state = wait_for(f"run {run_id} to finish", lambda: _finished(api, run_id), RUN_TIMEOUT, serve)
    assert state == "success", _failed_tasks(api, run_id)
    folder = serve.out / D1.isoformat()
    assert (folder / "manifest.json").is_file()
    release = json.loads((folder / "evidence.json").read_text())["release"]
    assert release["outcome"] == "released" and release["by"] == APPROVER and release["why"] == "checked"
    # answered once: a second answer is a one-line error naming who answered
    again = run_cli("reject", D1.isoformat(), "--why", "too late")
    assert again.returncode == 1 and "already answered" in again.stderr and APPROVER in again.stderr
    serve.runs[D1] = run_id


def test_grid_screenshot_of_the_approved_run(serve):
    """scripts/screenshot_grid.py: the UI's grid of the run (it waits until the run's tasks show)."""
    import shutil
    import struct

    if not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    if D1 not in serve.runs:
        pytest.skip("the approved run's scenario did not finish")
    run_id, png = serve.runs[D1], serve.out.parent / "grid.png"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "screenshot_grid.py"), "--run", run_id, "--out", str(png)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1600, 1000)
    assert len(data) > 20_000  # a drawn page, not a blank one


def test_rejected_release_publishes_nothing(serve):
    api = serve.api()
    run_id = trigger(D2)
    wait_for(f"{D2} awaiting its release", lambda: _awaiting_release(api, run_id), RUN_TIMEOUT, serve)
    # the release is the approvers': admin (who started the service and triggered the run) may not answer it
    refused = run_cli("reject", D2.isoformat(), "--why", "mine")
    assert refused.returncode == 1 and "assigned to the approvers (alice)" in refused.stderr, refused.stderr
    refused = run_cli("reject", D2.isoformat(), "--why", "mine", "--user", "admin")
    assert refused.returncode == 1 and "'admin' may not answer" in refused.stderr, refused.stderr
    proc = _as_approver(serve, "reject", D2.isoformat(), "--why", "counts look wrong")
    assert proc.returncode == 0, proc.stderr
    assert f"{D2} rejected" in proc.stdout
    state = wait_for(f"run {run_id} to finish", lambda: _finished(api, run_id), RUN_TIMEOUT, serve)
    # a rejection is a decision, not a fault: the run succeeds, publish is skipped
    tis = {t["task_id"]: t.get("state") for t in api.task_instances(run_id)}
    assert state == "success" and tis["release"] == "success" and tis["publish"] == "skipped", (state, tis)
    assert not (serve.out / D2.isoformat()).exists()
    assert not list((serve.out / ".pending").rglob(f"{D2.isoformat()}/manifest.json"))
    with db.connect(serve.warehouse) as conn:
        rows = conn.execute(
            "select outcome, decided_by, why from audit.releases where run_id = %s", (run_id,)
        ).fetchall()
    assert rows == [("rejected", APPROVER, "counts look wrong")]


def test_stop_leaves_no_process_behind(serve):
    proc = run_cli("serve", "--stop")
    assert proc.returncode == 0, proc.stderr
    assert "serve stopped" in proc.stdout
    serve.proc.wait(timeout=30)
    assert serve.proc.returncode == 128 + signal.SIGTERM
    assert session_processes(serve.proc.pid) == []
    assert "stopped by SIGTERM" in serve.output()
    status = run_cli("serve", "--status")
    assert status.returncode == 3 and "not running" in status.stdout
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", serve.port), timeout=2):
        pass


def test_ctrl_c_while_starting_stops_everything(serve):
    """A second start on the same home, interrupted as its Airflow processes start."""
    assert service.running() is None  # the module's serve is stopped (test above)
    proc = subprocess.Popen(
        [sys.executable, "-m", "s1mig.cli", "serve", "--port", str(free_port())],
        cwd=REPO,
        env=dict(os.environ, S1MIG_DATABASE_URL=serve.warehouse),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in proc.stdout))
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not any(line.strip().startswith("triggerer: pid") for line in lines):
            assert proc.poll() is None, "\n".join(lines)
            assert time.monotonic() < deadline, "\n".join(lines)
            time.sleep(0.2)
        started = set(session_processes(proc.pid))
        assert len(started) >= 5, started  # serve and its four Airflow processes
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 128 + signal.SIGINT
        reader.join(timeout=10)
        assert "stopped by SIGINT" in lines[-1] and "Airflow processes are stopped" in lines[-1], lines
        assert session_processes(proc.pid) == []
        assert service.running() is None and not service.state_file().exists()
    finally:
        kill_session(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
