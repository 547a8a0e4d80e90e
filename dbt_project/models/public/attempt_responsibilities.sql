{#- Public: every landed attempt x responsible party (the gate's rule R3). -#}
select
    attempt_id,
    installation_id,
    attempt_no,
    party_id,
    fuel,
    mpan,
    mprn,
    cohort,
    group_id,
    requesting_party_id,
    scheduled_at,
    scheduled_for,
    _drop_date
from {{ ref('int_attempt_responsibilities') }}
