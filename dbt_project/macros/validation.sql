{#- Value-level validation of the raw extracts (spec section 2). Each extract has one
    macro returning the reject reason of a raw row (NULL = valid). Staging keeps only
    valid rows; stg_dcc__rejects lists the others with their lineage, and the gate
    blocks every report date whose data includes a reject. One definition per rule.
    The references between records (spec section 6: an attempt's MA record, the parties
    a record names) are checked after staging, in int_rejected_records. -#}

{#- The columns of each extract in delivery order (spec section 2, as in
    src/s1mig/contract.py; tests/test_referential.py rejects an over-long value in every
    one of them, so a column missing here fails that test). -#}
{%- macro extract_columns(extract) -%}
    {%- set columns = {
        'parties': ['party_id', 'party_name', 'sec_party_signifier', 'affiliate_group', 'effective_from'],
        'installations': ['installation_id', 'cohort', 'group_id', 'mpan', 'mprn', 'elec_supplier_id',
                          'gas_supplier_id', 'eligible_from', 'effective_from'],
        'migration_authorisations': ['ma_file_name', 'ma_record_no', 'party_id', 'received_at', 'installation_id',
                                     'mpxn', 'requested_migration_date', 'ma_status', 'ma_error_code'],
        'migration_attempts': ['attempt_id', 'installation_id', 'attempt_no', 'ma_file_name', 'ma_record_no',
                               'party_id', 'scheduled_at', 'scheduled_for'],
        'migration_events': ['event_id', 'attempt_id', 'stage', 'step_no', 'outcome', 'reason_code', 'event_ts'],
        'cof_records': ['cof_file_name', 'cof_counter', 'party_id', 'sec_party_signifier', 'generated_at',
                        'attempt_id', 'installation_id', 'response', 'reason_code'],
        'capacity_allocations': ['migration_date', 'party_id', 'demand', 'allocation', 'allocated_at'],
        'exclusions': ['installation_id', 'exclusion_category', 'excluded_at'],
    } -%}
    {{ return(_listed_for(columns, extract, 'columns')) }}
{%- endmacro -%}

{#- `listing`'s entry for `extract`; a compile error naming what is missing when it has none. -#}
{%- macro _listed_for(listing, extract, what) -%}
    {%- if extract not in listing -%}
        {{ exceptions.raise_compiler_error('no ' ~ what ~ ' listed for extract ' ~ extract) }}
    {%- endif -%}
    {{ return(listing[extract]) }}
{%- endmacro -%}

{#- The longest value a field may hold (spec section 6, v1.1): 64 characters for ids,
    file names and signifiers (every *_id, ma_file_name, cof_file_name,
    sec_party_signifier), 256 for any other text. A longer value makes its record a
    reject (never a database error: staging, its indexes and its grain checks never see
    it). -#}
{%- macro max_field_length(column) -%}
    {%- if column.endswith('_id') or column in ['ma_file_name', 'cof_file_name', 'sec_party_signifier'] -%}
        {{ return(64) }}
    {%- else -%}
        {{ return(256) }}
    {%- endif -%}
{%- endmacro -%}

{#- The reason names the field and its length, and shows none of the value. -#}
{%- macro too_long(column) -%}
    case
        when length({{ column }}) > {{ max_field_length(column) }}
            then '{{ column }} is ' || length({{ column }}) || ' characters long (at most {{ max_field_length(column) }})'
    end
{%- endmacro -%}

{#- A field as kept in a reject's raw_record: as delivered, or its first allowed characters
    and '...' when it is over-long (the raw table keeps every byte). -#}
{%- macro clipped(column) -%}
    case
        when length({{ column }}) > {{ max_field_length(column) }}
            then left({{ column }}, {{ max_field_length(column) }}) || '...'
        else {{ column }}
    end
{%- endmacro -%}

{#- A timestamptz as the extracts write it (ISO 8601 UTC, YYYY-MM-DDTHH:MM:SSZ). -#}
{%- macro iso_utc(ts) -%}
    to_char({{ ts }} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
{%- endmacro -%}

{%- macro _v(column) -%}nullif({{ column }}, '')
{%- endmacro -%}

{%- macro _shown(column) -%}
    '''' || left({{ column }}, 40) || ''''
{%- endmacro -%}

{%- macro required(column) -%}
    case when {{ _v(column) }} is null then '{{ column }} is missing' end
{%- endmacro -%}

{%- macro matches(column, pattern, what) -%}
    case when {{ _v(column) }} !~ '{{ pattern }}' then '{{ column }} ' || {{ _shown(column) }} || ' is not {{ what }}' end
{%- endmacro -%}

{%- macro one_of(column, values) -%}
    case
        when {{ _v(column) }} not in ('{{ values | join("', '") }}')
            then '{{ column }} ' || {{ _shown(column) }} || ' is not one of {{ values | join(", ") }}'
    end
{%- endmacro -%}

{#- The record's time column (see time_column): read as parsed by pending_raw_records. -#}
{%- macro utc_timestamp(column) -%}
    case
        when {{ _v(column) }} !~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$'
            or ({{ column }} is not null and {{ parsed(column) }} is null)
            then '{{ column }} ' || {{ _shown(column) }} || ' is not an ISO 8601 UTC timestamp (YYYY-MM-DDTHH:MM:SSZ)'
    end
{%- endmacro -%}

{%- macro iso_date(column) -%}
    case
        when {{ _v(column) }} !~ '^\d{4}-\d{2}-\d{2}$' or not pg_input_is_valid({{ column }}, 'date')
            then '{{ column }} ' || {{ _shown(column) }} || ' is not a date (YYYY-MM-DD)'
    end
{%- endmacro -%}

{%- macro whole_number(column, minimum=0) -%}
    case
        when {{ _v(column) }} !~ '^\d{1,9}$'
            then '{{ column }} ' || {{ _shown(column) }} || ' is not a whole number'
        when {{ _v(column) }}::bigint < {{ minimum }}
            then '{{ column }} ' || {{ _shown(column) }} || ' is below {{ minimum }}'
    end
{%- endmacro -%}

{%- macro present_exactly_when(column, condition, condition_text) -%}
    case
        when ({{ _v(column) }} is not null) is distinct from coalesce({{ condition }}, false)
            then '{{ column }} must be present exactly when {{ condition_text }}'
    end
{%- endmacro -%}

{#- The record's time column must fall in its drop's local day; the first landed drop
    also carries everything earlier (spec section 2). -#}
{%- macro in_drop_day(column) -%}
    case
        when {{ parsed(column) }} is null then null
        when {{ local_date(parsed(column)) }} <> _drop_date
            and not (
                {{ local_date(parsed(column)) }} < _drop_date
                and _drop_date = (select min(l.drop_date) from {{ source('raw', 'drop_ledger') }} as l
                                  where l.superseded_at is null)
            )
            then '{{ column }} ' || {{ _shown(column) }} || ' is not in the drop''s local day ' || _drop_date
    end
{%- endmacro -%}

{#- The time column of each extract: the one timestamp its records carry, checked as ISO
    8601 UTC and against the drop's local day (spec section 2). -#}
{%- macro time_column(extract) -%}
    {%- set columns = {
        'parties': 'effective_from', 'installations': 'effective_from',
        'migration_authorisations': 'received_at', 'migration_attempts': 'scheduled_at',
        'migration_events': 'event_ts', 'cof_records': 'generated_at',
        'capacity_allocations': 'allocated_at', 'exclusions': 'excluded_at',
    } -%}
    {{ return(_listed_for(columns, extract, 'time column')) }}
{%- endmacro -%}

{#- The name under which pending_raw_records carries a time column parsed. -#}
{%- macro parsed(column) -%}{{ column }}__parsed{%- endmacro -%}

{#- The raw records of `extract` in the pending drops, each with its time column parsed
    once (`<column>__parsed`: the timestamptz, NULL when empty or not valid). The validation
    reads it in two checks and staging keeps it as the typed column: written in each place,
    PostgreSQL would parse the text each time (up to six times a record, most of what
    validating an event cost). `offset 0` keeps the planner from substituting the
    expression back into the query that reads this one. Every caller of reject_reason_for
    (or of an extract's reject_reason_* macro) reads its rows from here as `source`. -#}
{%- macro pending_raw_records(extract) -%}
    select
        raw_records.*,
        {{ cast_if_valid(time_column(extract), 'timestamptz') }} as {{ parsed(time_column(extract)) }}
    from {{ source('raw', extract) }} as raw_records
    where {{ in_pending_drops() }}
    offset 0
{%- endmacro -%}

{#- The reject reason of a raw row of `extract`: its over-long fields when it has any
    (the other checks are not run on such a row, and nothing of those values is echoed),
    else every check that fails, joined by '; '. NULL = valid. -#}
{%- macro reject_reason(extract, checks) -%}
    {%- set length_checks = [] -%}
    {%- for column in extract_columns(extract) -%}
        {%- do length_checks.append(too_long(column)) -%}
    {%- endfor -%}
    coalesce(
        nullif(concat_ws('; ', {{ length_checks | join(', ') }}), ''),
        nullif(concat_ws('; ', {{ checks | join(', ') }}), '')
    )
{%- endmacro -%}

{%- macro reject_reason_for(extract) -%}
    {%- if extract == 'parties' -%}{{ reject_reason_parties() }}
    {%- elif extract == 'installations' -%}{{ reject_reason_installations() }}
    {%- elif extract == 'migration_authorisations' -%}{{ reject_reason_migration_authorisations() }}
    {%- elif extract == 'migration_attempts' -%}{{ reject_reason_migration_attempts() }}
    {%- elif extract == 'migration_events' -%}{{ reject_reason_migration_events() }}
    {%- elif extract == 'cof_records' -%}{{ reject_reason_cof_records() }}
    {%- elif extract == 'capacity_allocations' -%}{{ reject_reason_capacity_allocations() }}
    {%- elif extract == 'exclusions' -%}{{ reject_reason_exclusions() }}
    {%- else -%}{{ exceptions.raise_compiler_error('no validation for extract ' ~ extract) }}
    {%- endif -%}
{%- endmacro -%}

{%- macro reject_reason_parties() -%}
    {{ reject_reason('parties', [
        required('party_id'), matches('party_id', '^[A-Z0-9]{6}$', 'a party id (6 capitals or digits)'),
        required('party_name'),
        required('sec_party_signifier'),
        matches('sec_party_signifier', '^([0-9A-F]{2}-){7}[0-9A-F]{2}$', 'an EUI-64 (XX-XX-XX-XX-XX-XX-XX-XX)'),
        required('effective_from'), utc_timestamp('effective_from'), in_drop_day('effective_from'),
    ]) }}
{%- endmacro -%}

{%- macro reject_reason_installations() -%}
    {{ reject_reason('installations', [
        required('installation_id'), matches('installation_id', '^S1[0-9]{10}$', 'an installation id (S1 + 10 digits)'),
        required('cohort'), one_of('cohort', var('cohorts')),
        required('group_id'), matches('group_id', '^[A-Z]{2}$', 'a group id (two capitals)'),
        "case when nullif(group_id, '') = 'DA' and nullif(cohort, '') <> 'MOC' then 'group_id DA (the MOC Secure"
            ~ " group) is only for cohort MOC, not ' || " ~ _shown('cohort') ~ " end",
        matches('mpan', '^[0-9]{13}$', 'an MPAN (13 digits)'),
        matches('mprn', '^[0-9]{6,10}$', 'an MPRN (6 to 10 digits)'),
        "case when nullif(mpan, '') is null and nullif(mprn, '') is null then 'neither mpan nor mprn is present' end",
        matches('elec_supplier_id', '^[A-Z0-9]{6}$', 'a party id'),
        matches('gas_supplier_id', '^[A-Z0-9]{6}$', 'a party id'),
        present_exactly_when('elec_supplier_id', "nullif(mpan, '') is not null", 'mpan is'),
        present_exactly_when('gas_supplier_id', "nullif(mprn, '') is not null", 'mprn is'),
        iso_date('eligible_from'),
        required('effective_from'), utc_timestamp('effective_from'), in_drop_day('effective_from'),
    ]) }}
{%- endmacro -%}

{%- macro reject_reason_migration_authorisations() -%}
    {{ reject_reason('migration_authorisations', [
        required('ma_file_name'),
        matches('ma_file_name', '^MA_[A-Z0-9]{6}_([0-9A-F]{2}-){7}[0-9A-F]{2}_[0-9]{8}_[0-9]{6}$',
                'an MA file name (MA_<party>_<signifier>_<YYYYMMDD>_<HHMMSS>)'),
        required('ma_record_no'), whole_number('ma_record_no', 1),
        required('party_id'), matches('party_id', '^[A-Z0-9]{6}$', 'a party id'),
        required('received_at'), utc_timestamp('received_at'), in_drop_day('received_at'),
        required('installation_id'), matches('installation_id', '^S1[0-9]{10}$', 'an installation id'),
        required('mpxn'), matches('mpxn', '^([0-9]{13}|[0-9]{6,10})$', 'an MPAN or MPRN'),
        required('requested_migration_date'), iso_date('requested_migration_date'),
        required('ma_status'), one_of('ma_status', ['ACCEPTED', 'REJECTED']),
        present_exactly_when('ma_error_code', "ma_status = 'REJECTED'", 'ma_status is REJECTED'),
        "case when nullif(ma_error_code, '') not in (select ma_error_code from " ~ ref('ma_error_codes')
            ~ ") then 'ma_error_code ''' || left(ma_error_code, 40) || ''' is not a known MA error code' end",
    ]) }}
{%- endmacro -%}

{%- macro reject_reason_migration_attempts() -%}
    {{ reject_reason('migration_attempts', [
        required('attempt_id'),
        required('installation_id'), matches('installation_id', '^S1[0-9]{10}$', 'an installation id'),
        required('attempt_no'), whole_number('attempt_no', 1),
        required('ma_file_name'), required('ma_record_no'), whole_number('ma_record_no', 1),
        required('party_id'), matches('party_id', '^[A-Z0-9]{6}$', 'a party id'),
        required('scheduled_at'), utc_timestamp('scheduled_at'), in_drop_day('scheduled_at'),
        required('scheduled_for'), iso_date('scheduled_for'),
    ]) }}
{%- endmacro -%}

{#- ` when '<stage>' then <step>` for each stage: the TMAD step of a PASS (var pass_steps;
    indexed rather than .items(), which sqlfluff's stand-in for var() cannot call). -#}
{%- macro _pass_step_cases() -%}
    {%- set steps = var('pass_steps') -%}
    {%- for stage in steps %} when '{{ stage }}' then {{ steps[stage] }}{% endfor -%}
{%- endmacro -%}

{%- macro reject_reason_migration_events() -%}
    {{ reject_reason('migration_events', [
        required('event_id'), required('attempt_id'),
        required('stage'), one_of('stage', var('stages')),
        required('step_no'), whole_number('step_no', 1),
        required('outcome'), one_of('outcome', ['PASS', 'FAIL']),
        present_exactly_when('reason_code', "outcome = 'FAIL'", 'outcome is FAIL'),
        "case when nullif(reason_code, '') is not null and not exists (select 1 from " ~ ref('reason_codes')
            ~ " as rc where rc.reason_code = source.reason_code and rc.stage = source.stage)"
            ~ " then 'reason_code ''' || left(reason_code, 40) || ''' is not a known code of stage ' || coalesce(stage, '?') end",
        "case when step_no !~ '^\\d{1,9}$' then null"
            ~ " when outcome = 'PASS' and step_no::integer <> case stage" ~ _pass_step_cases() ~ " end"
            ~ " then 'step_no ' || step_no || ' of a PASS is not the last step of ' || stage"
            ~ " when outcome = 'FAIL' and not exists (select 1 from " ~ ref('reason_codes')
            ~ " as rc where rc.reason_code = source.reason_code and rc.tmad_step_no = source.step_no::integer)"
            ~ " then 'step_no ' || step_no || ' is not the step of reason_code ' || coalesce(reason_code, '?') end",
        required('event_ts'), utc_timestamp('event_ts'), in_drop_day('event_ts'),
    ]) }}
{%- endmacro -%}

{%- macro reject_reason_cof_records() -%}
    {{ reject_reason('cof_records', [
        required('cof_file_name'),
        matches('cof_file_name', '^COF_([0-9A-F]{2}-){7}[0-9A-F]{2}_[0-9]{8}$',
                'a COF file name (COF_<signifier>_<8-digit counter>)'),
        required('cof_counter'), whole_number('cof_counter', 1),
        required('party_id'), matches('party_id', '^[A-Z0-9]{6}$', 'a party id'),
        required('sec_party_signifier'),
        matches('sec_party_signifier', '^([0-9A-F]{2}-){7}[0-9A-F]{2}$', 'an EUI-64'),
        required('generated_at'), utc_timestamp('generated_at'), in_drop_day('generated_at'),
        required('attempt_id'),
        required('installation_id'), matches('installation_id', '^S1[0-9]{10}$', 'an installation id'),
        required('response'), one_of('response', ['SUCCESS', 'FAILURE']),
        present_exactly_when('reason_code', "response = 'FAILURE'", 'response is FAILURE'),
        "case when nullif(reason_code, '') is not null and not exists (select 1 from " ~ ref('reason_codes')
            ~ " as rc where rc.reason_code = source.reason_code and rc.stage = 'COF')"
            ~ " then 'reason_code ''' || left(reason_code, 40) || ''' is not a known COF reason code' end",
    ]) }}
{%- endmacro -%}

{%- macro reject_reason_capacity_allocations() -%}
    {{ reject_reason('capacity_allocations', [
        required('migration_date'), iso_date('migration_date'),
        required('party_id'), matches('party_id', '^[A-Z0-9]{6}$', 'a party id'),
        required('demand'), whole_number('demand', 0),
        required('allocation'), whole_number('allocation', 0),
        required('allocated_at'), utc_timestamp('allocated_at'), in_drop_day('allocated_at'),
    ]) }}
{%- endmacro -%}

{%- macro reject_reason_exclusions() -%}
    {{ reject_reason('exclusions', [
        required('installation_id'), matches('installation_id', '^S1[0-9]{10}$', 'an installation id'),
        required('exclusion_category'),
        one_of('exclusion_category', var('exclusion_categories')),
        required('excluded_at'), utc_timestamp('excluded_at'), in_drop_day('excluded_at'),
    ]) }}
{%- endmacro -%}

{#- Referential rule (spec section 6, v1.1), for int_rejected_records: the party id in
    `id_column` (a typed, staged column) must be in parties at the record's time: `since`
    is the alias of a row of (party_id, first_effective_from) joined on that id (NULL when
    the party is unknown). NULL = the party exists then. -#}
{%- macro party_missing(id_column, since, time_column, time_name) -%}
    case
        when {{ id_column }} is not null
            and ({{ since }}.party_id is null or {{ since }}.first_effective_from > {{ time_column }})
            then '{{ id_column.split('.')[-1] }} ' || {{ id_column }} || ' is not in parties at {{ time_name }} '
            || {{ iso_utc(time_column) }}
    end
{%- endmacro -%}

{#- Typed value of a raw text column: NULL when empty or not valid for the type. Staging
    only keeps rows whose checks passed, but the planner may evaluate a cast before that
    filter (e.g. a date predicate pushed down from a downstream model), so casts must
    never raise. -#}
{%- macro cast_if_valid(column, type) -%}
    case when pg_input_is_valid({{ column }}, '{{ type }}') then nullif({{ column }}, '')::{{ type }} end
{%- endmacro -%}
