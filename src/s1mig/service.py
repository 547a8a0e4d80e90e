"""`s1mig serve`: the DAG as a daily service on one machine. Airflow's api-server,
scheduler, dag-processor and triggerer (LocalExecutor by default), their metadata in
PostgreSQL (airflow_home.metadata_libpq_url), the UI and REST API on 127.0.0.1.

State under $S1MIG_HOME/serve/ (folder mode 0700):
* serve.lock   held (flock) by the running `s1mig serve` for its whole life: a second one
               on the same home sees it and says where the first runs;
* serve.json   the running service: pid, URL, folders, executor, its Airflow processes;
* passwords.json  the simple auth manager's logins (mode 0600; Airflow reads it there);
* secrets.json    the JWT secret, the API's session key and the Fernet key (mode 0600),
               kept across restarts so logins and encrypted values stay valid;
* logs/        one log file per Airflow process (never the terminal).

The process-start code (service_env, airflow_commands, start_process, stop_processes) is
meant for reuse: a Celery profile (`--executor CeleryExecutor`, AIRFLOW__CELERY__BROKER_URL)
starts `airflow celery worker` processes with joining_env(), the running serve's environment."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from s1mig import airflow_home, config, db
from s1mig.airflow_api import DAG_ID, AirflowApi, ApiError, ServiceUnavailable
from s1mig.contract import LOCAL_TZ
from s1mig.errors import ConfigInvalid, S1migError, Stopped

DEFAULT_PORT = 8080
DEFAULT_EXECUTOR = "LocalExecutor"
DEFAULT_START_TIMEOUT = 300.0  # seconds until the API answers and the DAG is parsed
STOP_TIMEOUT = 30.0  # seconds Airflow's processes get to end after SIGTERM before they are killed
ADMIN = "admin"
RELEASE_TASK = "release"  # the DAG's ApprovalOperator (four-eyes release)
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


# ----------------------------------------------------------------------------- settings


def _env_bool(name: str, default: bool) -> bool:
    text = os.environ.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigInvalid(f"{name} must be true or false, not {text[:40]!r}")


def default_port() -> int:
    text = os.environ.get("S1MIG_SERVE_PORT", "").strip()
    if not text:
        return DEFAULT_PORT
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigInvalid(f"S1MIG_SERVE_PORT must be a TCP port (1-65535), not {text[:40]!r}")
    return int(text)


def default_four_eyes() -> bool:
    """S1MIG_FOUR_EYES for serve: on unless set to false."""
    return _env_bool("S1MIG_FOUR_EYES", True)


def default_executor() -> str:
    return os.environ.get("S1MIG_SERVE_EXECUTOR", "").strip() or DEFAULT_EXECUTOR


def default_approvers() -> list[str]:
    return [n.strip() for n in os.environ.get("S1MIG_APPROVERS", "").split(",") if n.strip()]


def start_timeout() -> float:
    text = os.environ.get("S1MIG_SERVE_START_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_START_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise ConfigInvalid(f"S1MIG_SERVE_START_TIMEOUT must be a number of seconds, not {text[:40]!r}")
    return value


@dataclass
class ServeOptions:
    port: int = DEFAULT_PORT
    landing: Path = field(default_factory=config.landing_dir)
    out: Path = field(default_factory=config.export_dir)
    four_eyes: bool = True
    executor: str = DEFAULT_EXECUTOR
    approvers: list[str] = field(default_factory=list)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# ----------------------------------------------------------------------------- files


def state_dir() -> Path:
    path = config.home() / "serve"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def state_file() -> Path:
    return state_dir() / "serve.json"


def passwords_file() -> Path:
    return state_dir() / "passwords.json"


def secrets_file() -> Path:
    return state_dir() / "secrets.json"


def logs_dir() -> Path:
    path = state_dir() / "logs"
    path.mkdir(exist_ok=True)
    return path


def _write_private(path: Path, data: dict) -> None:
    """JSON readable by this user only (mode 0600), replaced atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise S1migError(f"{path} is not valid JSON ({exc}): remove it or fix it") from None
    return data if isinstance(data, dict) else {}


