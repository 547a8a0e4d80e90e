"""Four-eyes release (issue 16): nothing leaves for the parties until a second person says so.

After the gate passes, a run exports to its pending area, <out>/.pending/<run>/<D>/ (inside
the export folder, so publishing is an atomic exchange on one file system; hidden, so no
party and no restatement takes it for a published date): the report files, manifest.json,
evidence.json and the run summary, checked by rule R9. The dates the run restates (a
correction of an earlier drop) go to the same pending area. Then the DAG's `release` task
asks (Airflow's ApprovalOperator: "Approve" / "Reject", with a `why`); `publish` publishes
every pending date of the run to <out>/<D> (export.publish_folder: revision settled, files
re-hashed, the release in evidence.json, audit.export_evidence and audit.releases).

A rejection publishes nothing: the pending area is removed, and audit.releases keeps a row
per date with who, when, why and the rejected export's evidence (its files by hash).

With four-eyes off (S1MIG_FOUR_EYES not true: the default of `s1mig run`, `make run` and
pipeline.run_direct), `release` answers itself at once: "auto-released", recorded as such.
"""

from __future__ import annotations

import datetime as dt
import html
import inspect
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import psycopg

from s1mig.contract import REPORTS
from s1mig.errors import S1migError

log = logging.getLogger(__name__)

FOUR_EYES_ENV = "S1MIG_FOUR_EYES"
PENDING = ".pending"  # <out>/.pending/<run>/<D>/
APPROVE, REJECT = "Approve", "Reject"  # the ApprovalOperator's options (s1mig approve / reject)
WHY = "why"  # the approval form's one field: the reason, recorded with the decision
RELEASED, AUTO_RELEASED, REJECTED, AWAITING = "released", "auto-released", "rejected", "awaiting approval"

