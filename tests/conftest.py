"""Shared fixtures: one embedded PostgreSQL for the session (under a temporary
S1MIG_HOME), and a fresh warehouse database per test that needs one. Helpers the tests
import are in tests/support/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from s1mig import db, dbt
from tests.support.databases import drop_templates, fresh_database


@pytest.fixture(scope="session", autouse=True)
def s1mig_home(tmp_path_factory) -> Iterator[Path]:
    """Every test runs with its own S1MIG_HOME; the embedded server started there is
    stopped at the end (unless S1MIG_DATABASE_URL points elsewhere)."""
    home = tmp_path_factory.mktemp("s1mig_home")  # under xdist, each worker's own basetemp
    if os.environ.get("S1MIG_TEST_HOME"):
        home = Path(os.environ["S1MIG_TEST_HOME"]) / os.environ.get("PYTEST_XDIST_WORKER", "main")
    old = os.environ.get("S1MIG_HOME")
    os.environ["S1MIG_HOME"] = str(home)
    # every test builds throw-away warehouses: whichever date lands first is the first drop
    # (tests of the choice itself set or remove it)
    old_first = os.environ.get("S1MIG_FIRST_DROP")
    os.environ["S1MIG_FIRST_DROP"] = "any"
    # the tests build many times in this process, as the direct path does: dbt runs here
    # (imported once), not in a child process per build; the DAG's tasks still start dbt as
    # a child process (every test of `s1mig run`, the stop and server-death tests among them)
    with dbt.in_this_process():
        yield home
    if old_first is None:
        os.environ.pop("S1MIG_FIRST_DROP", None)
    else:
        os.environ["S1MIG_FIRST_DROP"] = old_first
    if not os.environ.get("S1MIG_DATABASE_URL"):
        db.stop_embedded()
    if old is None:
        os.environ.pop("S1MIG_HOME", None)
    else:
        os.environ["S1MIG_HOME"] = old


@pytest.fixture(scope="session")
def server_url(s1mig_home) -> Iterator[str]:
    """Admin URL of the server the tests create their databases in (and the session's
    template databases, dropped at the end)."""
    base = os.environ.get("S1MIG_TEST_SERVER_URL") or db.warehouse_url()
    yield base
    drop_templates(base)


@pytest.fixture
def warehouse(server_url, monkeypatch) -> Iterator[str]:
    """A brand-new, empty warehouse database; S1MIG_DATABASE_URL points at it."""
    with fresh_database(server_url) as url:
        monkeypatch.setenv("S1MIG_DATABASE_URL", url)
        yield url


# `make test` runs the suite on pytest-xdist workers, a module at a time (--dist loadscope
# --no-loadscope-reorder: modules are handed out in this order; xdist's default reorder
# would put the modules with the most tests first, and the month test, one test, near the
# end). The longest modules go first so that no worker starts one of them when the others
# are nearly done. xdist gives each worker a first module, then at once a second to each
# worker whose first has at most two tests left: the month test and the notify tests
# (one and two tests) get the module after the first three queued behind them, so those
# two are short ones. Durations on 2 cores, CI (the `--durations` list of a run).
LONGEST_FIRST = (
    "test_marts_month",
    "test_notify",
    "test_pipeline_e2e",
    "test_cli_help",  # queued behind the month test (seconds)
    "test_compose",  # queued behind the notify tests (seconds)
    "test_serve",
    "test_lease",
    "test_run_faults",
    "test_restatement",
    "test_celery",
    "test_value_faults",
    "test_report_state",
    "test_versions_grain",
    "test_release",
    "test_gate",
    "test_properties",
    "test_incremental",
    "test_completion_v11",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(
        key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(rank)) if item.module else len(rank)
    )
