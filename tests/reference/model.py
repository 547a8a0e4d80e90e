"""Every attempt as at end of report date D with its parties and completion, and the W2 late records."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from .clock import end_of, in_day, local_day
from .completion import (
    Completion,
    FailureRecord,
    Responsibility,
    complete,
    failure_records,
    responsibilities,
    version_at,
)
from .loading import Warehouse


@dataclass(frozen=True)
class AttemptView:
    attempt: Any  # the migration_attempts record
    installation: Any | None  # installation version at scheduled_at
    parties: list[Responsibility]  # fixed at scheduled_at
    completion: Completion | None
    cofs: list[Any]
    failures: list[FailureRecord]  # earliest first

    @property
    def cohort(self) -> str | None:
        return self.installation.cohort if self.installation else None

    @property
    def group_id(self) -> str | None:
        return self.installation.group_id if self.installation else None

    @property
    def status(self) -> str | None:
        return self.completion.status if self.completion else None


class Model:
    """Everything derived from the warehouse as at end of report date D."""

    def __init__(self, wh: Warehouse, report_date: date):
        self.report_date = report_date
        self.end = end_of(report_date)
        self.wh = wh.as_at(self.end)

        self.installation_versions: dict[str, list[Any]] = defaultdict(list)
        for v in self.wh.installations:
            self.installation_versions[v.installation_id].append(v)
        events: dict[str, list[Any]] = defaultdict(list)
        for e in self.wh.migration_events:
            events[e.attempt_id].append(e)
        cofs: dict[str, list[Any]] = defaultdict(list)
        for c in self.wh.cof_records:
            cofs[c.attempt_id].append(c)
        self.exclusions: dict[str, list[Any]] = defaultdict(list)
        for x in self.wh.exclusions:
            self.exclusions[x.installation_id].append(x)

        self.attempts: list[AttemptView] = []
        self.attempts_by_installation: dict[str, list[AttemptView]] = defaultdict(list)
        for a in self.wh.migration_attempts:
            inst = version_at(self.installation_versions.get(a.installation_id, []), a.scheduled_at)
            parties = responsibilities(inst)
            mine_events, mine_cofs = events[a.attempt_id], cofs[a.attempt_id]
            view = AttemptView(
                a,
                inst,
                parties,
                complete(parties, mine_events, mine_cofs),
                mine_cofs,
                failure_records(parties, mine_events, mine_cofs),
            )
            self.attempts.append(view)
            self.attempts_by_installation[a.installation_id].append(view)

    def installation_at_end(self, installation_id: str) -> Any | None:
        return version_at(self.installation_versions[installation_id], self.end, strictly_before=True)

    def latest_exclusion(self, installation_id: str) -> Any | None:
        mine = self.exclusions[installation_id]
        return max(mine, key=lambda x: (x.excluded_at, x.exclusion_category or "")) if mine else None

    def completions_on(self, status: str, day_only: bool) -> Iterable[tuple[AttemptView, Responsibility]]:
        """(attempt, party) pairs completed with `status`: on D, or on or before D."""
        for av in self.attempts:
            if av.status == status and (not day_only or in_day(av.completion.completed_at, self.report_date)):
                for r in av.parties:
                    yield av, r


class LateRecord(NamedTuple):
    """One W2 instance: a failure record that arrived for an attempt already complete with
    Success on an earlier date."""

    drop_date: date  # the drop that carries the record
    attempt_id: str
    party_id: str  # the responsible party the instance is for
    kind: str  # 'event' (migration_events FAIL) or 'cof' (cof_records FAILURE)
    record_id: str  # event_id or cof_file_name
    at: datetime  # the record's event_ts / generated_at


def late_records(wh: Warehouse, report_date: date) -> list[LateRecord]:
    """Every late record as at end of D (spec sections 4 and 6, W2), sorted.

    For an attempt complete with Success at s (as at end of D), every failure record whose
    local day is after local_day(s): a FAIL event, or a FAILURE COF record of a responsible
    party (a non-responsible party's COF counts for nothing, late or not). One instance per
    (attempt, party, record): a FAIL event gives one per responsible party of the attempt
    (fixed at scheduled_at; a DUAL party once), a FAILURE COF one for its own party. The
    drop date is the local day of the record's time, or the first loaded drop's date when
    that is earlier (the first drop carries everything before it). Instances of every date
    up to D are listed, not only those of drop D: the register keeps them until acknowledged.
    Nothing else is late: failures after a Failure, SUCCESS COFs after a Failure, a second
    SUCCESS COF."""
    m = Model(wh, report_date)
    first_drop = min(wh.drops) if wh.drops else None
    out = []
    for av in m.attempts:
        if av.status != "Success":
            continue
        success_day = local_day(av.completion.completed_at)
        for f in av.failures:
            if local_day(f.at) <= success_day:  # never for a Success (the failure would have won)
                continue
            drop = local_day(f.at) if first_drop is None else max(local_day(f.at), first_drop)
            party_ids = [f.party_id] if f.party_id is not None else sorted({r.party_id for r in av.parties})
            for party_id in party_ids:
                out.append(LateRecord(drop, av.attempt.attempt_id, party_id, f.kind, f.record_id, f.at))
    return sorted(out)
