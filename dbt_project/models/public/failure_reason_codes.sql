{#- Public: the failure reason codes of the seed (the gate's rule R2). -#}
select
    reason_code,
    stage,
    tmad_step_no,
    retryable,
    reason_description
from {{ ref('reason_codes') }}
