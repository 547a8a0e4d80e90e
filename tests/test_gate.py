"""The reconciliation gate: breaking exactly one rule (tampered staging, intermediate,
audit or mart tables, after the build) stops the export with that rule named, its count and
a sample key; the DMIN warning is recorded but does not block.
Each tamper is a mistake a model or an operator could make: a report row that drifts from
another, a completion stated differently from the raw records, a cumulative count no daily
report showed, marts never built for the date or built before a correction, a report row
for a party that is not in parties (R9, checked by the export on the written files).

Every tamper runs what `s1mig run --skip land,dbt_build` runs (the steps after the build,
under the run's lease, exporting to the run's pending area) through the direct path, in
this process (pipeline.STEPS: the DAG's tasks run these same functions); two runs go
through the real DAG, where the DAG path itself is what is checked: one blocked run (its
one-line error on stderr, nothing exported) and the final untampered run (the DMIN warning
shown, recorded and in the evidence, the export published)."""

from __future__ import annotations

import json

import psycopg
import pytest

from s1mig import land, pipeline
from s1mig.errors import GateBlocked
from tests.support.cli import last_line_of_python, run_cli
from tests.support.databases import built_warehouse
from tests.support.drops import D30, D31, append_rows, event

pytestmark = pytest.mark.integration

STAGED_EVENT_COLUMNS = "event_id, attempt_id, stage, step_no, outcome, reason_code, event_ts, _drop_date, _row_number"

