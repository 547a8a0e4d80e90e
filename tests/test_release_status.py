"""public_models.release_status: which report dates' marts hold what their parties were sent.

On one copy of the hand-made D30 warehouse (real dbt, real GX, the real release and
publish code), a date walks through every state the view can show, each reached the way
the daily run reaches it: gated (passed), rejected by a person, gated again by another
run, released, rebuilt, a drop up to it delivered again (blocked by rule R0, not up to
date). test_bi_role checks that BI users read it (and not the audit log it reads);
test_pipeline_e2e checks whole DAG runs (auto-released dates, a restatement)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import example, given, seed, settings
from hypothesis import strategies as st

from s1mig import dbt, export, release
from s1mig.contract import REPORTS
from s1mig.errors import GateBlocked
from s1mig.pipeline import gate_step
from tests.support.cli import run_cli
from tests.support.databases import built_warehouse, fresh_database
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
    listed = run_cli("dates", check=True).stdout.splitlines()
    assert len(listed) == 1 and listed[0].startswith(f"{D30}  released  built ") and "NOT" not in listed[0]
    assert listed[0].endswith("gate manual__again  released by alice (revision 1)")
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
    listed = run_cli("dates", "--from", D30.isoformat(), "--to", D30.isoformat(), check=True).stdout.splitlines()
    assert len(listed) == 1 and listed[0].startswith(f"{D30}  blocked   built ")
    assert "NOT up to date (a drop up to it was delivered again since: run it again)  gate manual__fourth" in listed[0]
    assert run_cli("dates", "--from", (D30 + dt.timedelta(days=1)).isoformat(), check=True).stdout == (
        "s1mig: no report date built in that range\n"
    )


def test_dates_on_a_warehouse_never_built(server_url, monkeypatch):
    with fresh_database(server_url) as url:
        monkeypatch.setenv("S1MIG_DATABASE_URL", url)
        proc = run_cli("dates")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "s1mig: error: public_models.release_status does not exist yet: the next build of a date makes it "
        "(no date was built here, or the warehouse was built before it existed)"
    ]


# ----------------------------------------------------------------- the rule on random histories

D1, D2 = D30 - dt.timedelta(days=1), D30
MARTS = tuple(report.model for report in REPORTS)
RUNS = ("run_a", "run_b", "run_a", "run_b", "run_c")  # weighted: two runs meet more often
DAYS = (D2, D2, D2, D1)  # most steps on one date, so that builds, gates and decisions meet
T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)

FOLDERS = ("/srv/parties", "/srv/parties", "/tmp/check")  # weighted: the parties' folder, a check copy

OPS = st.one_of(
    st.tuples(st.just("build"), st.sampled_from(DAYS), st.sampled_from((None, "s1mig_004", "s1mig_008"))),
    st.tuples(st.just("deliver"), st.sampled_from(DAYS)),
    st.tuples(st.just("gate"), st.sampled_from(RUNS), st.sampled_from(DAYS), st.booleans()),
    # the export's rule R9 alone (its rows replace only R9's: a gate task that recorded nothing, marked done)
    st.tuples(st.just("r9"), st.sampled_from(RUNS), st.sampled_from(DAYS), st.booleans()),
    st.tuples(
        st.just("decide"),
        st.sampled_from(RUNS),
        st.sampled_from(DAYS),
        st.sampled_from(("released", "auto-released", "rejected")),
        st.sampled_from(FOLDERS),
    ),
)


def _expected(ops: list[tuple]) -> dict:
    """The rule as docs/decisions.md states it, by replaying the history in Python: the
    marts of D hold their latest build; a run's gate of D counts when its own rules (not the
    export's R9 alone) and all its rows came after that build; a decision counts when
    recorded after that build by a run whose counted gate passed, a release over a
    rejection, the latest first; D is released when such a release exists and every folder
    that was sent D last got it from such a release."""
    landed: dict[dt.date, dt.datetime] = {}
    builds: dict[dt.date, dict[str, tuple[dt.datetime, dt.datetime | None]]] = {}
    gates: dict[tuple[str, dt.date], dict[str, tuple[dt.datetime, bool]]] = {}
    decisions: list[tuple[str, dt.date, str, dt.datetime, int, str]] = []
    for step, op in enumerate(ops):
        t = T0 + dt.timedelta(seconds=step)
        if op[0] == "build":
            through = max((at for day, at in landed.items() if day <= op[1]), default=None)
            for mart in MARTS if op[2] is None else (op[2],):
                builds.setdefault(op[1], {})[mart] = (t, through)
        elif op[0] == "deliver":
            landed[op[1]] = t
        elif op[0] == "gate":
            gates[(op[1], op[2])] = {"rules": (t, op[3])}  # the gate replaces every row of its run, R9's too
        elif op[0] == "r9":
            gates.setdefault((op[1], op[2]), {})["R9"] = (t, op[3])
        elif all(ok for _, ok in gates.get((op[1], op[2]), {"none": (t, False)}).values()):
            decisions.append((op[1], op[2], op[3], t, step, op[4]))  # publish: no recorded row failed
    expected = {}
    for day, marts in builds.items():
        built_at = max(t for t, _ in marts.values())
        through = max((at for d, at in landed.items() if d <= day), default=None)
        counted = {
            run: (max(t for t, _ in rows.values()), all(ok for _, ok in rows.values()))
            for (run, d), rows in gates.items()
            if d == day and "rules" in rows and min(t for t, _ in rows.values()) > built_at
        }
        latest = max(counted.items(), key=lambda kv: kv[1][0], default=None)  # every step has its own time
        on_it = [x for x in decisions if x[1] == day and x[3] > built_at and counted.get(x[0], (0, False))[1]]
        shown = max(on_it, key=lambda x: (x[2] != "rejected", x[3], x[4]), default=None)
        sent = {}
        for x in decisions:
            if x[1] == day and x[2] != "rejected":
                sent[x[5]] = x  # each folder's latest release, whatever the build
        behind = [x for x in sent.values() if not (x[3] > built_at and counted.get(x[0], (0, False))[1])]
        released = shown is not None and shown[2] != "rejected" and not behind
        if released:
            state = "released"
        elif latest is None:
            state = "built"
        elif not latest[1][1]:
            state = "blocked"
        elif shown is not None and shown[2] == "rejected" and shown[0] == latest[0]:
            state = "rejected"
        else:
            state = "passed"
        expected[day] = (
            state,
            released,
            len(marts) == len(MARTS) and all(t == through for _, t in marts.values()),
            len(marts),
            latest[0] if latest else None,
            latest[1][1] if latest else None,
            shown[0] if shown else None,
            shown[2] if shown else None,
        )
    return expected


def _step_build(mart: str | None = None) -> tuple:
    return ("build", D2, mart)


def _step_gate(run: str, passed: bool = True) -> tuple:
    return ("gate", run, D2, passed)


def _step_decide(run: str, outcome: str, folder: str = FOLDERS[0]) -> tuple:
    return ("decide", run, D2, outcome, folder)


RELEASED_BY_A = [_step_build(), _step_gate("run_a"), _step_decide("run_a", "released")]  # D2 released to the parties


@seed(20201025)
@settings(max_examples=200, database=None, deadline=None)
@given(ops=st.lists(OPS, max_size=20))
# a rejection of another run's export of the same rows: the later run's export awaits
@example(ops=[_step_build(), _step_gate("run_b"), _step_decide("run_b", "rejected"), _step_gate("run_a")])
# two runs side by side: run_a's export waits while run_b rebuilds; approving run_a's is not a release
@example(
    ops=[_step_build(), _step_gate("run_a"), _step_build(), _step_gate("run_b"), _step_decide("run_a", "released")]
)
# the same run gates the released rows again and blocks (a redelivery): shown blocked, not released
@example(ops=[("deliver", D1), *RELEASED_BY_A, ("deliver", D1), _step_gate("run_a", passed=False)])
# a later build exported to a check folder: the parties' folder still holds the earlier build
@example(
    ops=[
        *RELEASED_BY_A,
        _step_build(),
        _step_gate("run_b"),
        _step_decide("run_b", "auto-released", "/tmp/check"),
        _step_gate("run_c"),
        _step_decide("run_c", "released"),
    ]
)
# the parties' folder got run_a's release of the earlier build; run_a (cleared, same id) gates the new one
@example(
    ops=[
        *RELEASED_BY_A,
        _step_build(),
        _step_gate("run_a"),
        _step_gate("run_b"),
        _step_decide("run_b", "auto-released", "/tmp/check"),
    ]
)
# a gate task that recorded nothing (marked done by hand): the export's R9 alone is no gate
@example(ops=[_step_build(), ("r9", "run_a", D2, True), _step_decide("run_a", "released")])
# the same run id again (a DAG run cleared and run again): its decision on the earlier build is not on this one
@example(ops=[*RELEASED_BY_A, _step_build(), _step_gate("run_a")])
# a release, then another run's rejection of the same rows: released stands; one mart rebuilt ends it
@example(
    ops=[
        _step_build(),
        _step_gate("run_a"),
        _step_decide("run_a", "auto-released"),
        _step_gate("run_b"),
        _step_decide("run_b", "rejected"),
        _step_build("s1mig_008"),
    ]
)
def test_release_status_follows_the_rule_on_random_histories(built, ops):
    """Builds (all marts or one), deliveries, gates (passing or blocking) and decisions of
    three runs on two dates, in any order, written to the audit log and the ledger as the
    run writes them: after every step the view equals the rule replayed in Python. Rolled
    back after each history."""
    with psycopg.connect(built) as conn, conn.transaction(force_rollback=True):
        for table in ("audit.mart_builds", "audit.gate_results", "audit.releases", "raw.drop_ledger"):
            conn.execute(f"delete from {table}")
        for step, op in enumerate(ops):
            t = T0 + dt.timedelta(seconds=step)
            if op[0] == "build":
                for mart in MARTS if op[2] is None else (op[2],):
                    conn.execute(
                        "insert into audit.mart_builds (model_name, report_date, built_at, landed_through) "
                        "select %s, %s, %s, (select max(landed_at) from raw.drop_ledger "
                        "where drop_date <= %s and superseded_at is null)",
                        (mart, op[1], t, op[1]),
                    )
            elif op[0] == "deliver":
                conn.execute(
                    "update raw.drop_ledger set superseded_at = %s where drop_date = %s and superseded_at is null",
                    (t, op[1]),
                )
                conn.execute(
                    "insert into raw.drop_ledger (drop_date, delivery_sha256, manifest, rows_landed, landed_at) "
                    "values (%s, %s, '{}', '{}', %s)",
                    (op[1], f"sha{step}", t),
                )
            elif op[0] == "gate":
                conn.execute("delete from audit.gate_results where run_id = %s and report_date = %s", op[1:3])
                for rule, status in (("R0", "pass"), ("R5", "pass" if op[3] else "fail"), ("W1", "warn")):
                    conn.execute(
                        "insert into audit.gate_results (run_id, report_date, rule_id, rule_name, severity, "
                        "status, failing_count, sample_keys, checked_at) values (%s, %s, %s, '', '', %s, 0, '{}', %s)",
                        (op[1], op[2], rule, status, t),
                    )
            elif op[0] == "r9":
                conn.execute(
                    "delete from audit.gate_results where run_id = %s and report_date = %s and rule_id = 'R9'",
                    op[1:3],
                )
                conn.execute(
                    "insert into audit.gate_results (run_id, report_date, rule_id, rule_name, severity, status, "
                    "failing_count, sample_keys, checked_at) values (%s, %s, 'R9', '', '', %s, 0, '{}', %s)",
                    (op[1], op[2], "pass" if op[3] else "fail", t),
                )
            elif conn.execute(
                "select bool_and(status <> 'fail') from audit.gate_results where run_id = %s and report_date = %s",
                op[1:3],
            ).fetchone()[0]:
                conn.execute(
                    "insert into audit.releases (run_id, report_date, outcome, decided_by, revision, out_folder, "
                    "recorded_at) values (%s, %s, %s, 'x', 1, %s, %s)",
                    (op[1], op[2], op[3], op[4], t),
                )
            found = {
                r[0]: tuple(r[1:])
                for r in conn.execute(
                    "select report_date, state, released, up_to_date, marts_built, gate_run_id, gate_passed, "
                    "release_run_id, release_outcome from public_models.release_status"
                )
            }
            assert found == _expected(ops[: step + 1]), ops[: step + 1]  # after every step
