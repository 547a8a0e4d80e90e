"""The gate and the export read dbt's public models only (issue 17, item 3).

dbt's manifest (from `dbt parse`: no database) says which models are public; these tests
fail when s1mig.relations, the one place Python names them, disagrees with it, when a
model that is not public is not private to the warehouse group, or when the SQL the
gate's rules run or the source of the gate and the export names a relation of a dbt
schema that is not a public model (a staging or intermediate model, a seed), instead of a
public model or one of the tables Python writes itself (raw.*, audit.*)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from s1mig_expectations.rules import INHERITED_SQL, RULES

from s1mig import config, dbt, relations

ROOT = Path(__file__).resolve().parents[1]
# what reads the warehouse for the gate and the export
SOURCES = [
    ROOT / "src" / "s1mig" / "gate.py",
    ROOT / "src" / "s1mig" / "export.py",
    *sorted((ROOT / "expectations").glob("*.py")),
]
OURS = {"raw", "audit"}  # schemas Python writes itself: any of their tables may be read


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> dict:
    target = tmp_path_factory.mktemp("dbt_parse")
    project = str(config.dbt_project_dir())
    cmd = [*dbt.dbt_program(), "parse", "--no-partial-parse", "--project-dir", project, "--profiles-dir", project]
    cmd += ["--target-path", str(target / "target"), "--log-path", str(target / "logs")]
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((target / "target" / "manifest.json").read_text())


def _models(manifest: dict) -> list[dict]:
    return [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]


class Relations:
    """The relations of the dbt schemas, from the manifest: which are public."""

    def __init__(self, manifest: dict):
        nodes = [n for n in manifest["nodes"].values() if n["resource_type"] in ("model", "seed", "snapshot")]
        self.public = {(n["schema"], n["alias"]) for n in nodes if n.get("access") == "public"}
        self.dbt_schemas = {n["schema"] for n in nodes} | {"staging", "intermediate"}
        # names of relations that are not public (also without their schema: a search_path read)
        self.private_names = {n["alias"] for n in nodes if n.get("access") != "public"} | {"delivery_log"}

    def foreign(self, text: str) -> set[str]:
        """Every relation `text` names that is neither a public model nor ours."""
        found = set()
        for schema, name in re.findall(r"\b([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\b", text):
            if schema in self.dbt_schemas and (schema, name) not in self.public:
                found.add(f"{schema}.{name}")
        # composed SQL: a dbt schema written as a literal (sql.Identifier("marts", ...),
        # table_schema = 'marts') instead of through s1mig.relations
        for schema in re.findall(r"""(?:Identifier\(\s*|table_schema\s*=\s*)["']([a-z_][a-z0-9_]*)["']""", text):
            if schema in self.dbt_schemas:
                found.add(f"{schema} (a literal schema)")
        for name in self.private_names:
            if re.search(rf"\b{re.escape(name)}\b", text):
                found.add(name)
        return found


def test_relations_names_exactly_the_public_models(manifest):
    """s1mig.relations lists every public model of the manifest, at the schema and name
    dbt builds it, each with an enforced contract (its columns cannot change silently)."""
    public = {n["name"]: n for n in _models(manifest) if n.get("access") == "public"}
    assert set(public) == set(relations.RELATIONS)
    for name, node in public.items():
        assert relations.RELATIONS[name] == (node["schema"], node["alias"]), name
        assert node["config"]["contract"]["enforced"], f"{name}: a public model needs an enforced contract"
        assert node["columns"] and all(c.get("data_type") for c in node["columns"].values()), name
        assert node["description"], name
    assert relations.relation("parties") == "public_models.parties"
    with pytest.raises(KeyError, match="not a public dbt model"):
        relations.relation("stg_dcc__parties")


def test_everything_else_is_private_to_the_warehouse_group(manifest):
    """Staging and intermediate models are private to group warehouse: a ref from a model
    outside the group (or from another project) fails when dbt parses it."""
    assert "group.s1mig.warehouse" in manifest["groups"]
    for node in _models(manifest):
        assert node["group"] == "warehouse", node["name"]
        if node["schema"] in ("staging", "intermediate"):
            assert node["access"] == "private", node["name"]
        else:
            assert node["access"] == "public", node["name"]


def test_the_gate_and_the_export_read_only_public_models(manifest):
    rels = Relations(manifest)
    # the check itself finds what it must
    assert rels.foreign("select * from staging.stg_dcc__parties") == {"staging.stg_dcc__parties", "stg_dcc__parties"}
    assert "intermediate.int_cof_files" in rels.foreign("from intermediate.int_cof_files as f")
    assert rels.foreign("in (select reason_code from reference.reason_codes)") == {
        "reference.reason_codes",
        "reason_codes",
    }
    assert rels.foreign('sql.Identifier("marts", report.model)') == {"marts (a literal schema)"}
    assert (
        rels.foreign("from marts.s1mig_001 join public_models.cof_files using (x), raw.drop_ledger, audit.y") == set()
    )

    day = dt.date(2020, 10, 25)
    queries = {r.rule_id: r.query(day).replace("{batch}", relations.relation("s1mig_006")) for r in RULES}
    queries["INHERITED_SQL"] = INHERITED_SQL.replace("{report_date}", f"date '{day.isoformat()}'")
    for name, query in queries.items():
        assert rels.foreign(query) == set(), name
        assert not re.search(r"\{(?!batch\})[a-z_0-9]+\}", query), f"{name}: a placeholder left unexpanded"
        for schema, _ in re.findall(r"\b(raw|audit)\.([a-z_]+)\b", query):
            assert schema in OURS
    for path in SOURCES:
        assert rels.foreign(path.read_text()) == set(), path.relative_to(ROOT)