# (rule id, tampering SQL, SQL that undoes it): each way of breaking exactly one rule
TAMPERS = [
    (
        "L1",  # a record the build found unreportable (the table rule L1 reads)
        "insert into intermediate.int_rejected_records "
        "(extract_name, _drop_date, _file_name, _row_number, line_no, reject_reason) values "
        "('migration_events', '2020-07-30', 'migration_events.csv', 999, 1000, 'event_ts is not a timestamp')",
        "delete from intermediate.int_rejected_records where _row_number = 999",
    ),
    (
        "R1",  # a 001 row that 006 does not have as a Success (R3 checks 006 itself, so 001 is tampered)
        "update marts.s1mig_001 set attempt_no = attempt_no + 10 "
        "where installation_id = 'S10000000001' and party_id = 'SUPA01'",
        "update marts.s1mig_001 set attempt_no = attempt_no - 10 "
        "where installation_id = 'S10000000001' and party_id = 'SUPA01'",
    ),
    (
        "R2",  # a 006 reason code that is not a known code (the code list loses it)
        "update reference.reason_codes set reason_code = 'MVF01X' where reason_code = 'MVF01'",
        "update reference.reason_codes set reason_code = 'MVF01' where reason_code = 'MVF01X'",
    ),
    (
        "R3",  # A3 (awaiting at end of 07-30) gets a failure on 07-30 that the marts do not show
        f"insert into staging.stg_dcc__migration_events ({STAGED_EVENT_COLUMNS}) values "
        "('E98', 'A3', 'DEVICE_TESTING', 31, 'FAIL', 'DTP01', '2020-07-30T15:00:00Z', "
        "'2020-07-30', 998)",
        "delete from staging.stg_dcc__migration_events where event_id = 'E98'",
    ),
    (
        "R3",  # 006 states another reason code than the raw records give (R2: still a known code)
        "update marts.s1mig_006 set completion_reason_code = 'MCF02' where completion_reason_code = 'MVF01'",
        "update marts.s1mig_006 set completion_reason_code = 'MVF01' where completion_reason_code = 'MCF02'",
    ),
    (
        "R3",  # a Success reported at another time than it came true (R1 compares keys only)
        "update marts.s1mig_006 set completed_at = completed_at + interval '1 minute' "
        "where completion_status = 'Success'",
        "update marts.s1mig_006 set completed_at = completed_at - interval '1 minute' "
        "where completion_status = 'Success'",
    ),
    (
        "R0",  # the marts of D were never built for D (e.g. --skip dbt_build for a date not built)
        "update audit.mart_builds set report_date = report_date - 100 where model_name = 's1mig_004'",
        "update audit.mart_builds set report_date = report_date + 100 where model_name = 's1mig_004'",
    ),
    (
        "R0",  # a drop up to D was delivered again after the marts of D were built
        "update raw.drop_ledger set landed_at = landed_at + interval '1 hour' where drop_date = '2020-07-30'",
        "update raw.drop_ledger set landed_at = landed_at - interval '1 hour' where drop_date = '2020-07-30'",
    ),
    (
        "R4",
        "update marts.s1mig_005 set succeeded = succeeded + 1 where party_id = 'SUPA01' and succeeded > 0",
        "update marts.s1mig_005 set succeeded = succeeded - 1 where party_id = 'SUPA01' and succeeded > 1",
    ),
    (
        "R4",  # a cumulative count that no daily report ever showed
        "update marts.s1mig_005 set cumulative_succeeded = cumulative_succeeded + 1 "
        "where party_id = 'SUPB02' and cumulative_succeeded > 0",
        "update marts.s1mig_005 set cumulative_succeeded = cumulative_succeeded - 1 "
        "where party_id = 'SUPB02' and cumulative_succeeded > 1",
    ),
    (
        "R5",
        "update marts.s1mig_007 set failures = failures + 1 where party_id = 'SUPB02'",
        "update marts.s1mig_007 set failures = failures - 1 where party_id = 'SUPB02'",
    ),
    (
        "R6",
        "update marts.s1mig_001 set cof_file_name = cof_file_name || 'X' where party_id = 'SUPB02'",
        "update marts.s1mig_001 set cof_file_name = rtrim(cof_file_name, 'X') where party_id = 'SUPB02'",
    ),
    (  # a gap in SUPB02's COF counters (what R6 reads of every COF file: int_cof_files)
        "R6",
        "update intermediate.int_cof_files set cof_counter = cof_counter + 1 where party_id = 'SUPB02'",
        "update intermediate.int_cof_files set cof_counter = cof_counter - 1 where party_id = 'SUPB02'",
    ),
    (  # a second SUPA01 COF file whose counter is higher but which was generated earlier
        "R6",
        "insert into intermediate.int_cof_files "
        "(party_id, cof_file_name, cof_counter, sec_party_signifier, generated_at, _drop_date, records) "
        "select party_id, replace(cof_file_name, '_00000001', '_00000002'), 2, sec_party_signifier, "
        "generated_at - interval '1 hour', _drop_date, 1 from intermediate.int_cof_files "
        "where party_id = 'SUPA01' and cof_counter = 1",
        "delete from intermediate.int_cof_files where party_id = 'SUPA01' and cof_counter = 2",
    ),
    (
        "R7",
        "update marts.s1mig_002 set records_received = records_received + 1 where party_id = 'SUPA01'",
        "update marts.s1mig_002 set records_received = records_received - 1 where party_id = 'SUPA01'",
    ),
    (
        "R9",  # a report row for a party that is not in parties: it would be exported to no one
        "insert into marts.s1mig_009 select report_date, 'ZZZZ99', sec_party_signifier, cof_file_name || 'Z', "
        "cof_counter, generated_at, records, success_records, failure_records from marts.s1mig_009 "
        "where report_date = '2020-07-30' limit 1",
        "delete from marts.s1mig_009 where party_id = 'ZZZZ99'",
    ),
    (
        "R8",
        "update marts.s1mig_010 set migrated = migrated + 1, not_yet_attempted = not_yet_attempted - 1 "
        "where party_id = 'SUPA01' and not_yet_attempted > 0",
        "update marts.s1mig_010 set migrated = migrated - 1, not_yet_attempted = not_yet_attempted + 1 "
        "where party_id = 'SUPA01' and migrated > 0 and cohort = 'IOC'",
    ),
    (
        "R8",  # an installation counted that the party is not responsible for (the categories still add up)
        "update marts.s1mig_010 set eligible_installations = eligible_installations + 1, "
        "not_yet_attempted = not_yet_attempted + 1 where party_id = 'SUPB02' and cohort = 'FOC'",
        "update marts.s1mig_010 set eligible_installations = eligible_installations - 1, "
        "not_yet_attempted = not_yet_attempted - 1 where party_id = 'SUPB02' and cohort = 'FOC'",
    ),
]


def _gate_results(url: str, run_id: str | None = None) -> dict[str, tuple[str, int, list[str]]]:
    """rule -> (status, failing count, sample keys) of the run `run_id` (default: the run
    whose gate results were recorded last)."""
    with psycopg.connect(url) as conn:
        if run_id is None:
            latest = "select run_id from audit.gate_results order by checked_at desc limit 1"
            run_id = conn.execute(latest).fetchone()[0]
        rows = conn.execute(
            "select rule_id, status, failing_count, sample_keys from audit.gate_results where run_id = %s", (run_id,)
        ).fetchall()
    return {r: (s, c, list(k)) for r, s, c, k in rows}


