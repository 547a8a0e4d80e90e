"""The reconciliation rules of spec section 6, one SQL query each that returns the
unexpected rows for one report date. Each query's first columns identify the row (the
keys shown in a blocking message).

The rules read dbt's public models only (the marts and the models of schema
public_models), each written as the placeholder {model} that s1mig.relations names, and
the tables Python writes itself (raw.drop_ledger, audit.*): never dbt's private staging or
intermediate models (tests/test_public_relations.py). They stay independent of the models
that build the marts: R3 recomputes the day's completions from the staged events and COF
records that public_models exposes as they were staged."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from s1mig.contract import LOCAL_TZ, REPORTS
from s1mig.relations import with_relations


@dataclass(frozen=True)
class Rule:
    rule_id: str  # "R1" ... "R8", "W1"
    name: str
    severity: str  # "blocking" or "warning"
    description: str
    # SQL returning the unexpected rows; uses {batch} (the S1MIG-006 mart, which GX
    # requires every query to name), {report_date} (a date literal), {local_tz}
    # (contract.LOCAL_TZ, the report day's time zone) and {<model>} for every public
    # model it reads (s1mig.relations). A column named `record` is shown as the sample
    # key; otherwise the row's values joined by "/".
    sql: str
    # reads the gate's own kept state (rule 8's expectation, audit.gate_migrated_*): checked
    # only once the gate has moved that state to D (src/s1mig/gate.py)
    reads_gate_state: bool = False

    def query(self, report_date: dt.date) -> str:
        # {batch} is left for GX to fill in; the date is a validated ISO date literal.
        return _expanded(self.sql).replace("{report_date}", f"date '{report_date.isoformat()}'")


def _expanded(sql: str) -> str:
    """The public models' relations and the time zone written in."""
    return with_relations(sql).replace("{local_tz}", LOCAL_TZ)


# Rule 8's expectation per party as at end of D, derived by the gate on its own from the
# history tables (not from the models 010 is built from): the installations each party is
# responsible for at end of D with eligible_from <= D (the installation version in force
# at the end of D, found through valid_to; 010 takes the latest effective_from), those it
# received in a 001 row (a Success listing it, on or before D) and those it inherited
# (migrated by a Success that did not list it). The gate keeps these counts moved by the
# day's changes (migrated_state.py: audit.gate_migrated_by_party, as at the end of the date
# in audit.gate_migrated_state, moved before the checkpoint). Also read for the evidence
# (INHERITED_SQL).
MIGRATED_BY_PARTY_CTES = """
expected as (
    select party_id,
        sum(installations) as eligible,
        coalesce(sum(installations) filter (where kind = 'received'), 0) as received,
        coalesce(sum(installations) filter (where kind = 'inherited'), 0) as inherited
    from audit.gate_migrated_by_party
    where eligible_from <= {report_date}
    group by party_id
)"""

# Per party: the installations counted as migrated in S1MIG-010 that it inherited.
INHERITED_SQL = _expanded(
    "with "
    + MIGRATED_BY_PARTY_CTES
    + """
select party_id, received, inherited from expected where inherited > 0 order by party_id"""
)

MART_MODELS = tuple(report.model for report in REPORTS)

