{#- Public: the migration events as staged (the gate's rules R3 and W2). -#}
select
    event_id,
    attempt_id,
    stage,
    step_no,
    outcome,
    reason_code,
    event_ts,
    _drop_date
from {{ ref('stg_dcc__migration_events') }}
