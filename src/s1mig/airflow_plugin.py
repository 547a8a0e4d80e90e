"""The Airflow plugin of s1mig (entry point `airflow.plugins` in pyproject.toml): it lists the
release deadline reference, so the scheduler can evaluate the daily DAG's Deadline Alert
(s1mig.deadline). Loaded by every Airflow process: it imports nothing heavy."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from s1mig.deadline import ReportReleaseDeadline


class S1migPlugin(AirflowPlugin):
    name = "s1mig"
    deadline_references = [ReportReleaseDeadline]
