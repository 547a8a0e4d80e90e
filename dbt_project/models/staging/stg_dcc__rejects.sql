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
    and '...' (the raw table keeps every byte).

    The rejects are what the staging models left out: a raw row that its staging model
    holds is valid, since that model keeps exactly the rows whose reason (the same macro,
    validation.sql) is NULL. So only the rows not staged are validated again, which takes
    the cost of a day's validation off this model (docs/performance.md). A row counts as
    staged only when its staging model has logged the drop's current delivery (the rows
    and the log commit together; the landing lock holds the ledger still): a staging model
    behind this one (a partial `dbt build --select`) is not trusted, and its drops' rows
    are all validated here as before. -#}
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
    from (
        {#- offset 0: the rows not staged first, so that the planner cannot push the
            reason's test under the anti-join and validate every row again -#}
        select unstaged.*
        from ({{ pending_raw_records(extract) }}) as unstaged
        where not exists (
            select 1 from {{ ref('stg_dcc__' ~ extract) }} as staged
            where
                staged._drop_date = unstaged._drop_date
                and staged._row_number = unstaged._row_number
                and staged._drop_date = any(array({{ staged_current_deliveries('stg_dcc__' ~ extract) }}))
        )
        offset 0  -- noqa: AM09
    ) as source
) as checked
where reject_reason is not null
{% endfor %}
