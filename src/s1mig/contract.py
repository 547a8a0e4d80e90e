"""The raw extract contract (spec section 2): one place that names every extract,
its columns in delivery order and the time column that assigns a record to a drop."""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_TZ = "Europe/London"  # report days are local days (spec section 3)

# Spec section 1. dbt reads these from dbt_project.yml vars (dmin, max_failed_attempts, local_tz,
# cohorts, stages, pass_steps, exclusion_categories) and the code lists from its seeds; those copies
# must exist and tests/test_contract_sources.py fails when one of them differs from this module.
DMIN = 100  # the Migration Scaling Methodology's flat minimum daily allocation
MAX_FAILED_ATTEMPTS = 5  # after this many failed attempts an installation is excluded (FIVE_FAILED_ATTEMPTS)


@dataclass(frozen=True)
class Extract:
    name: str
    columns: tuple[str, ...]
    time_column: str


EXTRACTS: tuple[Extract, ...] = (
    Extract(
        "parties",
        ("party_id", "party_name", "sec_party_signifier", "affiliate_group", "effective_from"),
        "effective_from",
    ),
    Extract(
        "installations",
        (
            "installation_id",
            "cohort",
            "group_id",
            "mpan",
            "mprn",
            "elec_supplier_id",
            "gas_supplier_id",
            "eligible_from",
            "effective_from",
        ),
        "effective_from",
    ),
    Extract(
        "migration_authorisations",
        (
            "ma_file_name",
            "ma_record_no",
            "party_id",
            "received_at",
            "installation_id",
            "mpxn",
            "requested_migration_date",
            "ma_status",
            "ma_error_code",
        ),
        "received_at",
    ),
    Extract(
        "migration_attempts",
        (
            "attempt_id",
            "installation_id",
            "attempt_no",
            "ma_file_name",
            "ma_record_no",
            "party_id",
            "scheduled_at",
            "scheduled_for",
        ),
        "scheduled_at",
    ),
    Extract(
        "migration_events",
        ("event_id", "attempt_id", "stage", "step_no", "outcome", "reason_code", "event_ts"),
        "event_ts",
    ),
    Extract(
        "cof_records",
        (
            "cof_file_name",
            "cof_counter",
            "party_id",
            "sec_party_signifier",
            "generated_at",
            "attempt_id",
            "installation_id",
            "response",
            "reason_code",
        ),
        "generated_at",
    ),
    Extract(
        "capacity_allocations",
        ("migration_date", "party_id", "demand", "allocation", "allocated_at"),
        "allocated_at",
    ),
    Extract(
        "exclusions",
        ("installation_id", "exclusion_category", "excluded_at"),
        "excluded_at",
    ),
)

EXTRACTS_BY_NAME: dict[str, Extract] = {e.name: e for e in EXTRACTS}

REPORT_IDS: tuple[str, ...] = tuple(f"S1MIG-{n:03d}" for n in range(1, 11))

# Domains (spec section 2)
COHORTS = ("IOC", "MOC", "FOC")
STAGES = ("MCF_VALIDATION", "MVF_VALIDATION", "DEVICE_TESTING", "COMMISSIONING")
PASS_STEP = {"MCF_VALIDATION": 19, "MVF_VALIDATION": 29, "DEVICE_TESTING": 49, "COMMISSIONING": 59}
MA_ERROR_CODES = {
    "MA01": "Installation not known to the SMETS1 inventory",
    "MA02": "Requesting party is not a Responsible Supplier for the installation",
    "MA03": "Installation already authorised for migration",
    "MA04": "Installation is excluded from migration",
    "MA05": "MPxN does not match the installation",
    "MA06": "Requested migration date outside the party's allocation",
}
# reason code -> (stage, TMAD step, retryable, description)
REASON_CODES = {
    "MCF01": ("MCF_VALIDATION", 11, True, "Migration data missing for installation"),
    "MCF02": ("MCF_VALIDATION", 12, False, "Device certificate data invalid"),
    "MCF03": ("MCF_VALIDATION", 13, True, "Device record does not match inventory"),
    "MVF01": ("MVF_VALIDATION", 21, False, "Device security credentials rejected"),
    "MVF02": ("MVF_VALIDATION", 22, True, "Validation timed out"),
    "DTP01": ("DEVICE_TESTING", 31, True, "Communications hub not responding"),
    "DTP02": ("DEVICE_TESTING", 33, True, "Electricity meter command failed"),
    "DTP03": ("DEVICE_TESTING", 35, True, "Gas meter command failed"),
    "DTP04": ("DEVICE_TESTING", 37, False, "Firmware version not supported"),
    "COM01": ("COMMISSIONING", 51, True, "Commissioning rejected by inventory"),
    "COM02": ("COMMISSIONING", 53, True, "Commissioning timed out"),
    "COF01": ("COF", 60, True, "COF response failure"),
}
EXCLUSION_CATEGORIES = (
    "MISSING_MASTER_KEYS",
    "NO_WAN_BEFORE_MIGRATION",
    "NO_WAN_ATTEMPTING_MIGRATION",
    "FIVE_FAILED_ATTEMPTS",
)


@dataclass(frozen=True)
class Report:
    report_id: str
    name: str
    model: str  # the dbt mart (schema marts)
    key: tuple[str, ...]  # export sort order (all reports also carry report_date)


# The reports the marts currently implement, in export order.
REPORTS: tuple[Report, ...] = (
    Report(
        "S1MIG-001",
        "Successfully Migrated Installations",
        "s1mig_001",
        ("party_id", "installation_id", "attempt_no", "fuel"),
    ),
    Report("S1MIG-002", "MA Receipt Summary", "s1mig_002", ("party_id", "ma_file_name")),
    Report("S1MIG-003", "MA Rejections", "s1mig_003", ("party_id", "ma_file_name", "ma_record_no")),
    Report("S1MIG-004", "Capacity and Demand", "s1mig_004", ("party_id",)),
    Report("S1MIG-005", "Daily Migration Progress", "s1mig_005", ("party_id", "cohort")),
    Report(
        "S1MIG-006", "Migration Completion Status", "s1mig_006", ("party_id", "installation_id", "attempt_no", "fuel")
    ),
    Report(
        "S1MIG-007",
        "Failure Analysis",
        "s1mig_007",
        ("party_id", "cohort", "group_id", "failed_stage", "tmad_step_no", "reason_code"),
    ),
    Report("S1MIG-008", "Retry and Exclusion Status", "s1mig_008", ("party_id", "installation_id")),
    Report("S1MIG-009", "COF Dispatch", "s1mig_009", ("party_id", "cof_file_name")),
    Report("S1MIG-010", "Cohort Migration Progress", "s1mig_010", ("party_id", "cohort", "group_id")),
)
