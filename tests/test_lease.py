"""One run at a time per warehouse (spec "Runs, corrections and restatement"): the run
lease in audit.run_lease, met by the DAG under `s1mig run`, by the direct path and by the
commands that write the warehouse by hand; a dead holder leaves nothing that blocks."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from s1mig import lease, pipeline
from tests.support.cli import REPO, airflow_home_locked, run_cli
from tests.support.databases import built_warehouse
from tests.support.drops import D01, D30, D31, build_handmade_landing
from tests.support.exports import assert_exports_match_reference

# a process that holds the lease (as a direct run does) until killed or its time is up
HOLD = textwrap.dedent(
    """
    import logging, sys, time
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    from s1mig import lease
    with lease.held(None, sys.argv[1], None, "direct", wait=0):
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
    print("released", flush=True)
    """
)

# pipeline.run_direct in a process of its own
DIRECT = textwrap.dedent(
    """
    import datetime as dt, logging, sys
    from pathlib import Path
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    from s1mig import pipeline
    landing, day, out, run_id = sys.argv[1:5]
    pipeline.run_direct(Path(landing), dt.date.fromisoformat(day), Path(out), run_id=run_id)
    """
)


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=dict(os.environ), cwd=REPO, text=True, **kwargs)


def _hold(run_id: str, seconds: float, **env: str) -> subprocess.Popen:
    """Start a holder and return once it holds the lease."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, run_id, str(seconds)],
        env=dict(os.environ) | env,
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding", proc.stderr.read() if proc.stderr else ""
    return proc


def _wait_for_holder(url: str, predicate, proc: subprocess.Popen, timeout: float = 180) -> lease.Holder:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = lease.holder(url)
        if held is not None and predicate(held):
            return held
        assert proc.poll() is None, f"the run ended (exit code {proc.returncode}) before it held the lease"
        time.sleep(0.2)
    raise AssertionError("the run never held the lease")


def _wait_until_dead(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} still runs")


def _exported(folder: Path) -> dict[str, str]:
    """Every exported file's hash but the evidence and the summary (they name the run)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in ("evidence.json", "run-summary.html")
    }


def _marts(url: str) -> dict[str, list[str]]:
    """Every row of every mart, as sorted JSON text."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'marts' order by 1"
            )
        ]
        return {
            t: sorted(r[0] for r in conn.execute(f'select to_jsonb(m)::text from marts."{t}" as m')) for t in tables
        }


# ----------------------------------------------------------------------------- the lease itself


def test_one_holder_then_the_next_after_waiting(warehouse):
    holder = _hold("holder-A", 3)
    try:
        with pytest.raises(lease.LeaseBusy) as busy:
            lease.acquire(warehouse, "run-B", D30, "direct", wait=0)
        message = str(busy.value)
        assert "\n" not in message and "in use by run holder-A (started by direct" in message
        assert "S1MIG_LEASE_WAIT=0" in message
        # waiting: progress names the holder; the lease is taken once the holder lets go
        shown: list[str] = []
        started = time.monotonic()
        token = lease.acquire(warehouse, "run-B", D30, "direct", wait=60, echo=shown.append)
        assert time.monotonic() - started > 1
        assert shown and shown[0].startswith("waiting for the warehouse: held by run holder-A")
        assert holder.wait(timeout=30) == 0 and "released" in holder.stdout.read()
        current = lease.holder(warehouse)
        assert current is not None and current.token == token and current.run_id == "run-B"
        assert current.report_date == D30 and current.started_by == "direct" and current.pid == os.getpid()
        assert lease.release(warehouse, token) and lease.holder(warehouse) is None
    finally:
        holder.kill()
        holder.wait()


def test_commands_that_write_the_warehouse_stop_at_once_with_no_wait(warehouse, tmp_path, monkeypatch):
    holder = _hold("holder-C", 120)
    try:
        monkeypatch.setenv("S1MIG_LEASE_WAIT", "0")
        landing = build_handmade_landing(tmp_path / "landing")
        for args in (("land", "--landing", str(landing), "--date", D30.isoformat()), ("dbt", "run")):
            proc = run_cli(*args)
            assert proc.returncode == 1, proc.stdout + proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("s1mig: error: the warehouse is in use by run holder-C")
        with psycopg.connect(warehouse) as conn:  # nothing landed
            assert conn.execute("select to_regclass('raw.drop_ledger')").fetchone()[0] is None
        monkeypatch.setenv("S1MIG_LEASE_WAIT", "soon")
        proc = run_cli("land", "--landing", str(landing), "--date", D30.isoformat())
        assert proc.stderr.strip() == "s1mig: error: S1MIG_LEASE_WAIT must be a number of seconds, not 'soon'"
    finally:
        holder.kill()
        holder.wait()


