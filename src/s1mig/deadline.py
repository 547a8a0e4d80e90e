"""The release deadline of a run of the daily DAG as an Airflow deadline reference: HH:MM
Europe/London on the day after the run's report date D, on the wall clock.

Airflow's built-in references measure an interval from an instant (the logical date, the time
queued): "logical date + 33 h" is 09:00 London except on the Saturday and Sunday of a clock
change (10:00 in March, 08:00 in October), and a run without a logical date (queued through
the REST API, as `s1mig trigger` does) gets no deadline at all. This reference reads the run's
D the way its tasks do (s1mig.notify.run_report_date) and returns D+1 HH:MM London
(s1mig.notify.release_deadline); the alert's interval is zero.

Airflow finds a custom reference through the plugin that lists it (s1mig.airflow_plugin, an
`airflow.plugins` entry point of this package); the scheduler evaluates it when it creates
a run. Imported by the DAG (s1mig.notify.deadline_alerts) and by every Airflow process that
loads plugins, so it imports only Airflow's light SDK definitions at import time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from airflow.sdk.definitions.deadline import BaseDeadlineReference

from s1mig import notify


class ReportReleaseDeadline(BaseDeadlineReference):
    """D+1 `at` (HH:MM[:SS]) Europe/London for the run being created. Equal and hashed by its
    serialized form (the base class)."""

    required_kwargs: ClassVar[set[str]] = {"dag_id", "run_id"}

    def __init__(self, at: str = notify.DEFAULT_DEADLINE) -> None:
        self.at = at

    def __repr__(self) -> str:
        return f"ReportReleaseDeadline(at={self.at!r})"

    def serialize_reference(self) -> dict[str, Any]:
        return {**super().serialize_reference(), "at": self.at}

    @classmethod
    def deserialize_reference(cls, reference_data: dict[str, Any]) -> ReportReleaseDeadline:
        return cls(at=str(reference_data.get("at") or notify.DEFAULT_DEADLINE))

    def _evaluate_with(self, *, session: Any, dag_id: str, run_id: str, **_: Any) -> dt.datetime | None:
        """The deadline of run `run_id`, in the scheduler's session that is creating it; None
        (Airflow then creates no deadline) when the run has no report date."""
        from airflow.models import DagRun
        from sqlalchemy import select

        row = session.execute(
            select(DagRun.conf, DagRun.data_interval_start, DagRun.logical_date).where(
                DagRun.dag_id == dag_id, DagRun.run_id == run_id
            )
        ).one_or_none()
        at = notify.parse_time_of_day(self.at)
        day = notify.run_report_date(*row) if row is not None else None
        if day is None or at is None:
            return None
        return notify.release_deadline(day, at)
