"""BI tools read the marts through the read-only role the project creates, and nothing else:
no write, no CREATE anywhere in the warehouse, no TEMP (temporary tables: unbounded temp
disk), a statement timeout; the roles that build the warehouse keep what they need."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from s1mig import db, dbt, land, lease, pipeline, relations
from tests.support.databases import built_warehouse
from tests.support.drops import D30, D31, build_handmade_landing
from tests.support.exports import assert_exports_match_reference

pytestmark = pytest.mark.integration


@contextmanager
def bi_login(url: str) -> Iterator[str]:
    """A login in the BI role on the warehouse at `url` (as `s1mig bi-user add` makes, without
    its settings); the login's URL; dropped at the end."""
    login = f"bi_user_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'create role "{login}" login')
        admin.execute(f'grant "{db.bi_role()}" to "{login}"')
    parts = db.url_parts(url)
    try:
        yield db.url_from_parts(parts["host"], parts["port"], login, None, parts["dbname"])
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'drop owned by "{login}"')
            admin.execute(f'drop role "{login}"')


def test_bi_role_reads_marts_and_nothing_else(warehouse, tmp_path):
    landing = build_handmade_landing(tmp_path / "landing")
    land.land(landing / D30.isoformat(), D30)
    dbt.build(D30, echo=None)

    with bi_login(warehouse) as bi_url:
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
                "select * from audit.releases",  # read through public_models.release_status only
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
        # a login made by hand keeps its own settings: none given here (s1mig's BI users get the idle timeout)
        with psycopg.connect(warehouse) as admin:
            assert not admin.execute(
                "select 1 from pg_db_role_setting s join pg_roles r on r.oid = s.setrole where r.rolname = %s",
                (db.url_parts(bi_url)["user"],),
            ).fetchone()


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


def test_a_bi_session_reading_every_public_relation_never_holds_up_the_daily_run(server_url, tmp_path):
    """A BI tool's open transaction that has read every mart and public model holds their
    locks (and those of the tables under the public views) until it ends (a BI login's
    idle timeout ends one left idle). The next day's whole run (land, dbt build, gate, export, publish)
    must not wait for it: nothing in a daily run may take a lock that conflicts with a
    reader (dbt's own view and table materializations swap relations under an ACCESS
    EXCLUSIVE lock). Any relation the run waits on for the BI session is named."""
    with built_warehouse(server_url, tmp_path / "landing", "bi-lock-d30") as url, bi_login(url) as bi_url:
        outcome: dict[str, object] = {}

        def daily_run() -> None:
            try:
                outcome["dir"] = pipeline.run_direct(tmp_path / "landing", D31, tmp_path / "out", run_id="bi-lock-d31")
            except BaseException as exc:  # reported below, in the test's thread
                outcome["error"] = exc

        blocked: set[str] = set()
        with psycopg.connect(bi_url) as bi, psycopg.connect(url, autocommit=True) as watch:
            bi.execute("set transaction read only")
            for model in relations.RELATIONS:  # every mart and public model, rows read
                bi.execute(f"select * from {relations.relation(model)} limit 1").fetchall()
            bi_pid = bi.info.backend_pid
            run = threading.Thread(target=daily_run, daemon=True)
            run.start()
            deadline = time.monotonic() + 300
            while run.is_alive() and time.monotonic() < deadline:
                blocked.update(
                    r[0]
                    for r in watch.execute(
                        "select coalesce(l.relation::regclass::text, l.locktype) from pg_locks l "
                        "where not l.granted and %s = any(pg_blocking_pids(l.pid))",
                        (bi_pid,),
                    )
                )
                if blocked:
                    break  # the run waits for the BI session: end it below, let the run finish
                run.join(0.2)
            bi.rollback()  # the BI transaction ends: a waiting run goes on
            run.join(300)
            assert not run.is_alive(), "the daily run did not end"
            assert "error" not in outcome, outcome.get("error")
            assert not blocked, f"the daily run waited for a BI reader on: {sorted(blocked)}"
            assert_exports_match_reference(tmp_path / "landing", tmp_path / "out", D31)


def test_public_relations_kept_when_unchanged_and_replaced_when_not(server_url, tmp_path):
    """public_view / public_table / the seeds' reset (macros/materializations/public_relations.sql):
    a daily build keeps every public view and table whose structure did not change (the same
    relation, no swap) and refreshes the table's rows and the seeds' in place; a view whose
    query differs from the model's, or a table whose structure does, is replaced by the
    model's, as dbt's own materializations replace them."""
    with built_warehouse(server_url, tmp_path / "landing", "public-kept-d30") as url:

        def oids(conn: psycopg.Connection) -> dict[str, int]:
            names = [relations.relation(m) for m in relations.PUBLIC_MODELS] + ["reference.reason_codes"]
            return {n: conn.execute("select %s::regclass::oid", (n,)).fetchone()[0] for n in names}

        with psycopg.connect(url, autocommit=True) as conn:
            before = oids(conn)
            events = conn.execute("select count(*) from public_models.migration_events").fetchone()[0]
            parties = conn.execute("select count(*) from public_models.parties").fetchone()[0]
            codes = conn.execute("select count(*) from reference.reason_codes").fetchone()[0]
            assert events and parties and codes
            # someone's edits: a view's query, a table's rows, another table's structure, a seed's rows
            conn.execute(
                "create or replace view public_models.migration_events as "
                "select event_id, attempt_id, stage, step_no, outcome, reason_code, event_ts, _drop_date "
                "from staging.stg_dcc__migration_events where false"
            )
            conn.execute("alter view public_models.cof_files set (security_barrier = true)")
            conn.execute("delete from public_models.parties")
            conn.execute("delete from reference.reason_codes")
            edited = oids(conn)
        dbt.build(D30, url, echo=None)
        with psycopg.connect(url, autocommit=True) as conn:
            after = oids(conn)
            assert conn.execute("select count(*) from public_models.migration_events").fetchone()[0] == events
            assert conn.execute("select count(*) from public_models.parties").fetchone()[0] == parties
            assert conn.execute("select count(*) from reference.reason_codes").fetchone()[0] == codes
            # kept: every relation but the edited views (replaced, new relations)
            replaced = {n for n in before if after[n] != edited[n]}
            assert replaced == {"public_models.migration_events", "public_models.cof_files"}
            conn.execute("alter table public_models.parties add column note text")
        dbt.build(D30, url, echo=None)
        with psycopg.connect(url, autocommit=True) as conn:
            columns = [
                r[0]
                for r in conn.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = 'public_models' and table_name = 'parties' order by ordinal_position"
                )
            ]
            assert "note" not in columns and conn.execute("select count(*) from public_models.parties").fetchone()[0]
            assert oids(conn)["public_models.parties"] != after["public_models.parties"]
            leftovers = conn.execute("select relname from pg_class where relname ~ '__dbt_(tmp|backup)$'").fetchall()
            assert leftovers == []
