"""Four-eyes release and the drop sensor (issue 16).

On the hand-made drop landed, built and gated once for the module (real dbt, real GX):
an export waits in the run's pending area until released; an approval publishes it to
<out>/<D> atomically with the approver, time and outcome in its evidence and in
audit.releases; a rejection publishes nothing and is recorded with who and why; a pending
file changed after the gate is never published. Through the real DAG (`airflow dags
test`): a drop that does not arrive fails the run at the sensor, naming it; `s1mig run`
refuses to start when four-eyes release is on (nobody could answer it). The auto-release
of a whole DAG run is checked by test_pipeline_e2e's runs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from s1mig import airflow_support, export, release
from s1mig.errors import S1migError
from tests.support.cli import REPO, run_cli
from tests.support.databases import built_warehouse
from tests.support.drops import D30, D31, build_handmade_landing

pytestmark = pytest.mark.integration

APPROVER = {"id": "7", "name": "alice"}
REJECTER = {"id": "8", "name": "bob"}
RUN = "scheduled__2020-07-30T23:00:00+00:00"  # the run that gated D30 and exports it


@pytest.fixture(scope="module")
def built(server_url, tmp_path_factory) -> Iterator[str]:
    """A warehouse with D30 landed, built and gated by run RUN; its URL."""
    with built_warehouse(server_url, tmp_path_factory.mktemp("landing"), RUN) as url:
        yield url


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _releases(url: str, out: Path) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select report_date, outcome, decided_by, decided_by_id, why, revision, evidence is not null "
            "from audit.releases where run_id = %s and out_folder = %s order by release_id",
            (RUN, str(out.resolve())),
        ).fetchall()


def _stage(url: str, out: Path) -> Path:
    """D30 exported to the run's pending area with its run summary (tasks export, run_summary)."""
    root = release.pending_root(out, RUN)
    folder = export.stage(D30, out, root, url, RUN)
    release.write_summary(D30, folder, RUN, url, release.summary_state(None), folder)
    return root


def test_approval_publishes_the_pending_export(built, tmp_path):
    out = tmp_path / "out"
    root = _stage(built, out)
    pending = root / D30.isoformat()
    assert root.parent == out / ".pending" and not (out / D30.isoformat()).exists()
    checked = {k: v for k, v in _hashes(pending).items() if k.endswith(".csv")}
    assert checked and (pending / "run-summary.html").is_file()
    subject, body = release.approval_request(root, D30, RUN)
    assert str(D30) in subject and f"file://{pending / 'run-summary.html'}" in body and "gate:" in body

    answered = dt.datetime(2026, 12, 2, 8, 15, tzinfo=dt.UTC)
    decided = release.decision([release.APPROVE], {"why": " checked the totals "}, APPROVER, answered)
    assert decided == {
        "outcome": "released",
        "by": "alice",
        "by_id": "7",
        "at": "2026-12-02T08:15:00Z",
        "why": "checked the totals",
    }
    published = release.publish(root, out, built, RUN, decided, D30)
    target = out / D30.isoformat()
    assert published == [target]
    assert {k: v for k, v in _hashes(target).items() if k.endswith(".csv")} == checked  # what was gated
    assert not root.exists() and not (out / ".pending").exists()
    record = json.loads((target / "evidence.json").read_text())
    assert record["release"] == {k: decided[k] for k in ("outcome", "by", "by_id", "at", "why")}
    assert record["revision"] == json.loads((target / "manifest.json").read_text())["revision"] == 1
    summary = (target / "run-summary.html").read_text()
    assert str(target) in summary and ".pending" not in summary
    assert _releases(built, out) == [(D30, "released", "alice", "7", "checked the totals", 1, True)]
    with psycopg.connect(built) as conn:
        row = conn.execute(
            "select evidence->'release'->>'by' from audit.export_evidence where run_id = %s", (RUN,)
        ).fetchone()
    assert row == ("alice",)
    # a retry of publish after it finished publishes nothing twice
    assert release.publish(root, out, built, RUN, decided, D30) == []
    assert len(_releases(built, out)) == 1


