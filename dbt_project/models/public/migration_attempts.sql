{#- Public: the migration attempts as staged (the gate's rule R8 finds an installation's
    attempts through them). -#}
select
    attempt_id,
    installation_id,
    attempt_no,
    party_id,
    scheduled_at,
    scheduled_for,
    _drop_date
from {{ ref('stg_dcc__migration_attempts') }}
