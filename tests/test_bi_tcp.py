"""BI over TCP on the embedded default: `s1mig db start --listen 127.0.0.1:PORT` makes the
embedded server listen on TCP for BI users only (scram-sha-256, no `trust` on any TCP line,
the superuser refused), every s1mig command keeps the Unix socket, the listener survives a
restart; `s1mig bi-user add/remove/list` manage the logins. All over real TCP connections to
127.0.0.1 on a free port, against an embedded server of the test's own (its warehouse built
from the hand-made drop)."""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from s1mig import db, pipeline
from tests.support.cli import run_cli
from tests.support.drops import D30, build_handmade_landing

pytestmark = pytest.mark.integration

MARTS = [f"s1mig_{n:03d}" for n in range(1, 11)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def listening(tmp_path_factory, server_url) -> Iterator[tuple[Path, int]]:
    """An embedded server in a home of its own, made to listen on 127.0.0.1:<free port> by the
    command line, with the warehouse built (landed and dbt-built through the socket); stopped
    at the end. (server_url: the session's server is found before S1MIG_HOME moves here.)"""
    home = tmp_path_factory.mktemp("bi_tcp_home")
    port = _free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S1MIG_HOME", str(home))
        mp.delenv("S1MIG_DATABASE_URL", raising=False)
        mp.delenv(db.LISTEN_ENV, raising=False)
        try:
            run_cli("db", "start", "--listen", f"127.0.0.1:{port}", check=True)
            url = db.warehouse_url()
            landing = build_handmade_landing(tmp_path_factory.mktemp("bi_tcp_landing"))
            pipeline.land_step(landing, D30, url)
            pipeline.dbt_step(D30, url)
            yield home, port
        finally:
            db.stop_embedded()


def _add_user(name: str) -> str:
    proc = run_cli("bi-user", "add", name, check=True)
    found = re.findall(r"^s1mig: password \(shown this once[^)]*\): (\S+)$", proc.stdout, re.MULTILINE)
    assert len(found) == 1, proc.stdout
    return found[0]


def _tcp(port: int, user: str, password: str | None, dbname: str = db.WAREHOUSE_DB) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        dbname=dbname,
        user=user,
        password=password or "",
        sslmode="disable",
        connect_timeout=10,
        autocommit=True,
    )


def _hba_tcp_lines(home: Path) -> list[list[str]]:
    lines = (home / "pgdata" / "pg_hba.conf").read_text().splitlines()
    tokens = [line.split("#", 1)[0].split() for line in lines]
    return [t for t in tokens if t and t[0].startswith("host")]


