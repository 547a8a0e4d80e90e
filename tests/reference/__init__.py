"""Test oracle: an independent, pure-Python reference implementation of the MRR spec.

This package computes the EXPECTED rows of the ten S1MIG reports straight from a raw
landing folder (spec /work/shared/docs/mrr-spec.md, version 1.1, sections 2-5), and the
late records of warning W2 (section 6), so tests can check the real pipeline (dbt SQL
over PostgreSQL) against a second, separately written implementation. It must stay
independent of the SQL: no database, no dbt, no SQL text, no pandas, and no imports from
the pipeline other than ``s1mig.contract`` (extract columns, time columns and code lists,
which are the spec itself). It is written to be simple and obviously correct, not fast;
test data is at most a few thousand rows.

Modules: ``clock`` (local days), ``loading`` (drops -> Warehouse), ``completion`` (responsibility
and the completion rule of one attempt), ``model`` (every attempt as at end of D; W2 late
records), ``formatting`` (columns, keys, values as exported), ``reports`` (001-007, 009) and
``installations`` (008, 010), ``export`` (files per party).

API
    load(landing, through) -> Warehouse      every accepted drop with date <= through
    report_001(wh, d) ... report_010(wh, d)   rows for ALL parties, formatted as exported
    REPORTS[report_id] -> the report function
    COLUMNS[report_id] -> column names in spec (export) order
    KEYS[report_id]    -> key columns the rows are sorted by
    expected_files(wh, d) -> {party_id: {report_id: [rows]}} for every party as at end of D
    to_csv(report_id, rows) -> the text of an export file (spec section 7 layout)
    late_records(wh, d) -> [LateRecord]       every W2 late record as at end of D
    complete(parties, events, cofs) -> Completion | None   the completion rule of one attempt

Every report function first restricts the warehouse to the records whose time column is
before the end of D (``Warehouse.as_at``): a report for D is "as at end of D" even when
later drops were loaded. With ``load(landing, D)`` that restriction changes nothing,
because drop D only carries records of local day D (the first drop: also everything
earlier).

Readings of the spec this oracle commits to (where the spec leaves room):

* Failures of an attempt (v1.1): every migration_events row with outcome FAIL, and every
  cof_records FAILURE row whose party_id is one of the attempt's responsible parties (fixed
  at scheduled_at). A COF record -- SUCCESS or FAILURE -- of a party not responsible for
  the attempt counts for nothing in its completion (it still appears in 009). COF records
  are matched to an attempt by attempt_id, and to a party by cof_records.party_id.
* Failure tie-break. Failures are ordered by (time, step, kind, id) with kind 0 for a
  migration_events row and 1 for a cof_records row: the earliest time wins, then the
  lower step number (a COF failure is stage 'COF', step 60), then -- only when time and
  step are equal -- events before COF records, then the lower event_id (among events) or
  cof_file_name (among COF records), compared as strings.
* Success time s (v1.1), only for an attempt with at least one responsible party: it needs
  a COMMISSIONING PASS event (the earliest counts) and, for every responsible party, its
  SUCCESS COF record with the lowest cof_counter (tie: lower cof_file_name); s is the latest
  of that PASS event_ts and those COF records' generated_at. 001's cof_file_name is that
  same lowest-counter record. (v1.0 took the max of the COF times only, and each party's
  earliest generated_at.)
* Completion (v1.1, closed form), judged on the records as at end of D (``Model`` works on
  ``Warehouse.as_at(end of D)``): with f the earliest failure, Failure at f when f exists
  and (s does not exist or local_day(f) <= local_day(s)) -- even when f is later that day
  than s; otherwise Success at s when s exists; otherwise awaiting outcome. This is the
  "final from the first date it holds" rule: every record lies in the drop of its own local
  day, so a failure dated after the Success's day cannot change the completion on any later
  date -- it is a late record (``late_records``), and no report changes.
* Late records (W2): as at end of D, for every attempt complete with Success at s, every
  failure record (FAIL event, or FAILURE COF of a responsible party) whose local day is after
  local_day(s). One instance per (attempt, party, record): a FAIL event gives one per
  responsible party (a DUAL party once), a FAILURE COF one for its own party. Its drop date
  is the local day of the record's time, or the first loaded drop's date when earlier.
* An attempt whose installation has no version at scheduled_at has no responsible party;
  it is never complete (not even by a FAIL event) and gives no rows.
* "001 rows on or before D" / "006 Failure rows on or before D" (005 cumulative columns)
  are computed as at end of D: every Success / Failure completion known at end of D (all
  have completed_at before end of D). Because completion is final, this equals the sum of
  what the daily reports up to D showed, and it never goes down.
* 008 and 010 are installation-level, literally as the Details say: the Failures and
  Successes counted are those of every attempt of the installation (whoever was
  responsible for it), and each party responsible as at end of D gets the row / count
  (after a change of supplier, the new supplier sees the installation's history; 001 and
  006 keep the parties fixed at scheduled_at).
  "Last" failure = latest completed_at, ties to the higher attempt_no. The exclusion is
  the one with the latest excluded_at before end of D (ties: the higher category name).
  A reason code missing from the code list is not retryable.
* 010 "excluded" = an explicit exclusion before end of D, or >= 5 Failure attempts (the
  008 derivation). "awaiting_outcome" = some attempt of the installation known at end of
  D has no completion. An installation whose eligible_from is NULL is not eligible.
* 004 "scheduled" counts migration_attempts rows whose party_id is the party and whose
  scheduled_for is D (one per attempt, not per responsible party).
* Drops: folders named YYYY-MM-DD; a drop is rejected whole (recorded in
  ``Warehouse.rejected``, not loaded) when its manifest is missing or malformed, its
  drop_date differs from the folder name, an extract is missing or listed twice, the folder
  holds any file other than manifest.json and the eight listed files, a file is not
  ``<name>.csv`` / ``<name>.csv.gz``, or a file's sha256, header, row count or row width is
  wrong.
* Sorting: typed values (attempt_no, step numbers and counters as integers, strings by
  code point), NULLs last; cohorts sort alphabetically (FOC, IOC, MOC).
"""