def ensure_secrets() -> dict[str, str]:
    """The service's own secrets, generated once (mode 0600)."""
    path = secrets_file()
    found = _read_json(path)
    wanted = {
        "jwt_secret": lambda: secrets.token_urlsafe(48),
        "api_secret_key": lambda: secrets.token_urlsafe(32),
        "fernet_key": _fernet_key,
    }
    missing = {k: make() for k, make in wanted.items() if not found.get(k)}
    if missing:
        found.update(missing)
        _write_private(path, found)
    return found


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def ensure_logins(users: list[str]) -> dict[str, str]:
    """A password for each of `users` missing from passwords.json (mode 0600, the file the
    simple auth manager reads). Returns the new ones (to be printed once)."""
    path = passwords_file()
    found = _read_json(path)
    new = {u: secrets.token_urlsafe(12) for u in users if not found.get(u)}
    if new or (path.exists() and path.stat().st_mode & 0o077):
        found.update(new)
        _write_private(path, found)
    return new


def stored_password(user: str) -> str | None:
    return _read_json(passwords_file()).get(user)


# ----------------------------------------------------------------------------- is it running


def _lock_held() -> bool:
    from s1mig.airflow_run import file_locked

    return file_locked(state_dir() / "serve.lock")


def running() -> dict | None:
    """serve.json of the `s1mig serve` running on this home (its lock is held), else None."""
    if not _lock_held():
        return None
    state = _read_json(state_file())
    return state or {"pid": None, "url": None, "ready": False}


def _acquire_lock() -> IO[str]:
    fh = open(state_dir() / "serve.lock", "a+")  # noqa: SIM115 - held for the life of the service
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise AlreadyRunning(running() or {}) from None
    return fh


class AlreadyRunning(S1migError):
    def __init__(self, state: dict):
        where = state.get("url") or "(starting)"
        pid = state.get("pid")
        super().__init__(
            f"s1mig serve is already running on this home ({config.home()}): {where}"
            + (f", pid {pid}" if pid else "")
            + " — `s1mig serve --status` shows it, `s1mig serve --stop` stops it"
        )


# ----------------------------------------------------------------------------- the environment


def users_setting(approvers: list[str]) -> str:
    """[core] simple_auth_manager_users: the admin, and each approver with the `user` role
    (may trigger runs and answer approvals; may not change connections or variables)."""
    return ",".join([f"{ADMIN}:admin", *(f"{name}:user" for name in approvers if name != ADMIN)])


def service_env(url: str, metadata_url: str, opts: ServeOptions) -> dict[str, str]:
    """The environment of every process of the service (and of Celery workers joining it)."""
    keys = ensure_secrets()
    env = airflow_home.base_env(url)
    env.update(airflow_home.metadata_env(metadata_url))
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": opts.executor,
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users_setting(opts.approvers),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(opts.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{opts.url()}/execution/",
            "S1MIG_LANDING_DIR": str(opts.landing),
            "S1MIG_EXPORT_DIR": str(opts.out),
            "S1MIG_FOUR_EYES": "true" if opts.four_eyes else "false",
            # the release is assigned to them: Airflow lets only these logins answer it
            "S1MIG_APPROVERS": ",".join(opts.approvers),
            "S1MIG_SERVE_URL": opts.url(),
            "S1MIG_RUN_ORIGIN": "scheduler",
        }
    )
    # a small machine: two API workers (one may wait on a slow request), a few task slots (unless set)
    env.setdefault("AIRFLOW__API__BASE_URL", opts.url())  # links in mails; a proxy in front may set its own
    env.setdefault("AIRFLOW__API__WORKERS", "2")
    env.setdefault("AIRFLOW__CORE__PARALLELISM", "4")
    # a task's calls to the execution API wait out a busy API server (Airflow's default, 5 s, fails tasks
    # on a loaded two-core machine: seen with Celery workers while dbt ran)
    env.setdefault("AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT", "60")
    if "celery" in opts.executor.lower():
        if not env.get("AIRFLOW__CELERY__BROKER_URL"):
            raise ConfigInvalid(
                f"--executor {opts.executor} needs a broker: set AIRFLOW__CELERY__BROKER_URL (e.g. redis://127.0.0.1:6379/0)"
            )
        env.setdefault("AIRFLOW__CELERY__RESULT_BACKEND", "db+" + airflow_home.sqlalchemy_url(metadata_url))
    return env


