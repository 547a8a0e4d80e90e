"""A versions model's run checks one version per key and drop date among the rows it
wrote (delivery_history's end_versions_increment, `closed=true`: every row with a key at
or after the rebuild-from date is the run's own, so the check groups the increment alone
instead of looking each key up in the history). A model whose SQL went wrong and made
two versions of one installation on one date must fail its run, naming the key, and
leave the table as it was. Likewise the check of one current version per key, which
also groups the run's rows alone (once the run has ended the versions before its own):
a model that left two of its versions of one key current fails its run.

The faults are planted in a copy of the dbt project (S1MIG_PROJECT_DIR): the status
versions model of the copy writes one of its rows twice, or leaves every version it
writes current (valid_to NULL). And a moved report state (int_installation_status_eod)
checks the rows it appended, not the table: every key among the run's changes (a model
that lost its among_state_changes condition) and one row per key (a row written twice)."""

from __future__ import annotations

import datetime as dt
import shutil

import psycopg
import pytest

from s1mig import config, dbt, pipeline
from s1mig.errors import DbtFailed
from s1mig.generate import generate

pytestmark = pytest.mark.integration

START = dt.date(2020, 7, 31)
MODEL = "int_installation_status_versions"
SELECT = ["--select", f"+{MODEL}"]
FINAL_SELECT = "\nselect\n    installation_id,\n    has_success,"


def _model(project_dir):
    return project_dir / "dbt_project" / "models" / "intermediate" / f"{MODEL}.sql"


def _plant_duplicate_version(project_dir) -> None:
    model = _model(project_dir)
    sql = model.read_text()
    assert sql.count(FINAL_SELECT) == 1, "the model's final select moved: update this test"
    head, tail = sql.split(FINAL_SELECT)
    model.write_text(
        head
        + ",\n\nfinal as (\nselect\n    installation_id,\n    has_success,"
        + tail
        + "\n)\n\nselect * from final\nunion all\n(select * from final order by installation_id, valid_from limit 1)\n"
    )


def _plant_current_versions(project_dir) -> None:
    model = _model(project_dir)
    sql = model.read_text()
    valid_to = "    lead(valid_from) over (partition by installation_id order by valid_from) as valid_to\nfrom states"
    assert sql.count(valid_to) == 1, "the model's valid_to moved: update this test"
    model.write_text(sql.replace(valid_to, "    null::date as valid_to\nfrom states"))


def _planted_copy(tmp_path, monkeypatch, plant) -> None:
    """Runs of dbt from here on build a copy of the project with `plant` applied."""
    project = tmp_path / "project"
    shutil.copytree(
        config.dbt_project_dir(),
        project / "dbt_project",
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "__pycache__"),
    )
    plant(project)
    monkeypatch.setenv("S1MIG_PROJECT_DIR", str(project))


def _versions(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"select count(*), coalesce(md5(string_agg(t::text, '|' order by t::text)), '') "
            f"from intermediate.{MODEL} as t"
        ).fetchone()


def _built_then_landed(tmp_path, days: int, seed: int, select: list[str], env=None) -> None:
    """Day 1 landed and `select` built on it; days 2 .. `days` landed, not built."""
    landing = tmp_path / "landing"
    generate(landing, START, days, 300, seed=seed, progress=False)
    dbt.run_dbt(["seed"], echo=None)
    pipeline.land_step(landing, START)
    dbt.run_dbt(["run", *select], echo=None, extra_env=env)
    for day in range(1, days):
        pipeline.land_step(landing, START + dt.timedelta(days=day))


def _planted_run_fails(tmp_path, monkeypatch, plant, args, said: tuple[str, ...], snapshot, env=None):
    """dbt `args` on a copy of the project with `plant` applied fails, saying each of
    `said`, and leaves `snapshot()` as it was; the real project then runs the same.
    Returns the snapshot from before."""
    before = snapshot()
    _planted_copy(tmp_path, monkeypatch, plant)
    with pytest.raises(DbtFailed) as err:
        dbt.run_dbt(args, echo=None, extra_env=env)
    assert all(part in str(err.value) for part in said), str(err.value)
    assert snapshot() == before
    monkeypatch.delenv("S1MIG_PROJECT_DIR")
    dbt.run_dbt(args, echo=None, extra_env=env)
    return before


