"""Report rows as exported: the columns and keys of spec section 5, values formatted, rows sorted."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any


def pct(numerator: int, denominator: int) -> Decimal | None:
    """numerator x 100 / denominator to 2 decimals, half away from zero; None if denominator is 0."""
    if not denominator:
        return None
    with localcontext() as ctx:
        ctx.prec = 60  # far more digits than any test value needs, so the half-way check is exact
        return (Decimal(numerator) * 100 / Decimal(denominator)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def fmt(value: Any) -> str:
    """A value as the exported CSV shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)  # str and int


COLUMNS: dict[str, tuple[str, ...]] = {  # spec section 5, in export order
    report_id: tuple(names.split())
    for report_id, names in {
        "S1MIG-001": "report_date party_id installation_id attempt_no fuel mpan mprn cohort group_id"
        " migration_date completed_at cof_file_name",
        "S1MIG-002": "report_date party_id ma_file_name received_at records_received records_accepted"
        " records_rejected acceptance_rate_pct",
        "S1MIG-003": "report_date party_id ma_file_name ma_record_no installation_id mpxn ma_error_code"
        " ma_error_description",
        "S1MIG-004": "report_date party_id demand allocation scheduled utilisation_pct dmin_met",
        "S1MIG-005": "report_date party_id cohort scheduled succeeded failed success_rate_pct"
        " cumulative_succeeded cumulative_failed",
        "S1MIG-006": "report_date party_id installation_id attempt_no fuel mpan mprn cohort group_id"
        " completion_status completion_reason_code completed_at",
        "S1MIG-007": "report_date party_id cohort group_id failed_stage tmad_step_no reason_code"
        " reason_description failures",
        "S1MIG-008": "report_date party_id installation_id fuel failed_attempts last_attempt_no"
        " last_failure_reason_code last_failed_at retry_eligible exclusion_category excluded_at",
        "S1MIG-009": "report_date party_id sec_party_signifier cof_file_name cof_counter generated_at"
        " records success_records failure_records",
        "S1MIG-010": "report_date cohort group_id party_id eligible_installations migrated excluded"
        " awaiting_outcome failed_outstanding not_yet_attempted pct_migrated",
    }.items()
}

KEYS: dict[str, tuple[str, ...]] = {
    "S1MIG-001": ("party_id", "installation_id", "attempt_no"),
    "S1MIG-002": ("party_id", "ma_file_name"),
    "S1MIG-003": ("party_id", "ma_file_name", "ma_record_no"),
    "S1MIG-004": ("party_id",),
    "S1MIG-005": ("party_id", "cohort"),
    "S1MIG-006": ("party_id", "installation_id", "attempt_no"),
    "S1MIG-007": ("party_id", "cohort", "group_id", "failed_stage", "tmad_step_no", "reason_code"),
    "S1MIG-008": ("party_id", "installation_id"),
    "S1MIG-009": ("party_id", "cof_file_name"),
    "S1MIG-010": ("party_id", "cohort", "group_id"),
}


def finish(report_id: str, rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Check the columns, sort by the typed key values (NULLs last), then format."""
    columns = COLUMNS[report_id]
    for row in rows:
        assert tuple(row) == columns, (report_id, tuple(row))
    rows.sort(key=lambda row: tuple((row[k] is None, row[k] if row[k] is not None else 0) for k in KEYS[report_id]))
    return [{c: fmt(row[c]) for c in columns} for row in rows]
