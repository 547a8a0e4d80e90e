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
    sql: str  # uses {batch} (the S1MIG-006 mart) and {report_date} (a date literal)

    def query(self, report_date: dt.date) -> str:
        # {batch} is left for GX to fill in; the date is a validated ISO date literal.
        return self.sql.replace("{report_date}", f"date '{report_date.isoformat()}'")


RULES: tuple[Rule, ...] = (
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