from s1mig.contract import EXTRACTS, EXTRACTS_BY_NAME, REASON_CODES, REPORT_IDS

from .clock import LONDON, day_start, end_of, in_day, local_day, parse_ts
from .completion import (
    Completion,
    FailureRecord,
    Responsibility,
    complete,
    failure_records,
    responsibilities,
    success_cof,
    success_time,
    version_at,
)
from .export import expected_files, file_name, parties_as_at, to_csv
from .formatting import COLUMNS, KEYS, fmt, pct
from .installations import CATEGORIES_010, category_010, report_008, report_010
from .loading import RECORD, DropRejected, Warehouse, _typed, load, read_drop
from .model import AttemptView, LateRecord, Model, late_records
from .reports import (
    DMIN,
    REPORTS,
    report_001,
    report_002,
    report_003,
    report_004,
    report_005,
    report_006,
    report_007,
    report_009,
)

__all__ = [
    "CATEGORIES_010",
    "COLUMNS",
    "DMIN",
    "EXTRACTS",
    "EXTRACTS_BY_NAME",
    "KEYS",
    "LONDON",
    "REASON_CODES",
    "RECORD",
    "REPORTS",
    "REPORT_IDS",
    "AttemptView",
    "Completion",
    "DropRejected",
    "FailureRecord",
    "LateRecord",
    "Model",
    "Responsibility",
    "Warehouse",
    "_typed",
    "category_010",
    "complete",
    "day_start",
    "end_of",
    "expected_files",
    "failure_records",
    "file_name",
    "fmt",
    "in_day",
    "late_records",
    "load",
    "local_day",
    "parse_ts",
    "parties_as_at",
    "pct",
    "read_drop",
    "report_001",
    "report_002",
    "report_003",
    "report_004",
    "report_005",
    "report_006",
    "report_007",
    "report_008",
    "report_009",
    "report_010",
    "responsibilities",
    "success_cof",
    "success_time",
    "to_csv",
    "version_at",
]
