"""The run summary of a report date: one self-contained HTML page (inline CSS and SVG,
no scripts, nothing fetched) beside the exports, for the operator who would rather look
than read. It opens with a one-line verdict (blocked by which rule, awaiting approval,
released or rejected, with the warnings and open breaks counted), then the gate's rule
table, the open breaks, rows per report per party, and three charts with titled axes:
cumulative migration by cohort (S1MIG-010, with the eligible installations beside the
percentage), daily successes and failures (S1MIG-005) and failures by stage (S1MIG-007).
Reads small aggregates only, never a whole mart."""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from pathlib import Path

from s1mig import breaks, db
from s1mig.contract import REPORTS
from s1mig.gate import inherited_counts

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
W, H = 640, 280
# the plot area inside each chart: room on the left for the y axis' numbers and title,
# below for the x axis' labels and title, on the right for a second axis when there is one
LEFT, TOP, BOTTOM = 64, 12, 52


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _right(dual: bool) -> int:
    return 64 if dual else 16


def _x(i: int, n: int, dual: bool = False) -> float:
    return LEFT + (W - LEFT - _right(dual)) * (i + 0.5) / max(n, 1)


def _y(value: float, max_y: float) -> float:
    return H - BOTTOM - (H - BOTTOM - TOP) * (value / max_y if max_y else 0)


def _fmt(value: float, unit: str = "") -> str:
    return f"{value:,.0f}{unit}"


def _axes(
    max_y: float,
    labels: list[str],
    y_title: str,
    x_title: str,
    y_unit: str = "",
    right: tuple[float, str] | None = None,
) -> list[str]:
    """Both axes with their ticks and titles (units in the titles); `right`: a second
    y axis (its top, its title) on the right-hand side."""
    dual = right is not None
    x_end = W - _right(dual)
    parts = [
        f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{x_end}" y2="{H - BOTTOM}" stroke="#444"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="#444"/>',
    ]
    for i in range(5):
        y = H - BOTTOM - (H - BOTTOM - TOP) * i / 4
        parts.append(
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
            f"{_fmt(max_y * i / 4, y_unit)}</text>"
        )
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{x_end}" y2="{y:.1f}" stroke="#eee"/>')
        if right:
            parts.append(
                f'<text x="{x_end + 4}" y="{y + 4:.1f}" font-size="10" fill="#555">{_fmt(right[0] * i / 4)}</text>'
            )
    mid = TOP + (H - BOTTOM - TOP) / 2
    parts.append(
        f'<text class="y-title" transform="translate(14 {mid:.1f}) rotate(-90)" text-anchor="middle" '
        f'font-size="11">{_esc(y_title)}</text>'
    )
    if right:
        parts.append(
            f'<text class="y-title" transform="translate({W - 8} {mid:.1f}) rotate(90)" text-anchor="middle" '
            f'font-size="11" fill="#555">{_esc(right[1])}</text>'
        )
    step = max(1, math.ceil(len(labels) / 8))
    for i, label in enumerate(labels):
        if i % step == 0 or i == len(labels) - 1 and (len(labels) - 1) % step > step / 2:
            parts.append(
                f'<text x="{_x(i, len(labels), dual):.1f}" y="{H - BOTTOM + 14}" text-anchor="middle" '
                f'font-size="10">{_esc(label)}</text>'
            )
    parts.append(
        f'<text class="x-title" x="{LEFT + (x_end - LEFT) / 2:.1f}" y="{H - 8}" text-anchor="middle" '
        f'font-size="11">{_esc(x_title)}</text>'
    )
    if not labels:
        parts.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="13">nothing to show</text>')
    return parts


def _nice_max(value: float) -> float:
    """A top for the y axis whose four steps are round numbers (1, 2, 2.5 or 5 x 10^k)."""
    raw = max(value, 1) / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return step * 4


def _legend(keys: list[tuple[str, str, bool]]) -> str:
    """(name, colour, dashed) per key."""
    items = "".join(
        f'<span class="key"><i class="{"dashed" if dashed else "solid"}" style="border-color:{colour}"></i>'
        f"{_esc(name)}</span>"
        for name, colour, dashed in keys
    )
    return f'<div class="legend">{items}</div>'


def _figure(title: str, parts: list[str], keys: list[tuple[str, str, bool]]) -> str:
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="{_esc(title)}">'
    return f"<figure><figcaption>{_esc(title)}</figcaption>{svg}{''.join(parts)}</svg>{_legend(keys)}</figure>"