def joining_env() -> dict[str, str]:
    """The environment of the running serve's processes, for a process that joins it (a
    Celery worker: `airflow celery worker` with this environment). Run with the same
    S1MIG_HOME and S1MIG_DATABASE_URL as the serve."""
    state = running()
    if not state or not state.get("ready"):
        raise ServiceUnavailable(f"s1mig serve is not running (ready) on this home ({config.home()})")
    opts = ServeOptions(
        port=int(state["port"]),
        landing=Path(state["landing"]),
        out=Path(state["out"]),
        four_eyes=bool(state["four_eyes"]),
        executor=str(state["executor"]),
        approvers=list(state.get("approvers") or []),
    )
    url = db.warehouse_url()
    return service_env(url, airflow_home.metadata_libpq_url(url), opts)


def worker(name: str, concurrency: int, echo: Callable[[str], None] = print) -> int:
    """`s1mig worker NAME`: a Celery worker joining the running serve (started with
    --executor CeleryExecutor), in the foreground until stopped (SIGINT, SIGTERM, SIGHUP);
    its output in $S1MIG_HOME/serve/logs/worker-NAME.log."""
    from s1mig import airflow_run

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise S1migError(f"worker name {name!r}: letters, digits, '.', '_' and '-' only (at most 63)")
    env = joining_env()
    executor = env.get("AIRFLOW__CORE__EXECUTOR", "")
    if "celery" not in executor.lower():
        raise S1migError(
            f"the running serve uses the {executor}, which takes no workers: "
            "start it with --executor CeleryExecutor (and AIRFLOW__CELERY__BROKER_URL) to add Celery workers"
        )
    airflow_run.become_subreaper()  # a stop finds the task processes it starts too
    cmd = [airflow_home.airflow_exe(), "celery", "worker", "--celery-hostname", f"{name}@%h"]
    # the serve's logs are local files: no log server per worker (its port would clash on one machine)
    cmd += ["--concurrency", str(concurrency), "--skip-serve-logs"]
    proc = start_process(f"worker-{name}", cmd, env, logs_dir())
    echo(
        f"s1mig: Celery worker {name}@{socket.gethostname()} (pid {proc.popen.pid}, {concurrency} task slot(s)) "
        f"joined {env.get('S1MIG_SERVE_URL')}; its log: {proc.log}"
    )
    try:
        while proc.popen.poll() is None:
            time.sleep(1.0)
    except Stopped as stop:
        killed = stop_processes([proc])
        stop.notes.append(f"worker {name} stopped" + _killed(killed))
        raise
    except BaseException:
        stop_processes([proc])
        raise
    raise S1migError(f"the Celery worker {name} ended (exit code {proc.popen.returncode}): see {proc.log}")


def airflow_commands(opts: ServeOptions) -> dict[str, list[str]]:
    exe = airflow_home.airflow_exe()
    return {
        "api-server": [exe, "api-server", "--host", "127.0.0.1", "--port", str(opts.port)],
        # no log servers (they would listen on every address, ports 8793/8794): on one machine
        # the API server reads the task logs from their files
        "scheduler": [exe, "scheduler", "--skip-serve-logs"],
        "dag-processor": [exe, "dag-processor"],
        "triggerer": [exe, "triggerer", "--skip-serve-logs"],
    }


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path


def start_process(name: str, cmd: list[str], env: dict[str, str], logs: Path) -> Process:
    """One Airflow process, its output appended to logs/<name>.log, in its own process group
    (a Ctrl-C in the terminal reaches `s1mig serve` only, which stops it in order) but in
    this session (airflow_run.stop_descendants finds it and what it starts)."""
    log = logs / f"{name}.log"
    with open(log, "a") as fh:
        fh.write(f"\n===== s1mig serve: {' '.join(cmd[1:])} at {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%SZ}\n")
        fh.flush()
        popen = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, process_group=0
        )
    return Process(name, popen, log)


