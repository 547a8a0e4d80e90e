"""Regenerate examples/: the drops of a short generated period and every file exported from them.

    .venv/bin/python scripts/make_examples.py [--out examples] [--server-url URL]

`make examples` runs this. It generates the drops of START..START+DAYS-1 with the product generator
(`s1mig generate`), runs each day through the real pipeline (`s1mig.pipeline.run_direct`:
land, dbt, gate, export, run summary, publish) on a brand-new warehouse of its own, and
copies the drops to `<out>/drops/` and the export folder to `<out>/reports/`. Nothing in
the user's S1MIG_HOME or S1MIG_DATABASE_URL is touched: the warehouse is an embedded
server in a temporary folder (stopped at the end), or a throw-away database created on
--server-url and dropped at the end.

Everything copied is byte-for-byte what the code wrote, except the volatile values listed
in VOLATILE (times of the run, paths of the temporary folders, the code's version and
commit), each replaced by a named placeholder: this list is the one place where the
copy differs from the code's output. examples/README.md lists the placeholders.
tests/test_examples.py regenerates with this script and compares every byte.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The period: 3 days around the end of British Summer Time (Saturday in BST; Sunday 25 October
# 2020, 02:00 BST -> 01:00 GMT, a 25-hour day; Monday in GMT), a few hundred installations,
# the generator's 8 parties (a fixed list in s1mig.generate.knobs.PARTIES).
START = dt.date(2020, 10, 24)
DAYS = 3
INSTALLATIONS = 300
SEED = 1
DAYS_LIST = [START + dt.timedelta(days=i) for i in range(DAYS)]
RUN_ID = "examples__{date}"  # the run id given to run_direct for each date (fixed, so not volatile)

# The one place where the copy differs from what the code wrote: (file name, pattern, placeholder).
# Each pattern's first group is kept and the rest of the match replaced by the placeholder.
# "{out}" in a pattern stands for the temporary export folder.
VOLATILE: list[tuple[str, str, str]] = [
    # evidence.json (s1mig.evidence.build, s1mig.release.publish)
    ("evidence.json", r'("exported_at": )"[^"]*"', '"[EXPORTED_AT]"'),
    ("evidence.json", r'("published_at": )"[^"]*"', '"[PUBLISHED_AT]"'),
    ("evidence.json", r'("landed_at": )"[^"]*"', '"[LANDED_AT]"'),
    ("evidence.json", r'("at": )"[^"]*"', '"[RELEASED_AT]"'),  # release.at
    ("evidence.json", r'("out_folder": )"[^"]*"', '"[OUT]"'),
    ("evidence.json", r'("s1mig_version": )"[^"]*"', '"[S1MIG_VERSION]"'),
    ("evidence.json", r'("git_commit": )(?:"[^"]*"|null)', '"[GIT_COMMIT]"'),
    ("evidence.json", r'("dbt_manifest_sha256": )(?:"[^"]*"|null)', '"[DBT_MANIFEST_SHA256]"'),
    # run-summary.html (s1mig.summary, s1mig.release.write_summary)
    ("run-summary.html", r"(RELEASED automatically at )\d{4}-\d\d-\d\dT[0-9:.]+Z", "[RELEASED_AT]"),
    ("run-summary.html", r"(<td>auto-released</td><td></td><td>)\d{4}-\d\d-\d\dT[0-9:.]+Z", "[RELEASED_AT]"),
    ("run-summary.html", r"(<code>){out}", "[OUT]"),
]

log = logging.getLogger("make_examples")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "examples",
        help="folder to replace drops/ and reports/ in (default: examples/)",
    )
    p.add_argument(
        "--server-url",
        default=None,
        help="PostgreSQL server (libpq URL) to create a throw-away database on, instead of starting an embedded "
        "server in a temporary folder (default: an embedded server)",
    )
    return p.parse_args(argv)


@contextmanager
def warehouse(server_url: str | None):
    """A brand-new, empty warehouse; S1MIG_DATABASE_URL points at it meanwhile."""
    import psycopg

    from s1mig import db

    if server_url is None:
        try:
            yield db.warehouse_url()  # starts the embedded server under the temporary S1MIG_HOME
        finally:
            db.stop_embedded()
        return
    name = f"s1mig_examples_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    parts = db.url_parts(server_url)
    url = db.url_from_parts(parts["host"], parts["port"], parts["user"], parts["password"], name)
    os.environ["S1MIG_DATABASE_URL"] = url
    try:
        yield url
    finally:
        os.environ.pop("S1MIG_DATABASE_URL", None)
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def normalise(path: Path, out: Path) -> bytes:
    """The bytes of `path` with VOLATILE's values replaced by their placeholders."""
    text = path.read_bytes().decode("utf-8")  # every file written is text (CSV, JSON, HTML)
    for name, pattern, placeholder in VOLATILE:
        if name != path.name:
            continue
        regex = re.compile(pattern.replace("{out}", re.escape(str(out))))
        text = regex.sub(lambda m, ph=placeholder: m.group(1) + ph, text)
    leftover = _volatile_left(text, out)
    if leftover:
        raise SystemExit(
            f"make_examples: {path.name} still holds a volatile value ({leftover!r}): "
            "add a pattern for it to VOLATILE in scripts/make_examples.py"
        )
    return text.encode("utf-8")


