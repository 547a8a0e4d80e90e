"""Faults of the run path (issue 15, items 3 and 7), each built here: no traceback reaches
the user; an unreachable database (a closed port, a socket folder that does not exist, a
server that never answers, the embedded server's socket moved away, a server that dies in
the middle of a run) fails within seconds with one line naming the server, never its
password, and a run never retries; stopping `s1mig run` (SIGTERM as cron and systemd
send, Ctrl-C to its process group) stops everything it started, frees the warehouse and
prints one line; every run has its own log file."""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from s1mig import airflow_home, airflow_run, db, lease, pipeline
from s1mig.airflow_run import process_alive
from tests.support.cli import REPO, airflow_home_locked
from tests.support.drops import D30, D31, build_handmade_landing
from tests.support.exports import assert_exports_match_reference

pytestmark = pytest.mark.integration

SECRET = "TOPSECRET-pw-42"


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "s1mig.cli", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else dict(os.environ),
        cwd=REPO,
        timeout=120,
    )
    return proc, time.monotonic() - started


def _one_line(proc: subprocess.CompletedProcess) -> str:
    """The command failed with exactly one line on stderr and no traceback anywhere."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("s1mig: error: "), proc.stderr
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _private_server(home: Path) -> tuple[str, dict[str, str]]:
    """An embedded PostgreSQL of its own under `home` (this test may stop or break it):
    its warehouse URL and the environment that manages it."""
    env = {k: v for k, v in os.environ.items() if k != "S1MIG_DATABASE_URL"} | {"S1MIG_HOME": str(home)}
    home.mkdir(parents=True, exist_ok=True)
    proc, _ = _cli("db", "url", env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip(), env


def _lines(proc: subprocess.Popen) -> queue.Queue:
    """stdout lines of a running child, read by a thread (None at the end)."""
    found: queue.Queue = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            found.put(line)
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    return found


def _wait_for_line(lines: queue.Queue, text: str, seen: list[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError(f"the run ended before {text!r}:\n{''.join(seen)}")
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no {text!r} within {timeout} s:\n{''.join(seen)}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _in_session(sid: int) -> list[int]:
    """Live processes of a session (a child started with start_new_session has sid = its pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


# ----------------------------------------------------------------------------- one line, never a traceback


def test_a_wrong_skip_task_is_one_line(tmp_path):
    landing = build_handmade_landing(tmp_path / "landing")
    base = ("run", "--landing", str(landing), "--date", D30.isoformat(), "--out", str(tmp_path / "out"))
    line = _one_line(_cli(*base, "--skip", "land,dbt_bild")[0])
    assert "unknown task 'dbt_bild'" in line and "land, dbt_build, reconciliation_gate, export" in line
    line = _one_line(_cli(*base, "--skip", "release_lease")[0])
    assert "release_lease always runs" in line
    # nothing leaves without the gate
    line = _one_line(_cli(*base, "--skip", "land,dbt_build,reconciliation_gate")[0])
    assert "the export never runs without the reconciliation gate" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fault", ["closed port", "no socket folder", "silent server"])
def test_an_unreachable_database_fails_within_seconds_naming_it(tmp_path, monkeypatch, fault):
    """Every command that needs the warehouse: one line naming the server (host and port,
    or the socket file), never the password, within S1MIG_CONNECT_TIMEOUT seconds (here 2
    for the server that accepts the connection and never answers), before Airflow starts."""
    landing = build_handmade_landing(tmp_path / "landing")
    with contextlib.ExitStack() as stack:
        if fault == "closed port":
            port = _closed_port()
            url, where, budget = f"postgresql://s1mig:{SECRET}@127.0.0.1:{port}/s1mig", f"127.0.0.1 port {port}", 10
        elif fault == "no socket folder":
            folder = tmp_path / "moved-away"
            url, where, budget = f"postgresql://postgres:{SECRET}@/s1mig?host={folder}", f"{folder}/.s.PGSQL.5432", 10
        else:
            silent = stack.enter_context(socket.socket())
            silent.bind(("127.0.0.1", 0))
            silent.listen(16)  # the kernel completes the handshake; nobody ever answers
            port = silent.getsockname()[1]
            url, where, budget = f"postgresql://s1mig:{SECRET}@127.0.0.1:{port}/s1mig", f"127.0.0.1 port {port}", 12
            monkeypatch.setenv("S1MIG_CONNECT_TIMEOUT", "2")
        monkeypatch.setenv("S1MIG_DATABASE_URL", url)
        out = tmp_path / "out"
        for args in (
            ("run", "--landing", str(landing), "--date", D30.isoformat(), "--out", str(out)),
            ("backfill", "--landing", str(landing), "--start", D30.isoformat(), "--end", D31.isoformat()),
            ("land", "--landing", str(landing), "--date", D30.isoformat()),
            ("dbt", "build", "--vars", f"{{report_date: '{D30}'}}"),
        ):
            if args[0] == "backfill":
                args = (*args, "--out", str(out))
            proc, took = _cli(*args)
            line = _one_line(proc)
            assert took < budget, f"s1mig {args[0]} took {took:.1f} s"
            assert "the warehouse database cannot be reached at " in line and where in line, line
            assert SECRET not in proc.stdout + proc.stderr
            if fault == "silent server":
                assert "no answer within 2 s (S1MIG_CONNECT_TIMEOUT)" in line, line
            if args[0] in ("run", "backfill"):
                assert line.startswith(f"s1mig: error: {D30}: "), line
                assert "airflow dags test" not in proc.stdout and "take_lease" not in proc.stdout
        assert not out.exists()


@pytest.mark.parametrize(
    "url", [f"postgresql://s1mig:{SECRET}@[::1/s1mig", f"postgresql://s1mig:{SECRET}@db.example/s1mig?colour=blue"]
)
def test_a_malformed_database_url_is_one_line_without_its_password(tmp_path, monkeypatch, url):
    monkeypatch.setenv("S1MIG_DATABASE_URL", url)
    landing = build_handmade_landing(tmp_path / "landing")
    proc, _ = _cli("run", "--landing", str(landing), "--date", D30.isoformat(), "--out", str(tmp_path / "out"))
    line = _one_line(proc)
    assert line.startswith("s1mig: error: S1MIG_DATABASE_URL is not a valid libpq URL: ") and SECRET not in line


def test_a_moved_embedded_socket_says_how_to_recover(tmp_path):
    """The embedded server runs but its socket file is gone (moved, or deleted by a /tmp
    cleaner): one line naming the socket and the way out; `s1mig db stop` then works and
    the next command starts the server again."""
    url, env = _private_server(tmp_path / "home")
    folder = Path(db.url_parts(url)["host"])
    sock = next(folder.glob(".s.PGSQL.*[0-9]"))
    moved = tmp_path / "moved.sock"
    try:
        sock.rename(moved)
        landing = build_handmade_landing(tmp_path / "landing")
        args = ("run", "--landing", str(landing), "--date", D30.isoformat(), "--out", str(tmp_path / "out"))
        proc, took = _cli(*args, env=env)
        line = _one_line(proc)
        assert took < 10
        assert f"cannot be reached at socket {sock}" in line and "socket was moved or deleted" in line, line
        assert "restart it with `s1mig db stop`" in line
        assert _cli("db", "stop", env=env)[0].returncode == 0
        proc, _ = _cli("db", "url", env=env)  # started again, with its socket
        assert proc.returncode == 0 and proc.stdout.strip() == url and sock.exists(), proc.stderr
    finally:
        _cli("db", "stop", env=env)


def test_a_deep_home_starts_its_server_on_a_short_socket_path(tmp_path):
    """A home so deep that neither its data folder nor its run folder can hold a Unix socket
    (107 bytes at most: a CI checkout's test folders are that deep): the embedded server
    still starts, its socket in this user's own short socket folder, and starts again there."""
    home = tmp_path / ("deep-" * 12) / "home"
    assert len(os.fsencode(home / "pgdata" / ".s.PGSQL.5432")) > db.SOCKET_PATH_MAX
    url, env = _private_server(home)
    try:
        folder = Path(db.url_parts(url)["host"])
        assert folder.is_relative_to(Path(tempfile.gettempdir()) / f"s1mig-sockets-{os.getuid()}"), url
        assert len(os.fsencode(folder / ".s.PGSQL.65535")) <= db.SOCKET_PATH_MAX
        assert _cli("db", "stop", env=env)[0].returncode == 0
        proc, _ = _cli("db", "url", env=env)
        assert proc.returncode == 0 and proc.stdout.strip() == url, proc.stderr
    finally:
        _cli("db", "stop", env=env)


def test_a_server_that_dies_during_the_run(tmp_path):
    """The warehouse's server stops while the run builds: the run ends at once (no retry)
    with one line naming the server, not "dbt build failed: exit code 2"; the run that
    died holds nothing once the server is back."""
    url, server_env = _private_server(tmp_path / "db-home")
    try:
        landing = build_handmade_landing(tmp_path / "landing")
        env = dict(os.environ) | {"S1MIG_DATABASE_URL": url}
        args = ["run", "--landing", str(landing), "--date", D30.isoformat(), "--out", str(tmp_path / "out")]
        cli = subprocess.Popen(
            [sys.executable, "-m", "s1mig.cli", *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen: list[str] = []
        try:
            _wait_for_line(_lines(cli), "dbt_build ...", seen)
            time.sleep(3)  # dbt is at work
            assert _cli("db", "stop", env=server_env)[0].returncode == 0
            stopped = time.monotonic()
            cli.wait(timeout=120)
            took = time.monotonic() - stopped
        finally:
            cli.kill()
            cli.wait()
        stderr = cli.stderr.read()
        proc = subprocess.CompletedProcess(args, cli.returncode, "".join(seen), stderr)
        line = _one_line(proc)
        # no retry (a retry would come 20 minutes later; s1mig run has none): a bound that says
        # so on a loaded machine too, not a performance figure
        assert took < 90, f"the run took {took:.0f} s to give up"
        socket_file = f"{db.url_parts(url)['host']}/.s.PGSQL.{db.url_parts(url)['port']}"
        assert f"cannot be reached at socket {socket_file}" in line, line
        assert "exit code" not in line
        log_file = Path(re.search(r"\(Airflow log: (\S+)\)$", line).group(1))
        assert "up_for_retry" not in log_file.read_text().lower()  # S1MIG_TASK_RETRIES=0 under `s1mig run`

        assert _cli("db", "url", env=server_env)[0].returncode == 0  # the server back
        assert lease.holder(url) is None  # the run that died holds nothing
    finally:
        _cli("db", "stop", env=server_env)


# ----------------------------------------------------------------------------- stopping a run


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_stopping_a_run_stops_everything_it_started(warehouse, tmp_path, how):
    """SIGTERM to `s1mig run` (as systemd, cron's `timeout` or `kill` send), or SIGINT to
    its whole process group (Ctrl-C in a terminal), while dbt builds: within seconds every
    process it started is gone, the lease is released, one line says so; no statement of
    the run goes on in the database; the next run of the date works."""
    landing, out = build_handmade_landing(tmp_path / "landing"), tmp_path / "out"
    cli = subprocess.Popen(
        [sys.executable, "-m", "s1mig.cli", "run", "--landing", str(landing), "--date", D30.isoformat()]
        + ["--out", str(out)],
        env=dict(os.environ),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own session: what it started is found by session id
    )
    seen: list[str] = []
    try:
        _wait_for_line(_lines(cli), "dbt_build ...", seen)
        deadline = time.monotonic() + 60
        while not any("s1mig.dbt_main build" in _cmdline(p) for p in airflow_run.descendants(cli.pid)):
            assert time.monotonic() < deadline, "dbt never started"
            time.sleep(0.1)
        time.sleep(1)
        started = airflow_run.descendants(cli.pid)
        assert len(started) >= 2, [_cmdline(p) for p in started]  # airflow dags test, dbt, ...
        sent = time.monotonic()
        if how == "SIGTERM":
            os.kill(cli.pid, signal.SIGTERM)
        else:
            os.killpg(cli.pid, signal.SIGINT)
        cli.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cli.pid, signal.SIGKILL)
        cli.wait()
    signum = getattr(signal, how)
    stderr = cli.stderr.read()
    assert cli.returncode == 128 + signum, (cli.returncode, stderr)
    assert took < 15, f"stopping took {took:.1f} s"
    assert "Traceback" not in stderr + "".join(seen)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"s1mig: stopped by {how}: the run of {D30} was stopped with the "), lines[0]
    assert "its warehouse lease is released" in lines[0]

    deadline = time.monotonic() + 5
    while any(process_alive(p) for p in started) or _in_session(cli.pid):
        assert time.monotonic() < deadline, [_cmdline(p) for p in started if process_alive(p)] + _in_session(cli.pid)
        time.sleep(0.1)
    assert not airflow_home_locked()
    with psycopg.connect(warehouse) as conn:
        released_at, released_how = conn.execute("select released_at, released_how from audit.run_lease").fetchone()
        assert released_at is not None and released_how == f"run stopped ({how})"
        deadline = time.monotonic() + 15  # the server drops the dead clients' statements and sessions
        while others := conn.execute(
            "select pid, state, left(query, 80) from pg_stat_activity where datname = current_database() "
            "and pid <> pg_backend_pid()"
        ).fetchall():
            assert time.monotonic() < deadline, others
            time.sleep(0.5)
    assert lease.holder(warehouse) is None

    if how == "SIGTERM":  # the next run of the date works (direct: one DAG run per scenario)
        pipeline.run_direct(landing, D30, out, run_id="after-the-stop", wait=0)
        assert_exports_match_reference(landing, out, D30)


def test_stopping_a_backfill_while_it_waits(warehouse, tmp_path, monkeypatch):
    """A backfill waiting for the Airflow home (another `s1mig run` holds it) and stopped:
    one line naming where the backfill stopped, at once, nothing started."""
    landing, out = build_handmade_landing(tmp_path / "landing"), tmp_path / "out"
    home = Path(os.environ["S1MIG_HOME"]) / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("S1MIG_LEASE_WAIT", "600")
    with open(home / ".dags-test.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        cli = subprocess.Popen(
            [sys.executable, "-m", "s1mig.cli", "backfill", "--landing", str(landing)]
            + ["--start", D30.isoformat(), "--end", D31.isoformat(), "--out", str(out)],
            env=dict(os.environ),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _wait_for_line(_lines(cli), "waiting for the warehouse: the Airflow home is in use", [], timeout=60)
            sent = time.monotonic()
            os.kill(cli.pid, signal.SIGTERM)
            cli.wait(timeout=30)
            took = time.monotonic() - sent
        finally:
            cli.kill()
            cli.wait()
    stderr = cli.stderr.read()
    assert cli.returncode == 128 + signal.SIGTERM and took < 5, (cli.returncode, took, stderr)
    assert stderr.strip().splitlines() == [f"s1mig: stopped by SIGTERM: backfill stopped at {D30} (0 of 2 dates done)"]
    assert not out.exists() and not _in_session(cli.pid)


def test_every_run_has_its_own_log_file(warehouse, tmp_path, monkeypatch):
    """Two `s1mig run` of one date started in the same second (here both stop at once: the
    Airflow home is held) write two log files, each with its own run's line."""
    airflow_home.ensure_airflow_db(airflow_home.airflow_env(warehouse), lambda _: None)
    landing, out = build_handmade_landing(tmp_path / "landing"), tmp_path / "out"
    home = Path(os.environ["S1MIG_HOME"]) / "airflow"
    monkeypatch.setenv("S1MIG_LEASE_WAIT", "0")
    args = [sys.executable, "-m", "s1mig.cli", "run", "--landing", str(landing), "--date", D30.isoformat()]
    with open(home / ".dags-test.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for _attempt in range(3):
            while time.time() % 1 > 0.05:  # start both at the beginning of a second
                time.sleep(0.005)
            runs = [
                subprocess.Popen(
                    [*args, "--out", str(out / name)], env=dict(os.environ), cwd=REPO, text=True, stderr=subprocess.PIPE
                )
                for name in ("a", "b")
            ]
            errors = [run.communicate(timeout=60)[1] for run in runs]
            logs = [Path(re.search(r"\(Airflow log: (\S+)\)$", e.strip()).group(1)) for e in errors]
            stamps = [re.sub(r"-\d+$", "", p.stem) for p in logs]
            if stamps[0] == stamps[1]:
                break
        assert stamps[0] == stamps[1], f"the runs did not start in the same second: {logs}"
    assert logs[0] != logs[1] and {p.name for p in logs} == {f"{stamps[0]}.log", f"{stamps[0]}-2.log"}
    for log_file, error in zip(logs, errors, strict=True):
        assert log_file.read_text().strip() in error  # its own run's line, not the other's
    shutil.rmtree(out, ignore_errors=True)


def test_the_failed_task_and_its_error_are_read_from_airflows_output(tmp_path):
    """What the run says when a task fails with an error that is not ours (no one-line
    reason recorded): the first failed task and its exception, from Airflow's output."""
    log_file = tmp_path / "run.log"
    log_file.write_text(
        "2026-12-02T02:39:40.785022Z [info     ] [DAG TEST] starting task_id=take_lease map_index=-1\n"
        "2026-12-02T02:39:40.785022Z [info     ] [DAG TEST] starting task_id=export map_index=-1\n"
        "2026-12-02T02:39:48.842889Z [error    ] Task failed with exception     [task] loc=task_runner.py:1676\n"
        "Traceback (most recent call last):\n"
        '  File "/x/export.py", line 96, in _column_types\n'
        "    raise RuntimeError(...)\n"
        "KeyError: 'first'\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "/x/export.py", line 96, in _column_types\n'
        "RuntimeError: mart marts.s1mig_001 does not exist: run dbt build first\n"
        "\tsecond line: of the message\n"
        "2026-12-02T02:39:48.853154Z [info     ] ::group::Post Execute          [task]\n"
        "2026-12-02T02:39:49.842889Z [error    ] Task failed with exception     [task] loc=task_runner.py:1676\n"
        "Traceback (most recent call last):\n"
        "psycopg.OperationalError: the teardown's own failure\n"
    )
    assert airflow_run.failure_from_log(log_file) == (
        "export",
        "RuntimeError: mart marts.s1mig_001 does not exist: run dbt build first second line: of the message",
    )