def stop_processes(procs: list[Process], timeout: float = STOP_TIMEOUT) -> set[int]:
    """SIGTERM each Airflow process (it ends its own workers and tasks), then whatever of this
    process's descendants is left is frozen and killed. Returns the pids killed at the end."""
    from s1mig import airflow_run

    for proc in procs:
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                proc.popen.send_signal(signal.SIGTERM)
    begun = time.monotonic()
    deadline = begun + timeout
    ended: dict[str, str] = {}
    while time.monotonic() < deadline:
        for p in procs:
            if p.name not in ended and p.popen.poll() is not None:
                ended[p.name] = f"{p.name} ended in {time.monotonic() - begun:.1f}s (exit code {p.popen.returncode})"
        if len(ended) == len(procs):
            break
        time.sleep(0.2)
    killed = airflow_run.stop_descendants()
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5)
    if procs:
        with open(procs[0].log.with_name("serve.log"), "a") as fh:
            stamp = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%SZ}"
            fh.write(f"{stamp} stop: {'; '.join(ended.values())}; {len(killed)} process(es) killed\n")
    return killed


# ----------------------------------------------------------------------------- serve


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _write_state(opts: ServeOptions, procs: list[Process], ready: bool, started: str) -> None:
    _write_private(
        state_file(),
        {
            "pid": os.getpid(),
            "url": opts.url(),
            "port": opts.port,
            "ready": ready,
            "started": started,
            "executor": opts.executor,
            "landing": str(opts.landing),
            "out": str(opts.out),
            "four_eyes": opts.four_eyes,
            "approvers": opts.approvers,
            "logs": str(logs_dir()),
            "processes": {p.name: p.popen.pid for p in procs},
        },
    )


def _check_alive(procs: list[Process], when: str) -> None:
    for proc in procs:
        code = proc.popen.poll()
        if code is not None:
            raise S1migError(
                f"the Airflow {proc.name} stopped {when} (exit code {code}): see {proc.log}; "
                "everything `s1mig serve` started is stopped"
            )


def _import_error(api: AirflowApi) -> str | None:
    try:
        errors = api.get("/api/v2/importErrors", limit=20).get("import_errors", [])
    except S1migError:
        return None
    for err in errors:
        if "s1mig_daily" in str(err.get("filename", "")):
            lines = [ln for ln in str(err.get("stack_trace", "")).strip().splitlines() if ln.strip()]
            return f"{err.get('filename')}: {lines[-1].strip() if lines else 'import error'}"
    return None


def _wait_ready(api: AirflowApi, procs: list[Process], echo: Callable[[str], None], started: float) -> None:
    """Until the API answers and the DAG is parsed (bounded by S1MIG_SERVE_START_TIMEOUT)."""
    timeout = start_timeout()
    stage, last_shown = "the API server", 0.0
    while True:
        _check_alive(procs, "while starting")
        waited = time.monotonic() - started
        if stage == "the API server" and api.healthy():
            echo(f"  [{waited:5.0f}s] the API answers at {api.base_url}")
            stage, last_shown = "the DAG to be parsed", waited
        if stage == "the DAG to be parsed":
            if api.dag() is not None:
                api.unpause()
                echo(f"  [{waited:5.0f}s] DAG {DAG_ID} parsed and unpaused")
                return
            problem = _import_error(api)
            if problem:
                raise S1migError(f"the DAG does not import: {problem}; everything `s1mig serve` started is stopped")
        if waited >= timeout:
            raise S1migError(
                f"Airflow was not ready after {timeout:.0f} s (S1MIG_SERVE_START_TIMEOUT) waiting for {stage}: "
                f"see the logs in {logs_dir()}; everything `s1mig serve` started is stopped"
            )
        if waited - last_shown >= 15:
            last_shown = waited
            echo(f"  [{waited:5.0f}s] waiting for {stage} ...")
        time.sleep(1.0)


