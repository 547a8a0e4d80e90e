"""Raw rows of older drops are archived compressed once staged (s1mig/raw_archive.py):
nothing is lost (the restore gives back every raw row exactly), a whole rebuild of
staging cannot silently miss them, a corrected delivery of an archived date goes through
and the superseded delivery's archive is kept, an archived drop cannot be undone
without its rows. Real landing, real dbt, real PostgreSQL, in this process."""

from __future__ import annotations

import csv
import datetime as dt
import time

import psycopg
import pytest

from s1mig import dbt, land, pipeline, raw_archive
from s1mig.errors import DbtFailed, NothingToUndo
from s1mig.generate import generate
from tests.support.cli import run_cli
from tests.support.drops import edit_rows, raw_snapshot

pytestmark = pytest.mark.integration

START = dt.date(2020, 7, 31)
DAYS = [START + dt.timedelta(days=i) for i in range(5)]
STAGING = ("migration_events", "migration_attempts", "installations", "migration_authorisations", "cof_records")


def _staged(url: str) -> dict[str, tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return {
            name: conn.execute(
                f"select count(*), coalesce(md5(string_agg(md5(t::text), '' order by md5(t::text))), '') "
                f"from staging.stg_dcc__{name} as t"
            ).fetchone()
            for name in STAGING
        }


def _raw_dates(url: str, extract: str) -> dict[dt.date, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"select _drop_date, count(*) from raw.{extract} group by 1").fetchall()
    return dict(rows)


def _archived(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select drop_date, count(distinct landed_at), sum(rows), sum(text_bytes), sum(compressed_bytes) "
            "from raw.archived_extracts group by 1 order by 1"
        ).fetchall()


def _staging_whole() -> None:
    dbt.run_dbt(["run", "--select", "staging", "--full-refresh", "--vars", f"{{report_date: '{DAYS[-1]}'}}"], echo=None)


def test_archived_raw_rows_come_back_exactly_and_a_whole_build_waits_for_them(warehouse, tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    generate(landing, START, len(DAYS), 300, seed=1, progress=False)
    for day in DAYS:
        land.land(landing / str(day), day)
    delivered = raw_snapshot(warehouse)
    parties = _raw_dates(warehouse, "parties")

    # the daily build archives the drops older than the newest two, once staged
    monkeypatch.setenv("S1MIG_RAW_KEEP_DROPS", "2")
    pipeline.dbt_step(DAYS[-1])
    staged = _staged(warehouse)
    assert set(_raw_dates(warehouse, "migration_events")) == set(DAYS[3:])
    assert _raw_dates(warehouse, "parties") == parties  # parties stay: stg_dcc__parties is built whole
    archived = _archived(warehouse)
    assert [a[0] for a in archived] == DAYS[:3]
    moved = sum(len(rows) for name, rows in delivered.items() if name not in ("ledger", "parties")) - sum(
        len(rows) for name, rows in raw_snapshot(warehouse).items() if name not in ("ledger", "parties")
    )
    assert sum(a[2] for a in archived) == moved > 0
    assert all(a[4] < a[3] / 3 for a in archived), archived  # compressed to under a third of the text

    # a whole build of staging would miss them: refused, naming the drops and the command
    with pytest.raises(DbtFailed, match=r"2020-07-31, 2020-08-01, 2020-08-02 are archived.*--restore-archived"):
        _staging_whole()

    # the restore gives back every raw row and lineage value exactly; then staging can be rebuilt
    restored = raw_archive.restore()
    assert [m.drop_date for m in restored] == DAYS[:3] and sum(m.rows for m in restored) == moved
    assert raw_snapshot(warehouse) == delivered
    assert _archived(warehouse) == []
    _staging_whole()
    assert _staged(warehouse) == staged

    # a corrected delivery of an archived date replaces it; the superseded one's archive stays
    assert len(raw_archive.archive(keep=2)) == 3
    second = landing / str(DAYS[1])
    with open(second / "migration_events.csv", newline="") as fh:
        events = list(csv.DictReader(fh))
    edit_rows(second, "migration_events", {"event_id": events[-1]["event_id"]}, None)
    assert land.land(second, DAYS[1]).status == "replaced"
    assert _raw_dates(warehouse, "migration_events")[DAYS[1]] == len(events) - 1
    dbt.run_dbt(["run", "--select", "staging", "--vars", f"{{report_date: '{DAYS[-1]}'}}"], echo=None)
    assert [m.drop_date for m in raw_archive.archive(keep=2)] == [DAYS[1]]
    assert [(a[0], a[1]) for a in _archived(warehouse)] == [(DAYS[0], 1), (DAYS[1], 2), (DAYS[2], 1)]
    raw_archive.restore()  # the current deliveries only
    assert _raw_dates(warehouse, "migration_events")[DAYS[1]] == len(events) - 1
    assert [(a[0], a[1]) for a in _archived(warehouse)] == [(DAYS[1], 1)]

    # an archived drop is not undone without its rows
    raw_archive.archive(keep=2)
    land.undo(DAYS[4])
    land.undo(DAYS[3])
    with pytest.raises(NothingToUndo, match="raw rows are archived.*--restore-archived"):
        land.undo(DAYS[2])
    # ... and the command puts them back, saying what it did
    proc = run_cli("land", "--restore-archived", check=True)
    assert "raw rows of 3 drop(s) put back from the archive (2020-07-31 .. 2020-08-02)" in proc.stdout
    land.undo(DAYS[2])


def _archived_dates(url: str) -> list[dt.date]:
    return [a[0] for a in _archived(url)]


def test_the_archive_runs_beside_the_build_once_staging_holds_every_delivery(warehouse, tmp_path):
    """pipeline.dbt_step archives beside its build (raw_archive.beside_build): not while a
    staging model lacks a current delivery (its transaction takes the landing lock shared),
    as soon as every staging model holds them all, before the build ends; when staging
    never holds them all during the block, after it."""
    landing = tmp_path / "landing"
    generate(landing, START, 4, 300, seed=1, progress=False)
    days = [START + dt.timedelta(days=i) for i in range(4)]
    for day in days[:2]:
        land.land(landing / str(day), day)
    pipeline.dbt_step(days[1])  # the first build; nothing older than the newest 7 drops
    assert _archived_dates(warehouse) == []

    land.land(landing / str(days[2]), days[2])  # staging does not hold it yet
    with raw_archive.beside_build(keep=1):
        time.sleep(4 * raw_archive.POLL_SECONDS)
        assert _archived_dates(warehouse) == []  # waiting for staging
        dbt.run_dbt(["run", "--select", "staging", "--vars", f"{{report_date: '{days[2]}'}}"], echo=None)
        deadline = time.monotonic() + 60
        # one transaction a drop: wait for both, not for the first to commit
        while _archived_dates(warehouse) != days[:2] and time.monotonic() < deadline:
            time.sleep(raw_archive.POLL_SECONDS)
        assert _archived_dates(warehouse) == days[:2]  # archived while the block still runs

    land.land(landing / str(days[3]), days[3])
    with raw_archive.beside_build(keep=1):
        time.sleep(4 * raw_archive.POLL_SECONDS)
        assert _archived_dates(warehouse) == days[:2]  # staging never holds days[3] in this block
    assert _archived_dates(warehouse) == days[:3]  # so the archive ran after it
