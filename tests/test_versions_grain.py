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
from tests.support.drops import append_rows, event

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


def _versions(url: str, model: str = MODEL) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"select count(*), coalesce(md5(string_agg(t::text, '|' order by t::text)), '') "
            f"from intermediate.{model} as t"
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


COMPLETIONS = "int_attempt_completion_versions"
COMPLETIONS_SELECT = ["--select", f"+{COMPLETIONS}"]
KEPT = """        {%- if is_incremental() %}
            {#- looked up by key: a join would read every completion ever made #}
            and not exists (
                select 1 from {{ this }} as kept
                where
                    kept.attempt_id = candidate_outcomes.attempt_id
                    and {{ among_history_keys(
                        'kept.attempt_id', 'select candidate.attempt_id from candidate_outcomes as candidate'
                    ) }}
            )
        {%- endif %}"""


def _plant_judged_again(project_dir) -> None:
    """The completion versions model judges an attempt again after it completed."""
    model = project_dir / "dbt_project" / "models" / "intermediate" / f"{COMPLETIONS}.sql"
    sql = model.read_text()
    assert sql.count(KEPT) == 1, "the model's condition on kept completions moved: update this test"
    model.write_text(sql.replace(KEPT, ""))


def test_a_completion_judged_again_fails_the_run_and_changes_nothing(warehouse, tmp_path, monkeypatch):
    """Completion is final: the completion versions' unique key (attempt_id, party_id)
    refuses a second version of a completed attempt (`versions_final`), where the closing
    of versions would have ended the first one and let the second stand. Day 2 carries a
    late event of an attempt completed on day 1, which the faulty model judges again."""
    landing = tmp_path / "landing"
    day2 = START + dt.timedelta(days=1)
    generate(landing, START, 2, 300, seed=3, progress=False)
    dbt.run_dbt(["seed"], echo=None)
    pipeline.land_step(landing, START)
    dbt.run_dbt(["run", *COMPLETIONS_SELECT], echo=None)
    with psycopg.connect(warehouse) as conn:
        (completed,) = conn.execute(f"select min(attempt_id) from intermediate.{COMPLETIONS}").fetchone()
    late = event("9999999901", completed, "DEVICE_TESTING", "49", "PASS", f"{day2}T12:00:00Z")
    append_rows(landing / day2.isoformat(), "migration_events", [late])
    pipeline.land_step(landing, day2)
    said = (COMPLETIONS, "duplicate key value violates unique constraint", f"({completed}, ")
    before = _planted_run_fails(
        tmp_path,
        monkeypatch,
        _plant_judged_again,
        ["run", *COMPLETIONS_SELECT],
        said,
        lambda: _versions(warehouse, COMPLETIONS),
    )
    assert _versions(warehouse, COMPLETIONS)[0] > before[0]  # the real project built day 2


def test_final_versions_without_their_unique_index_close_and_check_as_before(warehouse, tmp_path):
    """A warehouse from before the unique index (a plain index on the key) runs the
    versions model as any other (reopen, close, check), to the same rows."""
    _built_then_landed(tmp_path, 3, 4, COMPLETIONS_SELECT)
    day2 = START + dt.timedelta(days=1)
    dbt.run_dbt(["run", *COMPLETIONS_SELECT], echo=None)
    with_index = _versions(warehouse, COMPLETIONS)
    assert CLOSING not in _last_build_log(COMPLETIONS)  # the unique index holds the key
    with psycopg.connect(warehouse, autocommit=True) as conn:
        # back to the state as at the end of day 1, with a plain index in place of the unique one
        conn.execute(f"delete from intermediate.{COMPLETIONS} where valid_from >= %s", (day2,))
        conn.execute("delete from staging.delivery_log where model_name = %s and drop_date >= %s", (COMPLETIONS, day2))
        (unique,) = conn.execute(
            "select indexrelid::regclass::text from pg_index where indrelid = %s::regclass and indisunique",
            (f"intermediate.{COMPLETIONS}",),
        ).fetchone()
        conn.execute(f"drop index {unique}")
        conn.execute(f"create index on intermediate.{COMPLETIONS} (attempt_id, party_id)")
    dbt.run_dbt(["run", "--select", COMPLETIONS], echo=None)
    assert _versions(warehouse, COMPLETIONS) == with_index
    assert CLOSING in _last_build_log(COMPLETIONS)


CLOSING = "set valid_to = later.first_valid_from"  # close_versions' update


def _last_build_log(model: str) -> str:
    """dbt's log from the last start of `model`'s build on."""
    log = (config.home() / "dbt" / "logs" / "dbt.log").read_text()
    return log.rsplit(f"START sql delivery_history model intermediate.{model}", 1)[1]


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


def _reloptions(url: str, model: str) -> list | None:
    with psycopg.connect(url) as conn:
        relation = f"intermediate.{model}"
        return conn.execute("select reloptions from pg_class where oid = %s::regclass", (relation,)).fetchone()[0]


def test_the_status_versions_leave_room_on_their_pages(warehouse, tmp_path):
    """`fillfactor` (macros/deliveries.sql): a first build creates the table with it, and a
    table from before it was configured gets it at its next run."""
    _built_then_landed(tmp_path, 2, 3, SELECT)
    assert _reloptions(warehouse, MODEL) == ["fillfactor=85"]
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(f"alter table intermediate.{MODEL} reset (fillfactor)")
    dbt.run_dbt(["run", *SELECT], echo=None)
    assert _reloptions(warehouse, MODEL) == ["fillfactor=85"]
    assert _reloptions(warehouse, COMPLETIONS) is None  # a model without the config


REOPENING = "set valid_to = null where"  # begin_versions_increment's reopening


def test_a_new_day_does_not_reopen_versions(warehouse, tmp_path):
    """The reopening of the versions a run's rebuild ended passes over every version; a
    run of drops the model never held has none to reopen and skips it (a re-delivery or
    correction reopens: tests/test_incremental.py compares those with a whole build)."""
    _built_then_landed(tmp_path, 2, 3, SELECT)
    dbt.run_dbt(["run", *SELECT], echo=None)
    assert REOPENING not in _last_build_log(MODEL)
    assert CLOSING in _last_build_log(MODEL)
