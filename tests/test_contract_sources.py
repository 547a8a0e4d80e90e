"""Every domain constant has one source, src/s1mig/contract.py. The copies that must exist elsewhere
(dbt's seeds and project vars, the test reference's own reading of the spec) must equal it: this test
compares them without running dbt and names the constant and both values when one drifts."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import yaml

from s1mig import contract
from s1mig.generate import knobs
from tests import reference as ref
from tests.reference import installations as ref_installations

DBT = Path(__file__).resolve().parents[1] / "dbt_project"


def _seed(name: str) -> list[dict[str, str]]:
    with (DBT / "seeds" / f"{name}.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _vars() -> dict[str, Any]:
    return yaml.safe_load((DBT / "dbt_project.yml").read_text(encoding="utf-8"))["vars"]


def _same(name: str, where: str, copy: Any, source: Any) -> None:
    """Fails naming the constant (and for a mapping the first differing key) and both values."""
    if isinstance(copy, dict) and isinstance(source, dict):
        for key in [*source, *(k for k in copy if k not in source)]:
            _same(f"{name}[{key!r}]", where, copy.get(key, "<missing>"), source.get(key, "<missing>"))
    assert copy == source, f"{name}: {where} has {copy!r}, src/s1mig/contract.py has {source!r}"


def test_ma_error_codes_seed_equals_contract() -> None:
    seed = {row["ma_error_code"]: row["ma_error_description"] for row in _seed("ma_error_codes")}
    _same("MA_ERROR_CODES", "dbt_project/seeds/ma_error_codes.csv", seed, contract.MA_ERROR_CODES)


def test_reason_codes_seed_equals_contract() -> None:
    seed = {
        row["reason_code"]: (row["stage"], int(row["tmad_step_no"]), row["retryable"] == "Y", row["reason_description"])
        for row in _seed("reason_codes")
    }
    assert {row["retryable"] for row in _seed("reason_codes")} <= {"Y", "N"}
    _same("REASON_CODES", "dbt_project/seeds/reason_codes.csv", seed, contract.REASON_CODES)


@pytest.mark.parametrize(
    ("var", "name"),
    [
        ("local_tz", "LOCAL_TZ"),
        ("dmin", "DMIN"),
        ("max_failed_attempts", "MAX_FAILED_ATTEMPTS"),
        ("cohorts", "COHORTS"),
        ("stages", "STAGES"),
        ("pass_steps", "PASS_STEP"),
        ("exclusion_categories", "EXCLUSION_CATEGORIES"),
    ],
)
def test_dbt_project_var_equals_contract(var: str, name: str) -> None:
    source = getattr(contract, name)
    copy = _vars()[var]
    if isinstance(source, tuple):
        copy = tuple(copy)  # YAML lists; order matters too (the macros render them in order)
    if isinstance(source, dict):
        _same(name, f"dbt_project.yml vars.{var} (order)", list(copy), list(source))
    _same(name, f"dbt_project.yml vars.{var}", copy, source)


def test_pass_steps_are_the_stages_and_after_their_failure_steps() -> None:
    """PASS_STEP covers exactly STAGES, and each stage's reason codes fail at a step before its PASS."""
    _same("PASS_STEP keys", "contract.PASS_STEP", tuple(contract.PASS_STEP), contract.STAGES)
    for code, (stage, step, _retryable, _text) in contract.REASON_CODES.items():
        if stage in contract.PASS_STEP:
            assert step < contract.PASS_STEP[stage], f"REASON_CODES[{code}]: step {step} not before the PASS step"


def test_reference_copies_equal_contract() -> None:
    """The test reference reads the spec itself (docs/decisions.md, "Domain constants"); its copies must agree."""
    _same("DMIN", "tests/reference/reports.py", ref.DMIN, contract.DMIN)
    five = ref_installations.FIVE_FAILED
    _same("MAX_FAILED_ATTEMPTS", "tests/reference/installations.py", five, contract.MAX_FAILED_ATTEMPTS)


def test_generator_uses_only_contract_codes() -> None:
    """The generator's failure reasons and cohorts are contract codes; it imports DMIN and the five-failure
    limit from contract.py instead of restating them."""
    assert not hasattr(knobs, "DMIN") and not hasattr(knobs, "MAX_FAILURES"), "knobs restates a contract constant"
    unknown = (set(knobs.FAILURE_WEIGHTS) | set(knobs.DOOMED_REASONS)) - set(contract.REASON_CODES)
    assert not unknown, f"generator reason codes not in contract.REASON_CODES: {sorted(unknown)}"
    cohorts = {cohort for cohort, *_ in knobs.GROUPS}
    assert cohorts <= set(contract.COHORTS), f"generator cohorts {sorted(cohorts)} not in contract.COHORTS"


# The model YAML's accepted_values tests of domain columns: dbt tests, written out for reading,
# checked here against the contract (failed_stage also takes COF, the stage of COF failures).
_COLUMN_DOMAINS = {
    "cohort": ("COHORTS", contract.COHORTS),
    "failed_stage": ("STAGES + COF", (*contract.STAGES, "COF")),
    "exclusion_category": ("EXCLUSION_CATEGORIES", contract.EXCLUSION_CATEGORIES),
}


def _accepted_values() -> list[tuple[str, str, list[Any]]]:
    found = []
    for path in sorted((DBT / "models").rglob("*.yml")):
        for model in yaml.safe_load(path.read_text(encoding="utf-8")).get("models") or []:
            for column in model.get("columns") or []:
                for test in column.get("data_tests") or []:
                    if isinstance(test, dict) and "accepted_values" in test:
                        values = test["accepted_values"]["arguments"]["values"]
                        found.append(
                            (f"{path.relative_to(DBT.parent)} {model['name']}.{column['name']}", column["name"], values)
                        )
    return found


def test_model_accepted_values_equal_contract() -> None:
    checked = 0
    for where, column, values in _accepted_values():
        if column in _COLUMN_DOMAINS:
            name, source = _COLUMN_DOMAINS[column]
            _same(name, where, tuple(values), source)
            checked += 1
    assert checked >= 6, f"found only {checked} accepted_values tests of cohort/failed_stage/exclusion_category"


def test_audit_tables_dbt_creates_equal_the_ones_python_creates() -> None:
    """dbt creates audit.gate_results and audit.releases on run start (public_models.release_status
    reads them before the first gate); the gate and the release create them too. One definition."""
    import re

    from s1mig import gate, release

    def statements(text: str) -> list[str]:
        return [" ".join(s.split()) for s in text.split(";") if s.strip()]

    macros = (DBT / "macros" / "report_date.sql").read_text(encoding="utf-8")
    found = re.search(r"macro create_release_log\(\) -%}(.*?){%- endmacro", macros, re.S)
    assert found, "macros/report_date.sql: create_release_log() not found"
    python = statements(gate.AUDIT_DDL) + statements(release.RELEASES_DDL)
    assert statements(found.group(1)) == list(dict.fromkeys(python)), (
        "macros/report_date.sql create_release_log() differs from s1mig.gate.AUDIT_DDL + s1mig.release.RELEASES_DDL"
    )


def test_report_marts_macro_equals_contract() -> None:
    import re

    macros = (DBT / "macros" / "report_date.sql").read_text(encoding="utf-8")
    found = re.search(r"macro report_marts\(\) -%}\s*{{ return\(\[(.*?)\]\) }}", macros, re.S)
    assert found, "macros/report_date.sql: report_marts() not found"
    _same(
        "REPORTS",
        "macros/report_date.sql report_marts()",
        re.findall(r"'([^']+)'", found.group(1)),
        [report.model for report in contract.REPORTS],
    )
