"""s1mig_cosmos_dbt: the dbt project rendered by astronomer-cosmos, one task per node.

Benchmark only (bench/cosmos_bench.py points AIRFLOW__CORE__DAGS_FOLDER here); the
product DAG is dags/s1mig_daily.py and is not changed. LoadMode.DBT_MANIFEST reads the
manifest.json of an earlier `dbt build` (S1MIG_BENCH_COSMOS_MANIFEST), so parsing this
file never runs dbt; every model, seed and test becomes its own task that starts dbt
for that node (TestBehavior.AFTER_EACH, the cosmos default; S1MIG_BENCH_COSMOS_TESTS=build
runs each model with its tests as one `dbt build` task instead). The report date comes from
the run's conf, as in the product DAG.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from cosmos import DbtDag, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import InvocationMode, LoadMode, TestBehavior

PROJECT_DIR = Path(os.environ.get("S1MIG_PROJECT_DIR", Path(__file__).resolve().parents[2])) / "dbt_project"
MANIFEST = os.environ.get("S1MIG_BENCH_COSMOS_MANIFEST", str(PROJECT_DIR / "target" / "manifest.json"))
INVOCATION = os.environ.get("S1MIG_BENCH_COSMOS_INVOCATION", "dbt_runner")
TESTS = os.environ.get("S1MIG_BENCH_COSMOS_TESTS", "after_each")  # or "build": one task per model and its tests
DBT_EXECUTABLE = os.environ.get("S1MIG_BENCH_DBT", "dbt")

s1mig_cosmos_dbt = DbtDag(
    dag_id="s1mig_cosmos_dbt",
    description="Benchmark: the s1mig dbt project as per-node cosmos tasks",
    schedule=None,
    start_date=pendulum.datetime(2019, 6, 20, tz="Europe/London"),
    catchup=False,
    max_active_runs=1,
    params={"report_date": None},
    project_config=ProjectConfig(
        dbt_project_path=PROJECT_DIR,
        manifest_path=MANIFEST,
        install_dbt_deps=False,
    ),
    profile_config=ProfileConfig(
        profile_name="s1mig",
        target_name="warehouse",
        profiles_yml_filepath=PROJECT_DIR / "profiles.yml",
    ),
    execution_config=ExecutionConfig(
        dbt_executable_path=DBT_EXECUTABLE,
        invocation_mode=InvocationMode(INVOCATION),
    ),
    render_config=RenderConfig(
        load_method=LoadMode.DBT_MANIFEST,
        test_behavior=TestBehavior(TESTS),
        emit_datasets=False,
    ),
    operator_args={
        "install_deps": False,
        "vars": {"report_date": "{{ params.report_date }}"},
    },
    default_args={"retries": 0},
)
