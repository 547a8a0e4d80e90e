{#- Public: every landed record that cannot be reported (the gate's rule L1). -#}
select
    extract_name,
    _drop_date,
    _file_name,
    _row_number,
    line_no,
    reject_reason
from {{ ref('int_rejected_records') }}