def serve(opts: ServeOptions, echo: Callable[[str], None] = print) -> int:
    """Run the service in the foreground until stopped (Stopped: SIGINT, SIGTERM, SIGHUP,
    `s1mig serve --stop`) or until one of its processes ends; everything it started is
    stopped either way."""
    from s1mig import airflow_run

    lock = _acquire_lock()
    procs: list[Process] = []
    try:
        if not _port_free(opts.port):
            raise S1migError(f"port {opts.port} on 127.0.0.1 is in use: choose another with --port or S1MIG_SERVE_PORT")
        started = time.monotonic()
        since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        echo(f"s1mig: starting Airflow ({opts.executor}) for {config.home()} ...")
        url = db.warehouse_url()
        airflow_run.preflight(url)
        airflow_run.become_subreaper()  # before any child: nothing it starts escapes a stop
        meta = airflow_home.ensure_metadata_database(url)
        echo(f"  metadata: {db.server_description(meta)}")
        new_logins = ensure_logins([ADMIN, *opts.approvers])
        env = service_env(url, meta, opts)
        airflow_home.ensure_airflow_db(env, lambda line: echo(f"  {line}"), libpq_url=meta)
        logs = logs_dir()
        for name, cmd in airflow_commands(opts).items():
            procs.append(start_process(name, cmd, env, logs))
            echo(f"  {name}: pid {procs[-1].popen.pid}")
        echo(f"  Airflow's logs: {logs}")
        _write_state(opts, procs, False, since)
        api = AirflowApi(opts.url(), ADMIN, stored_password(ADMIN) or "")
        _wait_ready(api, procs, echo, started)
        _write_state(opts, procs, True, since)
        for user, password in new_logins.items():
            echo(f"s1mig: login {user} / {password}  (printed once; stored in {passwords_file()}, mode 0600)")
        if not new_logins:
            echo(f"s1mig: logins in {passwords_file()} (mode 0600): {', '.join([ADMIN, *opts.approvers])}")
        echo(
            f"s1mig: landing {opts.landing}, exports {opts.out}, four-eyes release "
            + ("on (s1mig approve D / s1mig reject D --why TEXT)" if opts.four_eyes else "off")
        )
        echo(
            f"s1mig: serving at {opts.url()} ({time.monotonic() - started:.0f}s): "
            "Ctrl-C or `s1mig serve --stop` stops it"
        )
        while True:
            _check_alive(procs, "unexpectedly")
            time.sleep(1.0)
    except Stopped as stop:
        begun = time.monotonic()
        killed = stop_processes(procs)
        stop.notes.append(
            f"the service's {len(procs)} Airflow processes are stopped in {time.monotonic() - begun:.0f}s"
            + _killed(killed)
        )
        raise
    except BaseException:
        stop_processes(procs)
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            if _read_json(state_file()).get("pid") == os.getpid():
                state_file().unlink()
        lock.close()


def _killed(pids: set[int]) -> str:
    return f" ({len(pids)} killed after {STOP_TIMEOUT:.0f} s)" if pids else ""


# ----------------------------------------------------------------------------- detach, stop, status


def detach(argv: list[str], echo: Callable[[str], None] = print) -> int:
    """`s1mig serve --detach`: the same serve in a new session, its output in
    serve/serve.out; shown here until it is ready (or fails)."""
    state = running()
    if state:
        raise AlreadyRunning(state)
    out = state_dir() / "serve.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "s1mig.cli", "serve", *argv],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pos = 0
    while True:
        with open(out) as fh:
            fh.seek(pos)
            chunk = fh.read()
            pos = fh.tell()
        for line in chunk.splitlines():
            echo(line)
            if line.startswith("s1mig: serving at"):
                echo(f"s1mig: detached (pid {proc.pid}; its output: {out})")
                return 0
        if proc.poll() is not None and not chunk:
            return proc.returncode or 1
        time.sleep(0.3)


