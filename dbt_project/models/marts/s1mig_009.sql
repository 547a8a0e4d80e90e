{#- S1MIG-009 COF Dispatch: one row per COF file generated on the report date
    (Europe/London day of generated_at), with its record counts. -#}
with cof_records as (
    select * from {{ ref('stg_dcc__cof_records') }}
    where {{ in_report_day('generated_at') }}
),

cof_files as (
    select
        party_id,
        sec_party_signifier,
        cof_file_name,
        cof_counter,
        generated_at,
        count(*) as records,
        count(*) filter (where response = 'SUCCESS') as success_records,
        count(*) filter (where response = 'FAILURE') as failure_records
    from cof_records
    group by party_id, sec_party_signifier, cof_file_name, cof_counter, generated_at
)

select
    {{ report_date() }} as report_date,
    party_id,
    sec_party_signifier,
    cof_file_name,
    cof_counter,
    generated_at,
    records,
    success_records,
    failure_records
from cof_files
