{#- S1MIG-002 MA Receipt Summary: one row per Migration Authorisation file received on
    the report date (Europe/London day of received_at), with its record counts. -#}
with authorisations as (
    select * from {{ ref('stg_dcc__migration_authorisations') }}
    where {{ in_report_day('received_at') }}
),

ma_files as (
    select
        party_id,
        ma_file_name,
        received_at,
        count(*) as records_received,
        count(*) filter (where ma_status = 'ACCEPTED') as records_accepted,
        count(*) filter (where ma_status = 'REJECTED') as records_rejected
    from authorisations
    group by party_id, ma_file_name, received_at
)

select
    {{ report_date() }} as report_date,
    party_id,
    ma_file_name,
    received_at,
    records_received,
    records_accepted,
    records_rejected,
    {{ pct('records_accepted', 'records_received') }} as acceptance_rate_pct
from ma_files
