"""A generated month through the real DAG: every exported file of every report of every
date equals what the independent reference (tests/reference/) computes from the raw
drops. The month crosses the BST -> GMT change (25 October 2020, a 25-hour day), so day
boundaries, "as at end of D" versions and cumulative counts are checked on both sides of
it, with retries, five-failure exclusions, supplier changes and late COFs along the way.

Slow: about 20 s per day through the real DAG, so about 11 minutes for the month."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path

import pytest

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


def test_generated_month_matches_reference(warehouse, tmp_path):
    landing, out = tmp_path / "landing", tmp_path / "out"
    generate(landing, START, DAYS, INSTALLATIONS, seed=SEED, progress=False)
    end = START + timedelta(days=DAYS - 1)
    proc = run_cli(
        "backfill", "--landing", str(landing), "--start", START.isoformat(), "--end", end.isoformat(),
        "--out", str(out), check=True,
    )  # fmt: skip
    assert proc.stdout.count("done in") == DAYS

    seen = dict.fromkeys((r.report_id for r in REPORTS), 0)
    for offset in range(DAYS):
        totals = assert_exports_match_reference(landing, out, START + timedelta(days=offset))
        for report_id, rows in totals.items():
            seen[report_id] += rows
    # the month really exercised every report
    assert all(rows > 0 for rows in seen.values()), seen

    # a re-run of the 25-hour day after the whole month has landed rewrites identical files
    before = _hashes(out / CLOCK_CHANGE.isoformat())
    run_cli("run", "--landing", str(landing), "--date", CLOCK_CHANGE.isoformat(), "--out", str(out), check=True)
    assert _hashes(out / CLOCK_CHANGE.isoformat()) == before
