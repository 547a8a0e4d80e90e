"""public_models.release_status: which report dates' marts hold what their parties were sent.

On one copy of the hand-made D30 warehouse (real dbt, real GX, the real release and
publish code), a date walks through every state the view can show, each reached the way
the daily run reaches it: gated (passed), rejected by a person, gated again by another
run, released, rebuilt, a drop up to it delivered again (blocked by rule R0, not up to
date). test_bi_role checks that BI users read it (and not the audit log it reads);
test_pipeline_e2e checks whole DAG runs (auto-released dates, a restatement)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from s1mig import dbt, export, release
from s1mig.errors import GateBlocked
from s1mig.pipeline import gate_step
from tests.support.databases import built_warehouse
from tests.support.drops import D30

pytestmark = pytest.mark.integration

RUN = "scheduled__2020-07-30T23:00:00+00:00"
COLUMNS = (
    "state, released, up_to_date, marts_built, gate_run_id, gate_passed, release_run_id, "
    "release_outcome, decided_by, release_revision"
)


@pytest.fixture(scope="module")
def built(server_url, tmp_path_factory) -> Iterator[str]:
    with built_warehouse(server_url, tmp_path_factory.mktemp("landing"), RUN) as url:
        yield url


def _status(url: str) -> dict:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"select report_date, {COLUMNS} from public_models.release_status order by report_date"
        ).fetchall()
    assert [r[0] for r in rows] == [D30], rows  # one row per date built
    return dict(zip([c.strip() for c in COLUMNS.split(",")], rows[0][1:], strict=True))


def _decide(url, out, run_id: str, option: str, by: dict) -> None:
    root = release.pending_root(out, run_id)
    export.stage(D30, out, root, url, run_id)
    decided = release.decision([option], {"why": "checked"}, by, None)
    if option == release.APPROVE:
        release.publish(root, out, url, run_id, decided, D30)
    else:
        release.reject(root, out, url, run_id, decided)


def test_a_dates_state_follows_its_builds_gates_and_releases(built, tmp_path):
    url, out = built, tmp_path / "out"
    gated = {"marts_built": 10, "up_to_date": True, "gate_passed": True}
    none = {"release_run_id": None, "release_outcome": None, "decided_by": None, "release_revision": None}
    assert _status(url) == {"state": "passed", "released": False, "gate_run_id": RUN, **gated, **none}

    _decide(url, out, RUN, release.REJECT, {"id": "8", "name": "bob"})
    rejected = {"release_run_id": RUN, "release_outcome": "rejected", "decided_by": "bob", "release_revision": 1}
    assert _status(url) == {"state": "rejected", "released": False, "gate_run_id": RUN, **gated, **rejected}

    # another run gates the same build: its export awaits a decision (the rejection was of RUN's)
    gate_step(D30, "manual__again", url)
    assert _status(url) == {"state": "passed", "released": False, "gate_run_id": "manual__again", **gated, **rejected}

    _decide(url, out, "manual__again", release.APPROVE, {"id": "7", "name": "alice"})
    released = {"release_run_id": "manual__again", "release_outcome": "released", "decided_by": "alice"}
    assert _status(url) == {
        "state": "released",
        "released": True,
        "gate_run_id": "manual__again",
        **gated,
        **released,
        "release_revision": 1,
    }
    # a later rejection of another export of the same rows: what the parties have stands
    gate_step(D30, "manual__third", url)
    _decide(url, out, "manual__third", release.REJECT, {"id": "8", "name": "bob"})
    status = _status(url)
    assert (status["state"], status["released"], status["gate_run_id"], status["decided_by"]) == (
        "released",
        True,
        "manual__third",
        "alice",
    )

    # one mart built again: nothing of it was gated or released since
    dbt.run_dbt(["build", "--select", "s1mig_004"], url, extra_env={dbt.REPORT_DATE_ENV: D30.isoformat()})
    unchecked = {"gate_run_id": None, "gate_passed": None, **none}
    assert _status(url) == {"state": "built", "released": False, "marts_built": 10, "up_to_date": True, **unchecked}

    # the drop delivered again (its ledger row landed anew): not up to date, and rule R0 blocks
    with psycopg.connect(url) as conn:
        conn.execute(
            "update raw.drop_ledger set landed_at = landed_at + interval '1 second' "
            "where drop_date = %s and superseded_at is null",
            (D30,),
        )
    with pytest.raises(GateBlocked):
        gate_step(D30, "manual__fourth", url)
    assert _status(url) == {
        "state": "blocked",
        "released": False,
        "marts_built": 10,
        "up_to_date": False,
        "gate_run_id": "manual__fourth",
        "gate_passed": False,
        **none,
    }
