{#- Public: the completions as versions (the gate's rules R4, R8 and W2). -#}
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
    completion_status,
    completed_at,
    completed_on,
    completion_reason_code,
    failed_stage,
    tmad_step_no,
    success_cof_file_name,
    valid_from,
    valid_to
from {{ ref('int_attempt_completion_versions') }}