def _polyline(values: list[float], max_y: float, colour: str, name: str, dual: bool, dashed: bool = False) -> str:
    """A series as a line with a marker per point (filled; hollow for a dashed series)."""
    n = len(values)
    points = " ".join(f"{_x(j, n, dual):.1f},{_y(v, max_y):.1f}" for j, v in enumerate(values))
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    fill = "#fff" if dashed else colour
    markers = "".join(
        f'<circle cx="{_x(j, n, dual):.1f}" cy="{_y(v, max_y):.1f}" r="3" fill="{fill}" stroke="{colour}" '
        f'stroke-width="1.5"><title>{_esc(name)}: {v:,.1f}</title></circle>'
        for j, v in enumerate(values)
    )
    return (
        f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{points}">'
        f"<title>{_esc(name)}</title></polyline>{markers if n <= 60 else ''}"
    )


def progress_chart(title: str, labels: list[str], pct: dict[str, list[float]], eligible: dict[str, list[float]]) -> str:
    """Per cohort: the % of eligible installations migrated (solid, left axis) and the
    eligible installations themselves (dashed, hollow points, right axis, same colour),
    so a rise in eligible installations shows as the reason for a drop in the
    percentage. The legend gives both figures of the last date."""
    right_max = _nice_max(max([v for vals in eligible.values() for v in vals] + [1]))
    parts = _axes(
        100, labels, "% of eligible installations migrated", "report date", "%", (right_max, "eligible installations")
    )
    keys: list[tuple[str, str, bool]] = []
    for i, cohort in enumerate(pct):
        colour = PALETTE[i % len(PALETTE)]
        parts.append(_polyline(pct[cohort], 100, colour, f"{cohort}: % migrated", True))
        parts.append(_polyline(eligible[cohort], right_max, colour, f"{cohort}: eligible installations", True, True))
        last = f" ({pct[cohort][-1]:.1f}% of {eligible[cohort][-1]:,.0f} on {labels[-1]})" if labels else ""
        keys += [(f"{cohort} % migrated{last}", colour, False), (f"{cohort} eligible", colour, True)]
    return _figure(title, parts, keys)


def bar_chart(title: str, labels: list[str], series: dict[str, list[float]], y_title: str, x_title: str) -> str:
    max_y = _nice_max(max([v for vals in series.values() for v in vals] + [1]))
    parts = _axes(max_y, labels, y_title, x_title)
    n, k = len(labels), max(len(series), 1)
    slot = (W - LEFT - _right(False)) / max(n, 1)
    width = slot * 0.8 / k
    for i, (name, values) in enumerate(series.items()):
        for j, v in enumerate(values):
            x = LEFT + slot * j + slot * 0.1 + width * i
            y = _y(v, max_y)
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{H - BOTTOM - y:.1f}" '
                f'fill="{PALETTE[i % len(PALETTE)]}"><title>{_esc(name)} {_esc(labels[j])}: {v:,.0f}'
                f"</title></rect>"
            )
    return _figure(title, parts, [(name, PALETTE[i % len(PALETTE)], False) for i, name in enumerate(series)])


def _rows(conn, query: str, params: tuple) -> list[tuple]:
    return conn.execute(query, params).fetchall()


RELEASE_STATES = ("awaiting approval", "released", "auto-released", "rejected")


def verdict(
    report_date: dt.date,
    gate: list[tuple],
    open_breaks: int,
    release: dict | None = None,
) -> tuple[str, str]:
    """The run's outcome in one line, and its kind (blocked, not-gated, awaiting,
    released, rejected, passed): blocked by which rule(s) when a blocking rule failed
    (the release cannot change that), else what the release says (None: the summary
    cannot say, so only the gate's outcome), with the warnings and open breaks counted.
    `gate`: audit.gate_results rows (rule_id, rule_name, severity, status, failing_count, ...)."""
    failed = [g for g in gate if g[3] == "fail"]
    warned = [g for g in gate if g[3] == "warn"]
    rows = sum(g[4] for g in warned)
    counts = (
        f"{len(warned)} warning rule{'' if len(warned) == 1 else 's'}"
        + (f" ({', '.join(g[0] for g in warned)}: {rows:,} row{'' if rows == 1 else 's'})" if warned else "")
        + f", {open_breaks} open break{'' if open_breaks == 1 else 's'}"
    )
    if not gate:
        return (
            "not-gated",
            f"NOT GATED: no gate result of this run for {report_date}; nothing may be released · {counts}",
        )
    if failed:
        rules = "; ".join(f"{g[0]} {g[1]} ({g[4]:,} failing)" for g in failed)
        return "blocked", f"BLOCKED by {rules}: nothing of this run is released for {report_date} · {counts}"
    state = (release or {}).get("state")
    if release is not None and state not in RELEASE_STATES:
        raise ValueError(f"release state {state!r} is not one of {', '.join(RELEASE_STATES)}")
    by = f" by {release['by']}" if release and release.get("by") else ""
    at = f" at {release['at']}" if release and release.get("at") else ""
    why = f" (why: {release['why']})" if release and release.get("why") else ""
    if state == "awaiting approval":
        since = f" since {release['at']}" if release and release.get("at") else ""
        head = f"AWAITING APPROVAL{since}: the files of {report_date} are held until someone releases them"
        return "awaiting", f"{head} · gate passed · {counts}"
    if state == "released":
        return "released", f"RELEASED{by}{at}{why} · gate passed · {counts}"
    if state == "auto-released":
        return "released", f"RELEASED automatically{at} (no approval asked) · gate passed · {counts}"
    if state == "rejected":
        return "rejected", f"REJECTED{by}{at}{why}: nothing of this run is published for {report_date} · {counts}"
    return "passed", f"GATE PASSED for {report_date} (release not recorded in this summary) · {counts}"


