"""The Celery scale-out proven on this machine (issue 16 item 5): Debian's redis-server as
the broker on 127.0.0.1, `s1mig serve --executor CeleryExecutor` (api-server, scheduler,
dag-processor, triggerer; metadata and Celery results in PostgreSQL) and two Celery workers
joining it (`s1mig worker NAME`: `airflow celery worker` with the service's environment, one
task slot each).
A date triggered through the REST API runs to its published reports, and the workers' own
logs show its tasks spread over both of them, each task executed exactly once.

Skips, saying why, where redis-server is not installed (.ci/run installs it as root)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s1mig import service
from tests.support.cli import REPO, run_cli
from tests.support.databases import fresh_database
from tests.support.serving import free_port, kill_session, running_serve, trigger, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (Debian: apt-get install redis-server; .ci/run installs it when root)",
)

D = dt.date(2020, 7, 30)
RUN_TIMEOUT = 600.0  # s: one date from its drop to its published reports on a busy two-core machine
WORKERS = ("w1", "w2")
# the worker's log line for each task it runs: "... Executing workload in Celery: ExecuteTask(... ti=TaskInstance(
# id=..., task_id='land', dag_id='s1mig_daily', run_id='...', ...)"
_WORKLOAD = re.compile(r"Executing workload in Celery: .*?task_id='(\w+)'.*?run_id='([^']+)'")


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """redis-server on a free port of 127.0.0.1, nothing persisted; its URL (database 0)."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    cmd += ["--dir", str(folder), "--protected-mode", "yes"]
    with open(folder / "redis.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                pass
            assert proc.poll() is None, (folder / "redis.log").read_text()
            assert time.monotonic() < deadline, "redis-server did not answer within 30 s"
            time.sleep(0.2)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_session(proc.pid)
            proc.wait(timeout=10)


@contextlib.contextmanager
def celery_workers() -> Iterator[dict[str, Path]]:
    """Two `s1mig worker NAME` joining the running serve, one task slot each, as an operator
    starts them; their log files. Stopped with SIGTERM (as systemd would), then whatever is
    left of their sessions is killed."""
    procs, logs = [], {name: service.logs_dir() / f"worker-{name}.log" for name in WORKERS}
    for path in logs.values():  # the readiness below is this start's
        path.unlink(missing_ok=True)
    try:
        for name in WORKERS:
            cmd = [sys.executable, "-m", "s1mig.cli", "worker", name, "--concurrency", "1"]
            procs.append(
                subprocess.Popen(
                    cmd, cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    text=True, start_new_session=True,
                )
            )  # fmt: skip
        deadline = time.monotonic() + 180
        while not all(path.is_file() and " ready." in path.read_text() for path in logs.values()):
            for proc, name in zip(procs, WORKERS, strict=True):
                assert proc.poll() is None, f"worker {name} ended: {proc.communicate()[0]}"
            assert time.monotonic() < deadline, "the Celery workers were not ready within 180 s"
            time.sleep(1)
        yield logs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in procs:
            try:
                out, _ = proc.communicate(timeout=60)
                assert "stopped by SIGTERM" in out, out
            except subprocess.TimeoutExpired:
                pass
            kill_session(proc.pid)  # anything left in its session (task processes included)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def _executed(log: Path, run_id: str) -> list[str]:
    return [task for task, run in _WORKLOAD.findall(log.read_text()) if run == run_id]


def test_two_celery_workers_share_a_dates_tasks(server_url, tmp_path):
    landing, out = tmp_path / "landing", tmp_path / "exports"
    run_cli("generate", "--out", str(landing), "--start", D.isoformat(), "--days", "1",
            "--installations", "40", "--seed", "5", check=True)  # fmt: skip
    with (
        fresh_database(server_url) as url,
        redis_server(tmp_path / "redis") as broker,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setenv("S1MIG_DATABASE_URL", url)
        mp.setenv("AIRFLOW__CELERY__BROKER_URL", broker)
        mp.setenv("S1MIG_DROP_POKE", "20")  # the scheduled run of yesterday waits for a drop that never comes
        args = ["--executor", "CeleryExecutor", "--no-four-eyes"]
        with running_serve(url, landing, out, args) as serve, celery_workers() as logs:
            assert "CeleryExecutor" in run_cli("serve", "--status", check=True).stdout
            api = serve.api()
            run_id = trigger(D)

            def finished() -> str | None:
                run = next((r for r in api.runs(limit=50) if r["dag_run_id"] == run_id), None)
                return run["state"] if run and run["state"] in ("success", "failed") else None

            state = wait_for(f"run {run_id} to finish", finished, RUN_TIMEOUT, serve)
            tis = {t["task_id"]: t["state"] for t in api.task_instances(run_id)}
            assert state == "success", tis
            executed = {name: _executed(path, run_id) for name, path in logs.items()}
    # the reports were published (four-eyes off: auto-release recorded)
    evidence = json.loads((out / D.isoformat() / "evidence.json").read_text())
    assert evidence["release"]["outcome"] == "auto-released", evidence["release"]
    # every task that ran was executed by a worker, exactly once, and both workers took a share
    ran = sorted(task for task, st in tis.items() if st == "success")
    assert sorted(executed["w1"] + executed["w2"]) == ran, executed
    assert executed["w1"] and executed["w2"], f"the tasks did not spread over both workers: {executed}"
