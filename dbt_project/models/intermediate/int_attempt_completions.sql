{#- THE completion rule as at the end of the report date D: the version of every
    completed attempt x responsible party in force at the end of D (the rule itself and
    its versions: int_attempt_completion_versions). Grain: one row per completed attempt
    per responsible party. A view: it holds the date of the last build (like the other
    "as at end of D" intermediate models), and the marts' filters reach the versions'
    indexes through it. -#}
{{ config(materialized='view') }}

select *
from {{ ref('int_attempt_completion_versions') }}
where
    valid_from <= {{ report_date() }}
    and (valid_to is null or valid_to > {{ report_date() }})
