"""Test oracle: an independent, pure-Python reference implementation of the MRR spec.

This module computes the EXPECTED rows of the ten S1MIG reports straight from a raw
landing folder (spec /work/shared/docs/mrr-spec.md, version 1.1, sections 2-5), and the
late records of warning W2 (section 6), so tests can check the real pipeline (dbt SQL
over PostgreSQL) against a second, separately written implementation. It must stay
independent of the SQL: no database, no dbt, no SQL text, no pandas, and no imports from
the pipeline other than ``s1mig.contract`` (extract columns, time columns and code lists,
which are the spec itself). It is written to be simple and obviously correct, not fast;
test data is at most a few thousand rows.

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

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, make_dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from s1mig.contract import EXTRACTS, EXTRACTS_BY_NAME, LOCAL_TZ, MA_ERROR_CODES, REASON_CODES, REPORT_IDS

LONDON = ZoneInfo(LOCAL_TZ)
DMIN = 100  # Migration Scaling Methodology minimum allocation (spec section 1)
COF_STAGE, COF_STEP = REASON_CODES["COF01"][0], REASON_CODES["COF01"][1]  # 'COF', 60

# ============================================================================ time


def day_start(d: date) -> datetime:
    """D 00:00 Europe/London, as a UTC instant."""
    return datetime.combine(d, time(0), tzinfo=LONDON).astimezone(UTC)


def end_of(d: date) -> datetime:
    """'End of D' = (D+1) 00:00 Europe/London, as a UTC instant."""
    return day_start(d + timedelta(days=1))


def in_day(t: datetime, d: date) -> bool:
    return day_start(d) <= t < end_of(d)


def local_day(t: datetime) -> date:
    return t.astimezone(LONDON).date()


def parse_ts(text: str) -> datetime:
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return t.astimezone(UTC)


# ============================================================================ loading

# Every time column is a UTC timestamp; the other typed columns are listed here.
TIMESTAMP_COLUMNS = frozenset(e.time_column for e in EXTRACTS)
DATE_COLUMNS = frozenset({"eligible_from", "requested_migration_date", "scheduled_for", "migration_date"})
INT_COLUMNS = frozenset({"ma_record_no", "attempt_no", "step_no", "cof_counter", "demand", "allocation"})

# One frozen dataclass per extract, with the contract's columns as fields (e.g. RECORD["exclusions"]
# has installation_id, exclusion_category, excluded_at). Empty CSV field -> None.
RECORD: dict[str, type] = {
    e.name: make_dataclass("".join(w.title() for w in e.name.split("_")) + "Row", e.columns, frozen=True)
    for e in EXTRACTS
}


def _typed(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in TIMESTAMP_COLUMNS:
        return parse_ts(text)
    if column in DATE_COLUMNS:
        return date.fromisoformat(text)
    if column in INT_COLUMNS:
        return int(text)
    return text


class DropRejected(Exception):
    pass


@dataclass
class Warehouse:
    """The raw extracts as at some point: extract name -> records in load order."""

    tables: dict[str, list[Any]]
    drops: list[date]  # drops loaded, in date order
    rejected: dict[date, str]  # drops rejected whole -> why

    def __getattr__(self, name: str) -> list[Any]:  # wh.migration_events, wh.parties, ...
        tables = self.__dict__.get("tables", {})
        if name in tables:
            return tables[name]
        raise AttributeError(name)

    def as_at(self, instant: datetime) -> Warehouse:
        """Only the records whose time column is strictly before `instant`."""
        kept = {
            name: [r for r in rows if getattr(r, EXTRACTS_BY_NAME[name].time_column) < instant]
            for name, rows in self.tables.items()
        }
        return Warehouse(kept, list(self.drops), dict(self.rejected))


_DROP_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}")


def load(landing: Path, through: date) -> Warehouse:
    """Parse every drop folder `<landing>/<YYYY-MM-DD>/` with date <= through."""
    tables: dict[str, list[Any]] = {e.name: [] for e in EXTRACTS}
    drops: list[date] = []
    rejected: dict[date, str] = {}
    folders = sorted(p for p in Path(landing).iterdir() if p.is_dir() and _DROP_FOLDER.fullmatch(p.name))
    for folder in folders:
        try:
            drop_date = date.fromisoformat(folder.name)
        except ValueError:  # e.g. 2020-13-45: not a drop folder
            continue
        if drop_date > through:
            continue
        try:
            parsed = read_drop(folder)
        except DropRejected as exc:
            rejected[drop_date] = str(exc)
            continue
        for name, records in parsed.items():
            tables[name].extend(records)
        drops.append(drop_date)
    return Warehouse(tables, drops, rejected)


def read_drop(folder: Path) -> dict[str, list[Any]]:
    """Check one drop against its manifest (spec section 2) and parse its eight extracts."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise DropRejected("manifest.json missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest["drop_date"] != folder.name:
            raise DropRejected(f"manifest drop_date {manifest['drop_date']!r} != folder {folder.name}")
        entries: dict[str, dict[str, Any]] = {}
        for entry in manifest["extracts"]:
            name = entry["name"]
            if name not in EXTRACTS_BY_NAME or name in entries:
                raise DropRejected(f"unknown or repeated extract {name!r}")
            if entry["file"] not in (f"{name}.csv", f"{name}.csv.gz"):
                raise DropRejected(f"bad file name {entry['file']!r} for {name}")
            entries[name] = entry
    except (ValueError, KeyError, TypeError) as exc:
        raise DropRejected(f"malformed manifest: {exc!r}") from exc
    if set(entries) != set(EXTRACTS_BY_NAME):
        raise DropRejected(f"manifest lacks {sorted(set(EXTRACTS_BY_NAME) - set(entries))}")
    expected_files = {"manifest.json"} | {entry["file"] for entry in entries.values()}
    present = {p.name for p in folder.iterdir()}
    if present != expected_files:
        raise DropRejected(f"files differ from manifest: {sorted(present ^ expected_files)}")

    out: dict[str, list[Any]] = {}
    for extract in EXTRACTS:
        entry = entries[extract.name]
        data = (folder / entry["file"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != str(entry["sha256"]).lower():
            raise DropRejected(f"{entry['file']}: sha256 mismatch")
        try:
            text = (gzip.decompress(data) if entry["file"].endswith(".gz") else data).decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise DropRejected(f"{entry['file']}: unreadable: {exc!r}") from exc
        lines = list(csv.reader(io.StringIO(text, newline="")))
        if not lines or tuple(lines[0]) != extract.columns:
            raise DropRejected(f"{entry['file']}: header is not {extract.columns}")
        body = lines[1:]
        if len(body) != entry["rows"]:
            raise DropRejected(f"{entry['file']}: {len(body)} rows, manifest says {entry['rows']}")
        record_type = RECORD[extract.name]
        records = []
        for n, row in enumerate(body, start=2):
            if len(row) != len(extract.columns):
                raise DropRejected(f"{entry['file']} line {n}: {len(row)} fields")
            records.append(record_type(*(_typed(c, v) for c, v in zip(extract.columns, row, strict=True))))
        out[extract.name] = records
    return out


# ============================================================================ versions and responsibility


def version_at(versions: Iterable[Any], t: datetime, *, strictly_before: bool = False) -> Any | None:
    """The version with the latest effective_from <= t (< t when strictly_before); a tie
    on effective_from goes to the later-loaded record."""
    best = None
    for v in versions:
        if v.effective_from < t or (not strictly_before and v.effective_from == t):
            if best is None or v.effective_from >= best.effective_from:
                best = v
    return best


@dataclass(frozen=True)
class Responsibility:
    party_id: str
    fuel: str  # 'ELEC', 'GAS' or 'DUAL'
    mpan: str | None
    mprn: str | None


def responsibilities(inst: Any | None) -> list[Responsibility]:
    """Spec section 3: one DUAL responsibility when the electricity and gas supplier are
    the same party, else one per fuel, each showing only its own MPxN."""
    if inst is None:
        return []
    elec = inst.elec_supplier_id if inst.mpan is not None else None
    gas = inst.gas_supplier_id if inst.mprn is not None else None
    if elec is not None and elec == gas:
        return [Responsibility(elec, "DUAL", inst.mpan, inst.mprn)]
    out = []
    if elec is not None:
        out.append(Responsibility(elec, "ELEC", inst.mpan, None))
    if gas is not None:
        out.append(Responsibility(gas, "GAS", None, inst.mprn))
    return out


# ============================================================================ completion rule (spec section 4)


@dataclass(frozen=True)
class Completion:
    status: str  # 'Success' or 'Failure'
    completed_at: datetime
    reason_code: str | None = None  # Failure only
    failed_stage: str | None = None  # Failure only
    step_no: int | None = None  # Failure only


@dataclass(frozen=True)
class FailureRecord:
    """One record that counts as a failure of an attempt: a FAIL event, or a FAILURE COF
    record of a party responsible for the attempt."""

    key: tuple  # ordering: (time, step, 0 event / 1 COF, event_id / cof_file_name)
    kind: str  # 'event' or 'cof'
    record_id: str  # event_id or cof_file_name
    party_id: str | None  # the COF record's party; None for an event (it concerns every party)
    completion: Completion  # the Failure this record gives when it is the earliest

    @property
    def at(self) -> datetime:
        return self.completion.completed_at


def failure_records(parties: list[Responsibility], events: list[Any], cofs: list[Any]) -> list[FailureRecord]:
    """Every failure of an attempt, earliest first (see the module docstring for the order).
    A COF FAILURE of a party that is not responsible for the attempt counts for nothing."""
    responsible = {r.party_id for r in parties}
    out = []
    for e in events:
        if e.outcome == "FAIL":
            completion = Completion("Failure", e.event_ts, e.reason_code, e.stage, e.step_no)
            key = (e.event_ts, e.step_no, 0, e.event_id or "")
            out.append(FailureRecord(key, "event", e.event_id, None, completion))
    for c in cofs:
        if c.response == "FAILURE" and c.party_id in responsible:
            completion = Completion("Failure", c.generated_at, c.reason_code, COF_STAGE, COF_STEP)
            key = (c.generated_at, COF_STEP, 1, c.cof_file_name or "")
            out.append(FailureRecord(key, "cof", c.cof_file_name, c.party_id, completion))
    return sorted(out, key=lambda f: f.key)


def success_cof(cofs: list[Any], party_id: str) -> Any | None:
    """That party's SUCCESS COF record for the attempt: the lowest counter (then the lower
    cof_file_name) if several."""
    mine = [c for c in cofs if c.response == "SUCCESS" and c.party_id == party_id]
    return min(mine, key=lambda c: (c.cof_counter, c.cof_file_name)) if mine else None


def success_time(parties: list[Responsibility], events: list[Any], cofs: list[Any]) -> datetime | None:
    """s: the moment every Success condition held -- the latest of the earliest COMMISSIONING
    PASS and each responsible party's SUCCESS COF (lowest counter); None when one is missing
    or the attempt has no responsible party."""
    if not parties:
        return None
    passes = [e.event_ts for e in events if e.stage == "COMMISSIONING" and e.outcome == "PASS"]
    if not passes:
        return None
    times = [min(passes)]
    for party_id in sorted({r.party_id for r in parties}):
        cof = success_cof(cofs, party_id)
        if cof is None:
            return None
        times.append(cof.generated_at)
    return max(times)


def complete(parties: list[Responsibility], events: list[Any], cofs: list[Any]) -> Completion | None:
    """The one completion rule for an attempt (spec section 4, v1.1), given its responsible
    parties and its migration_events and cof_records as at some instant. None = awaiting
    outcome. With f the earliest failure and s the Success time: Failure at f when f exists
    and local_day(f) <= local_day(s) (or there is no s) -- even when f is later that day than
    s; otherwise Success at s when s exists. Judged on the records as at end of D, this is
    final: records arrive in the drop of their own local day, so a failure that arrives on a
    later date than a Success is a late record and changes nothing."""
    if not parties:
        return None
    failures = failure_records(parties, events, cofs)
    s = success_time(parties, events, cofs)
    if failures and (s is None or local_day(failures[0].at) <= local_day(s)):
        return failures[0].completion
    if s is not None:
        return Completion("Success", s)
    return None


@dataclass(frozen=True)
class AttemptView:
    attempt: Any  # the migration_attempts record
    installation: Any | None  # installation version at scheduled_at
    parties: list[Responsibility]  # fixed at scheduled_at
    completion: Completion | None
    cofs: list[Any]
    failures: list[FailureRecord]  # earliest first

    @property
    def cohort(self) -> str | None:
        return self.installation.cohort if self.installation else None

    @property
    def group_id(self) -> str | None:
        return self.installation.group_id if self.installation else None

    @property
    def status(self) -> str | None:
        return self.completion.status if self.completion else None


class Model:
    """Everything derived from the warehouse as at end of report date D."""

    def __init__(self, wh: Warehouse, report_date: date):
        self.report_date = report_date
        self.end = end_of(report_date)
        self.wh = wh.as_at(self.end)

        self.installation_versions: dict[str, list[Any]] = defaultdict(list)
        for v in self.wh.installations:
            self.installation_versions[v.installation_id].append(v)
        events: dict[str, list[Any]] = defaultdict(list)
        for e in self.wh.migration_events:
            events[e.attempt_id].append(e)
        cofs: dict[str, list[Any]] = defaultdict(list)
        for c in self.wh.cof_records:
            cofs[c.attempt_id].append(c)
        self.exclusions: dict[str, list[Any]] = defaultdict(list)
        for x in self.wh.exclusions:
            self.exclusions[x.installation_id].append(x)

        self.attempts: list[AttemptView] = []
        self.attempts_by_installation: dict[str, list[AttemptView]] = defaultdict(list)
        for a in self.wh.migration_attempts:
            inst = version_at(self.installation_versions.get(a.installation_id, []), a.scheduled_at)
            parties = responsibilities(inst)
            mine_events, mine_cofs = events[a.attempt_id], cofs[a.attempt_id]
            view = AttemptView(
                a,
                inst,
                parties,
                complete(parties, mine_events, mine_cofs),
                mine_cofs,
                failure_records(parties, mine_events, mine_cofs),
            )
            self.attempts.append(view)
            self.attempts_by_installation[a.installation_id].append(view)

    def installation_at_end(self, installation_id: str) -> Any | None:
        return version_at(self.installation_versions[installation_id], self.end, strictly_before=True)

    def latest_exclusion(self, installation_id: str) -> Any | None:
        mine = self.exclusions[installation_id]
        return max(mine, key=lambda x: (x.excluded_at, x.exclusion_category or "")) if mine else None

    def completions_on(self, status: str, day_only: bool) -> Iterable[tuple[AttemptView, Responsibility]]:
        """(attempt, party) pairs completed with `status`: on D, or on or before D."""
        for av in self.attempts:
            if av.status == status and (not day_only or in_day(av.completion.completed_at, self.report_date)):
                for r in av.parties:
                    yield av, r


# ============================================================================ late records (warning W2)


class LateRecord(NamedTuple):
    """One W2 instance: a failure record that arrived for an attempt already complete with
    Success on an earlier date."""

    drop_date: date  # the drop that carries the record
    attempt_id: str
    party_id: str  # the responsible party the instance is for
    kind: str  # 'event' (migration_events FAIL) or 'cof' (cof_records FAILURE)
    record_id: str  # event_id or cof_file_name
    at: datetime  # the record's event_ts / generated_at


def late_records(wh: Warehouse, report_date: date) -> list[LateRecord]:
    """Every late record as at end of D (spec sections 4 and 6, W2), sorted.

    For an attempt complete with Success at s (as at end of D), every failure record whose
    local day is after local_day(s): a FAIL event, or a FAILURE COF record of a responsible
    party (a non-responsible party's COF counts for nothing, late or not). One instance per
    (attempt, party, record): a FAIL event gives one per responsible party of the attempt
    (fixed at scheduled_at; a DUAL party once), a FAILURE COF one for its own party. The
    drop date is the local day of the record's time, or the first loaded drop's date when
    that is earlier (the first drop carries everything before it). Instances of every date
    up to D are listed, not only those of drop D: the register keeps them until acknowledged.
    Nothing else is late: failures after a Failure, SUCCESS COFs after a Failure, a second
    SUCCESS COF."""
    m = Model(wh, report_date)
    first_drop = min(wh.drops) if wh.drops else None
    out = []
    for av in m.attempts:
        if av.status != "Success":
            continue
        success_day = local_day(av.completion.completed_at)
        for f in av.failures:
            if local_day(f.at) <= success_day:  # never for a Success (the failure would have won)
                continue
            drop = local_day(f.at) if first_drop is None else max(local_day(f.at), first_drop)
            party_ids = [f.party_id] if f.party_id is not None else sorted({r.party_id for r in av.parties})
            for party_id in party_ids:
                out.append(LateRecord(drop, av.attempt.attempt_id, party_id, f.kind, f.record_id, f.at))
    return sorted(out)


# ============================================================================ formatting


def pct(numerator: int, denominator: int) -> Decimal | None:
    """numerator x 100 / denominator to 2 decimals, half away from zero; None if denominator is 0."""
    if not denominator:
        return None
    with localcontext() as ctx:
        ctx.prec = 60  # far more digits than any test value needs, so the half-way check is exact
        return (Decimal(numerator) * 100 / Decimal(denominator)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def fmt(value: Any) -> str:
    """A value as the exported CSV shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)  # str and int


COLUMNS: dict[str, tuple[str, ...]] = {  # spec section 5, in export order
    report_id: tuple(names.split())
    for report_id, names in {
        "S1MIG-001": "report_date party_id installation_id attempt_no fuel mpan mprn cohort group_id"
        " migration_date completed_at cof_file_name",
        "S1MIG-002": "report_date party_id ma_file_name received_at records_received records_accepted"
        " records_rejected acceptance_rate_pct",
        "S1MIG-003": "report_date party_id ma_file_name ma_record_no installation_id mpxn ma_error_code"
        " ma_error_description",
        "S1MIG-004": "report_date party_id demand allocation scheduled utilisation_pct dmin_met",
        "S1MIG-005": "report_date party_id cohort scheduled succeeded failed success_rate_pct"
        " cumulative_succeeded cumulative_failed",
        "S1MIG-006": "report_date party_id installation_id attempt_no fuel mpan mprn cohort group_id"
        " completion_status completion_reason_code completed_at",
        "S1MIG-007": "report_date party_id cohort group_id failed_stage tmad_step_no reason_code"
        " reason_description failures",
        "S1MIG-008": "report_date party_id installation_id fuel failed_attempts last_attempt_no"
        " last_failure_reason_code last_failed_at retry_eligible exclusion_category excluded_at",
        "S1MIG-009": "report_date party_id sec_party_signifier cof_file_name cof_counter generated_at"
        " records success_records failure_records",
        "S1MIG-010": "report_date cohort group_id party_id eligible_installations migrated excluded"
        " awaiting_outcome failed_outstanding not_yet_attempted pct_migrated",
    }.items()
}

KEYS: dict[str, tuple[str, ...]] = {
    "S1MIG-001": ("party_id", "installation_id", "attempt_no"),
    "S1MIG-002": ("party_id", "ma_file_name"),
    "S1MIG-003": ("party_id", "ma_file_name", "ma_record_no"),
    "S1MIG-004": ("party_id",),
    "S1MIG-005": ("party_id", "cohort"),
    "S1MIG-006": ("party_id", "installation_id", "attempt_no"),
    "S1MIG-007": ("party_id", "cohort", "group_id", "failed_stage", "tmad_step_no", "reason_code"),
    "S1MIG-008": ("party_id", "installation_id"),
    "S1MIG-009": ("party_id", "cof_file_name"),
    "S1MIG-010": ("party_id", "cohort", "group_id"),
}


def _finish(report_id: str, rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Check the columns, sort by the typed key values (NULLs last), then format."""
    columns = COLUMNS[report_id]
    for row in rows:
        assert tuple(row) == columns, (report_id, tuple(row))
    rows.sort(key=lambda row: tuple((row[k] is None, row[k] if row[k] is not None else 0) for k in KEYS[report_id]))
    return [{c: fmt(row[c]) for c in columns} for row in rows]


# ============================================================================ the reports


def report_001(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Successfully Migrated Installations: attempt x party, Success completed on D."""
    m = Model(wh, report_date)
    rows = []
    for av, r in m.completions_on("Success", day_only=True):
        a = av.attempt
        rows.append(
            {
                "report_date": report_date,
                "party_id": r.party_id,
                "installation_id": a.installation_id,
                "attempt_no": a.attempt_no,
                "fuel": r.fuel,
                "mpan": r.mpan,
                "mprn": r.mprn,
                "cohort": av.cohort,
                "group_id": av.group_id,
                "migration_date": a.scheduled_for,
                "completed_at": av.completion.completed_at,
                "cof_file_name": success_cof(av.cofs, r.party_id).cof_file_name,
            }
        )
    return _finish("S1MIG-001", rows)


def report_002(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """MA Receipt Summary: one row per MA file received on D."""
    m = Model(wh, report_date)
    files: dict[str, list[Any]] = defaultdict(list)
    for rec in m.wh.migration_authorisations:
        if in_day(rec.received_at, report_date):
            files[rec.ma_file_name].append(rec)
    rows = []
    for name, recs in files.items():
        accepted = sum(1 for r in recs if r.ma_status == "ACCEPTED")
        rejected = sum(1 for r in recs if r.ma_status == "REJECTED")
        rows.append(
            {
                "report_date": report_date,
                "party_id": recs[0].party_id,
                "ma_file_name": name,
                "received_at": recs[0].received_at,
                "records_received": len(recs),
                "records_accepted": accepted,
                "records_rejected": rejected,
                "acceptance_rate_pct": pct(accepted, len(recs)),
            }
        )
    return _finish("S1MIG-002", rows)


def report_003(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """MA Rejections: one row per rejected MA record received on D."""
    m = Model(wh, report_date)
    rows = []
    for rec in m.wh.migration_authorisations:
        if rec.ma_status == "REJECTED" and in_day(rec.received_at, report_date):
            rows.append(
                {
                    "report_date": report_date,
                    "party_id": rec.party_id,
                    "ma_file_name": rec.ma_file_name,
                    "ma_record_no": rec.ma_record_no,
                    "installation_id": rec.installation_id,
                    "mpxn": rec.mpxn,
                    "ma_error_code": rec.ma_error_code,
                    "ma_error_description": MA_ERROR_CODES.get(rec.ma_error_code),
                }
            )
    return _finish("S1MIG-003", rows)


def report_004(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Capacity and Demand: one row per party with an allocation for migration_date = D."""
    m = Model(wh, report_date)
    latest: dict[str, Any] = {}
    for alloc in m.wh.capacity_allocations:  # latest allocated_at wins; a tie goes to the later-loaded row
        if alloc.migration_date == report_date:
            if alloc.party_id not in latest or alloc.allocated_at >= latest[alloc.party_id].allocated_at:
                latest[alloc.party_id] = alloc
    scheduled = Counter(a.party_id for a in m.wh.migration_attempts if a.scheduled_for == report_date)
    rows = []
    for party_id, alloc in latest.items():
        rows.append(
            {
                "report_date": report_date,
                "party_id": party_id,
                "demand": alloc.demand,
                "allocation": alloc.allocation,
                "scheduled": scheduled[party_id],
                "utilisation_pct": pct(scheduled[party_id], alloc.allocation),
                "dmin_met": alloc.allocation >= min(alloc.demand, DMIN),
            }
        )
    return _finish("S1MIG-004", rows)


def report_005(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Daily Migration Progress: one row per (party, cohort) with any non-zero count."""
    m = Model(wh, report_date)
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for av in m.attempts:
        if av.attempt.scheduled_for == report_date:
            for r in av.parties:
                counts[(r.party_id, av.cohort)]["scheduled"] += 1
    for status, name in (("Success", "succeeded"), ("Failure", "failed")):
        for av, r in m.completions_on(status, day_only=True):
            counts[(r.party_id, av.cohort)][name] += 1
        for av, r in m.completions_on(status, day_only=False):
            counts[(r.party_id, av.cohort)]["cumulative_" + name] += 1
    rows = []
    for (party_id, cohort), c in counts.items():
        if not any(c.values()):
            continue
        rows.append(
            {
                "report_date": report_date,
                "party_id": party_id,
                "cohort": cohort,
                "scheduled": c["scheduled"],
                "succeeded": c["succeeded"],
                "failed": c["failed"],
                "success_rate_pct": pct(c["succeeded"], c["succeeded"] + c["failed"]),
                "cumulative_succeeded": c["cumulative_succeeded"],
                "cumulative_failed": c["cumulative_failed"],
            }
        )
    return _finish("S1MIG-005", rows)


def report_006(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Migration Completion Status: attempt x party, completed (Success or Failure) on D."""
    m = Model(wh, report_date)
    rows = []
    for status in ("Success", "Failure"):
        for av, r in m.completions_on(status, day_only=True):
            a = av.attempt
            rows.append(
                {
                    "report_date": report_date,
                    "party_id": r.party_id,
                    "installation_id": a.installation_id,
                    "attempt_no": a.attempt_no,
                    "fuel": r.fuel,
                    "mpan": r.mpan,
                    "mprn": r.mprn,
                    "cohort": av.cohort,
                    "group_id": av.group_id,
                    "completion_status": status,
                    "completion_reason_code": av.completion.reason_code if status == "Failure" else None,
                    "completed_at": av.completion.completed_at,
                }
            )
    return _finish("S1MIG-006", rows)


def report_007(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Failure Analysis: 006 Failure rows on D counted by (party, cohort, group, stage, step, reason)."""
    m = Model(wh, report_date)
    failures: Counter = Counter()
    for av, r in m.completions_on("Failure", day_only=True):
        c = av.completion
        failures[(r.party_id, av.cohort, av.group_id, c.failed_stage, c.step_no, c.reason_code)] += 1
    rows = []
    for (party_id, cohort, group_id, stage, step, code), n in failures.items():
        rows.append(
            {
                "report_date": report_date,
                "party_id": party_id,
                "cohort": cohort,
                "group_id": group_id,
                "failed_stage": stage,
                "tmad_step_no": step,
                "reason_code": code,
                "reason_description": REASON_CODES[code][3] if code in REASON_CODES else None,
                "failures": n,
            }
        )
    return _finish("S1MIG-007", rows)


def _exclusion(m: Model, installation_id: str, failures: list[AttemptView]) -> tuple[str | None, datetime | None]:
    """008's exclusion_category / excluded_at for an installation with these Failure attempts."""
    explicit = m.latest_exclusion(installation_id)
    if explicit is not None:
        return explicit.exclusion_category, explicit.excluded_at
    if len(failures) >= 5:
        return "FIVE_FAILED_ATTEMPTS", _last_failure(failures).completion.completed_at
    return None, None


def _last_failure(failures: list[AttemptView]) -> AttemptView:
    return max(failures, key=lambda av: (av.completion.completed_at, av.attempt.attempt_no, av.attempt.attempt_id))


def report_008(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Retry and Exclusion Status: installation x party (responsible at end of D) with a
    Failure and no Success on or before D."""
    m = Model(wh, report_date)
    rows = []
    for installation_id in m.installation_versions:
        views = m.attempts_by_installation[installation_id]
        failures = [av for av in views if av.status == "Failure"]
        if not failures or any(av.status == "Success" for av in views):
            continue
        last = _last_failure(failures)
        code = last.completion.reason_code
        category, excluded_at = _exclusion(m, installation_id, failures)
        retryable = code in REASON_CODES and REASON_CODES[code][2]
        for r in responsibilities(m.installation_at_end(installation_id)):
            rows.append(
                {
                    "report_date": report_date,
                    "party_id": r.party_id,
                    "installation_id": installation_id,
                    "fuel": r.fuel,
                    "failed_attempts": len(failures),
                    "last_attempt_no": last.attempt.attempt_no,
                    "last_failure_reason_code": code,
                    "last_failed_at": last.completion.completed_at,
                    "retry_eligible": category is None and retryable,
                    "exclusion_category": category,
                    "excluded_at": excluded_at,
                }
            )
    return _finish("S1MIG-008", rows)


def report_009(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """COF Dispatch: one row per COF file generated on D."""
    m = Model(wh, report_date)
    files: dict[str, list[Any]] = defaultdict(list)
    for c in m.wh.cof_records:
        if in_day(c.generated_at, report_date):
            files[c.cof_file_name].append(c)
    rows = []
    for name, recs in files.items():
        first = recs[0]
        rows.append(
            {
                "report_date": report_date,
                "party_id": first.party_id,
                "sec_party_signifier": first.sec_party_signifier,
                "cof_file_name": name,
                "cof_counter": first.cof_counter,
                "generated_at": first.generated_at,
                "records": len(recs),
                "success_records": sum(1 for c in recs if c.response == "SUCCESS"),
                "failure_records": sum(1 for c in recs if c.response == "FAILURE"),
            }
        )
    return _finish("S1MIG-009", rows)


CATEGORIES_010 = ("migrated", "excluded", "awaiting_outcome", "failed_outstanding", "not_yet_attempted")


def category_010(m: Model, installation_id: str) -> str:
    """The one 010 category of an installation as at end of D; first match wins."""
    views = m.attempts_by_installation[installation_id]
    failures = [av for av in views if av.status == "Failure"]
    if any(av.status == "Success" for av in views):
        return "migrated"
    if _exclusion(m, installation_id, failures)[0] is not None:
        return "excluded"
    if any(av.completion is None for av in views):  # every attempt here has scheduled_at before end of D
        return "awaiting_outcome"
    if failures:
        return "failed_outstanding"
    return "not_yet_attempted"


def report_010(wh: Warehouse, report_date: date) -> list[dict[str, str]]:
    """Cohort Migration Progress: (cohort, group_id, party) over installations responsible
    as at end of D with eligible_from <= D."""
    m = Model(wh, report_date)
    counts: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    for installation_id in m.installation_versions:
        inst = m.installation_at_end(installation_id)
        if inst is None or inst.eligible_from is None or inst.eligible_from > report_date:
            continue
        category = category_010(m, installation_id)
        for r in responsibilities(inst):
            counts[(inst.cohort, inst.group_id, r.party_id)][category] += 1
    rows = []
    for (cohort, group_id, party_id), c in counts.items():
        eligible = sum(c[k] for k in CATEGORIES_010)
        rows.append(
            {
                "report_date": report_date,
                "cohort": cohort,
                "group_id": group_id,
                "party_id": party_id,
                "eligible_installations": eligible,
                **{k: c[k] for k in CATEGORIES_010},
                "pct_migrated": pct(c["migrated"], eligible),
            }
        )
    return _finish("S1MIG-010", rows)


REPORTS: dict[str, Callable[[Warehouse, date], list[dict[str, str]]]] = {
    "S1MIG-001": report_001,
    "S1MIG-002": report_002,
    "S1MIG-003": report_003,
    "S1MIG-004": report_004,
    "S1MIG-005": report_005,
    "S1MIG-006": report_006,
    "S1MIG-007": report_007,
    "S1MIG-008": report_008,
    "S1MIG-009": report_009,
    "S1MIG-010": report_010,
}
assert tuple(REPORTS) == REPORT_IDS == tuple(COLUMNS) == tuple(KEYS)


# ============================================================================ export view (spec section 7)


def parties_as_at(wh: Warehouse, report_date: date) -> list[str]:
    """Every party with a version effective before end of D, sorted."""
    end = end_of(report_date)
    return sorted({p.party_id for p in wh.parties if p.effective_from < end})


def expected_files(
    wh: Warehouse, report_date: date, report_ids: Iterable[str] = REPORT_IDS
) -> dict[str, dict[str, list[dict[str, str]]]]:
    """party_id -> report_id -> that party's rows (an empty list is a nil return), for
    every party existing as at end of D. Rows of parties not in `parties` are dropped."""
    all_rows = {rid: REPORTS[rid](wh, report_date) for rid in report_ids}
    return {
        party_id: {rid: [row for row in rows if row["party_id"] == party_id] for rid, rows in all_rows.items()}
        for party_id in parties_as_at(wh, report_date)
    }


def file_name(report_id: str, party_id: str, report_date: date) -> str:
    """`<party_id>/<report_id>_<party_id>_<YYYYMMDD>.csv`, relative to `<out>/<YYYY-MM-DD>/`."""
    return f"{party_id}/{report_id}_{party_id}_{report_date:%Y%m%d}.csv"


def to_csv(report_id: str, rows: list[dict[str, str]]) -> str:
    """An export file's text: header of the section 5 names, `\\n` line ends, quoting only
    where a value needs it."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS[report_id])
    for row in rows:
        writer.writerow([row[c] for c in COLUMNS[report_id]])
    return buf.getvalue()
