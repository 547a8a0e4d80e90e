"""The dbt unit tests (the `unit_tests:` of the models' YAML), which the daily build leaves
out (s1mig.dbt.DAILY_BUILD): they run here, on a built warehouse (a unit test reads the
column types of the relations its model refs), and every one of them must pass."""

from __future__ import annotations

import json

import yaml

from s1mig import config, dbt
from tests.support.cli import REPO
from tests.support.databases import fresh_database, handmade_d30_template


def _declared_unit_tests() -> set[str]:
    names = set()
    for path in (REPO / "dbt_project" / "models").rglob("*.yml"):
        for test in (yaml.safe_load(path.read_text()) or {}).get("unit_tests") or []:
            names.add(test["name"])
    return names


def test_every_dbt_unit_test_passes(server_url, tmp_path):
    with fresh_database(server_url, template=handmade_d30_template(server_url)) as url:
        dbt.run_dbt(["test", "--select", "test_type:unit"], url, echo=None)
    results = json.loads((config.home() / "dbt" / "target" / "run_results.json").read_text())["results"]
    ran = {r["unique_id"].rsplit(".", 1)[-1]: r["status"] for r in results if r["unique_id"].startswith("unit_test.")}
    assert set(ran) == _declared_unit_tests() and len(ran) >= 10, ran
    assert set(ran.values()) == {"pass"}, ran