def test_a_bi_user_reads_the_marts_over_tcp_and_nothing_else(listening):
    home, port = listening
    name = f"bi_{uuid.uuid4().hex[:8]}"
    password = _add_user(name)
    assert password not in (home / db.LISTEN_FILE).read_text()
    with _tcp(port, name, password) as bi:
        address, user, timeout, idle = bi.execute(
            "select host(inet_server_addr()), current_user, current_setting('statement_timeout'), "
            "current_setting('idle_in_transaction_session_timeout')"
        ).fetchone()
        assert (address, user, timeout, idle) == (  # TCP, not the socket
            "127.0.0.1",
            name,
            db.BI_STATEMENT_TIMEOUT_DEFAULT,
            db.BI_IDLE_TIMEOUT_DEFAULT,
        )
        marts = [
            r[0]
            for r in bi.execute(
                "select table_name from information_schema.tables where table_schema = 'marts' order by 1"
            )
        ]
        assert marts == MARTS
        assert sum(bi.execute(f"select count(*) from marts.{m}").fetchone()[0] for m in marts) > 0
        for refused in (
            "select * from raw.parties",
            "select * from staging.stg_dcc__parties",
            "delete from marts.s1mig_001",
            "create table marts.mine (x int)",
            "create temporary table mine (x int)",
            "create table public.mine (x int)",
            "create schema mine",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute(refused)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _tcp(port, name, password + "x")
    with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):
        _tcp(port, name, password, dbname="postgres")  # the warehouse database only
    for superuser_password in (None, "postgres", password):
        with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects"):
            _tcp(port, "postgres", superuser_password)

    listed = run_cli("bi-user", "list", check=True).stdout
    assert re.search(
        rf"^{name}: at most 5 sessions, statement_timeout=5min, idle_in_transaction_session_timeout=10min,",
        listed,
        re.MULTILINE,
    ), listed

    # a BI user added before the idle timeout existed (none set) gets it with the next setup of
    # the BI role (every dbt run, every `bi-user add`)
    with psycopg.connect(db.warehouse_url(), autocommit=True) as admin:
        admin.execute(f'alter role "{name}" in database {db.WAREHOUSE_DB} reset idle_in_transaction_session_timeout')

    # a BI tool that leaves a transaction open and idle (holding its locks) is ended after --idle-timeout
    idler = f"bi_{uuid.uuid4().hex[:8]}"
    proc = run_cli("bi-user", "add", idler, "--idle-timeout", "1s", check=True)
    assert "idle_in_transaction_session_timeout 1s" in proc.stdout, proc.stdout
    listed = run_cli("bi-user", "list", check=True).stdout
    assert re.search(rf"^{name}: .*idle_in_transaction_session_timeout=10min", listed, re.MULTILINE), listed
    idler_password = re.findall(r"^s1mig: password \(shown this once[^)]*\): (\S+)$", proc.stdout, re.MULTILINE)[0]
    with _tcp(port, idler, idler_password) as idle:
        idle.autocommit = False
        idle.execute("select count(*) from marts.s1mig_001").fetchone()
        time.sleep(2.5)
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
            idle.execute("select 1").fetchone()
    run_cli("bi-user", "remove", idler, check=True)

    kept = _tcp(port, name, password)  # a session open when the user is removed is ended
    try:
        removed = run_cli("bi-user", "remove", name, check=True)
        assert f"BI user {name} removed (1 session(s) ended)" in removed.stdout
        with pytest.raises(psycopg.OperationalError):
            kept.execute("select 1")
    finally:
        kept.close()
    with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):  # no role, no member of the BI role
        _tcp(port, name, password)
    assert name not in run_cli("bi-user", "list", check=True).stdout


def test_bi_user_refuses_what_is_not_a_bi_user(listening):
    for args, line in (
        (("remove", "postgres"), "s1mig: error: postgres is not a BI user"),
        (("remove", "nobody_here"), "s1mig: error: there is no BI user nobody_here"),
        (("add", "Robert'); drop"), "is not a BI user name"),
        (("add", "postgres"), "s1mig: error: a role postgres exists and is not a BI user"),
        (("add",), "the name is missing"),
    ):
        proc = run_cli("bi-user", *args)
        assert proc.returncode == 1 and line in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # one line, no traceback


def test_no_trust_over_tcp_and_s1mig_keeps_the_socket(listening):
    home, port = listening
    tcp = _hba_tcp_lines(home)
    assert tcp and all("trust" not in t for t in tcp), tcp
    assert ["host", "all", "postgres", "all", "reject"] in tcp
    url = run_cli("db", "url", check=True).stdout.strip()
    parts = db.url_parts(url)
    assert parts["host"] == str(home / "pgdata") and parts["port"] == str(port)  # the socket .s.PGSQL.<port>
    assert (home / "pgdata" / f".s.PGSQL.{port}").is_socket()
    assert run_cli("breaks", check=True).stdout.strip() == "s1mig: no open breaks"  # an s1mig command, through it
    status = run_cli("db", "start", check=True).stdout
    assert f"listening on 127.0.0.1:{port} for BI users only" in status


