"""s1mig_daily: the daily SMETS1 Migration Reporting run.

land -> dbt_build -> reconciliation_gate -> export -> run_summary -> restate_later_dates, each
for one report date D (a Europe/London calendar day; the last one, after a correction of D,
builds, gates and exports again every later date already exported), between take_lease
(a setup task: the run takes the warehouse, waiting while another run holds it) and
release_lease (its teardown: runs whether the run succeeded or failed), so one run at a
time uses a warehouse whatever started it. The timetable's data interval is exactly local
day D, so the run for D starts at the end of D. The drop must be in <landing>/<D>/; a
missing or invalid drop fails `land` (retried for late arrival only when the folder is
missing).
Logic lives in the `s1mig` package; this file only wires tasks together.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

DEFAULT_ARGS = {
    "owner": "s1mig",
    # transient failures (database restart, late drop) retry; `s1mig run` sets 0
    "retries": int(os.environ.get("S1MIG_TASK_RETRIES", "3")),
    "retry_delay": timedelta(minutes=20),
    "retry_exponential_backoff": False,
}


@dag(
    dag_id="s1mig_daily",
    description="Land the day's MRR extracts, build the S1MIG marts, reconcile, export per party",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="Europe/London"),
    # Early enough for any migration history (MRR baseline: 20 June 2019); with catchup
    # off, only the latest interval is scheduled when the DAG is first unpaused.
    start_date=pendulum.datetime(2019, 6, 20, tz="Europe/London"),
    catchup=os.environ.get("S1MIG_CATCHUP", "false").lower() == "true",
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["s1mig", "mrr", "reporting"],
    params={
        "report_date": Param(None, type=["null", "string"], description="YYYY-MM-DD; default: the interval's day"),
        "landing": Param(None, type=["null", "string"], description="landing folder; default S1MIG_LANDING_DIR"),
        "out": Param(None, type=["null", "string"], description="export folder; default S1MIG_EXPORT_DIR"),
    },
    doc_md=__doc__,
)
def s1mig_daily():
    @task
    def take_lease(**context) -> str:
        from s1mig import airflow_support as af

        return af.fail_fast(af.take_lease)(context)

    @task
    def land(**context) -> dict:
        from s1mig import airflow_support as af
        from s1mig import pipeline

        landing, _ = af.locations(context)
        step = af.leased(context, pipeline.land_step)
        return af.fail_fast(step)(landing, af.report_date(context), af.warehouse_url())

    @task
    def dbt_build(**context) -> None:
        from s1mig import airflow_support as af
        from s1mig import pipeline

        af.fail_fast(af.leased(context, pipeline.dbt_step))(af.report_date(context), af.warehouse_url())

    @task
    def reconciliation_gate(**context) -> list[dict]:
        from s1mig import airflow_support as af
        from s1mig import pipeline

        step = af.leased(context, pipeline.gate_step)
        return af.fail_fast(step)(af.report_date(context), context["run_id"], af.warehouse_url())

    @task
    def export(**context) -> str:
        from s1mig import airflow_support as af
        from s1mig import pipeline

        _, out = af.locations(context)
        step = af.leased(context, pipeline.export_step)
        return af.fail_fast(step)(af.report_date(context), out, af.warehouse_url(), context["run_id"])

    @task
    def run_summary(**context) -> str:
        from s1mig import airflow_support as af
        from s1mig import pipeline

        _, out = af.locations(context)
        step = af.leased(context, pipeline.summary_step)
        return af.fail_fast(step)(af.report_date(context), out, af.warehouse_url(), context["run_id"])

    @task
    def restate_later_dates(**context) -> list[str]:
        from s1mig import airflow_support as af
        from s1mig import pipeline

        _, out = af.locations(context)
        landed = context["ti"].xcom_pull(task_ids="land") or {}  # none when `land` was skipped
        step = af.leased(context, pipeline.restate_step)
        return af.fail_fast(step)(
            af.report_date(context), out, af.warehouse_url(), context["run_id"], landed.get("status")
        )

    @task
    def release_lease(**context) -> None:
        from s1mig import airflow_support as af

        af.fail_fast(af.release_lease)(context)

    taken = take_lease()
    done = taken >> land() >> dbt_build() >> reconciliation_gate() >> export() >> run_summary() >> restate_later_dates()
    # the teardown runs once every task is done, failed or not, if the lease was taken
    done >> release_lease().as_teardown(setups=taken)


s1mig_daily()
