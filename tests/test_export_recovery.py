"""Export crash safety (issue 15, item 6): an export killed at any point never leaves the
date without its last good files, and the next export of that date, or any export into
that out folder, puts back or finishes what the killed one left and removes its hidden
folders.

Every kill is a real SIGKILL of a real child process running `export.export_date` on a
warehouse built once for the module (real dbt, real GX). While it writes its temporary
folder, the parent kills it once the folder holds some report files (the child only
sleeps a moment after each file, so that the parent sees it at work). The other points are
too short to hit from outside: there the child's own copy of an export function (test code
only, nothing in s1mig) kills its process right after the step: after a few hard links of
the previous revision, right after the publishing exchange, right after the first of the
two renames used where the system has no exchange."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from s1mig import export
from tests.support.cli import REPO
from tests.support.databases import built_warehouse
from tests.support.drops import D30, D31

pytestmark = pytest.mark.integration

CHILD = textwrap.dedent(
    """
    import datetime as dt, os, signal, sys, time
    from pathlib import Path
    from s1mig import export

    point, out, url = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "writing":  # a moment after each file: the parent kills it while it writes
        copy = export._copy_to_file
        def slow(conn, query, path):
            done = copy(conn, query, path)
            time.sleep(0.1)
            return done
        export._copy_to_file = slow
    elif point == "keeping":  # linking the previous revision into the new folder
        link, made = export._link, []
        def dying_link(src, dst):
            link(src, dst)
            made.append(dst)
            if len(made) == 3:
                die()
        export._link = dying_link
    elif point == "exchanged":  # published by the exchange; the folder it replaced not yet removed
        exchange = export._exchange
        def dying_exchange(a, b):
            exchange(a, b)
            die()
        export._exchange = dying_exchange
    elif point == "between-renames":  # no exchange: the date folder moved away, the new one not yet in
        export._exchange = lambda a, b: False
        rename = Path.rename
        def dying_rename(self, target):
            done = rename(self, target)
            if Path(target).name.startswith("."):
                die()
            return done
        Path.rename = dying_rename
    export.export_date(dt.date.fromisoformat(sys.argv[4]), out, url, "killed-" + point)
    print("finished", flush=True)
    """
)


@pytest.fixture(scope="module")
def built(server_url, tmp_path_factory) -> Iterator[str]:
    """A warehouse with D30 landed, built and gated; its URL."""
    with built_warehouse(server_url, tmp_path_factory.mktemp("landing"), "recovery") as url:
        yield url


@contextlib.contextmanager
def amended(url: str) -> Iterator[None]:
    """The marts changed so that the next export of D30 is a new revision (S1MIG-003's
    descriptions), put back afterwards."""
    with psycopg.connect(url) as conn:
        changed = conn.execute(
            "update marts.s1mig_003 set ma_error_description = ma_error_description || ' (amended)' "
            "where report_date = %s",
            (D30,),
        ).rowcount
    assert changed, "no S1MIG-003 row on D30 to amend"
    try:
        yield
    finally:
        with psycopg.connect(url) as conn:
            conn.execute(
                "update marts.s1mig_003 set ma_error_description = replace(ma_error_description, ' (amended)', '') "
                "where report_date = %s",
                (D30,),
            )


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def _revision(folder: Path) -> int:
    return json.loads((folder / "manifest.json").read_text())["revision"]


def _killed(point: str, out: Path, url: str, day: dt.date = D30) -> None:
    """Run the export in a child killed at `point`; return once it is dead."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, point, str(out), url, day.isoformat()],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if point == "writing":  # kill it from here once its temporary folder holds a few report files
            deadline = time.monotonic() + 60
            while not any(len(list(t.rglob("*.csv"))) >= 4 for t in out.glob(f".{day}.tmp-*")):
                assert child.poll() is None, f"the export ended before it was killed: {child.communicate()}"
                assert time.monotonic() < deadline, "the export never wrote its files"
                time.sleep(0.005)
            child.send_signal(signal.SIGKILL)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL, f"not killed at {point}: {child.returncode} {stdout} {stderr}"
    assert "finished" not in stdout


def _assert_clean(out: Path, url: str) -> None:
    """No hidden leftover; the published date passes R9 read back from disk."""
    assert _hidden(out) == []
    assert export.verify_export(out / D30.isoformat(), D30, url).failing_count == 0


def test_killed_while_writing_the_temporary_folder(built, tmp_path):
    out = tmp_path / "out"
    folder = out / D30.isoformat()
    _killed("writing", out, built)  # the first export of the date: nothing was published
    assert not folder.exists() and len(_hidden(out)) == 1

    export.export_date(D30, out, built, "after-kill-1")  # the next run of the date
    _assert_clean(out, built)
    assert _revision(folder) == 1
    first = _files(folder)

    with amended(built):  # a changed export killed while it writes: the published one stays as it was
        _killed("writing", out, built)
        assert _files(folder) == first and len(_hidden(out)) == 1
        export.export_date(D30, out, built, "after-kill-2")
        _assert_clean(out, built)
        assert _revision(folder) == 2
        kept = _files(folder / export.REVISIONS / "1")
        assert kept == first


def test_killed_while_keeping_the_previous_revision(built, tmp_path):
    out = tmp_path / "out"
    folder = export.export_date(D30, out, built, "first")
    first = _files(folder)
    with amended(built):
        _killed("keeping", out, built)
        assert _files(folder) == first  # readers still see revision 1, whole
        leftover = out / _hidden(out)[0]
        assert len(_hidden(out)) == 1 and (leftover / export.REVISIONS / "1").is_dir()

        export.export_date(D30, out, built, "after-kill")
        _assert_clean(out, built)
        assert _revision(folder) == 2
        assert _files(folder / export.REVISIONS / "1") == first


def test_killed_between_the_exchange_and_the_cleanup(built, tmp_path):
    out = tmp_path / "out"
    folder = export.export_date(D30, out, built, "first")
    first = _files(folder)
    with amended(built):
        _killed("exchanged", out, built)
        # published: revision 2 whole, revision 1 kept; the replaced folder is left hidden
        assert _revision(folder) == 2 and _files(folder / export.REVISIONS / "1") == first
        assert export.verify_export(folder, D30, built).failing_count == 0
        assert len(_hidden(out)) == 1
        second = {k: v for k, v in _files(folder).items() if k not in ("evidence.json", "run-summary.html")}

        export.export_date(D30, out, built, "after-kill")  # same data: the revision stays
        _assert_clean(out, built)
        assert _revision(folder) == 2
        assert {k: v for k, v in _files(folder).items() if k not in ("evidence.json", "run-summary.html")} == second


def test_killed_between_the_two_renames(built, tmp_path):
    """Where the system has no exchange the publish is two renames; killed between them the
    date folder is absent. Any export into the out folder (here of another date) puts the
    published one back; the next run of the date then publishes its new revision."""
    out = tmp_path / "out"
    folder = export.export_date(D30, out, built, "first")
    first = _files(folder)
    with amended(built):
        _killed("between-renames", out, built)
        assert not folder.exists()
        assert sorted(n.split("-")[0] for n in (n.rsplit(".", 1)[1] for n in _hidden(out))) == ["old", "tmp"]

        export.export_date(D31, out, built, "another-date")
        assert _files(folder) == first  # the last good files, back in place
        _assert_clean(out, built)

        export.export_date(D30, out, built, "after-kill")
        _assert_clean(out, built)
        assert _revision(folder) == 2 and _files(folder / export.REVISIONS / "1") == first