def test_a_holder_that_stops_its_heartbeat_loses_the_lease(warehouse):
    """A frozen holder (here SIGSTOP: alive, but its heartbeat stops) no longer holds the
    warehouse once its lease expires; when it wakes up it finds it lost the lease."""
    holder = _hold("holder-frozen", 1, S1MIG_LEASE_EXPIRY="2")
    try:
        os.kill(holder.pid, signal.SIGSTOP)
        shown: list[str] = []
        token = lease.acquire(warehouse, "run-after", None, "direct", wait=30, echo=shown.append)
        assert any("holder-frozen" in line and "stopped its heartbeat" in line for line in shown), shown
        os.kill(holder.pid, signal.SIGCONT)
        assert holder.wait(timeout=30) != 0
        assert "LeaseLost: run holder-frozen no longer holds the warehouse" in holder.stderr.read()
        current = lease.holder(warehouse)
        assert current is not None and current.token == token  # the woken holder took nothing back
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------- runs


def test_concurrent_runs_end_as_a_serial_run(server_url, tmp_path):
    """After a serial run of D30 and D31: `s1mig run` for D31 (the DAG) and a direct run of
    D30 started while it holds the warehouse. The direct run waits; marts and exports end
    equal to the serial run's. (The serial D30 comes landed and built from the session's
    template, then gated and exported here; D31 is a direct run.)"""
    landing = tmp_path / "landing"
    serial, concurrent = tmp_path / "serial", tmp_path / "concurrent"
    with built_warehouse(server_url, landing, f"serial-{D30}") as warehouse:
        pipeline.export_step(D30, serial, warehouse, f"serial-{D30}")
        pipeline.run_direct(landing, D31, serial, run_id=f"serial-{D31}", wait=0)
        _concurrent_runs(warehouse, landing, serial, concurrent, tmp_path)


def _concurrent_runs(warehouse: str, landing: Path, serial: Path, concurrent: Path, tmp_path: Path) -> None:
    serial_marts = _marts(warehouse)

    log_file = tmp_path / "cli.log"
    with open(log_file, "w") as log_fh:
        cli = subprocess.Popen(
            [sys.executable, "-m", "s1mig.cli", "run", "--landing", str(landing), "--date", D31.isoformat()]
            + ["--out", str(concurrent)],
            env=dict(os.environ),
            cwd=REPO,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
        )
        try:
            dag_run = _wait_for_holder(warehouse, lambda h: h.started_by == "cli", cli)
            assert dag_run.run_id.startswith("manual__") and dag_run.report_date == D31
            direct = _python(
                DIRECT, str(landing), D30.isoformat(), str(concurrent), "direct-D30", stderr=subprocess.PIPE
            )
            _, direct_log = direct.communicate(timeout=600)
            assert direct.returncode == 0, direct_log
            assert cli.wait(timeout=600) == 0, log_file.read_text()
        finally:
            cli.kill()
    assert f"waiting for the warehouse: held by run {dag_run.run_id} (report date {D31}, started by cli" in direct_log
    # the DAG run released the lease before the direct run took it; the direct run released it last
    with psycopg.connect(warehouse) as conn:
        last = conn.execute("select run_id, released_at is not null from audit.run_lease").fetchone()
    assert last == ("direct-D30", True)

    # both really exported (the evidence names them), and everything equals the serial run
    for day, run_id in ((D30, "direct-D30"), (D31, dag_run.run_id)):
        assert run_id in (concurrent / day.isoformat() / "evidence.json").read_text()
        assert _exported(concurrent / day.isoformat()) == _exported(serial / day.isoformat()), day
    assert _marts(warehouse) == serial_marts
    assert_exports_match_reference(landing, concurrent, D31)


