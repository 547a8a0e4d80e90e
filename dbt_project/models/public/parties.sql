{#- Public: the SEC Parties as versions (the export's parties as at end of D: every party
    with a version effective before the end of D). A table, not a view: its staging model
    is rebuilt whole every run, which would drop a view over it. -#}
select
    party_id,
    party_name,
    sec_party_signifier,
    affiliate_group,
    effective_from,
    valid_from,
    valid_to
from {{ ref('stg_dcc__parties') }}
