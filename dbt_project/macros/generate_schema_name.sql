{#- Layers live in fixed schemas (staging, intermediate, marts, reference) so BI tools
    and the read-only role see stable names, whatever the target's default schema. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
