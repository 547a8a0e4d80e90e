"""The DAG file parses in a real DagBag and is wired as the project expects."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from s1mig import run_tasks
from tests.support.cli import REPO, last_line_of_python

# the one declaration of the run's tasks (s1mig.run_tasks); the DAG must wire exactly these, in this order
EXPECTED_TASKS = list(run_tasks.ORDER)
LEASED = list(run_tasks.LEASED)


@pytest.fixture(scope="module")
def dagbag(s1mig_home, tmp_path_factory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_daily_dag_shape(dagbag):
    dag = dagbag.dags.get("s1mig_daily")
    assert dag is not None
    # the teardown release_lease runs beside release (which waits for its approver without the lease)
    assert [t.task_id for t in _in_order(dag, without={"release_lease"})] == EXPECTED_TASKS
    assert dag.catchup is False
    assert dag.max_active_runs > 1  # a run waiting for its drop (or approval) holds up no other date's run
    assert set(dag.tags) >= {"s1mig", "mrr"}
    assert dag.timetable.expression == "0 0 * * *"
    assert str(dag.timetable.timezone) in ("Europe/London", "Timezone('Europe/London')")
    for task in dag.tasks:
        if task.task_id == "release":  # a retry would ask again: an answered release is never retried
            assert task.retries == 0
            continue
        assert task.retries >= 1, task.task_id
        assert task.retry_delay >= timedelta(minutes=1), task.task_id
        assert task.owner == "s1mig"


def test_lease_spans_the_run(dagbag):
    """The run lease is taken by a setup task before any work and released by its teardown,
    which runs once every other task is done, whether they succeeded or failed."""
    dag = dagbag.dags["s1mig_daily"]
    take, release = dag.get_task("take_lease"), dag.get_task("release_lease")
    assert take.is_setup and not take.is_teardown
    assert release.is_teardown and not release.is_setup
    assert str(release.trigger_rule) in ("all_done_setup_success", "TriggerRule.ALL_DONE_SETUP_SUCCESS")
    assert take.task_id in release.upstream_task_ids  # the teardown belongs to this setup
    for task_id in LEASED:
        assert task_id in take.get_flat_relative_ids(upstream=False), task_id
        assert task_id in release.get_flat_relative_ids(upstream=True), task_id
    # the waits are outside the lease: for the drop before it, for the approval after it
    assert "wait_for_drop" in take.upstream_task_ids
    for task_id in ("release", "publish"):
        assert task_id not in release.get_flat_relative_ids(upstream=True), task_id
    assert {"take_lease", "release", "publish", "release_lease"} <= dag.get_task("wait_for_drop").get_flat_relative_ids(
        upstream=False
    )
    # a failed teardown does not change the run's outcome (the lease then lapses)
    assert not release.on_failure_fail_dagrun


def test_drop_sensor(dagbag):
    """wait_for_drop waits in reschedule mode (no worker slot between pokes) on the drop's
    manifest, with the timeout and poke interval from the environment (defaults 18 h, 5 min)."""
    sensor = dagbag.dags["s1mig_daily"].get_task("wait_for_drop")
    from airflow.sdk import BaseSensorOperator

    assert isinstance(sensor, BaseSensorOperator)
    assert sensor.mode == "reschedule"
    assert sensor.timeout == float(os.environ.get("S1MIG_DROP_TIMEOUT") or 18 * 3600)
    assert sensor.poke_interval == float(os.environ.get("S1MIG_DROP_POKE") or 300)


def test_release_is_an_approval(dagbag):
    """The interface `s1mig approve` / `s1mig reject` answer: task `release`, options Approve
    and Reject, one optional form field `why`; a rejection skips publish."""
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    dag = dagbag.dags["s1mig_daily"]
    release = dag.get_task("release")
    assert isinstance(release, ApprovalOperator)
    assert release.options == ["Approve", "Reject"]
    assert set(release.serialized_params) == {"why"}
    assert release.downstream_task_ids == {"publish"}


def test_cli_task_lists_match_the_dag(dagbag):
    """`s1mig run --skip` names tasks of the DAG; the rest always run or go with them."""
    from s1mig import airflow_run

    dag = dagbag.dags["s1mig_daily"]
    from s1mig import pipeline

    assert set(airflow_run.ALL_TASKS) == set(dag.task_ids)
    assert set(airflow_run.TASKS) == set(LEASED)
    # run_direct runs the same steps, in the same order, as the DAG's leased tasks
    assert list(pipeline.STEPS) == LEASED


def test_dag_file_has_no_heavy_imports_at_parse_time():
    """Logic stays in the package: the DAG file imports only airflow and pendulum at top level."""
    source = (REPO / "dags" / "s1mig_daily.py").read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    modules = {line.split()[1].split(".")[0] for line in top_level if not line.startswith("from s1mig import")}
    assert modules <= {"__future__", "os", "datetime", "pendulum", "airflow"}, modules
    # of the package, only the task list (names, nothing imported)
    assert [line for line in top_level if "s1mig" in line] == ["from s1mig import run_tasks"]
    assert "import" not in (REPO / "src" / "s1mig" / "run_tasks.py").read_text().replace("from __future__ import", "")


def _in_order(dag, without: set[str] = frozenset()):
    """The tasks in dependency order (but those `without`); the wiring must allow exactly one order."""
    from graphlib import TopologicalSorter

    tasks = [t for t in dag.tasks if t.task_id not in without]
    sorter = TopologicalSorter({t.task_id: set(t.upstream_task_ids) - without for t in tasks})
    sorter.prepare()
    order = []
    while sorter.is_active():
        ready = sorter.get_ready()
        assert len(ready) == 1, f"tasks without an order between them: {ready}"
        order.append(dag.get_task(ready[0]))
        sorter.done(*ready)
    return order


@pytest.mark.parametrize("under_s1mig_run", [True, False])
def test_the_dag_process_of_s1mig_run_leaves_out_the_last_garbage_collection(under_s1mig_run):
    """Under `s1mig run` (run_tasks.ONE_PROCESS_RUN_ENV) the objects are frozen out of
    Python's garbage collection at exit (airflow_support.quick_exit), after the atexit
    handlers registered later and before the ones registered earlier (here: the check)."""
    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0, flush=True))\n"
        "from s1mig import airflow_support\n"
    )
    assert last_line_of_python(code, under_s1mig_run) == f"frozen {under_s1mig_run}"
