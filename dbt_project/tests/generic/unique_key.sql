{#- A primary-key test over one or more columns (no dbt_utils: the hub is unreachable). -#}
{% test unique_key(model, columns, where=none) %}
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
{% if where %}where {{ where }}{% endif %}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
