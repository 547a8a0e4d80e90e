"""Warehouse databases for tests, on the session's test server (tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from s1mig import config, db


@contextmanager
def fresh_database(server_url: str, name: str | None = None, template: str | None = None) -> Iterator[str]:
    """A brand-new database on the test server, empty or a copy of `template` (dropped
    afterwards); its URL."""
    name = name or f"s1mig_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        if template:  # a template must have no sessions: end those a build left (a pooled connection)
            conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (template,))
            conn.execute(f'create database "{name}" template "{template}"')
        else:
            conn.execute(f'create database "{name}"')
    try:
        yield _database_url(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


# Built warehouses shared as templates: built once per test session (per xdist worker) and
# copied for each test with CREATE DATABASE ... TEMPLATE (a file copy: about 0.1 s instead
# of landing and building again). (server URL, template key) -> template database name.
_TEMPLATES: dict[tuple[str, str], str] = {}


def _database_url(server_url: str, name: str) -> str:
    parts = db.url_parts(server_url)
    return db.url_from_parts(parts["host"], parts["port"], parts["user"], parts["password"], name)


def _handmade_d30(url: str, landing_root: Path) -> None:
    from s1mig import pipeline
    from tests.support.drops import D30, build_handmade_landing

    landing = build_handmade_landing(landing_root)
    pipeline.land_step(landing, D30, url)
    pipeline.dbt_step(D30, url)


def handmade_d30_template(server_url: str) -> str:
    """The session's template of the hand-made 2020-07-30 drop, landed and built."""
    return template_database(
        server_url, "handmade_d30", lambda url: _handmade_d30(url, config.home() / "templates" / "handmade_d30")
    )


def template_database(server_url: str, key: str, build: Callable[[str], None]) -> str:
    """The name of the template database `key` on the test server, built by `build(url)`
    the first time it is asked for in this session (with S1MIG_DATABASE_URL pointing at it)."""
    name = _TEMPLATES.get((server_url, key))
    if name:
        return name
    name = f"s1mig_tpl_{key}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = _database_url(server_url, name)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("S1MIG_DATABASE_URL", url)
            build(url)
    except BaseException:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')
        raise
    _TEMPLATES[(server_url, key)] = name
    return name


def drop_templates(server_url: str) -> None:
    """Drop the session's template databases on this server (the end of the session)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        for (url, _), name in list(_TEMPLATES.items()):
            if url == server_url:
                conn.execute(f'drop database if exists "{name}" with (force)')
                del _TEMPLATES[(url, _)]


@contextmanager
def built_warehouse(server_url: str, landing_root: Path, run_id: str) -> Iterator[str]:
    """A warehouse with the hand-made 2020-07-30 drop landed and built (a copy of the
    session's template), written to `landing_root` too, and gated under `run_id`
    (S1MIG_DATABASE_URL points at it meanwhile); its URL."""
    from s1mig import pipeline
    from tests.support.drops import D30, build_handmade_landing

    template = handmade_d30_template(server_url)
    build_handmade_landing(landing_root)
    with fresh_database(server_url, template=template) as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv("S1MIG_DATABASE_URL", url)
        mp.setenv("S1MIG_GX_URL", "")  # the gate sets it in this process: put back at the end
        pipeline.gate_step(D30, run_id, url)
        yield url
