"""The reconciliation rules of spec section 6, one SQL query each that returns the
unexpected rows for one report date. Each query's first columns identify the row (the
keys shown in a blocking message)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    rule_id: str  # "R1" ... "R8", "W1"
    name: str
    severity: str  # "blocking" or "warning"
    description: str
    # SQL returning the unexpected rows; uses {batch} (the S1MIG-006 mart, which GX
    # requires every query to name) and {report_date} (a date literal). A column named
    # `record` is shown as the sample key; otherwise the row's values joined by "/".
    sql: str

    def query(self, report_date: dt.date) -> str:
        # {batch} is left for GX to fill in; the date is a validated ISO date literal.
        return self.sql.replace("{report_date}", f"date '{report_date.isoformat()}'")


RULES: tuple[Rule, ...] = (
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
from intermediate.int_rejected_records
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
    select installation_id, attempt_no, party_id from marts.s1mig_001
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
        and completion_reason_code in (select reason_code from reference.reason_codes)
        and completion_reason_code !~ ',')
  )
order by party_id, installation_id, attempt_no
""",
    ),
    Rule(
        rule_id="R3",
        name="every_failure_reported_in_006",
        severity="blocking",
        description=(
            "Every attempt whose first failure (raw FAIL event or FAILURE COF record) is on the "
            "report date is a Failure row of 006 for each responsible party [seed 4.4.2]"
        ),
        sql="""
with day as (
    select ({report_date}::timestamp at time zone 'Europe/London') as day_start,
        (({report_date} + 1)::timestamp at time zone 'Europe/London') as day_end
),
-- failures timed in D; staging holds a record only in the drop of its own local day (the
-- first drop also carries earlier ones), so they are all in drop D: found by its index
failures_in_d as (
    select e.attempt_id from staging.stg_dcc__migration_events as e, day
    where e._drop_date = {report_date} and e.outcome = 'FAIL'
      and e.event_ts >= day.day_start and e.event_ts < day.day_end
    union
    select c.attempt_id from staging.stg_dcc__cof_records as c, day
    where c._drop_date = {report_date} and c.response = 'FAILURE'
      and c.generated_at >= day.day_start and c.generated_at < day.day_end
),
-- ... and the attempt's first failure: none before D, looked up per attempt
failed_on_d as (
    select f.attempt_id from failures_in_d as f, day
    where not exists (
        select 1 from staging.stg_dcc__migration_events as e
        where e.attempt_id = f.attempt_id and e.outcome = 'FAIL' and e.event_ts < day.day_start
    )
      and not exists (
        select 1 from staging.stg_dcc__cof_records as c
        where c.attempt_id = f.attempt_id and c.response = 'FAILURE' and c.generated_at < day.day_start
    )
),
expected as (
    select r.party_id, r.installation_id, r.attempt_no
    from failed_on_d
    inner join intermediate.int_attempt_responsibilities as r on r.attempt_id = failed_on_d.attempt_id
)
select party_id, installation_id, attempt_no from expected
where not exists (
    select 1 from {batch} as s
    where s.report_date = {report_date} and s.completion_status = 'Failure'
      and s.party_id = expected.party_id and s.installation_id = expected.installation_id
      and s.attempt_no = expected.attempt_no
)
order by party_id, installation_id, attempt_no
""",
    ),
    Rule(
        rule_id="R4",
        name="005_counts_match_001_and_006",
        severity="blocking",
        description="S1MIG-005 succeeded / failed per party = S1MIG-001 rows / S1MIG-006 Failure rows per party",
        sql="""
with p005 as (
    select party_id, sum(succeeded) as succeeded, sum(failed) as failed
    from marts.s1mig_005 where report_date = {report_date} group by party_id
),
p001 as (
    select party_id, count(*) as succeeded from marts.s1mig_001
    where report_date = {report_date} group by party_id
),
p006 as (
    select party_id, count(*) as failed from {batch}
    where report_date = {report_date} and completion_status = 'Failure' group by party_id
)
select 'party ' || party_id || ': 005 succeeded ' || coalesce(p005.succeeded, 0)
    || ' vs 001 rows ' || coalesce(p001.succeeded, 0) || ', 005 failed ' || coalesce(p005.failed, 0)
    || ' vs 006 Failure rows ' || coalesce(p006.failed, 0) as record
from p005 full join p001 using (party_id) full join p006 using (party_id)
where coalesce(p005.succeeded, 0) <> coalesce(p001.succeeded, 0)
   or coalesce(p005.failed, 0) <> coalesce(p006.failed, 0)
order by party_id
""",
    ),
    Rule(
        rule_id="R5",
        name="007_failures_match_006",
        severity="blocking",
        description="S1MIG-007 sum of failures per party = S1MIG-006 Failure rows per party",
        sql="""
with p007 as (
    select party_id, sum(failures) as failures from marts.s1mig_007
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
            "over all COF files with no gap or repeat; sec_party_signifier matches the party [seed 4.7.2]"
        ),
        sql="""
with batch_scope as (select 1 from {batch} limit 1),
end_of_d as (select (({report_date} + 1)::timestamp at time zone 'Europe/London') as instant),
cof_files as (
    select * from intermediate.int_cof_files
    where generated_at < (select instant from end_of_d)
),
success_rows as (
    select * from marts.s1mig_001 where report_date = {report_date}
),
named_cof as (
    -- the COF records of the drops holding the files the day's 001 rows name, found
    -- through int_cof_files: not every COF record of the history
    select * from staging.stg_dcc__cof_records
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
    left join staging.stg_dcc__parties as p
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
    select * from marts.s1mig_002 where report_date = {report_date}
),
r003 as (
    select party_id, ma_file_name, count(*) as rejected from marts.s1mig_003
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
        name="010_migrated_and_categories",
        severity="blocking",
        description=(
            "S1MIG-010 migrated per party = the eligible installations the party is responsible for at "
            "end of D that have a Success on or before D; the five categories sum to eligible_installations"
        ),
        sql="""
with batch_scope as (select 1 from {batch} limit 1),
migrated_installations as (
    select distinct installation_id from intermediate.int_attempt_completions
    where completion_status = 'Success'
),
expected as (
    select r.party_id, count(*) as migrated
    from intermediate.int_installation_responsibilities_eod as r
    inner join migrated_installations as m on m.installation_id = r.installation_id
    where r.eligible_from <= {report_date}
    group by r.party_id
),
actual as (
    select party_id, sum(migrated) as migrated from marts.s1mig_010
    where report_date = {report_date} group by party_id
)
select 'party ' || party_id || ': 010 migrated ' || coalesce(actual.migrated, 0) || ', expected '
    || coalesce(expected.migrated, 0) as record
from expected full join actual using (party_id)
where coalesce(expected.migrated, 0) <> coalesce(actual.migrated, 0)
union all
select 'party ' || party_id || ' ' || cohort || '/' || group_id || ': categories sum to '
    || (migrated + excluded + awaiting_outcome + failed_outstanding + not_yet_attempted)
    || ', eligible_installations ' || eligible_installations
from marts.s1mig_010
where report_date = {report_date}
  and migrated + excluded + awaiting_outcome + failed_outstanding + not_yet_attempted <> eligible_installations
order by record
""",
    ),
    Rule(
        rule_id="W1",
        name="004_dmin_met",
        severity="warning",
        description="S1MIG-004 dmin_met = N: a party's allocation is below least(demand, DMIN = 100)",
        sql="""
with batch_scope as (select 1 from {batch} limit 1)
select 'party ' || party_id || ': demand ' || demand || ', allocation ' || allocation as record
from marts.s1mig_004
where report_date = {report_date} and dmin_met = 'N'
order by party_id
""",
    ),
)