def test_a_run_with_no_wait_stops_naming_the_holder(warehouse, tmp_path, monkeypatch):
    """`s1mig run` with S1MIG_LEASE_WAIT=0 while another run holds the warehouse: one line
    naming the holder, nothing landed or exported, and the holder keeps its lease."""
    landing, out = build_handmade_landing(tmp_path / "landing"), tmp_path / "out"
    holder = _hold("holder-D", 300)
    try:
        monkeypatch.setenv("S1MIG_LEASE_WAIT", "0")
        proc = run_cli("run", "--landing", str(landing), "--date", D30.isoformat(), "--out", str(out))
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
        assert lines[0].startswith(f"s1mig: error: {D30}: the warehouse is in use by run holder-D (started by direct")
        assert "gave up after waiting 0 s" in lines[0]
        assert not (out / D30.isoformat()).exists()
        with psycopg.connect(warehouse) as conn:
            assert conn.execute("select to_regclass('raw.drop_ledger')").fetchone()[0] is None
        current = lease.holder(warehouse)
        assert current is not None and current.run_id == "holder-D" and current.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_failed_run_releases_the_lease(warehouse, tmp_path):
    """The teardown releases the lease when a task fails (here land rejects the corrupt
    drop of D01), so the next run does not even need to find the holder dead."""
    landing, out = build_handmade_landing(tmp_path / "landing"), tmp_path / "out"
    proc = run_cli("run", "--landing", str(landing), "--date", D01.isoformat(), "--out", str(out))
    assert proc.returncode == 1 and f"drop {D01} rejected" in proc.stderr, proc.stderr
    assert "release_lease ..." in proc.stdout
    with psycopg.connect(warehouse) as conn:
        run_id, report_date, released_how = conn.execute(
            "select run_id, report_date, released_how from audit.run_lease where released_at is not null"
        ).fetchone()
    assert run_id.startswith("manual__") and report_date == D01 and released_how == f"run {run_id} ended"


def test_a_second_run_in_the_same_home_waits_for_the_first(warehouse, tmp_path, monkeypatch):
    """Two `s1mig run` in one S1MIG_HOME share Airflow's metadata database, where the second
    `airflow dags test` of a date would clear the first's task instances: the second waits
    for the first (here: stops at once, naming it) before it starts Airflow."""
    landing, out = build_handmade_landing(tmp_path / "landing"), tmp_path / "out"
    home = Path(os.environ["S1MIG_HOME"]) / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".dags-test.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.seek(0)
        fh.truncate()
        fh.write("`s1mig run` for 2020-07-30 (pid 4242, since 2026-12-01 10:00:00Z)")
        fh.flush()
        monkeypatch.setenv("S1MIG_LEASE_WAIT", "0")
        proc = run_cli("run", "--landing", str(landing), "--date", D30.isoformat(), "--out", str(out))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"s1mig: error: {D30}: the Airflow home {home} is in use by `s1mig run` for 2020-07-30 (pid 4242,"
    ), proc.stderr
    assert "gave up after waiting 0 s" in lines[0] and not out.exists()


def test_a_killed_run_does_not_block_the_next(warehouse, tmp_path, monkeypatch, caplog):
    """`s1mig run` killed (with everything it started) in the middle of its work: the next
    run takes the warehouse at once and exports the date as if nothing had happened."""
    landing, out = build_handmade_landing(tmp_path / "landing"), tmp_path / "out"
    with open(tmp_path / "cli.log", "w") as log_fh:
        cli = subprocess.Popen(
            [sys.executable, "-m", "s1mig.cli", "run", "--landing", str(landing), "--date", D30.isoformat()]
            + ["--out", str(out)],
            env=dict(os.environ),
            cwd=REPO,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        dag_run = _wait_for_holder(warehouse, lambda h: h.started_by == "cli", cli)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill it once it has landed the drop: in dbt_build
            with psycopg.connect(warehouse) as conn:
                if conn.execute("select to_regclass('raw.drop_ledger') is not null").fetchone()[0]:
                    if conn.execute("select count(*) from raw.drop_ledger").fetchone()[0]:
                        break
            time.sleep(0.2)
        with pytest.raises(lease.LeaseBusy, match=re.escape(f"in use by run {dag_run.run_id} (report date {D30}")):
            lease.acquire(warehouse, "too-early", D30, "direct", wait=0)
        assert airflow_home_locked()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cli.pid, signal.SIGKILL)  # the CLI and everything it started
        cli.wait()
    _wait_until_dead(dag_run.pid)  # SIGKILL takes a moment to end the Airflow process
    deadline = time.monotonic() + 30  # and the children it forked, which share the home's lock
    while airflow_home_locked():
        assert time.monotonic() < deadline, "the killed run's processes still hold the Airflow home"
        time.sleep(0.1)
    caplog.set_level(logging.INFO)
    folder = pipeline.run_direct(landing, D30, out, run_id="after-the-kill", wait=0)
    assert f"died (its process {dag_run.pid} is gone)" in caplog.text
    assert folder == str(out / D30.isoformat())
    assert_exports_match_reference(landing, out, D30)
    assert lease.holder(warehouse) is None
