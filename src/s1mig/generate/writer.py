"""Drop folders: each record goes to the drop of its local day; every drop gets its manifest."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from s1mig.contract import EXTRACTS

from .clock import fmt_ts, local_midnight


class _HashingFile:
    """A text sink for csv.writer that writes UTF-8 bytes and hashes them on the way."""

    def __init__(self, path: Path):
        self.fh = open(path, "wb", buffering=1 << 20)  # closed by close()
        self.sha = hashlib.sha256()

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self.sha.update(data)
        self.fh.write(data)

    def close(self) -> str:
        self.fh.close()
        return self.sha.hexdigest()


class DropWriter:
    """Routes each record to the drop of the local day of its time; one drop open at a time.

    Records must arrive in time order (earlier drops are closed for good); anything
    before the first day goes in the first drop.
    """

    def __init__(self, out: Path, start: date, days: int, progress: bool):
        self.out = out
        self.dates = [start + timedelta(days=k) for k in range(days)]
        self.bounds = [local_midnight(d) for d in self.dates] + [local_midnight(start + timedelta(days=days))]
        self.progress = progress
        self.current = -1
        self.drops: list[Path] = []
        self.files: dict[str, _HashingFile] = {}
        self.writers: dict[str, Any] = {}
        self.rows: dict[str, int] = {}
        self._open(0)

    @property
    def end(self) -> int:
        """End of the last day: records from here on belong to later drops."""
        return self.bounds[-1]

    def write(self, extract: str, t: int, row: Sequence[Any]) -> None:
        if t >= self.bounds[self.current + 1]:
            self._advance(t)
        if self.current > 0 and t < self.bounds[self.current]:
            raise RuntimeError(f"record at {fmt_ts(t)} arrived after its drop was closed")
        self.writers[extract].writerow(row)
        self.rows[extract] += 1

    def finish(self) -> list[Path]:
        self._advance(self.end)
        return self.drops

    def _advance(self, t: int) -> None:
        while self.current < len(self.dates) and t >= self.bounds[self.current + 1]:
            self._close()
            if self.current + 1 < len(self.dates):
                self._open(self.current + 1)
            else:
                self.current += 1

    def _open(self, k: int) -> None:
        self.current = k
        folder = self.out / self.dates[k].isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        for ex in EXTRACTS:
            (folder / f"{ex.name}.csv.gz").unlink(missing_ok=True)  # a stale alternative
            sink = _HashingFile(folder / f"{ex.name}.csv")
            writer = csv.writer(sink, lineterminator="\n")
            writer.writerow(ex.columns)
            self.files[ex.name], self.writers[ex.name], self.rows[ex.name] = sink, writer, 0
        self.drops.append(folder)

    def _close(self) -> None:
        drop_date = self.dates[self.current]
        extracts = [
            {
                "name": ex.name,
                "file": f"{ex.name}.csv",
                "rows": self.rows[ex.name],
                "sha256": self.files[ex.name].close(),
            }
            for ex in EXTRACTS
        ]
        manifest = {"drop_date": drop_date.isoformat(), "extracts": extracts}
        (self.drops[-1] / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if self.progress:
            counts = " ".join(f"{e['name']}={e['rows']}" for e in extracts)
            print(f"generate: drop {drop_date} written: {counts}", file=sys.stderr, flush=True)
