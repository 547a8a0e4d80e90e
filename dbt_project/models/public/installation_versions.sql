{#- Public: the installation versions as staged (the gate's rule R8). -#}
select
    installation_id,
    cohort,
    group_id,
    mpan,
    mprn,
    elec_supplier_id,
    gas_supplier_id,
    eligible_from,
    effective_from,
    valid_from,
    valid_to,
    _drop_date
from {{ ref('stg_dcc__installations') }}
