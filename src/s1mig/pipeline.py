"""The steps of the daily run, callable from the Airflow DAG or directly.

Each step reads and writes only its report date, so a retry or re-run replaces."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from s1mig import dbt, export, gate, land, raw_archive, run_tasks

log = logging.getLogger(__name__)


def land_step(landing: Path, report_date: dt.date, url: str | None = None) -> dict:
    result = land.land(landing / report_date.isoformat(), report_date, url)
    log.info(result.line())
    return {"status": result.status, "delivery_sha256": result.delivery_sha256, "rows": result.rows}


def dbt_step(report_date: dt.date, url: str | None = None) -> None:
    """The daily build; beside it, once staging holds every delivery, the raw rows of
    drops older than the newest S1MIG_RAW_KEEP_DROPS are archived (s1mig/raw_archive.py),
    and under `s1mig run` the gate's great_expectations is imported (gate.imported_beside_build)."""
    with raw_archive.beside_build(url), gate.imported_beside_build():
        dbt.build(report_date, url, echo=log.info)


def gate_step(report_date: dt.date, run_id: str, url: str | None = None) -> list[dict]:
    outcomes = gate.run_gate(report_date, run_id, url)
    return [{"rule": o.rule.rule_id, "status": o.status, "failing": o.failing_count} for o in outcomes]


def export_step(
    report_date: dt.date, out: Path, url: str | None = None, run_id: str = "direct", pending: Path | None = None
) -> str:
    """Export D: to the run's pending area when `pending` is given (published by
    publish_step once released; the run's first write there, so what an earlier try of the
    same run left in it goes first), else straight to `out`."""
    if pending is not None:
        from s1mig import release

        release.discard(pending)
        folder = export.stage(report_date, out, pending, url, run_id)
        log.info("exported %s to %s, waiting for release", report_date, folder)
    else:
        folder = export.export_date(report_date, out, url, run_id)
        log.info("exported %s to %s", report_date, folder)
    return str(folder)


def summary_step(
    report_date: dt.date, out: Path, url: str | None = None, run_id: str = "direct", pending: Path | None = None
) -> str:
    """The run summary beside D's export (in the pending area when `pending` is given,
    saying it awaits approval when four-eyes release is on)."""
    from s1mig import release, summary
    from s1mig.errors import S1migError

    folder = (pending or out) / report_date.isoformat()
    if not (folder / "manifest.json").is_file():
        raise S1migError(f"no export of {report_date} in {pending or out} to summarise")
    if pending is None:
        path = summary.write_summary(report_date, folder, run_id, url)
    else:
        awaiting = release.summary_state(None) if release.four_eyes() else None
        path = release.write_summary(report_date, folder, run_id, url, awaiting, folder)
    log.info("run summary: %s", path)
    return str(path)


def restate_step(
    report_date: dt.date,
    out: Path,
    url: str | None = None,
    run_id: str = "direct",
    land_status: str | None = None,
    pending: Path | None = None,
) -> list[str]:
    """After D's own export: when D's landing replaced an earlier delivery (a correction),
    build, gate and export again every later date exported to `out`, in date order (spec
    "Runs, corrections and restatement"); then any exported date still made from a
    delivery that is no longer current (a correction landed without its own date's run,
    a restatement that stopped half way), whatever its date: no run leaves a stale export
    behind it unsaid. With `pending` (the run's pending area) the restated dates wait
    there for the run's release with D."""
    from s1mig import restate

    restated: list[dt.date] = []
    if land_status == "replaced":
        restated += restate.restate_later_dates(report_date, out, url, run_id, echo=log.info, pending=pending)
    restated += restate.restate_stale(out, url, run_id, echo=log.info, pending=pending)
    if restated:
        line = f"restated {len(restated)} exported date(s): {', '.join(map(str, restated))}"
        log.info("%s: %s", report_date, line)
        notice_file = os.environ.get("S1MIG_NOTICE_FILE")  # shown by `s1mig run` after the run
        if notice_file:
            with open(notice_file, "a") as fh:
                fh.write(f"{report_date} {line} (see each date's manifest revision and evidence)\n")
    return [d.isoformat() for d in restated]


def publish_step(
    report_date: dt.date, out: Path, url: str | None, run_id: str, pending: Path, decision: dict
) -> list[str]:
    """Publish the run's pending exports (D and the dates it restated) as released by
    `decision` (s1mig.release)."""
    from s1mig import release

    folders = release.publish(pending, out, url, run_id, decision, report_date)
    return [str(f) for f in folders]


@dataclass(frozen=True)
class Run:
    """What the steps of one run of a date need: where from, where to, which warehouse."""

    landing: Path
    report_date: dt.date
    out: Path
    url: str | None
    run_id: str
    pending: Path | None = None  # the run's pending area (export waits there for the release)
    land_status: str | None = None  # what land_step said: "replaced" when D's drop was a correction


# the work under the run's lease, by task, in the order of run_tasks.LEASED: the DAG runs one
# task each (airflow_support.run_step), run_direct all of them in this process
STEPS: dict[str, Callable[[Run], object]] = {
    "land": lambda r: land_step(r.landing, r.report_date, r.url),
    "dbt_build": lambda r: dbt_step(r.report_date, r.url),
    "reconciliation_gate": lambda r: gate_step(r.report_date, r.run_id, r.url),
    "export": lambda r: export_step(r.report_date, r.out, r.url, r.run_id, r.pending),
    "run_summary": lambda r: summary_step(r.report_date, r.out, r.url, r.run_id, r.pending),
    "restate_later_dates": lambda r: restate_step(r.report_date, r.out, r.url, r.run_id, r.land_status, r.pending),
}
assert tuple(STEPS) == run_tasks.LEASED, "pipeline.STEPS follows run_tasks.LEASED"


def run_direct(
    landing: Path,
    report_date: dt.date,
    out: Path,
    run_id: str | None = None,
    wait: float | None = None,
    skip: tuple[str, ...] = (),
) -> str:
    """All the steps in this process, without Airflow (benchmarks, debugging, the tests' long
    scenarios), dbt included (dbt.in_this_process), holding the warehouse's run lease
    around them like the DAG does (waiting at most `wait` seconds, default
    S1MIG_LEASE_WAIT, while another run holds it); the leased tasks in `skip` are not run,
    as with `s1mig run --skip` (e.g. land, dbt_build). Nobody can approve a release here:
    it refuses to run when four-eyes release is on, and auto-releases otherwise."""
    from s1mig import airflow_run, db, lease, release
    from s1mig.errors import S1migError

    airflow_run.check_gate_before_export(skip)  # nothing leaves without the gate, as with `s1mig run`
    if release.four_eyes():
        raise S1migError(
            f"four-eyes release is on ({release.FOUR_EYES_ENV}=true): a direct run cannot be approved; "
            "run the date through the service (s1mig serve, s1mig trigger)"
        )
    url = db.warehouse_url()
    run_id = run_id or f"direct__{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    pending = release.pending_root(out, run_id)
    run = Run(landing, report_date, out, url, run_id, pending)
    with lease.held(url, run_id, report_date, "direct", wait=wait, echo=log.info), dbt.in_this_process():
        try:
            for name in run_tasks.LEASED:
                if name in skip:
                    continue
                result = STEPS[name](run)
                if name == "land":
                    run = replace(run, land_status=result["status"])  # type: ignore[index]
            publish_step(report_date, out, url, run_id, pending, release.auto_release())
        except BaseException:
            release.discard(pending)  # nothing of a failed run is published, nothing left behind
            raise
    return str(out / report_date.isoformat())