def test_the_listener_survives_a_restart_and_off_stops_it(listening):
    home, port = listening
    name = f"bi_{uuid.uuid4().hex[:8]}"
    password = _add_user(name)
    try:
        run_cli("db", "stop", check=True)
        with pytest.raises(psycopg.OperationalError):
            _tcp(port, name, password)
        assert run_cli("breaks", check=True).returncode == 0  # any command starts it again, listening as kept
        with _tcp(port, name, password) as bi:
            assert bi.execute("select count(*) from marts.s1mig_001").fetchone()[0] >= 0

        # a port already taken: one line, and the server back as it was
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            proc = run_cli("db", "start", "--listen", f"127.0.0.1:{busy}")
        assert proc.returncode == 1 and "Address already in use" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert (home / db.LISTEN_FILE).read_text().strip() == f"127.0.0.1:{port}"
        with _tcp(port, name, password) as bi:
            bi.execute("select 1")

        with db.connect(db.warehouse_url()):  # another session (a run, the service): no restart under it
            proc = run_cli("db", "start", "--listen", "off")
        assert proc.returncode == 1 and "1 other session(s) use it" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        with _tcp(port, name, password) as bi:
            bi.execute("select 1")

        assert "no TCP listener" in run_cli("db", "start", "--listen", "off", check=True).stdout
        with pytest.raises(psycopg.OperationalError):
            _tcp(port, name, password)
        assert run_cli("breaks", check=True).returncode == 0  # the socket, back at .s.PGSQL.5432
        assert all("trust" not in t for t in _hba_tcp_lines(home))
    finally:
        run_cli("db", "start", "--listen", f"127.0.0.1:{port}", check=True)
        run_cli("bi-user", "remove", name)


def test_s1mig_db_listen_configures_a_new_home(tmp_path, monkeypatch):
    """S1MIG_DB_LISTEN on a home whose server does not exist yet: created, then listening;
    it wins over the kept setting, and `--listen` refuses to contradict it."""
    port = _free_port()
    monkeypatch.setenv("S1MIG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(db.LISTEN_ENV, f"127.0.0.1:{port}")
    try:
        url = run_cli("db", "url", check=True).stdout.strip()
        assert db.url_parts(url)["port"] == str(port) and db.url_parts(url)["host"].startswith("/")
        with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects"):  # TCP answers, postgres refused
            _tcp(port, "postgres", None)
        proc = run_cli("db", "start", "--listen", "off")
        assert proc.returncode == 1, proc.stderr
        wins = f"s1mig: error: {db.LISTEN_ENV}=127.0.0.1:{port} is set and wins over --listen: change or unset it"
        assert proc.stderr.strip() == wins
        monkeypatch.setenv(db.LISTEN_ENV, "nowhere")
        proc = run_cli("db", "url")
        assert proc.returncode == 1 and f"{db.LISTEN_ENV} must be HOST:PORT" in proc.stderr, proc.stderr
    finally:
        monkeypatch.delenv(db.LISTEN_ENV)
        run_cli("db", "stop")


def test_bi_users_on_a_server_of_s1mig_database_url(warehouse, monkeypatch):
    """bi-user works on any server (here the session's, as S1MIG_DATABASE_URL); --listen is
    for the embedded server only."""
    name = f"bi_{uuid.uuid4().hex[:8]}"
    password = _add_user(name)
    try:
        proc = run_cli("db", "start", "--listen", "127.0.0.1:5433")
        assert proc.returncode == 1 and "--listen is for the embedded PostgreSQL" in proc.stderr, proc.stderr
        parts = db.url_parts(warehouse)
        with psycopg.connect(db.url_from_parts(parts["host"], parts["port"], name, password, parts["dbname"])) as bi:
            assert bi.execute("select pg_has_role(current_user, %s, 'MEMBER')", (db.bi_role(),)).fetchone()[0]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute("create temporary table mine (x int)")
        assert name in run_cli("bi-user", "list", check=True).stdout
    finally:
        run_cli("bi-user", "remove", name, check=True)
    with psycopg.connect(warehouse) as admin:
        assert admin.execute("select 1 from pg_roles where rolname = %s", (name,)).fetchone() is None
