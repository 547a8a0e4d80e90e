"""Restatement (spec "Runs, corrections and restatement"): after a drop for a past date D'
is delivered again with different content (a correction; land.land returns "replaced")
and D' has been gated and exported again, every later date already exported to the same
out folder is built, gated and exported again, in date order, each from the data as at
end of that date. A date whose report files come out the same keeps its revision; one
whose files change gets the next revision (the previous one kept under
<out>/<D>/revisions/<n>/). The evidence of every restated date names the corrected drop.

Which dates were exported is read from the out folder itself: every <out>/<YYYY-MM-DD>/
holding a manifest.json is a published export, whatever run wrote it. Exports of later
dates that audit.export_evidence records in *other* out folders are not touched (they
were not asked for); each is named in a warning so that nothing stale goes unsaid.

In a DAG run (`pending` given: the run's pending area, s1mig.release) the restated dates are
exported to the pending area beside the run's own date, not published: they leave with the
run's release (approved, or auto-released where four-eyes release is off) and a rejection
publishes none of them. Dates already in the run's pending area are not stale: they are the
run's own new exports."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

from s1mig import db, dbt, evidence, export, gate, release, summary
from s1mig.errors import S1migError

log = logging.getLogger(__name__)

_DATE_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}")


def exported_dates(out: Path) -> list[dt.date]:
    """The dates published in the out folder (a date folder with a manifest.json), in order."""
    if not out.is_dir():
        return []
    dates = []
    for child in out.iterdir():
        if not (_DATE_FOLDER.fullmatch(child.name) and (child / "manifest.json").is_file()):
            continue
        try:
            dates.append(dt.date.fromisoformat(child.name))
        except ValueError:
            continue
    return sorted(dates)


def stale_dates(out: Path, url: str | None = None, after: dt.date | None = None) -> list[dt.date]:
    """Exported dates in `out` (after `after`) whose evidence.json names other deliveries
    of the drops up to that date than the warehouse's current ones: a correction landed
    after they were exported and they have not been restated since (e.g. an earlier
    restatement stopped at a blocked date). A date without readable evidence counts as stale."""
    with db.connect(url) as conn:
        current: dict[dt.date, str] = dict(
            conn.execute("select drop_date, delivery_sha256 from raw.drop_ledger where superseded_at is null")
        )
    stale = []
    for day in exported_dates(out):
        if after is not None and day <= after:
            continue
        try:
            record = json.loads((out / day.isoformat() / "evidence.json").read_text())
            used = {dt.date.fromisoformat(i["drop_date"]): i["delivery_sha256"] for i in record["inputs"]}
        except (OSError, ValueError, KeyError, TypeError):
            used = None
        if used != {d: sha for d, sha in current.items() if d <= day}:
            stale.append(day)
    return stale


def exported_elsewhere(url: str, out: Path, after: dt.date) -> dict[str, list[dt.date]]:
    """Later dates that audit.export_evidence says were exported to other folders that
    still hold them: {folder: [dates]}."""
    with db.connect(url) as conn:
        if db.scalar(conn, "select to_regclass('audit.export_evidence')") is None:
            return {}
        rows = conn.execute(
            "select distinct evidence->>'out_folder', report_date from audit.export_evidence "
            "where report_date > %s and evidence->>'out_folder' is not null and evidence->>'out_folder' <> %s "
            "order by 1, 2",
            (after, str(out.resolve())),
        ).fetchall()
    found: dict[str, list[dt.date]] = {}
    for folder, day in rows:
        if (Path(folder) / day.isoformat() / "manifest.json").is_file():
            found.setdefault(folder, []).append(day)
    return found


def _revision(folder: Path) -> int:
    return int(json.loads((folder / "manifest.json").read_text()).get("revision", 1))


def _restate_date(
    day: dt.date,
    out: Path,
    url: str,
    run_id: str,
    reason: dict,
    echo: Callable[[str], object] | None,
    pending: Path | None = None,
) -> Path:
    """One date again, as at its own end of day: dbt build, gate, export (a new revision
    only when its files change; the evidence carries `reason`) and the run summary; into
    the run's pending area when `pending` is given."""
    dbt.build(day, url, echo=echo)
    gate.run_gate(day, run_id, url)
    if pending is None:
        folder = export.export_date(day, out, url, run_id, restatement=reason)
        summary.write_summary(day, folder, run_id, url)
        return folder
    folder = export.stage(day, out, pending, url, run_id, restatement=reason)
    awaiting = release.summary_state(None) if release.four_eyes() else None
    release.write_summary(day, folder, run_id, url, awaiting, folder)
    return folder


