"""Responsibility (spec section 3) and the completion rule of one attempt (spec section 4)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from s1mig.contract import REASON_CODES

from .clock import local_day

COF_STAGE, COF_STEP = REASON_CODES["COF01"][0], REASON_CODES["COF01"][1]  # 'COF', 60


def version_at(versions: Iterable[Any], t: datetime, *, strictly_before: bool = False) -> Any | None:
    """The version with the latest effective_from <= t (< t when strictly_before); a tie
    on effective_from goes to the later-loaded record."""
    best = None
    for v in versions:
        if v.effective_from < t or (not strictly_before and v.effective_from == t):
            if best is None or v.effective_from >= best.effective_from:
                best = v
    return best


@dataclass(frozen=True)
class Responsibility:
    party_id: str
    fuel: str  # 'ELEC', 'GAS' or 'DUAL'
    mpan: str | None
    mprn: str | None


def responsibilities(inst: Any | None) -> list[Responsibility]:
    """Spec section 3: one DUAL responsibility when the electricity and gas supplier are
    the same party, else one per fuel, each showing only its own MPxN."""
    if inst is None:
        return []
    elec = inst.elec_supplier_id if inst.mpan is not None else None
    gas = inst.gas_supplier_id if inst.mprn is not None else None
    if elec is not None and elec == gas:
        return [Responsibility(elec, "DUAL", inst.mpan, inst.mprn)]
    out = []
    if elec is not None:
        out.append(Responsibility(elec, "ELEC", inst.mpan, None))
    if gas is not None:
        out.append(Responsibility(gas, "GAS", None, inst.mprn))
    return out


@dataclass(frozen=True)
class Completion:
    status: str  # 'Success' or 'Failure'
    completed_at: datetime
    reason_code: str | None = None  # Failure only
    failed_stage: str | None = None  # Failure only
    step_no: int | None = None  # Failure only


@dataclass(frozen=True)
class FailureRecord:
    """One record that counts as a failure of an attempt: a FAIL event, or a FAILURE COF
    record of a party responsible for the attempt."""

    key: tuple  # ordering: (time, step, 0 event / 1 COF, event_id / cof_file_name)
    kind: str  # 'event' or 'cof'
    record_id: str  # event_id or cof_file_name
    party_id: str | None  # the COF record's party; None for an event (it concerns every party)
    completion: Completion  # the Failure this record gives when it is the earliest

    @property
    def at(self) -> datetime:
        return self.completion.completed_at


def failure_records(parties: list[Responsibility], events: list[Any], cofs: list[Any]) -> list[FailureRecord]:
    """Every failure of an attempt, earliest first (see the module docstring for the order).
    A COF FAILURE of a party that is not responsible for the attempt counts for nothing."""
    responsible = {r.party_id for r in parties}
    out = []
    for e in events:
        if e.outcome == "FAIL":
            completion = Completion("Failure", e.event_ts, e.reason_code, e.stage, e.step_no)
            key = (e.event_ts, e.step_no, 0, e.event_id or "")
            out.append(FailureRecord(key, "event", e.event_id, None, completion))
    for c in cofs:
        if c.response == "FAILURE" and c.party_id in responsible:
            completion = Completion("Failure", c.generated_at, c.reason_code, COF_STAGE, COF_STEP)
            key = (c.generated_at, COF_STEP, 1, c.cof_file_name or "")
            out.append(FailureRecord(key, "cof", c.cof_file_name, c.party_id, completion))
    return sorted(out, key=lambda f: f.key)


def success_cof(cofs: list[Any], party_id: str) -> Any | None:
    """That party's SUCCESS COF record for the attempt: the lowest counter (then the lower
    cof_file_name) if several."""
    mine = [c for c in cofs if c.response == "SUCCESS" and c.party_id == party_id]
    return min(mine, key=lambda c: (c.cof_counter, c.cof_file_name)) if mine else None


def success_time(parties: list[Responsibility], events: list[Any], cofs: list[Any]) -> datetime | None:
    """s: the moment every Success condition held -- the latest of the earliest COMMISSIONING
    PASS and each responsible party's SUCCESS COF (lowest counter); None when one is missing
    or the attempt has no responsible party."""
    if not parties:
        return None
    passes = [e.event_ts for e in events if e.stage == "COMMISSIONING" and e.outcome == "PASS"]
    if not passes:
        return None
    times = [min(passes)]
    for party_id in sorted({r.party_id for r in parties}):
        cof = success_cof(cofs, party_id)
        if cof is None:
            return None
        times.append(cof.generated_at)
    return max(times)


def complete(parties: list[Responsibility], events: list[Any], cofs: list[Any]) -> Completion | None:
    """The one completion rule for an attempt (spec section 4, v1.1), given its responsible
    parties and its migration_events and cof_records as at some instant. None = awaiting
    outcome. With f the earliest failure and s the Success time: Failure at f when f exists
    and local_day(f) <= local_day(s) (or there is no s) -- even when f is later that day than
    s; otherwise Success at s when s exists. Judged on the records as at end of D, this is
    final: records arrive in the drop of their own local day, so a failure that arrives on a
    later date than a Success is a late record and changes nothing."""
    if not parties:
        return None
    failures = failure_records(parties, events, cofs)
    s = success_time(parties, events, cofs)
    if failures and (s is None or local_day(failures[0].at) <= local_day(s)):
        return failures[0].completion
    if s is not None:
        return Completion("Success", s)
    return None
