"""Loading: every drop folder checked against its manifest (spec section 2) and parsed into typed records."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from dataclasses import dataclass, make_dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from s1mig.contract import EXTRACTS, EXTRACTS_BY_NAME

from .clock import parse_ts

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