RELEASES_DDL = """
create schema if not exists audit;
create table if not exists audit.releases (
    release_id bigint generated always as identity primary key,
    run_id text not null,
    report_date date not null,
    outcome text not null check (outcome in ('released', 'auto-released', 'rejected')),
    decided_by text,
    decided_by_id text,
    decided_at timestamptz,
    why text,
    revision integer,
    out_folder text,
    evidence jsonb,
    recorded_at timestamptz not null default now()
)"""

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def four_eyes() -> bool:
    """Whether a person must approve each run's reports before they are published."""
    text = os.environ.get(FOUR_EYES_ENV, "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise S1migError(f"{FOUR_EYES_ENV} must be true or false, not {os.environ[FOUR_EYES_ENV]!r}")


def pending_root(out: Path, run_id: str) -> Path:
    """The pending area of one run in the export folder `out`."""
    return out / PENDING / (_UNSAFE.sub("_", run_id).strip("._") or "run")


def pending_dates(root: Path) -> list[dt.date]:
    """The dates waiting for release in a run's pending area, in order."""
    if not root.is_dir():
        return []
    return sorted(
        dt.date.fromisoformat(p.name)
        for p in root.iterdir()
        if _DATE.fullmatch(p.name) and (p / "manifest.json").is_file()
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def auto_release() -> dict:
    """The decision when four-eyes release is off."""
    return {"outcome": AUTO_RELEASED, "by": None, "by_id": None, "at": _now(), "why": f"{FOUR_EYES_ENV} is off"}


def decision(chosen: list[str], params_input: dict | None, by: Any, at: dt.datetime | str | None) -> dict:
    """The decision from an answer to the `release` task (ApprovalOperator's payload)."""
    if by is not None and not isinstance(by, dict):  # a HITLUser object rather than its dict
        by = {"id": getattr(by, "id", None), "name": getattr(by, "name", None)}
    why = (params_input or {}).get(WHY)
    when = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(at, dt.datetime) else at
    return {
        "outcome": RELEASED if list(chosen) == [APPROVE] else REJECTED,
        "by": (by or {}).get("name"),
        "by_id": (by or {}).get("id"),
        "at": when or _now(),
        "why": str(why).strip() if why not in (None, "") else None,
    }


def summary_state(decision: dict | None) -> dict:
    """The `release` keyword of summary.write_summary."""
    if decision is None:
        return {"state": AWAITING, "by": None, "why": None, "at": _now()}  # waiting since
    return {
        "state": decision["outcome"],
        "by": decision.get("by"),
        "why": decision.get("why"),
        "at": decision.get("at"),
    }


def write_summary(day: dt.date, folder: Path, run_id: str, url: str | None, release: dict | None, shown: Path) -> Path:
    """summary.write_summary into `folder`, naming `shown` as where the files are (the
    published date folder, or the pending one), with the release state when the summary
    takes it."""
    from s1mig import summary

    kwargs = (
        {"release": release} if release and "release" in inspect.signature(summary.write_summary).parameters else {}
    )
    path = summary.write_summary(day, folder, run_id, url, **kwargs)
    if folder != shown:
        page = path.read_text()
        path.write_text(page.replace(html.escape(str(folder)), html.escape(str(shown))))
    return path


def record(
    conn: psycopg.Connection,
    run_id: str,
    day: dt.date,
    decision: dict,
    revision: int | None,
    out: Path,
    evidence: dict | None,
) -> None:
    """One row of audit.releases (in the caller's transaction)."""
    conn.execute(RELEASES_DDL)
    conn.execute(
        "insert into audit.releases (run_id, report_date, outcome, decided_by, decided_by_id, decided_at, why, "
        "revision, out_folder, evidence) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            run_id,
            day,
            decision["outcome"],
            decision.get("by"),
            decision.get("by_id"),
            decision.get("at"),
            decision.get("why"),
            revision,
            str(out.resolve()),
            json.dumps(evidence) if evidence is not None else None,
        ),
    )


def publish(
    root: Path, out: Path, url: str | None, run_id: str, decision: dict, report_date: dt.date | None = None
) -> list[Path]:
    """Publish every date in the run's pending area, in date order, as released by
    `decision`; then remove the pending area. A date that this run already published (a
    retry after a stop) is not published twice. Returns the published date folders."""
    from s1mig import export

    if decision.get("outcome") not in (RELEASED, AUTO_RELEASED):
        raise S1migError(f"nothing published from {root}: the release decision is {decision.get('outcome')!r}")
    days = pending_dates(root)
    if not days and report_date is not None and export.published_by(out / report_date.isoformat(), run_id, decision):
        return []  # published by an earlier try of this task
    if not days:
        raise S1migError(f"nothing to publish for run {run_id}: no pending export in {root} (run the date again)")
    published = []
    for day in days:
        staged = root / day.isoformat()
        target = out / day.isoformat()
        if _published_already(staged, target, decision):
            with export.out_lock(out):
                export.recover(out)  # what the stopped publish left beside the dates
            _record_published(target, out, url, run_id)  # a publish stopped after its exchange
            log.info("publish %s: already published by this run", day)
        else:

            def summary_writer(folder: Path, shown: Path, day: dt.date = day) -> None:
                write_summary(day, folder, run_id, url, summary_state(decision), shown)

            export.publish_folder(staged, out, url, decision, summary_writer=summary_writer)
            who = f" by {decision['by']}" if decision.get("by") else ""
            log.info("publish %s: %s%s, published to %s", day, decision["outcome"], who, target)
        shutil.rmtree(staged)
        published.append(target)
    _remove(root)
    return published


def _record_published(target: Path, out: Path, url: str | None, run_id: str) -> None:
    """The audit rows of a date this run published, when the publish stopped between the
    exchange and its commit (the files are out; say so in audit.export_evidence and
    audit.releases, from the published evidence.json)."""
    from s1mig import db, evidence

    published = json.loads((target / "evidence.json").read_text())
    decided, day = published["release"], dt.date.fromisoformat(published["report_date"])
    with db.connect(url) as conn, conn.transaction():
        conn.execute(RELEASES_DDL)
        if conn.execute(
            "select 1 from audit.releases where run_id = %s and report_date = %s and outcome = %s "
            "and decided_at is not distinct from %s and out_folder = %s",
            (run_id, day, decided["outcome"], decided.get("at"), str(out.resolve())),
        ).fetchone():
            return
        conn.execute(evidence.EVIDENCE_DDL)
        conn.execute("delete from audit.export_evidence where run_id = %s and report_date = %s", (run_id, day))
        conn.execute(
            "insert into audit.export_evidence (run_id, report_date, evidence) values (%s, %s, %s)",
            (run_id, day, json.dumps(published)),
        )
        record(conn, run_id, day, decided, published.get("revision"), out, published)
    log.warning("publish %s: recorded the release of a publish that stopped after its exchange", day)


def _published_already(staged: Path, target: Path, decision: dict) -> bool:
    """Whether <out>/<D> is this very export (same run, same export time, same files),
    published with this very decision: a retry of a publish that was stopped after its
    exchange. An earlier export of the date (even by the same run id, which `airflow dags
    test` reuses) is not."""
    try:
        pending, published = (
            json.loads((staged / "evidence.json").read_text()),
            json.loads((target / "evidence.json").read_text()),
        )
    except (OSError, ValueError):
        return False
    same = all(pending.get(k) == published.get(k) for k in ("run_id", "report_date", "exported_at", "outputs"))
    return same and published.get("release") == {k: decision.get(k) for k in ("outcome", "by", "by_id", "at", "why")}


def discard(root: Path) -> None:
    """Remove a run's pending area (and <out>/.pending when no other run has one)."""
    _remove(root)


def _remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    try:
        root.parent.rmdir()  # <out>/.pending, when no other run waits
    except OSError:
        pass


def reject(root: Path, out: Path, url: str | None, run_id: str, decision: dict) -> list[dt.date]:
    """Record the rejection of every date in the run's pending area (audit.releases: who,
    when, why, the rejected export's evidence), say it in one log line, and remove the
    pending area: nothing of it is published. Returns the rejected dates."""
    from s1mig import db

    days = pending_dates(root)
    with db.connect(url) as conn, conn.transaction():
        for day in days:
            folder = root / day.isoformat()
            try:
                record_ = json.loads((folder / "evidence.json").read_text())
                revision = int(json.loads((folder / "manifest.json").read_text()).get("revision", 1))
            except (OSError, ValueError, TypeError):
                record_, revision = None, None
            record(conn, run_id, day, decision, revision, out, record_)
    _remove(root)
    shown = ", ".join(map(str, days)) or "(nothing pending)"
    log.warning(
        "release of %s rejected by %s at %s: %s; nothing published (%s keeps what it had)",
        shown,
        decision.get("by") or "an unnamed user",
        decision.get("at"),
        decision.get("why") or "no reason given",
        out,
    )
    return days


def approval_request(root: Path, report_date: dt.date, run_id: str) -> tuple[str, str]:
    """The subject and Markdown body of the approval request: per pending date its files,
    parties, gate outcome, open breaks, and a link to its run summary."""
    days = pending_dates(root)
    subject = f"Release the S1MIG reports for {report_date}?"
    lines = [
        f"Run `{run_id}` exported and checked the reports below. They are **not published** until approved: "
        f"**Approve** publishes them to the export folder; **Reject** publishes nothing (give the reason in *{WHY}*).",
        "",
    ]
    for day in days:
        folder = root / day.isoformat()
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            record_ = json.loads((folder / "evidence.json").read_text())
        except (OSError, ValueError):
            lines.append(f"- **{day}**: pending export unreadable in `{folder}`")
            continue
        parties = len({f["party_id"] for f in manifest["files"]})
        counts: dict[str, int] = {}
        for rule in record_.get("gate", []):
            counts[rule["status"]] = counts.get(rule["status"], 0) + 1
        gate = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no results"
        why = " (restated: an earlier drop was corrected)" if day != report_date else ""
        summary = folder / "run-summary.html"
        link = f"[run summary](file://{summary})" if summary.is_file() else "no run summary"
        lines.append(
            f"- **{day}**{why}: {len(manifest['files'])} files for {parties} parties, revision "
            f"{manifest.get('revision', 1)}; gate: {gate}; open breaks: {len(record_.get('open_breaks', []))}; "
            f"{link} (`{summary}`)"
        )
    if not days:
        lines.append(f"- nothing pending in `{root}`")
    return subject, "\n".join(lines)


STATUS_VIEW = "public_models.release_status"  # dbt_project/models/public/release_status.sql


def date_states(conn: psycopg.Connection, since: dt.date | None = None, until: dt.date | None = None) -> list[str]:
    """One line per report date built (in order, between `since` and `until` when given):
    whether its marts hold what its parties were sent, from public_models.release_status
    (docs/decisions.md, "Which report dates are released, for BI")."""
    if conn.execute("select to_regclass(%s) is null", (STATUS_VIEW,)).fetchone() == (True,):
        raise S1migError(
            f"{STATUS_VIEW} does not exist yet: the next build of a date makes it (no date was built here, "
            "or the warehouse was built before it existed)"
        )
    rows = conn.execute(
        "select report_date, state, up_to_date, marts_built, built_at, gate_run_id, release_outcome, decided_by, "
        f"release_revision from {STATUS_VIEW} where report_date >= coalesce(%s, report_date) "
        "and report_date <= coalesce(%s, report_date) order by report_date",
        (since, until),
    ).fetchall()
    return [_state_line(*row) for row in rows]


def _state_line(day, state, up_to_date, marts_built, built_at, gate_run, outcome, by, revision) -> str:
    parts = [f"{day}  {state:<8}", f"built {built_at.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"]
    if marts_built < len(REPORTS):
        parts.append(f"{marts_built} of {len(REPORTS)} marts")
    if not up_to_date:
        parts.append("NOT up to date (a drop up to it was delivered again since: run it again)")
    if gate_run is not None:
        parts.append(f"gate {gate_run}")
    if outcome is not None:
        parts.append(f"{outcome}{' by ' + by if by else ''}{f' (revision {revision})' if revision else ''}")
    return "  ".join(parts)
