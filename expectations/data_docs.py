"""Data Docs that render with no network.

GX's page templates load their scripts, styles and fonts from public CDNs (jQuery,
Bootstrap, bootstrap-table, Font Awesome ...) and the navbar logo from a web-assets
bucket (with the data context's id in the query string). On a machine without internet
the pages then show as bare text: no index table (bootstrap-table draws it from data in
the page), no pass/fail icons. `make_offline` copies the same versions, shipped in
`data_docs_static/` (README.md there), into the site once, and rewrites every page so
that it loads them from there; a remote script or stylesheet the table does not know is
removed and logged (a GX upgrade that adds one shows up in the gate's log and in
tests/test_summary.py). Links a reader may click (GX's documentation) are left alone."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "data_docs_static"
VENDOR = "s1mig-offline"  # the folder under the site's static/ that holds the copies

# the CDN URL (without query string) -> the shipped file, relative to data_docs_static/
ASSETS = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper-1.12.9.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table-1.19.1.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table-1.19.1.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (
        "bootstrap-table-filter-control-1.19.1.min.js"
    ),
    # the templates name the 1.19.0 stylesheet of the extension (two spellings): the 1.19.1 one is the same rules
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (
        "bootstrap-table-filter-control-1.19.1.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (
        "bootstrap-table-filter-control-1.19.1.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker-1.9.0.min.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker-1.9.0.min.css"
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "bootstrap-prefers-dark-1.1.0.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome-6.6.0/css/all.min.css",
}
# images GX loads from its web-assets bucket -> the copy in the site's own static/images/
IMAGES = {"logo-long.png": "logo-long.png", "full_logo_dark.png": "logo-long.png"}

# a tag that loads something: <script src=...></script>, <link href=...>, <img src=...>
_TAG = re.compile(
    r"<script\b[^>]*\bsrc=\"(?P<script>[^\"]+)\"[^>]*>\s*</script>"
    r"|<link\b[^>]*\bhref=\"(?P<link>[^\"]+)\"[^>]*>"
    r"|<img\b[^>]*\bsrc=\"(?P<img>[^\"]+)\"[^>]*>",
    re.IGNORECASE,
)
_REMOTE = re.compile(r"^(https?:)?//", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*(['\"]?)(https?://[^'\")]+)\1\s*\)", re.IGNORECASE)


def _copy_assets(site: Path) -> Path:
    """The shipped files under <site>/static/s1mig-offline/ (copied again when changed)."""
    target = site / "static" / VENDOR
    for source in STATIC.rglob("*"):
        if source.is_file() and source.suffix in (".js", ".css", ".woff2"):
            dest = target / source.relative_to(STATIC)
            if not dest.is_file() or dest.stat().st_size != source.stat().st_size:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, dest)
    return target


def _rewrite_page(page: Path, site: Path, unknown: set[str]) -> bool:
    text = page.read_text()
    base = page.parent

    def rel(path: Path) -> str:
        return os.path.relpath(path, base)

    def swap(match: re.Match) -> str:
        tag = match.group(0)
        kind = "script" if match.group("script") else "link" if match.group("link") else "img"
        url = match.group(kind)
        if not _REMOTE.match(url):
            # GX's own relative links to static/ are one folder short on validation pages
            # (four folders deep): point them at the site's static/ folder
            head, sep, rest = url.partition("static/")
            if sep and not (base / url).resolve().is_file() and (site / "static" / rest).is_file():
                return tag.replace(f'"{url}"', f'"{rel(site / "static" / rest)}"')
            return tag
        bare = url.split("?")[0].split("#")[0]
        if bare in ASSETS:
            local = rel(site / "static" / VENDOR / ASSETS[bare])
            tag = re.sub(r'\s(integrity|crossorigin)="[^"]*"', "", tag)
            return tag.replace(f'"{url}"', f'"{local}"')
        name = bare.rsplit("/", 1)[-1]
        if kind == "img" and name in IMAGES:
            return tag.replace(f'"{url}"', f'"{rel(site / "static" / "images" / IMAGES[name])}"')
        if kind == "link" and not re.search(r'rel="(stylesheet|icon|shortcut icon|preload)"', tag):
            return tag  # a link to read, not a resource to load
        unknown.add(bare)
        return ""  # vega (no chart of ours needs it) or anything new: the page must not call out

    new = _TAG.sub(swap, text)
    if new != text:
        page.write_text(new)
        return True
    return False


def _rewrite_css(css: Path, site: Path) -> None:
    text = css.read_text()

    def swap(match: re.Match) -> str:
        name = match.group(2).split("?")[0].rsplit("/", 1)[-1]
        local = site / "static" / "images" / IMAGES.get(name, "logo-long.png")
        return f"url('{os.path.relpath(local, css.parent)}')"

    new = _CSS_URL.sub(swap, text)
    if new != text:
        css.write_text(new)


def make_offline(site: Path) -> int:
    """Rewrite the Data Docs site at `site` (its index.html's folder) to load nothing
    from the network; returns the number of pages changed. Pages already rewritten are
    left as they are, so running it after every checkpoint costs a read of each page."""
    if not (site / "index.html").is_file():
        return 0
    if not (STATIC / ASSETS["https://code.jquery.com/jquery-3.7.1.min.js"]).is_file():
        # an install that left the package data out (pyproject's package-data): the pages keep their CDN links
        log.warning("Data Docs: %s is missing; the pages load their scripts and styles from the internet", STATIC)
        return 0
    _copy_assets(site)
    for css in (site / "static" / "styles").glob("*.css"):
        _rewrite_css(css, site)
    unknown: set[str] = set()
    changed = sum(_rewrite_page(page, site, unknown) for page in site.rglob("*.html"))
    if unknown - {u for u in unknown if "/vega" in u}:
        log.warning("Data Docs: removed remote resources s1mig does not ship: %s", ", ".join(sorted(unknown)))
    return changed
