"""Warehouse databases for tests, on the session's test server (tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from s1mig import db


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
    from s1mig import pipeline
    from tests.support.drops import D30, build_handmade_landing

    with fresh_database(server_url) as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv("S1MIG_DATABASE_URL", url)
        landing = build_handmade_landing(landing_root)
        pipeline.land_step(landing, D30, url)
        pipeline.dbt_step(D30, url)
        pipeline.gate_step(D30, run_id, url)
        yield url