def _volatile_left(text: str, out: Path) -> str | None:
    """A value that would differ on the next run: today's date, or a temporary path."""
    for needle in (dt.datetime.now(dt.UTC).date().isoformat(), dt.date.today().isoformat(), str(out.parent)):
        i = text.find(needle)
        if i >= 0:
            return text[max(0, i - 40) : i + len(needle) + 20]
    return None


def copy_tree(src: Path, dst: Path, out: Path) -> int:
    """Copy src to dst (files in sorted order, normalised); the number of files."""
    n = 0
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(normalise(path, out))
        n += 1
    return n


def build(dest: Path, server_url: str | None = None) -> None:
    """Generate, run and copy the period into dest/drops and dest/reports (both replaced)."""
    tmp = Path(tempfile.mkdtemp(prefix="s1mig-examples-"))
    # Removed at exit, after the embedded server's own exit handler (registered later, so run
    # earlier) has taken its lock file under $S1MIG_HOME/run one last time.
    atexit.register(shutil.rmtree, tmp, True)
    try:
        _build(dest, server_url, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(dest: Path, server_url: str | None, tmp: Path) -> None:
    """build() inside its temporary folder `tmp` (S1MIG_HOME, drops and export go there)."""
    for name in [n for n in os.environ if n.startswith("S1MIG_")]:
        del os.environ[name]  # the defaults, whatever the caller's warehouse, project or mail settings
    os.environ["S1MIG_HOME"] = str(tmp / "home")  # dbt target, GX site, logs, embedded server
    os.environ["S1MIG_DB_LISTEN"] = "off"  # the embedded server on its socket only
    os.environ["S1MIG_FIRST_DROP"] = START.isoformat()
    os.environ["S1MIG_FOUR_EYES"] = "false"  # the direct path auto-releases
    from s1mig import pipeline
    from s1mig.generate import generate

    drops, out = tmp / "drops", tmp / "reports"
    generate(drops, START, DAYS, INSTALLATIONS, SEED, progress=False)
    with warehouse(server_url):
        for day in DAYS_LIST:
            t0 = time.monotonic()
            pipeline.run_direct(drops, day, out, run_id=RUN_ID.format(date=day.isoformat()))
            log.info("make_examples: %s run in %.0fs", day, time.monotonic() - t0)
    for sub in ("drops", "reports"):
        shutil.rmtree(dest / sub, ignore_errors=True)
    n_drops = copy_tree(drops, dest / "drops", out)
    n_reports = copy_tree(out, dest / "reports", out)
    log.info("make_examples: %d drop files and %d exported files in %s", n_drops, n_reports, dest)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)  # progress: one line a date; the pipeline's own lines only when they warn
    build(args.out.resolve(), args.server_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
