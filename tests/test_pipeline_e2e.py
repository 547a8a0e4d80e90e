"""End to end against a real PostgreSQL: exported files must equal what the independent
reference computes from the raw drops. Each scenario runs the real DAG through Airflow by
the real CLI where the DAG path is what it checks (a new user's first run, a correction
restated in the same run, the gate's one-line error, a backfill); the other days of a
scenario run the same steps through the direct path (pipeline.run_direct: every task's
step in this process, under the run's lease, released and published as `s1mig run` does),
which is about twice as fast."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import psycopg
import pytest

from s1mig import dbt, pipeline
from s1mig.errors import DropRejected
from tests.support.cli import REPO, run_cli
from tests.support.databases import built_warehouse
from tests.support.drops import D01, D30, D31, append_rows, build_handmade_landing, event
from tests.support.exports import assert_exports_match_reference

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _gx_url(monkeypatch):
    """The gate run in this process (the direct path) sets S1MIG_GX_URL: restored afterwards."""
    monkeypatch.setenv("S1MIG_GX_URL", "")


def _hashes(folder: Path) -> dict[str, str]:
    """Every report file and the manifest (evidence and summary name the run, so they differ)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and p.name not in ("evidence.json", "run-summary.html")
        and "revisions" not in p.relative_to(folder).parts
    }