def test_each_blocking_rule_stops_the_export(server_url, tmp_path, monkeypatch):
    landing, out = tmp_path / "landing", tmp_path / "out"
    day = D30.isoformat()
    base = ["run", "--landing", str(landing), "--date", day, "--out", str(out), "--skip", "land,dbt_build"]
    # the gate in this process points GX at the warehouse (S1MIG_GX_URL): restored afterwards
    monkeypatch.setenv("S1MIG_GX_URL", "")
    # the hand-made 07-30 drop landed and built (and gated once, untampered)
    with built_warehouse(server_url, landing, "untampered") as url:
        assert all(status in ("pass", "warn") for status, _, _ in _gate_results(url, "untampered").values())

        for n, (rule_id, tamper, undo) in enumerate(TAMPERS):
            run_id = f"tamper-{n}-{rule_id}"
            with psycopg.connect(url) as conn:
                conn.execute(tamper)
            with pytest.raises(GateBlocked) as blocked:
                pipeline.run_direct(landing, D30, out, run_id=run_id, skip=("land", "dbt_build"))
            message = str(blocked.value)
            assert message.startswith(f"gate blocked export of {day}: {rule_id} "), message
            assert not (out / day).exists(), rule_id
            assert not (out / ".pending").exists(), rule_id  # nothing of the blocked run is left behind
            results = _gate_results(url, run_id)
            failing = {r for r, (status, _, _) in results.items() if status == "fail"}
            assert failing == {rule_id}, f"tampering for {rule_id} broke {failing}"
            # the error states the rule's count and sample keys as recorded in audit.gate_results
            _, count, samples = results[rule_id]
            assert count > 0 and f": {count} failing (e.g. {'; '.join(samples)})" in message, message
            with psycopg.connect(url) as conn:
                conn.execute(undo)

        # through the real DAG, one blocked run (R9: the export task's rule, so the failure
        # comes from a task after the gate): one line on stderr, nothing exported
        rule_id, tamper, undo = next(t for t in TAMPERS if t[0] == "R9")
        with psycopg.connect(url) as conn:
            conn.execute(tamper)
        proc = run_cli(*base)
        assert proc.returncode != 0
        assert f"gate blocked export of {day}: {rule_id} " in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        assert not (out / day).exists()
        results = _gate_results(url)
        assert {r for r, (status, _, _) in results.items() if status == "fail"} == {rule_id}
        with psycopg.connect(url) as conn:
            conn.execute(undo)

        # untampered again, through the real DAG: every blocking rule passes, the DMIN
        # warning (SUPB02 got 40 of a demand of 50) is recorded and shown, and the export goes ahead
        proc = run_cli(*base, check=True)
        results = _gate_results(url)
        assert results["W1"][:2] == ("warn", 1)
        assert all(status in ("pass", "warn") for status, _, _ in results.values())
        evidence = json.loads((out / day / "evidence.json").read_text())
        assert {g["rule_id"]: g["status"] for g in evidence["gate"]}["W1"] == "warn"
        assert "W1" in proc.stdout + proc.stderr


def test_rule_0_blocks_a_date_whose_drop_was_taken_back(server_url, tmp_path, monkeypatch):
    """07-31 built after 07-30 was corrected (the correction landed after 07-31's drop), then
    07-31's drop taken back (`s1mig land --undo`): its marts still hold that drop's rows, and
    the latest current delivery up to 07-31 is the very one its build saw. Rule R0 counts
    the undo too and blocks; release_status says 07-31 is not up to date."""
    landing = tmp_path / "landing"
    monkeypatch.setenv("S1MIG_GX_URL", "")
    with built_warehouse(server_url, landing, "first") as url:
        pipeline.land_step(landing, D31, url)
        append_rows(
            landing / D30.isoformat(),
            "migration_events",
            [event("E99", "A3", "COMMISSIONING", 53, "FAIL", "2020-07-30T15:00:00Z", "COM02")],
        )
        assert pipeline.land_step(landing, D30, url)["status"] != "unchanged"  # a correction, landed after 07-31
        pipeline.dbt_step(D31, url)
        pipeline.gate_step(D31, "built", url)  # every rule passes on the build
        land.undo(D31, url)
        with pytest.raises(GateBlocked) as blocked:
            pipeline.gate_step(D31, "after-undo", url)
        assert str(blocked.value).startswith(f"gate blocked export of {D31}: R0 "), str(blocked.value)
        assert "landed or taken back at" in str(blocked.value)
        with psycopg.connect(url) as conn:
            status = conn.execute(
                "select up_to_date, state from public_models.release_status where report_date = %s", (D31,)
            ).fetchone()
        assert status == (False, "blocked")


@pytest.mark.parametrize("under_s1mig_run", [True, False])
def test_great_expectations_is_imported_beside_the_build_only_under_s1mig_run(under_s1mig_run):
    """`s1mig run` runs every task in one process: the gate's import is done while dbt
    builds (gate.imported_beside_build). A deployment's worker runs each task in a process
    of its own, where nothing is imported ahead."""
    code = (
        "import sys\nfrom s1mig import gate\n"
        "assert 'great_expectations' not in sys.modules\n"
        "with gate.imported_beside_build():\n    pass\n"
        "print('great_expectations' in sys.modules)"
    )
    assert last_line_of_python(code, under_s1mig_run) == str(under_s1mig_run)