def restate_later_dates(
    corrected_date: dt.date,
    out: Path,
    url: str | None = None,
    run_id: str = "direct",
    echo: Callable[[str], object] | None = print,
    pending: Path | None = None,
) -> list[dt.date]:
    """Build, gate and export again (with the run summary) every date after
    `corrected_date` that is exported in `out`, in date order; returns those dates.

    Call it after the run of `corrected_date` has exported that date, when its land step
    returned "replaced". Stops at the first date that fails (dbt, gate or R9) with a
    one-line S1migError naming that date and the later dates left unrestated; the dates
    before it are already restated, the failed and later ones keep their published files."""
    say = echo or (lambda _line: None)
    url = url or db.warehouse_url()
    later = [d for d in exported_dates(out) if d > corrected_date]
    with db.connect(url) as conn:
        cause = evidence.corrected_drop(conn, corrected_date)
        landed = {r[0] for r in conn.execute("select drop_date from raw.drop_ledger where superseded_at is null")}
    if cause is None:
        raise S1migError(f"cannot restate after {corrected_date}: no drop of {corrected_date} is landed")
    for elsewhere, days in exported_elsewhere(url, out, corrected_date).items():
        line = (
            f"restatement: {elsewhere} also holds exports of {', '.join(map(str, days))}, made before the correction "
            f"of {corrected_date}; they are not restated (re-run those dates with --out {elsewhere})"
        )
        log.warning(line)
        say(line)
    if not later:
        return []
    unlanded = [d for d in later if d not in landed]
    if unlanded:
        raise S1migError(
            f"cannot restate the dates after {corrected_date} in {out}: {', '.join(map(str, unlanded))} "
            "exported there but not landed in this warehouse (land those drops first)"
        )
    reason = {"corrected_drop": cause}
    say(
        f"restatement: drop {corrected_date} was corrected (delivery {cause['delivery_sha256'][:12]}): "
        f"{len(later)} later exported date(s) to restate: {', '.join(map(str, later))}"
    )
    done: list[dt.date] = []
    for i, day in enumerate(later):
        before = _revision(out / day.isoformat())
        try:
            folder = _restate_date(day, out, url, run_id, reason, echo, pending)
        except S1migError as err:
            left = ", ".join(map(str, later[i:]))
            raise S1migError(
                f"restatement after the correction of {corrected_date} stopped at {day} ({err}); not restated: {left}"
            ) from err
        revision = _revision(folder)
        change = (
            f"files changed, revision {before} kept in {out / day.isoformat() / export.REVISIONS / str(before)}"
            if revision != before
            else "files unchanged"
        )
        say(f"restatement: {day} gated and exported again: revision {revision} ({change})")
        done.append(day)
    return done


def _changed_drops(used: dict[dt.date, str] | None, current: dict[dt.date, str], day: dt.date) -> list[dt.date]:
    """The drop dates up to `day` whose current delivery differs from the one an export used."""
    now = {d: sha for d, sha in current.items() if d <= day}
    if used is None:
        return sorted(now)
    return sorted(d for d in set(now) | set(used) if now.get(d) != used.get(d))


def restate_stale(
    out: Path,
    url: str | None = None,
    run_id: str = "direct",
    echo: Callable[[str], object] | None = print,
    pending: Path | None = None,
) -> list[dt.date]:
    """Build, gate and export again, in date order, every date exported in `out` from
    deliveries that are no longer current: a correction landed without its own date's run
    (s1mig land), a run of the corrected date that stopped before its restatement, or a
    restatement that stopped at a blocked date. Each restated date's evidence names the
    earliest drop whose delivery changed since its export. Dates exported in `out` but
    not landed in this warehouse are left alone, with a warning. Returns the dates
    restated; stops at the first that fails with a one-line S1migError."""
    say = echo or (lambda _line: None)
    url = url or db.warehouse_url()
    own = set(release.pending_dates(pending)) if pending is not None else set()
    stale = [d for d in stale_dates(out, url) if d not in own]
    if not stale:
        return []
    with db.connect(url) as conn:
        current: dict[dt.date, str] = dict(
            conn.execute("select drop_date, delivery_sha256 from raw.drop_ledger where superseded_at is null")
        )
        causes: dict[dt.date, dict | None] = {}
        for day in stale:
            try:
                record = json.loads((out / day.isoformat() / "evidence.json").read_text())
                used = {dt.date.fromisoformat(i["drop_date"]): i["delivery_sha256"] for i in record["inputs"]}
            except (OSError, ValueError, KeyError, TypeError):
                used = None
            changed = [d for d in _changed_drops(used, current, day) if d in current]
            causes[day] = evidence.corrected_drop(conn, changed[0]) if changed else None
    unlanded = [d for d in stale if d not in current]
    if unlanded:
        line = (
            f"restatement: {', '.join(map(str, unlanded))} exported in {out} but not landed in this warehouse: "
            "not restated (land those drops first)"
        )
        log.warning(line)
        say(line)
    todo = [d for d in stale if d in current]
    if not todo:
        return []
    say(
        f"restatement: {len(todo)} exported date(s) made from deliveries no longer current: {', '.join(map(str, todo))}"
    )
    done: list[dt.date] = []
    for i, day in enumerate(todo):
        before = _revision(out / day.isoformat())
        try:
            folder = _restate_date(day, out, url, run_id, {"corrected_drop": causes[day]}, echo, pending)
        except S1migError as err:
            left = ", ".join(map(str, todo[i:]))
            raise S1migError(f"restatement of stale exports stopped at {day} ({err}); not restated: {left}") from err
        revision = _revision(folder)
        change = f"files changed, revision {revision}" if revision != before else "files unchanged"
        say(f"restatement: {day} gated and exported again ({change})")
        done.append(day)
    return done
