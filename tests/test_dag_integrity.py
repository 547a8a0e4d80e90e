"""The DAG file parses in a real DagBag and is wired as the project expects."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import REPO

EXPECTED_TASKS = [
    "take_lease",
    "land",
    "dbt_build",
    "reconciliation_gate",
    "export",
    "run_summary",
    "restate_later_dates",
    "release_lease",
]


@pytest.fixture(scope="module")
def dagbag(s1mig_home, tmp_path_factory):
    import os

    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_daily_dag_shape(dagbag):
    dag = dagbag.dags.get("s1mig_daily")
    assert dag is not None
    assert [t.task_id for t in _in_order(dag)] == EXPECTED_TASKS
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert set(dag.tags) >= {"s1mig", "mrr"}
    assert dag.timetable.expression == "0 0 * * *"
    assert str(dag.timetable.timezone) in ("Europe/London", "Timezone('Europe/London')")
    for task in dag.tasks:
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
    work = [t for t in dag.tasks if t.task_id not in ("take_lease", "release_lease")]
    for task in work:
        assert task.task_id in take.get_flat_relative_ids(upstream=False), task.task_id
        assert task.task_id in release.get_flat_relative_ids(upstream=True), task.task_id
    # a failed teardown does not change the run's outcome (the lease then lapses)
    assert not release.on_failure_fail_dagrun


def test_dag_file_has_no_heavy_imports_at_parse_time():
    """Logic stays in the package: the DAG file imports only airflow and pendulum at top level."""
    source = (REPO / "dags" / "s1mig_daily.py").read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    modules = {line.split()[1].split(".")[0] for line in top_level}
    assert modules <= {"__future__", "os", "datetime", "pendulum", "airflow"}, modules


def _in_order(dag):
    """The tasks in dependency order; the wiring must allow exactly one order."""
    from graphlib import TopologicalSorter

    sorter = TopologicalSorter({t.task_id: set(t.upstream_task_ids) for t in dag.tasks})
    sorter.prepare()
    order = []
    while sorter.is_active():
        ready = sorter.get_ready()
        assert len(ready) == 1, f"tasks without an order between them: {ready}"
        order.append(dag.get_task(ready[0]))
        sorter.done(*ready)
    return order
