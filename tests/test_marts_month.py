"""A generated month, run day by day: every exported file of every report of every date
equals what the independent reference (tests/reference/) computes from the raw drops. The
month crosses the BST -> GMT change (25 October 2020, a 25-hour day), so day boundaries,
"as at end of D" versions and cumulative counts are checked on both sides of it, with
retries, five-failure exclusions, supplier changes and late COFs along the way.

The 31 days run through the direct path (pipeline.run_direct: every step of the DAG's run,
land, dbt build, gate, export, run summary, restatement, publish, in this process under the
run's lease), about 7 s a day instead of about 16 s through Airflow; the DAG itself runs
once, for the re-run of the 25-hour day after the whole month has landed, which must
rewrite identical files."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from s1mig import dbt, pipeline
from s1mig.contract import REPORTS
from s1mig.generate import generate
from tests.support.cli import run_cli
from tests.support.exports import assert_exports_match_reference

pytestmark = pytest.mark.integration

START = date(2020, 10, 10)
DAYS = 31  # 2020-10-10 .. 2020-11-09
CLOCK_CHANGE = date(2020, 10, 25)
INSTALLATIONS = 300
SEED = 20201025


def _hashes(folder: Path) -> dict[str, str]:
    """Every report file and the manifest (files describing the run itself may differ)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and (p.suffix == ".csv" or p.name == "manifest.json")
    }


def _evidence(folder: Path) -> dict:
    return json.loads((folder / "evidence.json").read_text())


def test_generated_month_matches_reference(warehouse, tmp_path):
    landing, out = tmp_path / "landing", tmp_path / "out"
    generate(landing, START, DAYS, INSTALLATIONS, seed=SEED, progress=False)
    days = [START + timedelta(days=offset) for offset in range(DAYS)]
    for day in days:  # in order, as a backfill runs them: each drop needs the day before
        assert pipeline.run_direct(landing, day, out, run_id=f"direct__{day}") == str(out / day.isoformat())
    # every date was exported, released and published by its own run
    for day in days:
        evidence = _evidence(out / day.isoformat())
        assert (evidence["run_id"], evidence["release"]["outcome"]) == (f"direct__{day}", "auto-released"), day
    assert not (out / ".pending").exists()
    # the daily builds archived the raw rows of every drop but the newest 7 (S1MIG_RAW_KEEP_DROPS's
    # default), and the reports below are still the reference's
    with psycopg.connect(warehouse) as conn:
        archived = [r[0] for r in conn.execute("select distinct drop_date from raw.archived_extracts order by 1")]
        # and each left the states read by index alone with every page all-visible (the
        # vacuum at the build's end, s1mig.dbt.INDEX_ONLY_STATES)
        visible = conn.execute(
            "select relname, relpages, relallvisible from pg_class where oid = any(%s::regclass[])",
            ([f"{schema}.{table}" for schema, table in dbt.INDEX_ONLY_STATES],),
        ).fetchall()
    assert archived == days[:-7]
    assert visible and all(pages > 0 and all_visible == pages for _, pages, all_visible in visible), visible

    seen = dict.fromkeys((r.report_id for r in REPORTS), 0)
    for day in days:
        totals = assert_exports_match_reference(landing, out, day)
        for report_id, rows in totals.items():
            seen[report_id] += rows
    # the month really exercised every report
    assert all(rows > 0 for rows in seen.values()), seen

    # a re-run of the 25-hour day through the real DAG, after the whole month has landed,
    # rewrites identical files (the DAG run really wrote them: its evidence names it)
    folder = out / CLOCK_CHANGE.isoformat()
    before = _hashes(folder)
    proc = run_cli(
        "run", "--landing", str(landing), "--date", CLOCK_CHANGE.isoformat(), "--out", str(out), check=True
    )  # fmt: skip
    assert f"reports in {folder}" in proc.stdout
    assert _evidence(folder)["run_id"] != f"direct__{CLOCK_CHANGE}"
    assert _hashes(folder) == before