def stop(echo: Callable[[str], None] = print, timeout: float = STOP_TIMEOUT + 30) -> int:
    """`s1mig serve --stop`: SIGTERM to the running serve, which stops what it started; waits
    (bounded) until it is gone. Airflow processes left by a serve that was killed (-9) are
    stopped too."""
    state = running()
    if not state:
        left = _orphans(_read_json(state_file()))
        if not left:
            echo(f"s1mig: serve is not running on this home ({config.home()})")
            return 0
        from s1mig.airflow_run import descendants

        # the processes they started too: LocalExecutor task processes have process groups of their own
        doomed = set(left).union(*(descendants(pid) for pid in left))
        for doomed_pid in doomed:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(doomed_pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            state_file().unlink()
        echo(f"s1mig: serve was gone; stopped the {len(left)} Airflow process(es) it left")
        return 0
    pid = state.get("pid")
    if not pid or not _is_serve(pid):  # none yet, or the pid of a serve before the one starting now
        raise S1migError("s1mig serve is starting and has not written its pid yet: try again in a few seconds")
    echo(f"s1mig: stopping serve (pid {pid}, {state.get('url')}) ...")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _lock_held():
        if time.monotonic() >= deadline:
            raise S1migError(f"serve (pid {pid}) did not stop within {timeout:.0f} s: `kill -9 {pid}`, then again")
        time.sleep(0.3)
    echo("s1mig: serve stopped")
    return 0


def _is_serve(pid: int) -> bool:
    """Whether process `pid` is a `s1mig serve` (serve.json may still name a serve that is
    gone, whose pid another process may have taken, while a new serve starts)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in args and any(a.endswith((b"s1mig", b"s1mig.cli")) for a in args)


def _orphans(state: dict) -> list[int]:
    """Airflow processes of a serve that died without stopping them (still running `airflow`)."""
    found = []
    for pid in (state.get("processes") or {}).values():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"airflow" in cmdline:
            found.append(int(pid))
    return found


def client(user: str | None = None, password: str | None = None) -> tuple[AirflowApi, dict]:
    """A REST client of the running service, logged in as `user` (default: the stored admin
    login; another user's password from S1MIG_AIRFLOW_PASSWORD or a prompt)."""
    state = running()
    if not state or not state.get("url"):
        raise ServiceUnavailable(
            f"s1mig serve is not running on this home ({config.home()}): start it with `s1mig serve`"
        )
    if not state.get("ready"):
        raise ServiceUnavailable(f"s1mig serve is still starting at {state['url']}: try again when it says ready")
    user = user or ADMIN
    if password is None:
        password = os.environ.get("S1MIG_AIRFLOW_PASSWORD") or None
    if password is None and user == ADMIN:
        password = stored_password(ADMIN)
    if password is None:
        if not sys.stdin.isatty():
            raise S1migError(f"the password of {user!r}: set S1MIG_AIRFLOW_PASSWORD (no terminal to ask it)")
        import getpass

        password = getpass.getpass(f"Airflow password of {user}: ")
    return AirflowApi(state["url"], user, password), state


def run_date(run: dict) -> str | None:
    """The report date a DAG run is for: its conf's report_date, else its London interval day."""
    conf = run.get("conf") or {}
    if conf.get("report_date"):
        return str(conf["report_date"])
    start = run.get("data_interval_start")
    if not start:
        return None
    from zoneinfo import ZoneInfo

    return dt.datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(ZoneInfo(LOCAL_TZ)).date().isoformat()


def awaiting_approval(api: AirflowApi, run: dict) -> bool:
    if run.get("state") not in ("running", "queued"):
        return False
    detail = api.hitl_detail(run["dag_run_id"], RELEASE_TASK)
    return detail is not None and not detail.get("response_received")


def status(echo: Callable[[str], None] = print, limit: int = 10) -> int:
    """`s1mig serve --status`: 0 when it runs (with its URL and last runs), 3 when not."""
    state = running()
    if not state or not state.get("url"):
        echo(f"s1mig: serve is not running on this home ({config.home()})")
        return 3
    ready = "ready" if state.get("ready") else "starting"
    echo(
        f"s1mig: serve is running ({ready}): {state['url']}  pid {state['pid']}, since {state.get('started')}, "
        f"{state.get('executor')}"
    )
    echo(
        f"  landing {state.get('landing')}, exports {state.get('out')}, four-eyes release "
        + ("on" if state.get("four_eyes") else "off")
    )
    echo(f"  Airflow's logs: {state.get('logs')}; logins: {passwords_file()}")
    if not state.get("ready"):
        return 0
    api, _ = client()
    runs = api.runs(limit=limit)
    if not runs:
        echo("  no runs yet: `s1mig trigger D` queues one")
        return 0
    echo(f"  last {len(runs)} run(s), newest first:")
    for run in runs:
        extra = "  AWAITING APPROVAL (s1mig approve / reject)" if awaiting_approval(api, run) else ""
        echo(
            f"    {run_date(run) or '?':10}  {run.get('state') or '?':8}  {run['dag_run_id']}  "
            f"started {(run.get('start_date') or '-')[:19]}  ended {(run.get('end_date') or '-')[:19]}{extra}"
        )
    return 0


# ----------------------------------------------------------------------------- trigger, approve, reject


def trigger(day: dt.date, echo: Callable[[str], None] = print) -> str:
    api, state = client()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    run = api.trigger({"report_date": day.isoformat()}, run_id=f"manual__{day.isoformat()}__{stamp}")
    run_id = run["dag_run_id"]
    echo(f"s1mig: queued {run_id} for {day} on {state['url']}")
    manifest = Path(state.get("landing") or config.landing_dir()) / day.isoformat() / "manifest.json"
    if not manifest.is_file():
        echo(f"s1mig: its drop is not there yet ({manifest}): the run waits for it")
    return run_id


def latest_run(api: AirflowApi, day: dt.date) -> dict | None:
    runs = [r for r in api.runs(limit=100) if run_date(r) == day.isoformat()]
    return runs[0] if runs else None  # newest first


# An answer within a second or two of the request races Airflow 3.3's scheduler: it queues the
# resumed task before it has processed the executor's report that the asking try ended, then
# takes that stale report for the resumed one ("finished with state success, but the task
# instance's state attribute is queued"), kills it and puts the release up for retry (seen in
# test_serve: a rejection 1.1 s after the request). A person never answers that fast; a script
# or `s1mig approve` run at once may: the answer waits until the request is this old.
ANSWER_SETTLE_SECONDS = 10.0


def _settle(detail: dict) -> None:
    try:
        asked = dt.datetime.fromisoformat(str(detail.get("created_at")).replace("Z", "+00:00"))
    except ValueError:
        return
    wait = ANSWER_SETTLE_SECONDS - (dt.datetime.now(dt.UTC) - asked).total_seconds()
    if wait > 0:
        time.sleep(min(wait, ANSWER_SETTLE_SECONDS))


def answer(day: dt.date, approve: bool, why: str | None, user: str | None, echo: Callable[[str], None] = print) -> int:
    """Approve or reject the pending release of D's latest run through the REST API. With
    approvers named (serve --approver), the release is theirs alone: one of them answers."""
    api, state = client(user)  # without --user: admin, who may read (and answer when no approvers are named)
    approvers = list(state.get("approvers") or [])
    run = latest_run(api, day)
    if run is None:
        raise S1migError(f"no run of {DAG_ID} for {day} on {state['url']}: `s1mig trigger {day}` queues one")
    run_id = run["dag_run_id"]
    detail = api.hitl_detail(run_id, RELEASE_TASK)
    if detail is None:
        tis = {ti["task_id"]: ti.get("state") for ti in api.task_instances(run_id)}
        where = f"task {RELEASE_TASK} is {tis[RELEASE_TASK] or 'not started'}" if RELEASE_TASK in tis else ""
        raise S1migError(
            f"nothing awaits approval for {day}: its latest run {run_id} is {run.get('state')}"
            + (f", {where}" if where else "")
        )
    if detail.get("response_received"):
        by = (detail.get("responded_by_user") or {}).get("name", "?")
        chosen = ", ".join(detail.get("chosen_options") or [])
        raise S1migError(
            f"the release of {day} (run {run_id}) was already answered: {chosen} "
            f"by {by} at {str(detail.get('responded_at'))[:19]}"
        )
    choice = "Approve" if approve else "Reject"
    options = detail.get("options") or []
    if choice not in options:
        raise S1migError(f"the release task of run {run_id} offers {options}, not {choice!r}")
    if approvers and user is None:
        raise S1migError(
            f"the release of {day} is assigned to the approvers ({', '.join(approvers)}): answer as one of them "
            "with --user NAME (its password from S1MIG_AIRFLOW_PASSWORD or the prompt)"
        )
    params_input = {"why": why} if why else {}
    _settle(detail)
    try:
        api.answer_hitl(run_id, RELEASE_TASK, [choice], params_input)
    except ApiError as exc:
        if exc.status == 403:
            raise S1migError(f"{api.username!r} may not answer the release of {day}: {exc}") from None
        if exc.status == 409:
            raise S1migError(f"the release of {day} (run {run_id}) was answered meanwhile") from None
        raise
    done = "approved: the run publishes its reports next" if approve else "rejected: nothing is published"
    echo(f"s1mig: {day} {done} (run {run_id}, by {api.username}" + (f", why: {why}" if why else "") + ")")
    return 0
