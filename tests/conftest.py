"""Shared fixtures: one embedded PostgreSQL for the session (under a temporary
S1MIG_HOME), and a fresh warehouse database per test that needs one."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from s1mig import db

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def s1mig_home(tmp_path_factory) -> Iterator[Path]:
    """Every test runs with its own S1MIG_HOME; the embedded server started there is
    stopped at the end (unless S1MIG_DATABASE_URL points elsewhere)."""
    home = Path(os.environ.get("S1MIG_TEST_HOME") or tmp_path_factory.mktemp("s1mig_home"))
    old = os.environ.get("S1MIG_HOME")
    os.environ["S1MIG_HOME"] = str(home)
    # every test builds throw-away warehouses: whichever date lands first is the first drop
    # (tests of the choice itself set or remove it)
    old_first = os.environ.get("S1MIG_FIRST_DROP")
    os.environ["S1MIG_FIRST_DROP"] = "any"
    yield home
    if old_first is None:
        os.environ.pop("S1MIG_FIRST_DROP", None)
    else:
        os.environ["S1MIG_FIRST_DROP"] = old_first
    if not os.environ.get("S1MIG_DATABASE_URL"):
        db.stop_embedded()
    if old is None:
        os.environ.pop("S1MIG_HOME", None)
    else:
        os.environ["S1MIG_HOME"] = old


@pytest.fixture(scope="session")
def server_url(s1mig_home) -> str:
    """Admin URL of the server the tests create their databases in."""
    base = os.environ.get("S1MIG_TEST_SERVER_URL") or db.warehouse_url()
    return base


@contextmanager
def fresh_database(server_url: str, name: str | None = None) -> Iterator[str]:
    """A brand-new, empty database on the test server (dropped afterwards); its URL."""
    name = name or f"s1mig_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    parts = db.url_parts(server_url)
    try:
        yield db.url_from_parts(parts["host"], parts["port"], parts["user"], parts["password"], name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@contextmanager
def built_warehouse(server_url: str, landing_root: Path, run_id: str) -> Iterator[str]:
    """A fresh warehouse with the hand-made 2020-07-30 drop landed, built and gated under
    `run_id` (S1MIG_DATABASE_URL points at it meanwhile); its URL."""
    from drops import D30, build_handmade_landing

    from s1mig import pipeline

    with fresh_database(server_url) as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv("S1MIG_DATABASE_URL", url)
        landing = build_handmade_landing(landing_root)
        pipeline.land_step(landing, D30, url)
        pipeline.dbt_step(D30, url)
        pipeline.gate_step(D30, run_id, url)
        yield url


@pytest.fixture
def warehouse(server_url, monkeypatch) -> Iterator[str]:
    """A brand-new, empty warehouse database; S1MIG_DATABASE_URL points at it."""
    with fresh_database(server_url) as url:
        monkeypatch.setenv("S1MIG_DATABASE_URL", url)
        yield url


def airflow_home_locked() -> bool:
    """Whether a `s1mig run` holds the Airflow home of this S1MIG_HOME (its lock file)."""
    from s1mig.airflow_run import file_locked

    return file_locked(Path(os.environ["S1MIG_HOME"]) / "airflow" / ".dags-test.lock")


def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """The real `s1mig` command line, in a child process with this environment."""
    proc = subprocess.run(
        [sys.executable, "-m", "s1mig.cli", *args], capture_output=True, text=True, env=dict(os.environ), cwd=REPO
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"s1mig {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
