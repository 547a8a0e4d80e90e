"""BI tools read the marts through the read-only role the project creates, and nothing else."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from drops import D30, build_handmade_landing

from s1mig import db, dbt, land

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
    finally:
        with psycopg.connect(warehouse, autocommit=True) as admin:
            admin.execute(f'drop owned by "{login}"')
            admin.execute(f'drop role "{login}"')
