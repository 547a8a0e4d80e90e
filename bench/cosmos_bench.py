"""Cosmos: the dbt project as per-node astronomer-cosmos tasks (LoadMode.DBT_MANIFEST,
bench/cosmos_dags/) against our single `dbt build` task, both through Airflow for the
same date, so the team can judge cosmos by the B3 overhead target (<= 1.25).

Both contenders start from the same copy of the base with day 2 already landed:

* ours: `s1mig run --skip land,reconciliation_gate,export,run_summary`: the product DAG
  through `airflow dags test`, where only `dbt_build` runs (the other tasks are marked
  successful);
* cosmos: `airflow dags test s1mig_cosmos_dbt` with the same Airflow home and
  environment, dbt invoked in-process (InvocationMode.DBT_RUNNER, the cosmos default),
  twice: one task per model, seed and model's tests (TestBehavior.AFTER_EACH, the
  default; line C1 cosmos-vs-dbt-build) and one `dbt build` task per model with its
  tests (TestBehavior.BUILD; line C1 cosmos-build-vs-dbt-build).

`airflow dags test` runs tasks one at a time, as `s1mig run` does; under a scheduler
with parallel workers each cosmos task would also pay a task-process start-up.
"""

from __future__ import annotations

from benchlib import S1MIG, Figure, Report, child_cmd, run_measured
from daily_bench import DAY2_DB, World

TARGET = 1.25
SKIP = "land,reconciliation_gate,export,run_summary"


def run(world: World, report: Report, invocation: str = "dbt_runner") -> None:
    d = world.day2.isoformat()
    home_o, url_o = world.contender("cosmos_ours", DAY2_DB)
    cmd = [S1MIG, "run", "--landing", str(world.landing), "--date", d, "--out", str(home_o.path / "exports")]
    ours = run_measured(
        f"COSMOS ours: dbt_build task through Airflow {d}",
        [*cmd, "--skip", SKIP],
        home_o.env(url_o),
        home_o.logs("ours.log"),
        world.run_cap,
    ).check()
    for tests, name in (("after_each", "cosmos-vs-dbt-build"), ("build", "cosmos-build-vs-dbt-build")):
        home_c, url_c = world.contender(f"cosmos_{tests}", DAY2_DB)
        cosmos = run_measured(
            f"COSMOS cosmos per-node tasks ({invocation}, TestBehavior {tests}) {d}",
            child_cmd("cosmos", "--date", d, "--invocation", invocation, "--tests", tests),
            home_c.env(url_c),
            home_c.logs(f"cosmos-{tests}.log"),
            world.run_cap * 3,
        ).check()
        tasks = int(cosmos.result.get("tasks", 0))
        extra = cosmos.seconds - ours.seconds
        report.add(
            Figure(
                "C1",
                name,
                cosmos.seconds / ours.seconds,
                TARGET,
                [
                    f"day {d}: cosmos DAG {cosmos.seconds:.1f}s ({tasks} tasks, {invocation}, TestBehavior {tests}) "
                    f"vs our dbt_build task {ours.seconds:.1f}s through Airflow; +{extra:.1f}s, "
                    f"{extra / max(tasks, 1):.2f}s per cosmos task",
                    f"peak RSS cosmos {cosmos.max_rss_mb:.0f} MB, ours {ours.max_rss_mb:.0f} MB",
                ],
            )
        )
