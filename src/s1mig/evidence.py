"""The evidence record of an exported date: which drops (by hash), which code (git commit
and dbt manifest hash), which gate results and which output files (by hash) — so any
exported file traces back to the data and code that made it — and which revision of the
date it is, and, for a restated date, the corrected drop that caused the restatement; once
published, who released it (four-eyes release, s1mig.release), when and how."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
from pathlib import Path

import psycopg

from s1mig import __version__, config

EVIDENCE_DDL = """
create schema if not exists audit;
create table if not exists audit.export_evidence (
    run_id text not null,
    report_date date not null,
    exported_at timestamptz not null default now(),
    evidence jsonb not null,
    primary key (run_id, report_date)
)"""


def git_commit() -> str:
    """The commit of the code that ran (+dirty when the work tree has changes);
    S1MIG_GIT_COMMIT when set (images have no .git)."""
    if os.environ.get("S1MIG_GIT_COMMIT"):
        return os.environ["S1MIG_GIT_COMMIT"]
    try:
        head = subprocess.run(
            ["git", "-C", str(config.project_dir()), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(config.project_dir()),
                "status",
                "--porcelain",
                "--",
                "src",
                "dags",
                "dbt_project",
                "expectations",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def dbt_manifest_sha256() -> str | None:
    path = config.home() / "dbt" / "target" / "manifest.json"
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def corrected_drop(conn: psycopg.Connection, drop_date: dt.date) -> dict | None:
    """The current delivery of a drop date and the one it replaced (a correction, spec
    section 2): what the evidence of a restated date names as its cause."""
    current = conn.execute(
        "select delivery_sha256, landed_at from raw.drop_ledger where drop_date = %s and superseded_at is null",
        (drop_date,),
    ).fetchone()
    if current is None:
        return None
    replaced = conn.execute(
        "select delivery_sha256 from raw.drop_ledger where drop_date = %s and superseded_at is not null "
        "order by superseded_at desc, landed_at desc limit 1",
        (drop_date,),
    ).fetchone()
    return {
        "drop_date": drop_date.isoformat(),
        "delivery_sha256": current[0],
        "landed_at": current[1].astimezone(dt.UTC).isoformat(),
        "replaced_delivery_sha256": replaced[0] if replaced else None,
    }


def build(
    conn: psycopg.Connection,
    report_date: dt.date,
    run_id: str,
    files: list[dict],
    revision: int = 1,
    restatement: dict | None = None,
    out_folder: Path | None = None,
) -> dict:
    """The evidence of one export of D. `revision` is the manifest's; `restatement` is
    None for a run of D itself, and for a date exported again because an earlier drop was
    corrected, {"corrected_drop": corrected_drop(...)}; `out_folder` is where the date was
    published (restatement finds exports in other folders through it)."""
    drops = conn.execute(
        "select drop_date, delivery_sha256, manifest, landed_at from raw.drop_ledger "
        "where superseded_at is null and drop_date <= %s order by drop_date",
        (report_date,),
    ).fetchall()
    gate = conn.execute(
        "select rule_id, rule_name, severity, status, failing_count, sample_keys from audit.gate_results "
        "where report_date = %s and run_id = %s order by rule_id",
        (report_date, run_id),
    ).fetchall()
    from s1mig.breaks import open_breaks
    from s1mig.gate import inherited_counts

    return {
        "report_date": report_date.isoformat(),
        "run_id": run_id,
        "exported_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "revision": revision,
        "out_folder": str(out_folder.resolve()) if out_folder is not None else None,
        "restatement": restatement,
        "inputs": [
            {
                "drop_date": d.isoformat(),
                "delivery_sha256": sha,
                "landed_at": landed.astimezone(dt.UTC).isoformat(),
                "files": [{k: e[k] for k in ("name", "file", "rows", "sha256")} for e in manifest["extracts"]],
            }
            for d, sha, manifest, landed in drops
        ],
        "code": {
            "s1mig_version": __version__,
            "git_commit": git_commit(),
            "dbt_manifest_sha256": dbt_manifest_sha256(),
        },
        "gate": [
            {"rule_id": r, "rule": n, "severity": sev, "status": st, "failing_count": c, "sample_keys": list(k)}
            for r, n, sev, st, c, k in gate
        ],
        # rule 8: per party, the installations counted as migrated that it inherited
        "inherited": inherited_counts(conn, report_date, run_id),
        # the break register: the warnings first seen up to D that nobody acknowledged yet
        "open_breaks": [b.as_dict() for b in open_breaks(conn, through=report_date)],
        "outputs": files,
    }


def with_release(record: dict, revision: int, decision: dict) -> dict:
    """The evidence of a published export: its settled revision and who released it, when
    and how (s1mig.release: "released" by a named approver, or "auto-released" where
    four-eyes release is off), and when it was published."""
    return record | {
        "revision": revision,
        "release": {k: decision.get(k) for k in ("outcome", "by", "by_id", "at", "why")},
        "published_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