def assert_evidence_traces(folder: Path, landing: Path) -> dict:
    """evidence.json names the input drops by hash, the code, the gate and every output."""
    import json

    record = json.loads((folder / "evidence.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert record["outputs"] == manifest["files"]
    for f in record["outputs"]:
        assert hashlib.sha256((folder / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    for drop in record["inputs"]:
        delivered = json.loads((landing / drop["drop_date"] / "manifest.json").read_text())["extracts"]
        assert drop["files"] == delivered
    assert record["code"]["git_commit"] and record["code"]["dbt_manifest_sha256"]
    assert {g["rule_id"] for g in record["gate"]} >= {"R1", "R8"}
    assert all(g["status"] != "fail" for g in record["gate"])
    return record


def render_png(page: Path) -> None:
    """Render the page in headless Chromium (Debian's package; .ci/run installs it) to PNG."""
    import shutil
    import subprocess

    if not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    png = page.with_suffix(".png")
    subprocess.run([str(REPO / "scripts" / "render-summary.sh"), str(page), str(png)], check=True, timeout=120)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def assert_run_summary(folder: Path, stdout: str | None) -> None:
    """The self-contained run summary: gate rule table, rows per report and party, charts
    (and, for a run of the CLI, its stdout links to it)."""
    import re

    page = (folder / "run-summary.html").read_text()
    if stdout is not None:
        assert f"run summary: file://{folder / 'run-summary.html'}" in stdout
    gate = page.split('<table id="gate">')[1].split("</table>")[0]
    for rule in ("R0", "L1", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "W1", "W2"):
        assert f"<td>{rule}</td>" in gate
    rows = page.split('<table id="rows">')[1].split("</table>")[0]
    assert rows.count("<tr>") - 1 == len({p.name for p in folder.iterdir() if p.is_dir() and p.name != "revisions"})
    for caption in ("S1MIG-010", "S1MIG-005", "S1MIG-007"):
        assert re.search(rf"<figcaption>[^<]*{caption}[^<]*</figcaption><svg", page), caption
    assert (
        page.count("<svg") == 3
        and "<script" not in page
        and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )


def test_handmade_drops_end_to_end(warehouse, tmp_path, monkeypatch):
    landing = build_handmade_landing(tmp_path / "landing")
    out = tmp_path / "out"
    totals = {}
    monkeypatch.delenv("S1MIG_FIRST_DROP")  # as a new user: the first date is chosen with --first
    # 07-30 through the real DAG, as a new user's first run; 07-31 through the direct path
    proc = run_cli(
        "run", "--landing", str(landing), "--date", D30.isoformat(), "--out", str(out), "--first", check=True
    )
    assert f"reports in {out / D30.isoformat()}" in proc.stdout
    assert_run_summary(out / D30.isoformat(), proc.stdout)
    assert not (out / ".pending").exists()  # the pending area went with the publish
    assert pipeline.run_direct(landing, D31, out, run_id=f"direct__{D31}") == str(out / D31.isoformat())
    assert_run_summary(out / D31.isoformat(), None)
    assert not (out / ".pending").exists()
    for day in (D30, D31):
        totals[day] = assert_exports_match_reference(landing, out, day)
        record = assert_evidence_traces(out / day.isoformat(), landing)
        # four-eyes release is off for `s1mig run` (and a direct run): the release answered
        # itself, recorded as such
        assert record["release"]["outcome"] == "auto-released" and record["release"]["by"] is None
    # the hand-made case list really reached the files: successes (split supplier) and failures
    assert totals[D30]["S1MIG-001"] >= 2 and totals[D30]["S1MIG-006"] > totals[D30]["S1MIG-001"]

    # a re-run of an earlier date, after later drops landed, rewrites byte-identical files
    before = _hashes(out / D30.isoformat())
    later = _hashes(out / D31.isoformat())
    pipeline.run_direct(landing, D30, out, run_id=f"direct__{D30}")
    assert json.loads((out / D30.isoformat() / "evidence.json").read_text())["run_id"] == f"direct__{D30}"
    assert _hashes(out / D30.isoformat()) == before
    assert _hashes(out / D31.isoformat()) == later  # nothing to restate

    # a correction of 07-30 (A3 fails at 15:00Z: no longer a Success of 07-31) restates 07-31
    # in the same run, through the DAG's restate_later_dates task
    append_rows(
        landing / D30.isoformat(),
        "migration_events",
        [event("E99", "A3", "COMMISSIONING", 53, "FAIL", "2020-07-30T15:00:00Z", "COM02")],
    )
    proc = run_cli("run", "--landing", str(landing), "--date", D30.isoformat(), "--out", str(out), check=True)
    assert f"{D30} restated 1 exported date(s): {D31}" in proc.stdout
    for day in (D30, D31):
        folder = out / day.isoformat()
        assert json.loads((folder / "manifest.json").read_text())["revision"] == 2, day
        assert (folder / "revisions" / "1" / "manifest.json").is_file(), day
        assert_exports_match_reference(landing, out, day)
    cause = json.loads((out / D31.isoformat() / "evidence.json").read_text())["restatement"]
    assert cause["corrected_drop"]["drop_date"] == D30.isoformat()
    # the restated date left with the run's own release: one run, one decision, both dates
    with psycopg.connect(warehouse) as conn:
        last = conn.execute(
            "select run_id, report_date, outcome from audit.releases order by release_id desc limit 2"
        ).fetchall()
    run_id = json.loads((out / D31.isoformat() / "evidence.json").read_text())["run_id"]
    assert sorted(last) == [(run_id, D30, "auto-released"), (run_id, D31, "auto-released")]
    # and BI sees both dates' marts as released by that run, from builds up to date
    with psycopg.connect(warehouse) as conn:
        status = conn.execute(
            "select report_date, state, released, up_to_date, gate_run_id, release_run_id, release_revision "
            "from public_models.release_status order by report_date"
        ).fetchall()
    assert status == [(day, "released", True, True, run_id, run_id, 2) for day in (D30, D31)]

    # the corrupt third drop is rejected whole with the file and the problem named (the
    # direct path: test_lease runs this drop through `s1mig run`, its one line on stderr)
    with psycopg.connect(warehouse) as conn:
        raw_before = conn.execute("select count(*) from raw.exclusions").fetchone()[0]
    with pytest.raises(DropRejected) as rejected:
        pipeline.run_direct(landing, D01, out, run_id=f"direct__{D01}")
    assert "exclusions.csv" in str(rejected.value) and "manifest.json says 2" in str(rejected.value)
    assert not (out / D01.isoformat()).exists()
    assert not (out / ".pending").exists()
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select count(*) from raw.exclusions").fetchone()[0] == raw_before
        assert conn.execute("select count(*) from raw.drop_ledger where drop_date = %s", (D01,)).fetchone()[0] == 0

    # a --full-refresh that reaches the marts (the upgrade notes' `--select model+`) keeps every
    # report date's rows: the marts ignore it and replace D's rows only
    def mart_rows() -> list[tuple]:
        with psycopg.connect(warehouse) as conn:
            return conn.execute(
                "select report_date, count(*) from marts.s1mig_006 group by report_date order by report_date"
            ).fetchall()

    before_refresh = mart_rows()
    assert D30 in dict(before_refresh)  # rows of a date other than the one refreshed
    dbt.run_dbt(
        ["build", "--full-refresh", "--select", "s1mig_006"], echo=None, extra_env={dbt.REPORT_DATE_ENV: str(D31)}
    )
    assert mart_rows() == before_refresh


def test_gate_blocks_export_when_rule_1_breaks(server_url, tmp_path):
    landing, out = tmp_path / "landing", tmp_path / "out"
    day = D30.isoformat()
    # 07-30 landed and built (and gated, untampered) in this process; the blocked run goes
    # through the real DAG
    with built_warehouse(server_url, landing, "built") as warehouse:
        with psycopg.connect(warehouse) as conn:
            deleted = conn.execute(
                "delete from marts.s1mig_001 where ctid = "
                "(select min(ctid) from marts.s1mig_001 where report_date = %s) "
                "returning party_id, installation_id, attempt_no",
                (D30,),
            ).fetchone()
        assert deleted is not None
        proc = run_cli(
            "run", "--landing", str(landing), "--date", day, "--out", str(out), "--skip", "land,dbt_build"
        )  # fmt: skip
        assert proc.returncode != 0
        assert "R1 006_success_equals_001: 1 failing" in proc.stderr
        assert f"{deleted[1]}/{deleted[2]}/{deleted[0]}" in proc.stderr  # the sample key names the row
        assert not (out / day).exists()
        with psycopg.connect(warehouse) as conn:
            audit = conn.execute(
                "select run_id, status, failing_count from audit.gate_results "
                "where report_date = %s and rule_id = 'R1'",
                (D30,),
            ).fetchall()
    assert ("built", "pass", 0) in audit and [(s, c) for r, s, c in audit if r != "built"] == [("fail", 1)]


def test_generated_days_end_to_end(warehouse, tmp_path):
    """Consecutive generated days (split suppliers, retries, failures at every stage): the
    first two through the direct path, the third through the real DAG by `s1mig backfill`;
    each day's files equal the reference's."""
    from datetime import date, timedelta

    from s1mig.generate import generate

    landing, out = tmp_path / "landing", tmp_path / "out"
    start = date(2020, 7, 31)
    days = [start + timedelta(days=offset) for offset in range(3)]
    generate(landing, start, 3, 300, seed=7, progress=False)
    for day in days[:2]:
        pipeline.run_direct(landing, day, out, run_id=f"direct__{day}")
    proc = run_cli(
        "backfill",
        "--landing",
        str(landing),
        "--start",
        days[2].isoformat(),
        "--end",
        days[2].isoformat(),
        "--out",
        str(out),
        check=True,
    )
    assert proc.stdout.count("done in") == 1 and f"backfill 1/1: {days[2]}" in proc.stdout
    runs = [json.loads((out / day.isoformat() / "evidence.json").read_text())["run_id"] for day in days]
    assert runs[:2] == [f"direct__{day}" for day in days[:2]] and runs[2] not in runs[:2]
    seen = {"S1MIG-001": 0, "S1MIG-006": 0}
    for day in days:
        totals = assert_exports_match_reference(landing, out, day)
        for rid in seen:
            seen[rid] += totals[rid]
    assert seen["S1MIG-001"] > 10 and seen["S1MIG-006"] > seen["S1MIG-001"]
