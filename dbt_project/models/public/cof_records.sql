{#- Public: the COF records as staged (the gate's rules R3, R6 and W2). -#}
select
    cof_file_name,
    cof_counter,
    party_id,
    sec_party_signifier,
    generated_at,
    attempt_id,
    installation_id,
    response,
    reason_code,
    _drop_date
from {{ ref('stg_dcc__cof_records') }}
