{#- Grain: one row per COF file as its records describe it (spec section 2: every record
    of a file shares its cof_counter, party_id, sec_party_signifier and generated_at; a
    file whose records disagree has a row for each description), with its drop date and
    record count. Gate rule R6 checks the counters and signifiers of every COF file since
    the first drop: from this model it reads a few rows per party a day instead of every
    COF record of the history. A history model (macros/materializations/delivery_history.sql): a
    file lies in the drop of its generated_at. -#}
{{ config(
    materialized='delivery_history',
    indexes=[{'columns': ['cof_file_name']}, {'columns': ['_drop_date']}],
) }}

select
    party_id,
    cof_file_name,
    cof_counter,
    sec_party_signifier,
    generated_at,
    _drop_date,
    count(*) as records
from {{ ref('stg_dcc__cof_records') }}
where {{ in_history_increment('_drop_date') }}
group by party_id, cof_file_name, cof_counter, sec_party_signifier, generated_at, _drop_date
