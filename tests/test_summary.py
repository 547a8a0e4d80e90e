"""The operator's view of a run (issue 16, item 6), on the hand-made drop landed, built
(real dbt) and gated (real GX) once for the module: the run summary opens with a one-line
verdict (released / blocked by which rule / awaiting approval, warnings and open breaks
counted), its cohort chart shows the eligible installations beside the percentage and
every chart's axes are titled; GX's Data Docs of that gate load nothing from the network."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import psycopg
import pytest

from s1mig import export, pipeline, summary
from s1mig.errors import GateBlocked
from tests.support.databases import built_warehouse
from tests.support.drops import D30

pytestmark = pytest.mark.integration

RUN = "summary-gate"


@pytest.fixture(scope="module")
def built(server_url, tmp_path_factory) -> Iterator[str]:
    with built_warehouse(server_url, tmp_path_factory.mktemp("landing"), RUN) as url:
        yield url


@pytest.fixture(scope="module")
def exported(built, tmp_path_factory) -> Path:
    """D30 exported from the gated run: the date folder."""
    return export.export_date(D30, tmp_path_factory.mktemp("out"), built, RUN)


def _verdict(page: str) -> tuple[str, str]:
    match = re.search(r'<p id="verdict" class="verdict ([a-z-]+)">([^<]*)</p>', page)
    assert match, "no verdict line"
    return match.group(1), match.group(2)


def _warnings_and_breaks(url: str, run_id: str) -> tuple[list[str], int]:
    with psycopg.connect(url) as conn:
        warned = [
            r[0]
            for r in conn.execute(
                "select rule_id from audit.gate_results where run_id = %s and report_date = %s and status = 'warn' "
                "order by rule_id",
                (run_id, D30),
            )
        ]
        (open_breaks,) = conn.execute(
            "select count(*) from audit.breaks where state = 'open' and first_seen <= %s", (D30,)
        ).fetchone()
    return warned, open_breaks


def test_verdict_of_a_passing_run(built, exported):
    warned, open_breaks = _warnings_and_breaks(built, RUN)
    assert warned == ["W1"] and open_breaks == 1  # the hand-made drop's DMIN warning (SUPB02: 40 of 50)

    kind, line = _verdict(summary.write_summary(D30, exported, RUN, built).read_text())
    assert kind == "passed" and line.startswith(f"GATE PASSED for {D30} (release not recorded")
    assert line.endswith("1 warning rule (W1: 1 row), 1 open break")

    release = {"state": "released", "by": "J. Smith", "why": "checked", "at": "2020-07-31T08:12:00Z"}
    page = summary.write_summary(D30, exported, RUN, built, release=release).read_text()
    kind, line = _verdict(page)
    assert (kind, line.split(" · ")[0]) == ("released", "RELEASED by J. Smith at 2020-07-31T08:12:00Z (why: checked)")
    assert '<table id="release">' in page and "<td>J. Smith</td>" in page

    auto = {"state": "auto-released", "by": None, "why": None, "at": None}
    kind, line = _verdict(summary.write_summary(D30, exported, RUN, built, release=auto).read_text())
    assert kind == "released" and line.startswith("RELEASED automatically")

    with pytest.raises(ValueError, match="not one of"):
        summary.write_summary(D30, exported, RUN, built, release={"state": "approved"})


def test_verdict_awaiting_approval_and_rejected(built, exported):
    waiting = {"state": "awaiting approval", "by": None, "why": None, "at": "2020-07-31T06:00:00Z"}
    kind, line = _verdict(summary.write_summary(D30, exported, RUN, built, release=waiting).read_text())
    assert kind == "awaiting" and line.startswith(
        f"AWAITING APPROVAL since 2020-07-31T06:00:00Z: the files of {D30} are held"
    )
    assert "1 warning rule" in line and "1 open break" in line

    rejected = {"state": "rejected", "by": "A. Jones", "why": "SUPB02 allocation disputed", "at": None}
    kind, line = _verdict(summary.write_summary(D30, exported, RUN, built, release=rejected).read_text())
    assert kind == "rejected"
    assert line.startswith(
        f"REJECTED by A. Jones (why: SUPB02 allocation disputed): nothing of this run is published for {D30}"
    )


def test_verdict_of_a_blocked_run(built, tmp_path):
    """A gate rule failing (R5: a 007 failure count that 006 does not have, as in
    test_gate) blocks: the verdict names the rule and its count whatever the release
    says, and a folder with nothing exported still gets its summary."""
    tamper = "update marts.s1mig_007 set failures = failures + 1 where party_id = 'SUPB02'"
    undo = "update marts.s1mig_007 set failures = failures - 1 where party_id = 'SUPB02'"
    with psycopg.connect(built) as conn:
        conn.execute(tamper)
    try:
        with pytest.raises(GateBlocked):
            pipeline.gate_step(D30, "summary-blocked", built)
    finally:
        with psycopg.connect(built) as conn:
            conn.execute(undo)
    folder = tmp_path / D30.isoformat()
    page = summary.write_summary(D30, folder, "summary-blocked", built, release={"state": "released"}).read_text()
    kind, line = _verdict(page)
    assert kind == "blocked"
    assert line.startswith("BLOCKED by R5 ") and "(1 failing): nothing of this run is released" in line
    assert line.endswith("1 warning rule (W1: 1 row), 1 open break")
    assert '<p id="rows">No report files were exported for this date.</p>' in page

    kind, line = _verdict(summary.write_summary(D30, folder, "no-such-run", built).read_text())
    assert kind == "not-gated" and line.startswith("NOT GATED")


def test_charts_show_eligible_counts_and_label_their_axes(built, exported):
    page = summary.write_summary(D30, exported, RUN, built).read_text()
    with psycopg.connect(built) as conn:
        expected = conn.execute(
            "select cohort, sum(migrated), sum(eligible_installations) from marts.s1mig_010 "
            "where report_date = %s group by 1 order by 1",
            (D30,),
        ).fetchall()
    assert expected
    progress = page.split("<figure>")[1]
    assert "S1MIG-010" in progress
    for cohort, migrated, eligible in expected:  # the legend gives both figures of the last date
        pct = float(migrated) * 100 / float(eligible)
        assert f"{cohort} % migrated ({pct:.1f}% of {eligible:,} on 30 Jul)" in progress
    assert ">% of eligible installations migrated</text>" in progress and ">eligible installations</text>" in progress
    figures = page.split("<figure>")[1:]
    assert len(figures) == 3 and page.count("<svg") == 3
    for figure in figures:  # each chart: a y axis title and an x axis title
        assert figure.count('class="y-title"') >= 1 and figure.count('class="x-title"') == 1
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


class _Resources(HTMLParser):
    """What a page loads: script src, stylesheet/icon href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.found.append(a["src"])
        elif tag == "link" and a.get("href"):
            self.found.append(a["href"])
        elif tag == "img" and a.get("src"):
            self.found.append(a["src"])


