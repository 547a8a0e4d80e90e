{#- S1MIG-008 Retry and Exclusion Status: one row per installation x party responsible
    for it as at the end of the report date, for installations with at least one Failure
    and no Success on or before D (installation-level: every attempt counts, whoever was
    responsible for it). The rules live in int_installation_status_eod. -#}
with responsibilities as (
    {#- the columns the responsibilities' index holds: read by index alone -#}
    select
        installation_id,
        party_id,
        fuel
    from {{ ref('int_installation_responsibilities_eod') }}
),

states as (
    select * from {{ ref('int_installation_status_eod') }}
    where failed_attempts > 0 and not has_success
)

select
    {{ report_date() }} as report_date,
    responsibilities.party_id,
    responsibilities.installation_id,
    responsibilities.fuel,
    states.failed_attempts,
    states.last_attempt_no,
    states.last_failure_reason_code,
    states.last_failed_at,
    {{ yn('states.is_retry_eligible') }} as retry_eligible,
    states.exclusion_category,
    states.excluded_at
from states
inner join responsibilities on states.installation_id = responsibilities.installation_id
