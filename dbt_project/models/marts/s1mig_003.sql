{#- S1MIG-003 MA Rejections: one row per rejected MA record received on the report date
    (Europe/London day of received_at), with its error code's description. -#}
with authorisations as (
    select * from {{ ref('stg_dcc__migration_authorisations') }}
    where {{ in_report_day('received_at') }}
),

ma_error_codes as (
    select * from {{ ref('ma_error_codes') }}
)

select
    {{ report_date() }} as report_date,
    authorisations.party_id,
    authorisations.ma_file_name,
    authorisations.ma_record_no,
    authorisations.installation_id,
    authorisations.mpxn,
    authorisations.ma_error_code,
    ma_error_codes.ma_error_description
from authorisations
left join ma_error_codes on authorisations.ma_error_code = ma_error_codes.ma_error_code
where authorisations.ma_status = 'REJECTED'
