"""The dbt models Python reads, named in one place.

dbt publishes two kinds of public models (`access: public`, an enforced contract; see
dbt_project/dbt_project.yml): the ten report marts in schema marts, and in schema
public_models the inputs the gate checks the marts against and the parties the export
writes for (dbt_project/models/public/). Everything else dbt builds (staging,
intermediate) is private to dbt and may change shape with any release: the gate
(expectations/rules.py, gate.py) and the export name the public models through this
module only. Besides these, they read the tables Python writes itself (raw.drop_ledger,
audit.*). tests/test_public_relations.py checks this module against
dbt's manifest and fails when the gate or the export names any other relation.
"""

from __future__ import annotations

from psycopg import sql

from s1mig.contract import REPORTS

MARTS_SCHEMA = "marts"
PUBLIC_SCHEMA = "public_models"
SCHEMAS = (MARTS_SCHEMA, PUBLIC_SCHEMA)  # the BI role may use these schemas only (db.ensure_bi_role)

# model name -> (schema, relation name); the relation name is the model name.
MARTS: dict[str, tuple[str, str]] = {report.model: (MARTS_SCHEMA, report.model) for report in REPORTS}
PUBLIC_MODELS: dict[str, tuple[str, str]] = {
    name: (PUBLIC_SCHEMA, name)
    for name in (
        "parties",  # the export: the parties as at end of D; R6
        "installation_versions",  # R8
        "migration_attempts",  # R8 (an installation's attempts)
        "migration_events",  # R3, W2
        "cof_records",  # R3, R6, W2
        "cof_files",  # R6
        "attempt_responsibilities",  # R3
        "attempt_completion_versions",  # R4, R8, W2
        "rejected_records",  # L1
        "failure_reason_codes",  # R2
        "release_status",  # BI: which dates' marts were reconciled and released (read by no rule)
    )
}
RELATIONS: dict[str, tuple[str, str]] = {**MARTS, **PUBLIC_MODELS}


def relation(model: str) -> str:
    """schema.relation of a public model, for SQL text (names are plain identifiers)."""
    try:
        schema, name = RELATIONS[model]
    except KeyError:
        raise KeyError(f"{model} is not a public dbt model (s1mig.relations)") from None
    return f"{schema}.{name}"


def identifier(model: str) -> sql.Identifier:
    """schema.relation of a public model, for psycopg's composed SQL."""
    relation(model)  # the one error for a name that is not public
    return sql.Identifier(*RELATIONS[model])


def with_relations(text: str) -> str:
    """SQL text with every {model} placeholder of a public model replaced by its
    schema.relation (other placeholders, e.g. GX's {batch}, are left as they are)."""
    for model in RELATIONS:
        text = text.replace("{" + model + "}", relation(model))
    return text
