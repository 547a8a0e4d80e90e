"""s1mig_daily: the daily SMETS1 Migration Reporting run.

wait_for_drop -> take_lease -> land -> dbt_build -> reconciliation_gate -> export -> run_summary
-> restate_later_dates -> release -> publish, for one report date D (a Europe/London calendar
day). The timetable's data interval is exactly local day D, so the run for D starts at the end
of D.

* wait_for_drop: a sensor (reschedule mode: no worker slot between pokes, every
  S1MIG_DROP_POKE seconds, default 300) on <landing>/<D>/manifest.json; a late drop runs at
  once, a drop still missing after S1MIG_DROP_TIMEOUT seconds (default 18 h) fails the run
  naming it. It comes before the lease: the lease serialises the work, not the waiting, and
  several runs may be active (max_active_runs), so a run waiting for its drop never holds up
  a triggered run of another date.
* take_lease (a setup task: the run takes the warehouse, waiting while another run holds it)
  ... restate_later_dates, then release_lease (its teardown: runs whether they succeeded or
  failed): one run at a time works on a warehouse whatever started it.
* export, run_summary and restate_later_dates (after a correction of D, every later date
  already exported is built, gated and exported again) write to the run's pending area
  <out>/.pending/<run>/, not to the parties.
* release asks for approval (four-eyes release, S1MIG_FOUR_EYES=true: Airflow's
  ApprovalOperator, "Approve" / "Reject" with a `why`), outside the lease; with four-eyes off
  it answers itself ("auto-released"). publish then publishes the pending dates, each atomically, to
  <out>/<D>, the release (who, when, outcome) in their evidence; a rejection publishes nothing.
Logic lives in the `s1mig` package; this file only wires tasks together.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseSensorOperator, CronDataIntervalTimetable, Param, dag, task
from airflow.sdk.exceptions import AirflowSensorTimeout

from s1mig import run_tasks

DEFAULT_ARGS = {
    "owner": "s1mig",
    # transient failures (a database restart) retry; `s1mig run` sets 0
    "retries": int(os.environ.get("S1MIG_TASK_RETRIES", "3")),
    "retry_delay": timedelta(minutes=20),
    "retry_exponential_backoff": False,
}
CATCHUP = os.environ.get("S1MIG_CATCHUP", "false").lower() == "true"


def _seconds(name: str, default: float) -> float:
    try:
        return max(float(os.environ.get(name) or default), 0.0)
    except ValueError:
        return default


def _notifications() -> tuple[list | None, object]:
    """Failure notifiers and the Deadline Alert (s1mig.notify), when configured (the SMTP
    settings in the environment); none when the module is not there."""
    try:
        from s1mig import notify
    except ImportError:  # not installed: the DAG runs without notifications
        return None, None
    return (notify.failure_notifiers() or None), notify.deadline_alerts()


class DropSensor(BaseSensorOperator):
    """Waits for <landing>/<D>/manifest.json; a timeout fails naming the drop."""

    def poke(self, context) -> bool:
        from s1mig import airflow_support as af

        return af.drop_arrived(context)

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowSensorTimeout:
            from s1mig import airflow_support as af

            af.fail_fast(af.drop_missing)(context, self.timeout)


class ReleaseApproval(ApprovalOperator):
    """Four-eyes release of the run's pending exports; answers itself when it is off."""

    def execute(self, context):
        from s1mig import airflow_support as af

        decided, self.subject, self.body = af.fail_fast(af.release_request)(context)
        if decided is not None:
            return decided
        # four eyes: with approvers named (s1mig serve --approver), only they may answer
        approvers = [n for n in os.environ.get("S1MIG_APPROVERS", "").split(",") if n.strip()]
        if approvers:
            self.assigned_users = [{"id": n.strip(), "name": n.strip()} for n in approvers]
        return super().execute(context)

    def execute_complete(self, context, event):
        from s1mig import airflow_support as af

        decided, chosen = None, event.get("chosen_options") or []
        if "error" not in event and chosen and set(chosen) <= set(self.options):
            decided = af.fail_fast(af.release_answered)(context, event)  # a rejection is recorded here
        super().execute_complete(context, event)  # "Reject" skips publish (and ends the task at once)
        return decided


# failure mails per task (its context has the exception: the mail gives the one-line reason);
# the Deadline Alert: reports not released by 09:00 London on the day after D
ON_FAILURE, DEADLINE = _notifications()
if ON_FAILURE:
    DEFAULT_ARGS["on_failure_callback"] = ON_FAILURE


@dag(
    dag_id="s1mig_daily",
    description="Land the day's MRR extracts, build the S1MIG marts, reconcile, export per party, release",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="Europe/London"),
    # Early enough for any migration history (MRR baseline: 20 June 2019); with catchup
    # off, only the latest interval is scheduled when the DAG is first unpaused.
    start_date=pendulum.datetime(2019, 6, 20, tz="Europe/London"),
    catchup=CATCHUP,
    # runs wait for their drop (and for approval) side by side; the lease serialises the
    # work. A catch-up replays its days one at a time, in order (each drop needs the day before).
    max_active_runs=int(os.environ.get("S1MIG_MAX_ACTIVE_RUNS") or (1 if CATCHUP else 16)),
    default_args=DEFAULT_ARGS,
    tags=["s1mig", "mrr", "reporting"],
    params={
        "report_date": Param(None, type=["null", "string"], description="YYYY-MM-DD; default: the interval's day"),
        "landing": Param(None, type=["null", "string"], description="landing folder; default S1MIG_LANDING_DIR"),
        "out": Param(None, type=["null", "string"], description="export folder; default S1MIG_EXPORT_DIR"),
    },
    deadline=DEADLINE,
    doc_md=__doc__,
)
def s1mig_daily():
    wait_for_drop = DropSensor(
        task_id=run_tasks.WAIT_FOR_DROP,
        mode="reschedule",
        poke_interval=_seconds("S1MIG_DROP_POKE", 300),
        timeout=_seconds("S1MIG_DROP_TIMEOUT", 18 * 3600),
    )

    @task
    def take_lease(**context) -> str:
        from s1mig import airflow_support as af

        return af.fail_fast(af.take_lease)(context)

    def leased_task(name: str):
        """The task `name` of run_tasks.LEASED: its step of s1mig.pipeline under the run's lease."""

        @task(task_id=name)
        def step(**context):
            from s1mig import airflow_support as af

            return af.run_step(name, context)

        return step()

    @task
    def release_lease(**context) -> None:
        from s1mig import airflow_support as af

        af.fail_fast(af.release_lease)(context)

    release = ReleaseApproval(
        task_id=run_tasks.RELEASE,
        subject="Release the S1MIG reports?",  # the run's own subject and body are set when it asks
        params={"why": Param(None, type=["null", "string"], description="the reason for the decision (optional)")},
        # never retried: a retry would ask again, and a rejection whose record failed could then be
        # approved; a failed release fails the run, publishing nothing (trigger the date again)
        retries=0,
    )

    @task
    def publish(**context) -> list[str]:
        from s1mig import airflow_support as af

        return af.fail_fast(af.publish)(context)

    taken = take_lease()
    worked = taken
    for name in run_tasks.LEASED:  # land, dbt_build, reconciliation_gate, export, run_summary, restate_later_dates
        worked = worked >> leased_task(name)
    wait_for_drop >> taken
    # the teardown runs once every task is done, failed or not, if the lease was taken; the
    # release waits for its approver without the lease
    worked >> release_lease().as_teardown(setups=taken)
    worked >> release >> publish()


s1mig_daily()
