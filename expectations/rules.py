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
)