def test_two_versions_of_a_key_on_one_date_fail_the_run_and_change_nothing(warehouse, tmp_path, monkeypatch):
    _built_then_landed(tmp_path, 2, 3, SELECT)
    said = (
        f"{MODEL}: 1 key(s) occur more than once (grain: installation_id, valid_from): "
        "(installation_id, valid_from) = (S1",
    )
    before = _planted_run_fails(
        tmp_path, monkeypatch, _plant_duplicate_version, ["run", *SELECT], said, lambda: _versions(warehouse)
    )
    assert _versions(warehouse)[0] > before[0]  # the real project built the same day


def test_two_current_versions_of_a_key_fail_the_run_and_change_nothing(warehouse, tmp_path, monkeypatch):
    # two drops pending at once: the run writes two versions of the installations both
    # days touch, and the planted model leaves both current
    _built_then_landed(tmp_path, 3, 5, SELECT)
    said = (
        f"{MODEL}: ",
        "key(s) occur more than once (grain: installation_id, valid_to is null): (installation_id) = (S1",
    )
    _planted_run_fails(
        tmp_path, monkeypatch, _plant_current_versions, ["run", *SELECT], said, lambda: _versions(warehouse)
    )
    with psycopg.connect(warehouse) as conn:
        # the two days did write two versions of some installations (the fault had keys to show)
        twice = conn.execute(
            f"select count(*) from (select installation_id from intermediate.{MODEL} "
            f"where valid_from > %s group by 1 having count(*) > 1) as twice",
            (START,),
        ).fetchone()[0]
    assert twice > 0


STATE = "int_installation_status_eod"
STATE_FILTER = "    and {{ among_state_changes('installation_id') }}\n"
STATE_SELECT = "\nselect\n    installation_id,\n"


def _plant_state(project_dir, fault: str) -> None:
    model = project_dir / "dbt_project" / "models" / "intermediate" / f"{STATE}.sql"
    sql = model.read_text()
    assert sql.count(STATE_FILTER) == 1, "the state's key condition moved: update this test"
    if fault == "every key":  # the model lost its among_state_changes condition
        sql = sql.replace(STATE_FILTER, "")
    else:  # one of its rows twice
        assert sql.count(STATE_SELECT) == 1, "the state's select moved: update this test"
        head, body = sql.split(STATE_SELECT)
        sql = (
            f"{head}\nwith state_rows as ({STATE_SELECT}{body})\n"
            "select * from state_rows\nunion all\n(select * from state_rows order by 1 limit 1)\n"
        )
    model.write_text(sql)


@pytest.mark.parametrize(
    "fault, message",
    [
        ("every key", f"{STATE}: the model wrote rows of installation_id not among the run's changes: S1"),
        ("a row twice", f"{STATE}: 1 key(s) occur more than once (grain: installation_id): (installation_id) = (S1"),
    ],
)
def test_a_moved_state_checks_the_rows_it_wrote(warehouse, tmp_path, monkeypatch, fault, message):
    """A moved report state checks the rows it appended (macros/materializations/
    report_state.sql): each key among the run's changes, the grain among them."""
    _built_then_landed(tmp_path, 2, 3, ["--select", f"+{STATE}"], {dbt.REPORT_DATE_ENV: START.isoformat()})
    day2 = {dbt.REPORT_DATE_ENV: (START + dt.timedelta(days=1)).isoformat()}
    dbt.run_dbt(["run", "--select", f"+{STATE}", "--exclude", STATE], echo=None, extra_env=day2)

    def state() -> tuple:
        with psycopg.connect(warehouse) as conn:
            return conn.execute(
                f"select count(*), md5(string_agg(t::text, '|' order by t::text)) from intermediate.{STATE} as t"
            ).fetchone()

    before = _planted_run_fails(
        tmp_path,
        monkeypatch,
        lambda project: _plant_state(project, fault),
        ["run", "--select", STATE],
        (message,),
        state,
        day2,
    )
    assert state() != before