def test_data_docs_load_nothing_from_the_network(built):
    """The gate's Data Docs (built by the checkpoint of the module's gate run) reference
    no http(s) URL for scripts, styles, fonts or images, and every local one exists."""
    site = Path(os.environ["S1MIG_HOME"]) / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    pages = sorted(site.rglob("*.html"))
    assert (site / "index.html") in pages and len(pages) >= 2
    for page in pages:
        parser = _Resources()
        parser.feed(page.read_text())
        assert len(parser.found) >= 8, page  # jQuery, Bootstrap, bootstrap-table, Font Awesome ...
        for ref in parser.found:
            assert not re.match(r"(https?:)?//", ref), f"{page.relative_to(site)} loads {ref}"
            target = (page.parent / ref.split("?")[0].split("#")[0]).resolve()
            assert target.is_file(), f"{page.relative_to(site)} loads {ref}, which is missing"
    for css in site.rglob("*.css"):
        for ref in re.findall(r"url\(\s*['\"]?([^'\")]+)", css.read_text()):
            if ref.startswith("data:"):
                continue
            assert not re.match(r"(https?:)?//", ref), f"{css.relative_to(site)} loads {ref}"
            assert (css.parent / ref.split("?")[0].split("#")[0]).resolve().is_file(), f"{css} loads {ref}: missing"
