"""A real `s1mig serve` for tests: started as an operator starts it (a child process in a
session of its own, on a free port on 127.0.0.1), waited for until it says it serves,
and stopped at the end whatever happened: `s1mig serve --stop`, then every process
left in its session is killed. Every wait is bounded."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from s1mig import service
from s1mig.airflow_api import AirflowApi
from s1mig.airflow_run import session_processes
from tests.support.cli import REPO, run_cli

START_TIMEOUT = 420.0  # s: the four Airflow processes on a busy two-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Serve:
    proc: subprocess.Popen
    port: int
    landing: Path
    out: Path
    warehouse: str
    lines: list[str] = field(default_factory=list)
    runs: dict[dt.date, str] = field(default_factory=dict)  # run ids the scenarios queued

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return "\n".join(self.lines)

    def password(self, user: str) -> str:
        """The login's password as serve printed it (its first start on this home), else as stored."""
        m = re.search(rf"^s1mig: login {re.escape(user)} / (\S+)", self.output(), re.M)
        stored = service.stored_password(user)
        assert m or stored, f"no password printed or stored for {user}:\n{self.output()}"
        return m.group(1) if m else str(stored)

    def api(self, user: str = "admin") -> AirflowApi:
        return AirflowApi(self.url, user, self.password(user))


def listening(pids: list[int]) -> set[tuple[str, int]]:
    """The TCP (address, port) pairs these processes listen on (Linux /proc; IPv6 shown as hex)."""
    inodes: dict[str, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A":  # LISTEN
                    continue
                addr, port = fields[1].split(":")
                shown = ".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)) if len(addr) == 8 else addr
                inodes[fields[9]] = (shown, int(port, 16))
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(fd.path)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        found.add(inodes[link[8:-1]])
    return found


def kill_session(sid: int) -> None:
    for pid in session_processes(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_serve(warehouse: str, landing: Path, out: Path, args: Sequence[str] = ()) -> Iterator[Serve]:
    """`s1mig serve --port P --landing L --out O ARGS...` on the warehouse S1MIG_DATABASE_URL
    points at (the caller sets it to `warehouse`), until the block ends."""
    port = free_port()
    cmd = [sys.executable, "-m", "s1mig.cli", "serve", "--port", str(port)]
    cmd += ["--landing", str(landing), "--out", str(out), *args]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # everything it starts is in its session: found and killed at the end
    )
    handle = Serve(proc, port, landing, out, warehouse)
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: handle.lines.extend(line.rstrip("\n") for line in stdout))
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not any(line.startswith("s1mig: serving at") for line in handle.lines):
            assert proc.poll() is None, f"s1mig serve ended ({proc.returncode}):\n{handle.output()}"
            assert time.monotonic() < deadline, f"not ready in {START_TIMEOUT:.0f} s:\n{handle.output()}"
            time.sleep(0.5)
        yield handle
    finally:
        if proc.poll() is None:
            run_cli("serve", "--stop")
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=90)
        kill_session(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        reader.join(timeout=10)


def wait_for(what: str, check, timeout: float, serve: Serve, poll: float = 2.0):
    """check()'s first true value, polled every `poll` s while the service runs, within `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert serve.proc.poll() is None, f"s1mig serve ended while waiting for {what}:\n{serve.output()}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(poll)


def trigger(day: dt.date) -> str:
    """`s1mig trigger D` on the running service: the run id it printed."""
    proc = run_cli("trigger", day.isoformat(), check=True)
    m = re.search(r"queued (\S+) for " + day.isoformat(), proc.stdout)
    assert m, proc.stdout
    return m.group(1)
