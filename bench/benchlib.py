"""Shared plumbing of the s1mig benchmarks.

* `run_measured` runs one command in a child process (its own session, so a time cap
  can stop the whole tree) and reports its wall time and peak RSS from wait4(): the
  largest resident set of the child or any descendant it waited for (dbt, airflow).
* `Server` is the benchmarks' own embedded PostgreSQL under <root>/server (started and
  stopped with the product's `s1mig db start|stop`), with one database per measurement;
  `CREATE DATABASE ... TEMPLATE` gives every contender of a comparison the same state.
* `Home` is one S1MIG_HOME per contender (dbt target, GX project, Airflow home, logs),
  copied from a prepared one so that each contender starts as warm as the others.
* `Figure` is one result line: `B<n> <name> ratio=<x> target=<y> PASS|FAIL`.

Nothing here touches the repository's own .s1mig/ or any database but the benchmark's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "bench"
BIN = Path(sys.executable).parent  # the venv's bin: bench runs with .venv/bin/python
PYTHON = sys.executable
S1MIG = str(BIN / "s1mig")
CHILD = str(BENCH_DIR / "child.py")
RESULT_PREFIX = "BENCH-RESULT "
# Benchmarks build throw-away warehouses: whichever date lands first is the first drop
# (inherited by every child: s1mig, dbt, Airflow).
os.environ.setdefault("S1MIG_FIRST_DROP", "any")
STEP_PREFIX = "BENCH-STEP "
HEARTBEAT_SECONDS = 30.0
_STARTED = time.monotonic()


def progress(message: str) -> None:
    """One progress line on stderr (stdout carries the result lines)."""
    print(f"bench [{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def elapsed() -> float:
    return time.monotonic() - _STARTED


# ----------------------------------------------------------------------------- child processes


@dataclass
class Measured:
    """One finished (or stopped) child process."""

    label: str
    seconds: float
    max_rss_mb: float
    returncode: int
    timed_out: bool
    log: Path
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def inner(self) -> float:
        """The time the child measured around the product call itself (else the wall time)."""
        return float(self.result.get("seconds", self.seconds))

    def steps(self) -> dict[str, float]:
        """Seconds per pipeline step (child `direct`), also of a run stopped at its cap."""
        if self.result.get("steps"):
            return {k: float(v) for k, v in self.result["steps"].items()}
        steps: dict[str, float] = {}
        with open(self.log, errors="replace") as fh:
            for line in fh:
                if line.startswith(STEP_PREFIX):
                    name, seconds = line[len(STEP_PREFIX) :].split()
                    steps[name] = steps.get(name, 0.0) + float(seconds)
        return steps

    def check(self) -> Measured:
        if not self.ok:
            why = f"stopped after {self.seconds:.0f}s (time cap)" if self.timed_out else f"exit {self.returncode}"
            raise BenchError(f"{self.label} failed: {why}; log: {self.log}\n{tail(self.log)}")
        return self


class BenchError(RuntimeError):
    pass


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line[:300] for line in text[-lines:])


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:160] if lines else ""


def _read_result(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with open(path, errors="replace") as fh:
        for line in fh:
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX) :])
    return result


def _stop_group(pid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def run_measured(
    label: str,
    cmd: Sequence[str],
    env: dict[str, str],
    log: Path,
    timeout: float | None = None,
) -> Measured:
    """Run `cmd`, output to `log`; wall seconds and peak RSS (MB) of its process tree.

    With `timeout`, the process group is stopped when the cap is reached (timed_out=True,
    seconds = the cap: a lower bound)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    progress(f"{label} ...")
    with open(log, "w") as fh:
        started = time.monotonic()
        proc = subprocess.Popen(
            list(cmd), env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
        stopped = threading.Event()
        timed_out = threading.Event()

        def watch() -> None:
            next_beat = started + HEARTBEAT_SECONDS
            while not stopped.wait(1.0):
                now = time.monotonic()
                if timeout is not None and now - started > timeout:
                    timed_out.set()
                    progress(f"{label}: time cap of {timeout:.0f}s reached, stopping it")
                    _stop_group(proc.pid)
                    return
                if now >= next_beat:
                    next_beat += HEARTBEAT_SECONDS
                    progress(f"  ... {label} running for {now - started:.0f}s: {_last_line(log)}")

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        stopped.set()
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    measured = Measured(
        label=label,
        seconds=seconds,
        max_rss_mb=usage.ru_maxrss / 1024.0,  # kilobytes on Linux
        returncode=proc.returncode,
        timed_out=timed_out.is_set(),
        log=log,
        result=_read_result(log),
    )
    state = "stopped at the cap" if measured.timed_out else ("ok" if measured.ok else f"exit {measured.returncode}")
    progress(f"{label}: {measured.seconds:.1f}s wall, peak RSS {measured.max_rss_mb:.0f} MB ({state})")
    return measured


def child_cmd(*args: str) -> list[str]:
    return [PYTHON, CHILD, *args]


def psql_path() -> str:
    """The psql client (PostgreSQL 15 here), for the COPY baselines of B1 and B5."""
    found = shutil.which("psql") or "/usr/bin/psql"
    if not Path(found).exists():
        raise BenchError("psql is not installed (the PostgreSQL client is needed for B1 and B5)")
    return found


# ----------------------------------------------------------------------------- environment


def clean_env() -> dict[str, str]:
    """This process's environment without any s1mig / Airflow / libpq setting that could
    point a child at someone else's data."""
    drop_prefixes = ("S1MIG_", "AIRFLOW_", "AIRFLOW__", "PG", "DBT_")
    # kept: the first-drop rule of throw-away warehouses (above) and the server's settings
    # (s1mig.db.server_settings; S1MIG_PG_TUNING=off measures PostgreSQL's defaults)
    keep = ("S1MIG_FIRST_DROP", "S1MIG_PG_TUNING")
    return {k: v for k, v in os.environ.items() if k in keep or not k.startswith(drop_prefixes)}


class Server:
    """The benchmarks' embedded PostgreSQL (its own S1MIG_HOME) and its databases."""

    def __init__(self, root: Path):
        self.home = root / "server"
        self.home.mkdir(parents=True, exist_ok=True)
        self._url: str | None = None

    def _env(self) -> dict[str, str]:
        env = clean_env()
        env["S1MIG_HOME"] = str(self.home)
        return env

    def start(self) -> None:
        progress(f"starting the benchmark's embedded PostgreSQL in {self.home}")
        subprocess.run([S1MIG, "db", "start"], env=self._env(), check=True, capture_output=True, text=True)
        url = subprocess.run([S1MIG, "db", "url"], env=self._env(), check=True, capture_output=True, text=True)
        self._url = url.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        proc = subprocess.run([S1MIG, "db", "stop"], env=self._env(), capture_output=True, text=True)
        progress(proc.stdout.strip() or proc.stderr.strip())

    def url(self, dbname: str) -> str:
        from s1mig import db

        if self._url is None:
            raise BenchError("server not started")
        p = db.url_parts(self._url)
        return db.url_from_parts(p["host"], p["port"], p["user"], p["password"], dbname)

    def execute(self, statement: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            cur = conn.execute(statement)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def create(self, name: str, template: str | None = None) -> str:
        """A fresh database (a copy of `template` when given); returns its URL."""
        self.drop(name)
        if template:
            self.execute("checkpoint")
            self.execute(f'create database "{name}" template "{template}"')
        else:
            self.execute(f'create database "{name}"')
        return self.url(name)

    def drop(self, name: str) -> None:
        self.execute(f'drop database if exists "{name}" with (force)')

    def cancel(self, name: str) -> None:
        """End the queries a stopped client left running in database `name`."""
        self.execute(f"select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}'")

    def checkpoint(self) -> None:
        self.execute("checkpoint")


class Home:
    """One S1MIG_HOME: dbt target and logs, GX project, Airflow home, run logs."""

    STATE = ("dbt", "gx", "airflow")

    def __init__(self, root: Path, name: str):
        self.path = root / "homes" / name
        self.name = name
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)

    def env(self, url: str, **extra: str) -> dict[str, str]:
        from s1mig import db

        env = clean_env()
        env.update(db.warehouse_env(url))
        env.update(
            {
                "S1MIG_HOME": str(self.path),
                "S1MIG_PROJECT_DIR": str(REPO),
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    def copy_state_from(self, other: Home) -> None:
        """Start as warm as `other`: its dbt target (partial parse), GX project, Airflow home."""
        for part in self.STATE:
            src = other.path / part
            if src.exists():
                shutil.copytree(src, self.path / part, dirs_exist_ok=True, symlinks=True)

    def logs(self, name: str) -> Path:
        return self.path / "bench-logs" / name


# ----------------------------------------------------------------------------- data


# --landing-cache: generated landings are kept there and reused (a full-scale landing
# takes about 20 minutes to generate), keyed by the generator's parameters and source.
LANDING_CACHE: Path | None = None


def generate(
    out: Path, start: dt.date, days: int, installations: int, daily_volume: float | None, log: Path
) -> Measured | None:
    """Drops from the product generator (s1mig.generate.generate) in a child process.
    `daily_volume` sets the MA requests a day (the generator's volume knobs); None keeps
    the generator's own (5% of the base a day, at most 60,000). With LANDING_CACHE, `out`
    becomes a link to the cached landing of the same parameters and generator source,
    generated first when there is none (None is returned when it was reused)."""
    if LANDING_CACHE is None:
        return _generate(out, start, days, installations, daily_volume, log)
    source = hashlib.sha256()
    package = REPO / "src" / "s1mig"
    for module in [*sorted((package / "generate").glob("*.py")), package / "contract.py"]:
        source.update(module.read_bytes())
    key = f"{installations}x{days}-{start}-{daily_volume or 'default'}-{source.hexdigest()[:12]}"
    cached = LANDING_CACHE / key
    measured = None
    if (cached / ".complete").is_file():
        progress(f"reusing the generated landing {cached}")
    else:
        measured = _generate(cached, start, days, installations, daily_volume, log)
        (cached / ".complete").write_text(key + "\n")
    if out.is_symlink():
        out.unlink()
    shutil.rmtree(out, ignore_errors=True)
    out.symlink_to(cached, target_is_directory=True)
    return measured


def _generate(
    out: Path, start: dt.date, days: int, installations: int, daily_volume: float | None, log: Path
) -> Measured:
    shutil.rmtree(out, ignore_errors=True)
    cmd = child_cmd(
        "generate",
        "--out",
        str(out),
        "--start",
        start.isoformat(),
        "--days",
        str(days),
        "--installations",
        str(installations),
    )
    if daily_volume:
        cmd += ["--daily-volume", str(daily_volume)]
    return run_measured(f"generate {installations:,} installations x {days} days", cmd, clean_env(), log).check()


def drop_rows(landing: Path, day: dt.date) -> dict[str, int]:
    manifest = json.loads((landing / day.isoformat() / "manifest.json").read_text())
    return {e["name"]: int(e["rows"]) for e in manifest["extracts"]}


# ----------------------------------------------------------------------------- results


@dataclass
class Figure:
    code: str
    name: str
    ratio: float
    target: float
    details: list[str] = field(default_factory=list)
    passed: bool | None = None  # None: ratio <= target
    unit: str = ""  # an absolute figure (B8-B10: "s", " GB"): printed as value=, not ratio=

    def ok(self) -> bool:
        return self.ratio <= self.target if self.passed is None else self.passed

    def line(self) -> str:
        verdict = "PASS" if self.ok() else "FAIL"
        if self.unit:
            value = f"value={self.ratio:.2f}{self.unit} target={self.target:g}{self.unit}"
            return f"{self.code} {self.name} {value} {verdict}"
        return f"{self.code} {self.name} ratio={self.ratio:.2f} target={self.target:g} {verdict}"


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(figure.line(), flush=True)
        for detail in figure.details:
            print(f"    {detail}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"    {text}", flush=True)


@contextmanager
def stage(name: str) -> Iterator[None]:
    started = time.monotonic()
    progress(f"=== {name}")
    try:
        yield
    finally:
        progress(f"=== {name} done in {time.monotonic() - started:.0f}s")


def mb(value: float) -> str:
    return f"{value:.0f} MB"


class ServerMemory:
    """Peak memory of the benchmark's PostgreSQL while a stage runs: the sum of the
    proportional set sizes (Pss, so shared buffers count once) of the postmaster and its
    children, sampled every second from /proc."""

    def __init__(self, server: Server, interval: float = 1.0):
        self.pid_file = server.home / "pgdata" / "postmaster.pid"
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ServerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _pids(self) -> list[int]:
        try:
            postmaster = int(self.pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return []
        pids = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                pids.append(int(stat.parent.name))
        return pids

    @staticmethod
    def _pss_kb(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total = sum(self._pss_kb(pid) for pid in self._pids()) / 1024.0
            self.peak_mb = max(self.peak_mb, total)
