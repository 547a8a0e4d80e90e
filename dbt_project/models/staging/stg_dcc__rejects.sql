{{ config(
    grain=['_drop_date', 'extract_name', '_row_number'],
    indexes=[{'columns': ['_drop_date']}],
) }}

-- noqa: disable=LT02
{#- Grain: one row per raw record that fails value-level validation (spec section 2,
    and the field lengths of section 6), with the reason and its raw lineage. These rows
    are kept out of every staging model and therefore out of every mart; the gate blocks
    each report date whose drops hold any of them (until a corrected drop is delivered).
    raw_record is the record as delivered, an over-long field cut to its allowed length
    and '...' (the raw table keeps every byte). -#}
{%- set extracts = ['parties', 'installations', 'migration_authorisations', 'migration_attempts',
                    'migration_events', 'cof_records', 'capacity_allocations', 'exclusions'] -%}

{% for extract in extracts %}
{%- if not loop.first %}
union all
{% endif %}
select
    '{{ extract }}' as extract_name,
    _drop_date,
    _file_name,
    {{ delivered_file("'" ~ extract ~ "'", 'checked._drop_date', 'sha256') }} as _file_sha256,
    _row_number,
    _row_number + 1 as line_no,
    reject_reason,
    jsonb_build_object(
        {%- for column in extract_columns(extract) %}
        '{{ column }}', {{ clipped(column) }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    ) as raw_record
from (
    select
        source.*,
        {{ reject_reason_for(extract) }} as reject_reason
    from ({{ pending_raw_records(extract) }}) as source
) as checked
where reject_reason is not null
{% endfor %}
