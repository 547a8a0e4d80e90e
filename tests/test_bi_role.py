"""BI tools read the marts through the read-only role the project creates, and nothing else:
no write, no CREATE anywhere in the warehouse, no TEMP (temporary tables: unbounded temp
disk), a statement timeout; the roles that build the warehouse keep what they need."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from s1mig import db, dbt, land, lease, pipeline, relations
from tests.support.drops import D30, build_handmade_landing
from tests.support.exports import assert_exports_match_reference

pytestmark = pytest.mark.integration


def test_bi_role_reads_marts_and_nothing_else(warehouse, tmp_path):
    landing = build_handmade_landing(tmp_path / "landing")
    land.land(landing / D30.isoformat(), D30)
    dbt.build(D30, echo=None)

    login = f"bi_user_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(warehouse, autocommit=True) as admin:
        admin.execute(f'create role "{login}" login')
        admin.execute(f'grant "{db.bi_role()}" to "{login}"')
    parts = db.url_parts(warehouse)
    bi_url = db.url_from_parts(parts["host"], parts["port"], login, None, parts["dbname"])
    try:
        with psycopg.connect(bi_url, autocommit=True) as bi:
            marts = [
                r[0]
                for r in bi.execute(
                    "select table_name from information_schema.tables where table_schema = 'marts' order by 1"
                )
            ]
            assert marts == [f"s1mig_{n:03d}" for n in range(1, 11)]
            for mart in marts:
                bi.execute(f"select count(*) from marts.{mart}").fetchone()
            for public in relations.PUBLIC_MODELS:  # the other public models, as the marts
                bi.execute(f"select count(*) from {relations.relation(public)}").fetchone()
            for forbidden in (
                "select * from raw.parties",
                "select * from staging.stg_dcc__parties",
                "select * from intermediate.int_attempt_completions",
                "select * from raw.drop_ledger",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    bi.execute(forbidden)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute("delete from marts.s1mig_001")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute("create table marts.mine (x int)")
            for write in (
                "create temporary table mine (x int)",  # TEMP: PUBLIC's default, revoked in the warehouse
                "create table public.mine (x int)",
                "create schema mine",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    bi.execute(write)
            assert not bi.execute(
                "select has_database_privilege(current_database(), 'TEMP') "
                "or has_database_privilege(current_database(), 'CREATE')"
            ).fetchone()[0]
            # no CREATE on any schema of the warehouse
            assert (
                bi.execute("select nspname from pg_namespace where has_schema_privilege(oid, 'CREATE')").fetchall()
                == []
            )
        with psycopg.connect(warehouse) as admin:
            settings = admin.execute(
                "select s.setconfig from pg_db_role_setting s join pg_roles r on r.oid = s.setrole "
                "join pg_database d on d.oid = s.setdatabase where r.rolname = %s and d.datname = current_database()",
                (db.bi_role(),),
            ).fetchone()
        assert settings is not None and f"statement_timeout={db.BI_STATEMENT_TIMEOUT_DEFAULT}" in settings[0]
    finally:
        with psycopg.connect(warehouse, autocommit=True) as admin:
            admin.execute(f'drop owned by "{login}"')
            admin.execute(f'drop role "{login}"')


def test_the_owner_that_builds_the_warehouse_keeps_what_it_needs(server_url, tmp_path, monkeypatch):
    """As in docker compose: the warehouse database owned by a role that is not a superuser
    (and may not create roles; the BI role made beforehand by the DBA). TEMP revoked from
    PUBLIC, that owner still lands, builds with dbt (its incremental models use temporary
    tables), gates with GX and exports; the BI role has no TEMP."""
    writer = f"s1mig_writer_{uuid.uuid4().hex[:8]}"
    name = f"s1mig_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'create role "{writer}" login')
        admin.execute(f'create database "{name}" owner "{writer}"')
        if not admin.execute("select 1 from pg_roles where rolname = %s", (db.bi_role(),)).fetchone():
            admin.execute(f'create role "{db.bi_role()}" nologin')
    parts = db.url_parts(server_url)
    url = db.url_from_parts(parts["host"], parts["port"], writer, None, name)
    monkeypatch.setenv("S1MIG_DATABASE_URL", url)
    try:
        landing, out = build_handmade_landing(tmp_path / "landing"), tmp_path / "out"
        pipeline.run_direct(landing, D30, out, run_id="owner-run", wait=0)
        assert_exports_match_reference(landing, out, D30)
        assert lease.holder(url) is None
        with psycopg.connect(url) as conn:
            assert not conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()[0]
            public_temp, bi_temp, bi_create, own_temp = conn.execute(
                "select has_database_privilege('public', current_database(), 'TEMP'), "
                "has_database_privilege(%(bi)s, current_database(), 'TEMP'), "
                "has_database_privilege(%(bi)s, current_database(), 'CREATE'), "
                "has_database_privilege(current_database(), 'TEMP')",
                {"bi": db.bi_role()},
            ).fetchone()
        assert (public_temp, bi_temp, bi_create, own_temp) == (False, False, False, True)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')
            admin.execute(f'drop owned by "{writer}"')
            admin.execute(f'drop role "{writer}"')
