"""The export view (spec section 7): each party's files as at end of D, their names and text."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date

from s1mig.contract import REPORT_IDS

from .clock import end_of
from .formatting import COLUMNS
from .loading import Warehouse
from .reports import REPORTS


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
