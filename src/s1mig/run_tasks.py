"""The daily run's tasks, declared once, in order. The DAG (dags/s1mig_daily.py) wires its
tasks from this list, `s1mig run --skip` takes the leased ones, pipeline.run_direct runs
their steps (pipeline.STEPS) in this order, and the DAG test holds the DAG to it.

Imported by the DAG file at parse time: nothing but names here."""

from __future__ import annotations

WAIT_FOR_DROP = "wait_for_drop"  # a sensor on <landing>/<D>/manifest.json, before the lease
TAKE_LEASE = "take_lease"  # the setup task: the run takes the warehouse
# the work, under the lease, one task each (pipeline.STEPS); `s1mig run --skip` takes these
LEASED = ("land", "dbt_build", "reconciliation_gate", "export", "run_summary", "restate_later_dates")
RELEASE = "release"  # four-eyes release (an approval), outside the lease
PUBLISH = "publish"  # the released files into <out>/<D>
RELEASE_LEASE = "release_lease"  # the teardown of take_lease: runs after the work, beside the release

ORDER = (WAIT_FOR_DROP, TAKE_LEASE, *LEASED, RELEASE, PUBLISH)
ALL = (*ORDER, RELEASE_LEASE)

# Set by `s1mig run` (s1mig.airflow_run) for its `airflow dags test`: every task of the run
# runs in that one process. The gate's great_expectations is then loaded while dbt builds
# (in gate.py, around the build), and the process leaves out Python's last garbage collection
# at its exit (airflow_support.quick_exit). A deployment's workers run each task in a
# process of its own and do neither.
ONE_PROCESS_RUN_ENV = "S1MIG_ONE_PROCESS_RUN"
