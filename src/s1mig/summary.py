"""The run summary of a report date: one self-contained HTML page (inline CSS and SVG,
no scripts, nothing fetched) beside the exports, for the operator who would rather look
than read: the gate's rule table, rows per report per party, and three charts —
cumulative migration by cohort (S1MIG-010), daily successes and failures (S1MIG-005) and
failures by stage (S1MIG-007). Reads small aggregates only, never a whole mart."""

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
W, H, PAD = 640, 260, 44


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _axis(max_y: float, labels: list[str]) -> list[str]:
    parts = [
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#444"/>',
        f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" stroke="#444"/>',
    ]
    for i in range(5):
        value = max_y * i / 4
        y = H - PAD - (H - PAD - 10) * i / 4
        parts.append(f'<text x="{PAD - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{value:,.0f}</text>')
        parts.append(f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - 10}" y2="{y:.1f}" stroke="#eee"/>')
    step = max(1, len(labels) // 8)
    for i, label in enumerate(labels):
        if i % step == 0:
            x = _x(i, len(labels))
            parts.append(
                f'<text x="{x:.1f}" y="{H - PAD + 14}" text-anchor="middle" font-size="10">{_esc(label)}</text>'
            )
    return parts


def _nice_max(value: float) -> float:
    """A top for the y axis whose four steps are round numbers (1, 2, 2.5 or 5 x 10^k)."""
    raw = max(value, 1) / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return step * 4


def _x(i: int, n: int) -> float:
    return PAD + (W - PAD - 20) * (i + 0.5) / max(n, 1)


def _y(value: float, max_y: float) -> float:
    return H - PAD - (H - PAD - 10) * (value / max_y if max_y else 0)


def _legend(names: list[str]) -> str:
    items = "".join(
        f'<span class="key"><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{_esc(n)}</span>'
        for i, n in enumerate(names)
    )
    return f'<div class="legend">{items}</div>'


def line_chart(title: str, labels: list[str], series: dict[str, list[float]], y_max: float | None = None) -> str:
    max_y = y_max or _nice_max(max([v for vals in series.values() for v in vals] + [1]))
    parts = _axis(max_y, labels)
    for i, (name, values) in enumerate(series.items()):
        points = " ".join(f"{_x(j, len(labels)):.1f},{_y(v, max_y):.1f}" for j, v in enumerate(values))
        parts.append(
            f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="2" '
            f'points="{points}"><title>{_esc(name)}</title></polyline>'
        )
    return _figure(title, parts, list(series))


def bar_chart(title: str, labels: list[str], series: dict[str, list[float]]) -> str:
    max_y = _nice_max(max([v for vals in series.values() for v in vals] + [1]))
    parts = _axis(max_y, labels)
    if not labels:
        parts.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="13">nothing to show</text>')
    n, k = len(labels), max(len(series), 1)
    slot = (W - PAD - 20) / max(n, 1)
    width = slot * 0.8 / k
    for i, (name, values) in enumerate(series.items()):
        for j, v in enumerate(values):
            x = PAD + slot * j + slot * 0.1 + width * i
            y = _y(v, max_y)
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{H - PAD - y:.1f}" '
                f'fill="{PALETTE[i % len(PALETTE)]}"><title>{_esc(name)} {_esc(labels[j])}: {v:,.0f}'
                f"</title></rect>"
            )
    return _figure(title, parts, list(series))


def _figure(title: str, parts: list[str], names: list[str]) -> str:
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="{_esc(title)}">'
    return f"<figure><figcaption>{_esc(title)}</figcaption>{svg}{''.join(parts)}</svg>{_legend(names)}</figure>"


def _rows(conn, query: str, params: tuple) -> list[tuple]:
    return conn.execute(query, params).fetchall()


def write_summary(report_date: dt.date, folder: Path, run_id: str, url: str | None = None) -> Path:
    """Write <folder>/run-summary.html for the exported date folder."""
    manifest = json.loads((folder / "manifest.json").read_text())
    with db.connect(url) as conn:
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

    dates = sorted({r[0] for r in progress})
    cohorts = sorted({r[1] for r in progress})
    pct = {c: [0.0] * len(dates) for c in cohorts}
    for d, cohort, migrated, eligible in progress:
        pct[cohort][dates.index(d)] = float(migrated) * 100 / float(eligible) if eligible else 0.0
    charts = [
        line_chart(
            "Cumulative migration by cohort (S1MIG-010): % of eligible installations migrated",
            [d.strftime("%d %b") for d in dates],
            pct,
            y_max=100,
        ),
        bar_chart(
            "Daily successes and failures (S1MIG-005)",
            [r[0].strftime("%d %b") for r in daily],
            {"succeeded": [float(r[1]) for r in daily], "failed": [float(r[2]) for r in daily]},
        ),
        bar_chart(
            f"Failures by stage on {report_date} (S1MIG-007)",
            [r[0] for r in stages],
            {"failures": [float(r[1]) for r in stages]},
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
    parties = sorted({f["party_id"] for f in manifest["files"]})
    counts = {(f["party_id"], f["report_id"]): f["rows"] for f in manifest["files"]}
    head = "".join(f"<th>{_esc(r.report_id)}</th>" for r in REPORTS)
    body = "".join(
        f"<tr><td>{_esc(p)}</td>" + "".join(f"<td>{counts.get((p, r.report_id), 0):,}</td>" for r in REPORTS) + "</tr>"
        for p in parties
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>s1mig run summary {report_date}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 13px; }}
td:nth-child(n+2) {{ font-variant-numeric: tabular-nums; }}
tr.fail td {{ background: #fdd; }} tr.warn td {{ background: #ffefc2; }} tr.pass td:nth-child(4) {{ color: #2a7a2a; }}
figure {{ display: inline-block; margin: 0 1.5em 1.5em 0; }} svg {{ width: {W}px; height: {H}px; }}
figcaption {{ font-weight: 600; margin-bottom: 4px; }}
.legend .key {{ margin-right: 1em; font-size: 12px; }}
.legend i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; }}
</style></head><body>
<h1>S1MIG reports for {report_date}</h1>
<p>Run <code>{_esc(run_id)}</code>; {len(manifest["files"])} files for {len(parties)} parties in
<code>{_esc(folder)}</code> (manifest.json, evidence.json).</p>
<h2>Reconciliation gate</h2>
<table id="gate"><tr><th>rule</th><th>name</th><th>severity</th><th>status</th><th>failing</th><th>samples</th></tr>
{gate_rows}</table>
<h2>Open breaks (warnings not yet acknowledged)</h2>
{breaks_html}
<h2>Rule 8: installations migrated by a Success that did not list the party now responsible</h2>
{inherited_html}
<h2>Rows per report and party</h2>
<table id="rows"><tr><th>party</th>{head}</tr>{body}</table>
<h2>Charts</h2>
{"".join(charts)}
</body></html>
"""
    path = folder / "run-summary.html"
    path.write_text(page)
    return path