def write_summary(
    report_date: dt.date, folder: Path, run_id: str, url: str | None = None, *, release: dict | None = None
) -> Path:
    """Write <folder>/run-summary.html for the date folder: it opens with the verdict
    (`verdict`); `release` is {"state": "awaiting approval" | "released" | "auto-released"
    | "rejected", "by", "why", "at"} from the release step, None when the caller cannot
    say. The folder needs no manifest.json (a blocked or rejected run exported nothing)."""
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    with db.connect(url) as conn:
        gate: list[tuple] = []
        if conn.execute("select to_regclass('audit.gate_results') is not null").fetchone() == (True,):
            gate = _rows(
                conn,
                "select rule_id, rule_name, severity, status, failing_count, sample_keys "
                "from audit.gate_results where report_date = %s and run_id = %s order by rule_id",
                (report_date, run_id),
            )
        progress = _rows(
            conn,
            "select report_date, cohort, sum(migrated), sum(eligible_installations) "
            "from marts.s1mig_010 where report_date <= %s group by 1, 2 order by 1, 2",
            (report_date,),
        )
        daily = _rows(
            conn,
            "select report_date, sum(succeeded), sum(failed) from marts.s1mig_005 "
            "where report_date <= %s group by 1 order by 1",
            (report_date,),
        )
        stages = _rows(
            conn,
            "select failed_stage, sum(failures) from marts.s1mig_007 where report_date = %s "
            "group by 1 order by min(tmad_step_no)",
            (report_date,),
        )
        open_breaks = breaks.open_breaks(conn, through=report_date)
        inherited = inherited_counts(conn, report_date, run_id)
    kind, line = verdict(report_date, gate, len(open_breaks), release)

    dates = sorted({r[0] for r in progress})
    cohorts = sorted({r[1] for r in progress})
    pct = {c: [0.0] * len(dates) for c in cohorts}
    eligible_by = {c: [0.0] * len(dates) for c in cohorts}
    for d, cohort, migrated, eligible in progress:
        pct[cohort][dates.index(d)] = float(migrated) * 100 / float(eligible) if eligible else 0.0
        eligible_by[cohort][dates.index(d)] = float(eligible or 0)
    charts = [
        progress_chart(
            "Cumulative migration by cohort (S1MIG-010): % of eligible installations migrated, "
            "and how many are eligible",
            [d.strftime("%d %b") for d in dates],
            pct,
            eligible_by,
        ),
        bar_chart(
            "Daily successes and failures (S1MIG-005)",
            [r[0].strftime("%d %b") for r in daily],
            {"succeeded": [float(r[1]) for r in daily], "failed": [float(r[2]) for r in daily]},
            "migration attempts completed",
            "report date",
        ),
        bar_chart(
            f"Failures by stage on {report_date} (S1MIG-007)",
            [r[0] for r in stages],
            {"failures": [float(r[1]) for r in stages]},
            "failed attempts",
            "stage the attempt failed at",
        ),
    ]

    gate_rows = "".join(
        f'<tr class="{_esc(status)}"><td>{_esc(rule)}</td><td>{_esc(name)}</td><td>{_esc(sev)}</td>'
        f"<td>{_esc(status.upper())}</td><td>{count:,}</td><td>{_esc('; '.join(keys))}</td></tr>"
        for rule, name, sev, status, count, keys in gate
    )
    break_rows = "".join(
        f"<tr><td>#{b.break_id}</td><td>{_esc(b.rule_id)}</td><td>{b.first_seen}</td><td>{b.last_seen}</td>"
        f"<td>{_esc(b.instance)}</td></tr>"
        for b in open_breaks
    )
    breaks_html = (
        '<table id="breaks"><tr><th>break</th><th>rule</th><th>first seen</th><th>last seen</th><th>what</th></tr>'
        f"{break_rows}</table><p>Acknowledge one with <code>s1mig breaks ack ID --by NAME --why TEXT</code>.</p>"
        if open_breaks
        else '<p id="breaks">No open breaks.</p>'
    )
    inherited_html = (
        '<table id="inherited"><tr><th>party</th><th>inherited installations</th></tr>'
        + "".join(f"<tr><td>{_esc(p)}</td><td>{n:,}</td></tr>" for p, n in inherited.items())
        + "</table>"
        if inherited
        else '<p id="inherited">No party inherited a migrated installation.</p>'
    )
    files = manifest["files"] if manifest else []
    parties = sorted({f["party_id"] for f in files})
    counts = {(f["party_id"], f["report_id"]): f["rows"] for f in files}
    head = "".join(f"<th>{_esc(r.report_id)}</th>" for r in REPORTS)
    body = "".join(
        f"<tr><td>{_esc(p)}</td>" + "".join(f"<td>{counts.get((p, r.report_id), 0):,}</td>" for r in REPORTS) + "</tr>"
        for p in parties
    )
    if manifest:
        where = (
            f"{len(files)} files for {len(parties)} parties in <code>{_esc(folder)}</code> "
            f"(revision {_esc(manifest.get('revision', 1))}; manifest.json, evidence.json)"
        )
        rows_html = f'<table id="rows"><tr><th>party</th>{head}</tr>{body}</table>'
    else:
        where = f"no files exported in <code>{_esc(folder)}</code>"
        rows_html = '<p id="rows">No report files were exported for this date.</p>'
    release_html = ""
    if release:
        release_html = (
            '<table id="release"><tr><th>release</th><th>by</th><th>at</th><th>why</th></tr>'
            f"<tr><td>{_esc(release.get('state'))}</td><td>{_esc(release.get('by'))}</td>"
            f"<td>{_esc(release.get('at'))}</td><td>{_esc(release.get('why'))}</td></tr></table>"
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>s1mig run summary {report_date}: {_esc(kind)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 13px; }}
td:nth-child(n+2) {{ font-variant-numeric: tabular-nums; }}
tr.fail td {{ background: #fdd; }} tr.warn td {{ background: #ffefc2; }} tr.pass td:nth-child(4) {{ color: #2a7a2a; }}
.verdict {{ font-size: 17px; font-weight: 600; padding: 10px 14px; border-left: 6px solid; max-width: 1280px; }}
.verdict.blocked, .verdict.rejected, .verdict.not-gated {{ background: #fdd; border-color: #c00; }}
.verdict.awaiting {{ background: #ffefc2; border-color: #d90; }}
.verdict.released, .verdict.passed {{ background: #e3f4e3; border-color: #2a7a2a; }}
figure {{ display: inline-block; vertical-align: top; margin: 0 1.5em 1.5em 0; }} svg {{ width: {W}px; height: {H}px; }}
figcaption {{ font-weight: 600; margin-bottom: 4px; max-width: {W}px; }}
.legend {{ max-width: {W}px; }} .legend .key {{ margin-right: 1em; font-size: 12px; white-space: nowrap; }}
.legend i {{ display: inline-block; width: 18px; height: 0; margin: 0 4px 3px 0; border-top: 3px solid; }}
.legend i.dashed {{ border-top-style: dashed; }}
</style></head><body>
<h1>S1MIG reports for {report_date}</h1>
<p id="verdict" class="verdict {kind}">{_esc(line)}</p>
<p>Run <code>{_esc(run_id)}</code>; {where}.</p>
{release_html}
<h2>Reconciliation gate</h2>
<table id="gate"><tr><th>rule</th><th>name</th><th>severity</th><th>status</th><th>failing</th><th>samples</th></tr>
{gate_rows}</table>
<h2>Open breaks (warnings not yet acknowledged)</h2>
{breaks_html}
<h2>Rule 8: installations migrated by a Success that did not list the party now responsible</h2>
{inherited_html}
<h2>Rows per report and party</h2>
{rows_html}
<h2>Charts</h2>
{"".join(charts)}
</body></html>
"""
    path = folder / "run-summary.html"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
