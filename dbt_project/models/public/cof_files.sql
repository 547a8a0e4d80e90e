{#- Public: one row per COF file as its records describe it (the gate's rule R6). -#}
select
    party_id,
    cof_file_name,
    cof_counter,
    sec_party_signifier,
    generated_at,
    _drop_date,
    records
from {{ ref('int_cof_files') }}