def test_rejection_publishes_nothing(built, tmp_path):
    out = tmp_path / "out"
    first = export.export_date(D30, out, built, RUN)  # what the parties have now
    before = _hashes(first)
    assert json.loads((first / "evidence.json").read_text())["release"]["outcome"] == "auto-released"
    root = _stage(built, out)
    context = {"params": {"out": str(out), "report_date": D30.isoformat()}, "run_id": RUN}
    answer = {
        "chosen_options": [release.REJECT],
        "params_input": {"why": "R5 looks wrong for SUPA01"},
        "responded_by_user": REJECTER,
        "responded_at": dt.datetime(2026, 12, 2, 8, 30, tzinfo=dt.UTC),
    }
    decided = airflow_support.release_answered(context, answer)  # what the `release` task does with the answer
    assert decided["outcome"] == "rejected" and decided["by"] == "bob"
    assert _hashes(out / D30.isoformat()) == before  # nothing leaked to <out>/<D>
    assert not root.exists()
    assert sorted(p.name for p in out.iterdir()) == [D30.isoformat()]
    rows = _releases(built, out)
    assert rows[-1] == (D30, "rejected", "bob", "8", "R5 looks wrong for SUPA01", 1, True)
    assert rows[0][1] == "auto-released"
    with pytest.raises(S1migError, match="nothing published"):
        release.publish(root, out, built, RUN, decided, D30)


def test_a_pending_file_changed_after_the_gate_is_not_published(built, tmp_path):
    out = tmp_path / "out"
    root = _stage(built, out)
    victim = next((root / D30.isoformat()).rglob("*.csv"))
    victim.write_text(victim.read_text() + "SUPX,1,2\n")
    decided = release.decision([release.APPROVE], None, APPROVER, None)
    with pytest.raises(S1migError, match="changed since it was checked") as err:
        release.publish(root, out, built, RUN, decided, D30)
    assert victim.name in str(err.value)
    assert not (out / D30.isoformat()).exists()
    assert not [p for p in out.iterdir() if p.name != ".pending"]  # no temporary folder left either


def _edit_pending_evidence(root: Path, edit) -> None:
    path = root / D30.isoformat() / "evidence.json"
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record, indent=2) + "\n")


@pytest.mark.parametrize(
    ("case", "edit", "message"),
    [
        # the export waited for its approval while a corrected drop landed (runs wait side by side)
        ("superseded", lambda r: r["inputs"][0].update(delivery_sha256="0" * 64), "no longer current"),
        # a blocked gate task marked successful by hand: its export is never releasable
        (
            "blocked",
            lambda r: r["gate"].append({"rule_id": "R5", "severity": "blocking", "status": "fail"}),
            "the gate blocked this export",
        ),
    ],
)
def test_an_approval_cannot_publish_what_is_no_longer_releasable(built, tmp_path, case, edit, message):
    out = tmp_path / "out"
    root = _stage(built, out)
    _edit_pending_evidence(root, edit)
    decided = release.decision([release.APPROVE], None, APPROVER, None)
    with pytest.raises(S1migError, match=message):
        release.publish(root, out, built, RUN, decided, D30)
    assert not (out / D30.isoformat()).exists()
    assert (root / D30.isoformat() / "manifest.json").is_file()  # kept, nothing half-published


def test_an_older_export_is_not_published_over_a_later_one(built, tmp_path):
    """Two runs of D wait for approval; the later export is approved first: approving the
    earlier one afterwards publishes nothing over it."""
    import time

    out = tmp_path / "out"
    older = _stage(built, out)
    time.sleep(1.1)  # exported_at has whole seconds
    later = release.pending_root(out, "manual__later")
    export.stage(D30, out, later, built, RUN)
    decided = release.decision([release.APPROVE], None, APPROVER, None)
    release.publish(later, out, built, "manual__later", decided, D30)
    published = _hashes(out / D30.isoformat())
    with pytest.raises(S1migError, match="holds a later export"):
        release.publish(older, out, built, RUN, decided, D30)
    assert _hashes(out / D30.isoformat()) == published


def test_four_eyes_setting(monkeypatch):
    for text, on in (("true", True), ("1", True), ("", False), ("false", False), ("off", False)):
        monkeypatch.setenv("S1MIG_FOUR_EYES", text)
        assert release.four_eyes() is on
    monkeypatch.setenv("S1MIG_FOUR_EYES", "maybe")
    with pytest.raises(S1migError, match="S1MIG_FOUR_EYES must be true or false"):
        release.four_eyes()
    assert release.pending_root(Path("/x"), "manual__2020-07-30T00:00:00+00:00") == Path(
        "/x/.pending/manual__2020-07-30T00_00_00_00_00"
    )