RULES: tuple[Rule, ...] = (
    Rule(
        rule_id="R0",
        name="marts_built_for_d_on_current_drops",
        severity="blocking",
        description=(
            "Every report mart holds a build for the report date made after the latest delivery of every drop up "
            "to D: the gate and the export never read a date that was not built, or built before a correction"
        ),
        sql="""
with batch_scope as (select 1 from {batch} limit 1),
models as (
    select unnest(array["""
        + ", ".join(f"'{m}'" for m in MART_MODELS)
        + """]) as model_name
),
landed as (
    -- every ledger row up to D, superseded and undo rows too: a delivery, a correction and a
    -- delivery taken back (s1mig land --undo) each move it
    select max(landed_at) as landed_through from raw.drop_ledger
    where drop_date <= {report_date}
),
builds as (
    select distinct on (model_name) model_name, built_at, landed_through
    from audit.mart_builds where report_date = {report_date}
    order by model_name, built_at desc
)
select m.model_name || ': ' || case
        when b.model_name is null then 'never built for ' || {report_date} || ' (run dbt_build for that date)'
        else 'built for ' || {report_date} || ' at ' || b.built_at || ' from drops landed by '
            || coalesce(b.landed_through::text, 'none') || ', but a drop up to that date was landed or taken back at '
            || landed.landed_through || ' (run dbt_build for that date again)'
    end as record
from models as m
left join builds as b using (model_name), landed
where b.model_name is null or b.landed_through is distinct from landed.landed_through
order by record
""",
    ),
    Rule(
        rule_id="L1",
        name="no_rejected_records",
        severity="blocking",
        description=(
            "No landed record of any drop up to the report date was rejected (bad value or "
            "unresolvable reference): reports built without them would be silently incomplete"
        ),
        sql="""
with batch_scope as (select 1 from {batch} limit 1)
select
    'drop ' || _drop_date || ' ' || _file_name || ' line ' || line_no || ': ' || reject_reason as record
from {rejected_records}
where _drop_date <= {report_date}
order by _drop_date, extract_name, line_no
""",
    ),
    Rule(
        rule_id="R1",
        name="006_success_equals_001",
        severity="blocking",
        description=(
            "Success rows of S1MIG-006 = rows of S1MIG-001 on (installation_id, attempt_no, "
            "party_id), both ways [seed 4.4.2]"
        ),
        sql="""
with s006 as (
    select installation_id, attempt_no, party_id from {batch}
    where report_date = {report_date} and completion_status = 'Success'
),
s001 as (
    select installation_id, attempt_no, party_id from {s1mig_001}
    where report_date = {report_date}
)
select * from (
    (select installation_id, attempt_no, party_id, 'in 006 Success, not in 001' as problem
     from (select * from s006 except select * from s001) as only_006)
    union all
    (select installation_id, attempt_no, party_id, 'in 001, not a 006 Success' as problem
     from (select * from s001 except select * from s006) as only_001)
) as unexpected
order by party_id, installation_id, attempt_no
""",
    ),
    Rule(
        rule_id="R2",
        name="006_status_and_reason_code",
        severity="blocking",
        description=(
            "completion_status is Success or Failure; completion_reason_code NULL on Success and "
            "exactly one known code (no list) on Failure [seed 4.5.2, 4.6.2]"
        ),
        sql="""
select party_id, installation_id, attempt_no, completion_status, completion_reason_code
from {batch}
where report_date = {report_date}
  and not (
    (completion_status = 'Success' and completion_reason_code is null)
    or (completion_status = 'Failure'
        and completion_reason_code in (select reason_code from {failure_reason_codes})
        and completion_reason_code !~ ',')
  )
order by party_id, installation_id, attempt_no
""",
    ),
    Rule(
        rule_id="R3",
        name="006_is_every_completion_on_d",
        severity="blocking",
        description=(
            "Every attempt whose completion, recomputed from the raw events and COF records (spec section 4), "
            "falls on the report date is in S1MIG-006 for each responsible party with that status, reason code "
            "and completed_at, and S1MIG-006 holds nothing else [seed 4.4.2]"
        ),
        sql="""
with day as (
    select ({report_date}::timestamp at time zone '{local_tz}') as day_start,
        (({report_date} + 1)::timestamp at time zone '{local_tz}') as day_end
),
-- an attempt completes on D only when a record timed on D comes true: every candidate
-- has an event or a COF record in drop D (found by its index)
candidates as (
    select attempt_id from {migration_events} where _drop_date = {report_date}
    union
    select attempt_id from {cof_records} where _drop_date = {report_date}
),
parties as (
    select r.attempt_id, r.party_id, r.installation_id, r.attempt_no
    from {attempt_responsibilities} as r, day
    where r.attempt_id = any(array(select attempt_id from candidates)) and r.scheduled_at < day.day_end
),
events as (
    select e.* from {migration_events} as e, day
    where e.attempt_id = any(array(select attempt_id from candidates)) and e.event_ts < day.day_end
),
-- only the responsible parties' COF records count (the responsibility looked up per record
-- through its index: joined to the CTE parties, which the planner sizes at a few rows, it
-- nested a scan of every candidate's party in a scan of every COF record)
cofs as (
    select c.* from {cof_records} as c
    inner join {attempt_responsibilities} as p
        on p.attempt_id = c.attempt_id and p.party_id = c.party_id, day
    where c.attempt_id = any(array(select attempt_id from candidates)) and c.generated_at < day.day_end
        and p.scheduled_at < day.day_end
),
failures as (
    select attempt_id, event_ts as failed_at, step_no, 0 as kind, event_id as tie, reason_code
    from events where outcome = 'FAIL'
    union all
    select attempt_id, generated_at, 60, 1, cof_file_name, reason_code
    from cofs where response = 'FAILURE'
),
first_failure as (
    select distinct on (attempt_id) attempt_id, failed_at, reason_code
    from failures order by attempt_id, failed_at, step_no, kind, tie collate "C"
),
commissioned as (
    select attempt_id, min(event_ts) as passed_at from events
    where stage = 'COMMISSIONING' and outcome = 'PASS' group by attempt_id
),
party_cof as (
    select distinct on (attempt_id, party_id) attempt_id, party_id, generated_at
    from cofs where response = 'SUCCESS'
    order by attempt_id, party_id, cof_counter, cof_file_name collate "C"
),
success as (
    select p.attempt_id, greatest(min(m.passed_at), max(pc.generated_at)) as succeeded_at
    from parties as p
    inner join commissioned as m on m.attempt_id = p.attempt_id
    left join party_cof as pc on pc.attempt_id = p.attempt_id and pc.party_id = p.party_id
    group by p.attempt_id
    having count(*) = count(pc.generated_at)
),
completion as (
    select attempt_id,
        case when f.failed_at is not null and (s.succeeded_at is null
                or (f.failed_at at time zone '{local_tz}')::date
                    <= (s.succeeded_at at time zone '{local_tz}')::date)
            then 'Failure' when s.succeeded_at is not null then 'Success' end as status,
        f.failed_at, f.reason_code, s.succeeded_at
    from candidates
    left join first_failure as f using (attempt_id)
    left join success as s using (attempt_id)
),
expected as (
    select p.party_id, p.installation_id, p.attempt_no, c.status,
        case when c.status = 'Failure' then c.reason_code end as reason_code,
        case when c.status = 'Failure' then c.failed_at else c.succeeded_at end as completed_at
    from completion as c
    inner join parties as p using (attempt_id)
    where c.status is not null
),
expected_on_d as (
    select expected.* from expected, day
    where expected.completed_at >= day.day_start and expected.completed_at < day.day_end
),
actual as (
    select party_id, installation_id, attempt_no, completion_status, completion_reason_code, completed_at
    from {batch} where report_date = {report_date}
)
select coalesce(e.party_id, a.party_id) || '/' || coalesce(e.installation_id, a.installation_id) || '/'
    || coalesce(e.attempt_no, a.attempt_no) || ': ' || case
        when a.party_id is null then 'missing from 006 (' || e.status || ' '
            || coalesce(e.reason_code, '') || ' at ' || e.completed_at || ')'
        when e.party_id is null then 'in 006 (' || a.completion_status || ') but no completion on D'
        else '006 says ' || a.completion_status || ' ' || coalesce(a.completion_reason_code, '') || ' at '
            || a.completed_at || ', the raw records ' || e.status || ' ' || coalesce(e.reason_code, '')
            || ' at ' || e.completed_at
    end as record
from expected_on_d as e
full join actual as a
    on a.party_id = e.party_id and a.installation_id = e.installation_id and a.attempt_no = e.attempt_no
where a.party_id is null or e.party_id is null
   or a.completion_status <> e.status
   or a.completion_reason_code is distinct from e.reason_code
   or a.completed_at <> e.completed_at
order by record
""",
    ),
    Rule(
        rule_id="R4",
        name="005_counts_match_001_and_006",
        severity="blocking",
        description=(
            "S1MIG-005 succeeded / failed per party = S1MIG-001 rows / S1MIG-006 Failure rows per party; "
            "cumulative_succeeded / cumulative_failed = the sums of the daily 001 / 006 Failure rows up to D: "
            "every completion counted was reported on its own date as it is now, and = D-1's cumulative (when "
            "built on the drops as delivered now) + the day's rows (they never go down)"
        ),
        sql="""
with batch_scope as (select 1 from {batch} limit 1),
p005 as (
    select party_id, sum(succeeded) as succeeded, sum(failed) as failed,
        sum(cumulative_succeeded) as cumulative_succeeded, sum(cumulative_failed) as cumulative_failed
    from {s1mig_005} where report_date = {report_date} group by party_id
),
p001 as (
    select party_id, count(*) as succeeded from {s1mig_001}
    where report_date = {report_date} group by party_id
),
p006 as (
    select party_id, count(*) as failed from {batch}
    where report_date = {report_date} and completion_status = 'Failure' group by party_id
),
first_drop as (
    select min(drop_date) as drop_date from raw.drop_ledger where superseded_at is null
),
-- 005 of D-1, when it was built on the drops up to D-1 as delivered now: cumulative of D
-- must be cumulative of D-1 plus the daily rows of D (what was reported stays reported)
previous as (
    select p.party_id, sum(p.cumulative_succeeded) as cumulative_succeeded,
        sum(p.cumulative_failed) as cumulative_failed
    from {s1mig_005} as p
    where p.report_date = {report_date} - 1
      and exists (
        select 1 from (
            select distinct on (model_name) landed_through from audit.mart_builds
            where model_name = 's1mig_005' and report_date = {report_date} - 1
            order by model_name, built_at desc
        ) as build
        where build.landed_through is not distinct from (
            select max(landed_at) from raw.drop_ledger
            where drop_date <= {report_date} - 1
        )
      )
    group by p.party_id
),
previous_built as (
    select exists (
        select 1 from audit.mart_builds where model_name = 's1mig_005' and report_date = {report_date} - 1
    ) and exists (select 1 from previous) as built
),
-- the daily rows of every date up to D: each completion as its own report date saw it
-- (dates before the first drop: as the first drop saw it)
daily as (
    select v.party_id,
        count(*) filter (where v.completion_status = 'Success') as succeeded,
        count(*) filter (where v.completion_status = 'Failure') as failed
    from {attempt_completion_versions} as v, first_drop
    where v.completed_on <= {report_date}
      and v.valid_from <= greatest(v.completed_on, first_drop.drop_date)
      and (v.valid_to is null or v.valid_to > greatest(v.completed_on, first_drop.drop_date))
    group by v.party_id
)
select 'party ' || party_id || ': ' || concat_ws(', ',
    case when coalesce(p005.succeeded, 0) <> coalesce(p001.succeeded, 0) then '005 succeeded '
        || coalesce(p005.succeeded, 0) || ' vs 001 rows ' || coalesce(p001.succeeded, 0) end,
    case when coalesce(p005.failed, 0) <> coalesce(p006.failed, 0) then '005 failed '
        || coalesce(p005.failed, 0) || ' vs 006 Failure rows ' || coalesce(p006.failed, 0) end,
    case when coalesce(p005.cumulative_succeeded, 0) <> coalesce(daily.succeeded, 0) then
        '005 cumulative_succeeded ' || coalesce(p005.cumulative_succeeded, 0) || ' vs the daily 001 rows up to D '
        || coalesce(daily.succeeded, 0) end,
    case when coalesce(p005.cumulative_failed, 0) <> coalesce(daily.failed, 0) then
        '005 cumulative_failed ' || coalesce(p005.cumulative_failed, 0)
        || ' vs the daily 006 Failure rows up to D ' || coalesce(daily.failed, 0) end,
    case when (select built from previous_built) and (
            coalesce(p005.cumulative_succeeded, 0)
                <> coalesce(previous.cumulative_succeeded, 0) + coalesce(p001.succeeded, 0)
            or coalesce(p005.cumulative_failed, 0)
                <> coalesce(previous.cumulative_failed, 0) + coalesce(p006.failed, 0)) then
        '005 cumulative ' || coalesce(p005.cumulative_succeeded, 0) || '/' || coalesce(p005.cumulative_failed, 0)
        || ' vs D-1''s ' || coalesce(previous.cumulative_succeeded, 0) || '/'
        || coalesce(previous.cumulative_failed, 0) || ' + the day''s ' || coalesce(p001.succeeded, 0) || '/'
        || coalesce(p006.failed, 0) end
) as record
from p005 full join p001 using (party_id) full join p006 using (party_id) full join daily using (party_id)
    full join previous using (party_id)
where coalesce(p005.succeeded, 0) <> coalesce(p001.succeeded, 0)
   or coalesce(p005.failed, 0) <> coalesce(p006.failed, 0)
   or coalesce(p005.cumulative_succeeded, 0) <> coalesce(daily.succeeded, 0)
   or coalesce(p005.cumulative_failed, 0) <> coalesce(daily.failed, 0)
   or ((select built from previous_built) and (
        coalesce(p005.cumulative_succeeded, 0)
            <> coalesce(previous.cumulative_succeeded, 0) + coalesce(p001.succeeded, 0)
        or coalesce(p005.cumulative_failed, 0) <> coalesce(previous.cumulative_failed, 0) + coalesce(p006.failed, 0)))
order by record
""",
    ),
    Rule(
        rule_id="R5",
        name="007_failures_match_006",
        severity="blocking",
        description="S1MIG-007 sum of failures per party = S1MIG-006 Failure rows per party",
        sql="""
with p007 as (
    select party_id, sum(failures) as failures from {s1mig_007}
    where report_date = {report_date} group by party_id
),
p006 as (
    select party_id, count(*) as failures from {batch}
    where report_date = {report_date} and completion_status = 'Failure' group by party_id
)
select 'party ' || party_id || ': 007 failures ' || coalesce(p007.failures, 0)
    || ' vs 006 Failure rows ' || coalesce(p006.failures, 0) as record
from p007 full join p006 using (party_id)
where coalesce(p007.failures, 0) <> coalesce(p006.failures, 0)
order by party_id
""",
    ),
    Rule(
        rule_id="R6",
        name="cof_success_counters_and_signifiers",
        severity="blocking",
        description=(
            "Every 001 row has that party's SUCCESS COF record; per party cof_counter runs 1, 2, 3 ... "
            "over all COF files with no gap or repeat, a higher counter is never generated before a lower one, "
            "and sec_party_signifier matches the party [seed 4.7.2]"
        ),
        sql="""
with batch_scope as (select 1 from {batch} limit 1),
end_of_d as (select (({report_date} + 1)::timestamp at time zone '{local_tz}') as instant),
cof_files as (
    select * from {cof_files}
    where generated_at < (select instant from end_of_d)
),
success_rows as (
    select * from {s1mig_001} where report_date = {report_date}
),
named_cof as (
    -- the COF records of the drops holding the files the day's 001 rows name, found
    -- through {cof_files}: not every COF record of the history
    select * from {cof_records}
    where _drop_date = any(array(
        select f._drop_date from cof_files as f
        where f.cof_file_name in (select s.cof_file_name from success_rows as s)
    ))
      and generated_at < (select instant from end_of_d)
),
missing_cof as (
    select 'S1MIG-001 ' || m.party_id || '/' || m.installation_id || '/' || m.attempt_no
        || ': no SUCCESS COF ' || coalesce(m.cof_file_name, '(none)') || ' for this party' as record
    from success_rows as m
    where not exists (
        select 1 from named_cof as c
        where c.cof_file_name = m.cof_file_name and c.party_id = m.party_id
          and c.installation_id = m.installation_id and c.response = 'SUCCESS'
      )
),
files as (
    select distinct party_id, cof_file_name, cof_counter from cof_files
),
counters as (
    select party_id, count(*) as files, count(distinct cof_counter) as counters,
        min(cof_counter) as first_counter, max(cof_counter) as last_counter
    from files group by party_id
),
out_of_order as (
    -- a higher counter is never generated before a lower one
    select 'party ' || party_id || ': COF counter ' || cof_counter || ' generated at ' || generated_at
        || ', before counter ' || previous_counter || ' (' || previous_generated_at || ')' as record
    from (
        select party_id, cof_counter, generated_at,
            lag(cof_counter) over by_counter as previous_counter,
            lag(generated_at) over by_counter as previous_generated_at
        from (select distinct party_id, cof_counter, generated_at from cof_files) as distinct_files
        window by_counter as (partition by party_id order by cof_counter, generated_at)
    ) as ordered
    where previous_generated_at > generated_at
),
bad_counters as (
    select 'party ' || party_id || ': ' || files || ' COF files, counters ' || first_counter
        || '..' || last_counter || ' (' || counters || ' distinct): a gap or a repeat' as record
    from counters
    where counters <> files or first_counter <> 1 or last_counter <> files
),
signifiers as (
    select distinct c.party_id, c.cof_file_name, c.cof_counter, c.sec_party_signifier as cof_signifier,
        p.sec_party_signifier as party_signifier
    from cof_files as c
    left join {parties} as p
        on p.party_id = c.party_id and p.valid_from <= c.generated_at
        and (p.valid_to is null or c.generated_at < p.valid_to)
),
bad_signifiers as (
    select 'COF file ' || cof_file_name || ': signifier ' || cof_signifier || ' is not that of party '
        || party_id || ' (' || coalesce(party_signifier, 'unknown party') || ')' as record
    from signifiers
    where party_signifier is distinct from cof_signifier
       or cof_file_name <> 'COF_' || cof_signifier || '_' || lpad(cof_counter::text, 8, '0')
)
select record from missing_cof
union all select record from bad_counters
union all select record from out_of_order
union all select record from bad_signifiers
order by record
""",
    ),
    Rule(
        rule_id="R7",
        name="002_and_003_reconcile",
        severity="blocking",
        description=(
            "S1MIG-002 records_received = accepted + rejected; S1MIG-003 rows per MA file = 002 records_rejected"
        ),
        sql="""
with batch_scope as (select 1 from {batch} limit 1),
r002 as (
    select * from {s1mig_002} where report_date = {report_date}
),
r003 as (
    select party_id, ma_file_name, count(*) as rejected from {s1mig_003}
    where report_date = {report_date} group by party_id, ma_file_name
)
select 'MA file ' || coalesce(r002.ma_file_name, r003.ma_file_name) || ': received '
    || coalesce(r002.records_received::text, '-') || ', accepted ' || coalesce(r002.records_accepted::text, '-')
    || ', rejected ' || coalesce(r002.records_rejected::text, '-') || ', 003 rows '
    || coalesce(r003.rejected, 0) as record
from r002 full join r003 on r002.party_id = r003.party_id and r002.ma_file_name = r003.ma_file_name
where r002.ma_file_name is null
   or r002.records_received <> r002.records_accepted + r002.records_rejected
   or r002.records_rejected <> coalesce(r003.rejected, 0)
order by record
""",
    ),
    Rule(
        rule_id="R8",
        name="010_migrated_received_plus_inherited",
        severity="blocking",
        description=(
            "S1MIG-010 per party: migrated = the eligible installations it received in a 001 row on or before D "
            "and is still responsible for at end of D, plus those it inherited (migrated by a Success that did not "
            "list it); eligible_installations = the installations it is responsible for with eligible_from <= D; "
            "the five categories sum to eligible_installations"
        ),
        sql="""
with batch_scope as (select 1 from {batch} limit 1),
"""
        + MIGRATED_BY_PARTY_CTES
        + """,
actual as (
    select party_id, sum(eligible_installations) as eligible, sum(migrated) as migrated from {s1mig_010}
    where report_date = {report_date} group by party_id
)
select 'party ' || party_id || ': 010 migrated ' || coalesce(actual.migrated, 0) || ' vs received '
    || coalesce(expected.received, 0) || ' + inherited ' || coalesce(expected.inherited, 0)
    || ', 010 eligible_installations ' || coalesce(actual.eligible, 0) || ' vs ' || coalesce(expected.eligible, 0)
    as record
from expected full join actual using (party_id)
where coalesce(expected.received, 0) + coalesce(expected.inherited, 0) <> coalesce(actual.migrated, 0)
   or coalesce(expected.eligible, 0) <> coalesce(actual.eligible, 0)
union all
select 'party ' || party_id || ' ' || cohort || '/' || group_id || ': categories sum to '
    || (migrated + excluded + awaiting_outcome + failed_outstanding + not_yet_attempted)
    || ', eligible_installations ' || eligible_installations
from {s1mig_010}
where report_date = {report_date}
  and migrated + excluded + awaiting_outcome + failed_outstanding + not_yet_attempted <> eligible_installations
union all
select 'the gate holds its expectation as at the end of '
    || coalesce((select report_date::text from audit.gate_migrated_state), 'no date') || ', not of the report date'
where not exists (select 1 from audit.gate_migrated_state where report_date = {report_date})
order by record
""",
        reads_gate_state=True,
    ),
    Rule(
        rule_id="W1",
        name="004_dmin_met",
        severity="warning",
        description="S1MIG-004 dmin_met = N: a party's allocation is below least(demand, DMIN = 100)",
        sql="""
with batch_scope as (select 1 from {batch} limit 1)
select 'party ' || party_id || ' on ' || report_date || ': demand ' || demand || ', allocation '
    || allocation as record
from {s1mig_004}
where report_date = {report_date} and dmin_met = 'N'
order by party_id
""",
    ),
    Rule(
        rule_id="W2",
        name="late_records_after_success",
        severity="warning",
        description=(
            "Late records: a failure (FAIL event, or FAILURE COF of a responsible party) delivered in drop D for an "
            "attempt complete with Success on an earlier date; it changes no report (completion is final)"
        ),
        sql="""
with batch_scope as (select 1 from {batch} limit 1),
day_failures as (
    select attempt_id, 'FAIL event ' || event_id || ' (' || reason_code || ' at '
        || to_char(event_ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ')' as what,
        null::text as party_id, (event_ts at time zone '{local_tz}')::date as record_date
    from {migration_events}
    where _drop_date = {report_date} and outcome = 'FAIL'
    union all
    select attempt_id, 'FAILURE COF ' || cof_file_name || ' (' || reason_code || ' at '
        || to_char(generated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ')',
        party_id, (generated_at at time zone '{local_tz}')::date
    from {cof_records}
    where _drop_date = {report_date} and response = 'FAILURE'
),
successes as (
    select attempt_id, party_id, completed_on from {attempt_completion_versions}
    where attempt_id = any(array(select attempt_id from day_failures))
      and completion_status = 'Success'
      and valid_from <= {report_date} and (valid_to is null or valid_to > {report_date})
)
select 'attempt ' || s.attempt_id || ' party ' || s.party_id || ': ' || f.what || ' in drop ' || {report_date}
    || ' after its Success of ' || s.completed_on as record
from day_failures as f
inner join successes as s
    on s.attempt_id = f.attempt_id and (f.party_id is null or f.party_id = s.party_id)
where f.record_date > s.completed_on
order by record
""",
    ),
)
