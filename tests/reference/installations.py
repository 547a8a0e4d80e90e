"""The installation-level reports, 008 and 010: every attempt of an installation, whoever was responsible."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime

from s1mig.contract import REASON_CODES

from .completion import responsibilities
from .formatting import finish, pct
from .loading import Warehouse
from .model import AttemptView, Model

# Spec sections 1 and 5, written here from the spec (not imported: docs/decisions.md, "Domain constants");
# tests/test_contract_sources.py checks it equals contract.MAX_FAILED_ATTEMPTS.
FIVE_FAILED = 5


def _exclusion(m: Model, installation_id: str, failures: list[AttemptView]) -> tuple[str | None, datetime | None]:
    """008's exclusion_category / excluded_at for an installation with these Failure attempts."""
    explicit = m.latest_exclusion(installation_id)
    if explicit is not None:
        return explicit.exclusion_category, explicit.excluded_at
    if len(failures) >= FIVE_FAILED:
        return "FIVE_FAILED_ATTEMPTS", _last_failure(failures).completion.completed_at
    return None, None


def _last_failure(failures: list[AttemptView]) -> AttemptView:
    return max(failures, key=lambda av: (av.completion.completed_at, av.attempt.attempt_no, av.attempt.attempt_id))


def report_008(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Retry and Exclusion Status: installation x party (responsible at end of D) with a
    Failure and no Success on or before D."""
    m = Model(wh, report_date)
    rows = []
    for installation_id in m.installation_versions:
        views = m.attempts_by_installation[installation_id]
        failures = [av for av in views if av.status == "Failure"]
        if not failures or any(av.status == "Success" for av in views):
            continue
        last = _last_failure(failures)
        code = last.completion.reason_code
        category, excluded_at = _exclusion(m, installation_id, failures)
        retryable = code in REASON_CODES and REASON_CODES[code][2]
        for r in responsibilities(m.installation_at_end(installation_id)):
            rows.append(
                {
                    "report_date": report_date,
                    "party_id": r.party_id,
                    "installation_id": installation_id,
                    "fuel": r.fuel,
                    "failed_attempts": len(failures),
                    "last_attempt_no": last.attempt.attempt_no,
                    "last_failure_reason_code": code,
                    "last_failed_at": last.completion.completed_at,
                    "retry_eligible": category is None and retryable,
                    "exclusion_category": category,
                    "excluded_at": excluded_at,
                }
            )
    return finish("S1MIG-008", rows)


CATEGORIES_010 = ("migrated", "excluded", "awaiting_outcome", "failed_outstanding", "not_yet_attempted")


def category_010(m: Model, installation_id: str) -> str:
    """The one 010 category of an installation as at end of D; first match wins."""
    views = m.attempts_by_installation[installation_id]
    failures = [av for av in views if av.status == "Failure"]
    if any(av.status == "Success" for av in views):
        return "migrated"
    if _exclusion(m, installation_id, failures)[0] is not None:
        return "excluded"
    if any(av.completion is None for av in views):  # every attempt here has scheduled_at before end of D
        return "awaiting_outcome"
    if failures:
        return "failed_outstanding"
    return "not_yet_attempted"


def report_010(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Cohort Migration Progress: (cohort, group_id, party) over installations responsible
    as at end of D with eligible_from <= D."""
    m = Model(wh, report_date)
    counts: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    for installation_id in m.installation_versions:
        inst = m.installation_at_end(installation_id)
        if inst is None or inst.eligible_from is None or inst.eligible_from > report_date:
            continue
        category = category_010(m, installation_id)
        for r in responsibilities(inst):
            counts[(inst.cohort, inst.group_id, r.party_id)][category] += 1
    rows = []
    for (cohort, group_id, party_id), c in counts.items():
        eligible = sum(c[k] for k in CATEGORIES_010)
        rows.append(
            {
                "report_date": report_date,
                "cohort": cohort,
                "group_id": group_id,
                "party_id": party_id,
                "eligible_installations": eligible,
                **{k: c[k] for k in CATEGORIES_010},
                "pct_migrated": pct(c["migrated"], eligible),
            }
        )
    return finish("S1MIG-010", rows)