def test_run_refuses_four_eyes(tmp_path):
    """`s1mig run` cannot be answered (no API server): one line, nothing started."""
    landing = build_handmade_landing(tmp_path / "landing")
    out = tmp_path / "out"
    env = dict(os.environ, S1MIG_FOUR_EYES="true")
    proc = subprocess.run(
        [sys.executable, "-m", "s1mig.cli", "run", "--landing", str(landing), "--date", str(D30), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "four-eyes release is on" in lines[0] and "s1mig serve" in lines[0], proc.stderr
    assert not out.exists()


def test_missing_drop_fails_at_the_sensor(warehouse, tmp_path, monkeypatch):
    """A real DAG run whose drop never arrives: the sensor pokes (reschedule mode under
    `airflow dags test`), gives up after S1MIG_DROP_TIMEOUT and fails the run naming the
    drop; nothing after it ran (no lease taken, nothing landed)."""
    from s1mig import airflow_run

    monkeypatch.setenv("S1MIG_DROP_TIMEOUT", "4")
    monkeypatch.setenv("S1MIG_DROP_POKE", "1")
    landing, out = tmp_path / "landing", tmp_path / "out"
    landing.mkdir()
    ok, reason, log_file = airflow_run.run_dag(D31, landing, out, echo=lambda _line: None)
    assert not ok
    manifest = landing / D31.isoformat() / "manifest.json"
    assert reason.startswith(f"drop {D31} missing: {manifest} did not arrive within 4 s"), reason
    text = log_file.read_text()
    assert text.count("starting task_id=wait_for_drop") >= 2  # rescheduled, not one blocking poke
    assert "starting task_id=take_lease" not in text
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select to_regclass('raw.drop_ledger')").fetchone()[0] is None
    assert not out.exists()
    # `s1mig run` checks the drop before it starts Airflow (its sensor's first poke then succeeds)
    proc = run_cli("run", "--landing", str(landing), "--date", str(D31), "--out", str(out))
    assert proc.returncode != 0 and f"drop {D31} not found: {manifest}" in proc.stderr


KILLED_PUBLISH = textwrap.dedent(
    """
    import datetime as dt, json, os, signal, sys
    from pathlib import Path
    from s1mig import export, release

    out, url, run, decided = Path(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    exchange = export._exchange
    def dying_exchange(a, b):  # published by the exchange; its transaction not committed
        exchange(a, b)
        os.kill(os.getpid(), signal.SIGKILL)
    export._exchange = dying_exchange
    release.publish(release.pending_root(out, run), out, url, run, decided, dt.date.fromisoformat(sys.argv[5]))
    """
)


def test_a_publish_killed_after_its_exchange_is_finished_by_the_retry(built, tmp_path):
    """A real SIGKILL right after the publishing exchange (before its commit): the approved
    files are out, the audit rows are not; the task's retry records them, publishes nothing
    twice and leaves nothing behind."""
    out = tmp_path / "out"
    export.export_date(D30, out, built, RUN)  # a published revision: the exchange path
    root = _stage(built, out)
    decided = release.decision(
        [release.APPROVE], {"why": "ok"}, APPROVER, dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC)
    )
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_PUBLISH, str(out), built, RUN, json.dumps(decided), D30.isoformat()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    target = out / D30.isoformat()
    assert json.loads((target / "evidence.json").read_text())["release"]["by"] == "alice"
    assert [r[1] for r in _releases(built, out)] == ["auto-released"]  # the kill came before the commit
    assert root.is_dir() and [p for p in out.iterdir() if ".tmp-" in p.name]
    published = _hashes(target)

    assert release.publish(root, out, built, RUN, decided, D30) == [target]  # the retry
    assert _hashes(target) == published
    assert [r[1:5] for r in _releases(built, out)] == [
        ("auto-released", None, None, "S1MIG_FOUR_EYES is off"),
        ("released", "alice", "7", "ok"),
    ]
    assert sorted(p.name for p in out.iterdir()) == [D30.isoformat()]
