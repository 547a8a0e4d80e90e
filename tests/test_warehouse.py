"""The embedded default: started once, shared by concurrent commands, stopped on request."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from tests.support.cli import REPO

pytestmark = pytest.mark.integration


def _cli(home, *args) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("S1MIG_DATABASE_URL", "XDG_RUNTIME_DIR")}
    env["S1MIG_HOME"] = str(home)
    return subprocess.Popen(
        [sys.executable, "-m", "s1mig.cli", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _postmasters(pgdata) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and "-D" in cmd and str(pgdata) in cmd:
            found.append(proc)
    return found


@pytest.mark.skipif(bool(os.environ.get("S1MIG_DATABASE_URL")), reason="tests an embedded server")
def test_two_commands_at_once_share_one_embedded_server(tmp_path):
    home = tmp_path / "home"
    procs = [_cli(home, "db", "url") for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    urls = {out.strip() for out, _ in outputs}
    assert len(urls) == 1, urls
    pgdata = home / "pgdata"
    assert len(_postmasters(pgdata)) == 1
    stop = _cli(home, "db", "stop")
    out, err = stop.communicate(timeout=60)
    assert stop.returncode == 0 and "stopped" in out, err
    assert _postmasters(pgdata) == []
    again = _cli(home, "db", "stop")
    assert "not running" in again.communicate(timeout=60)[0]


def _make_user_at_barrier(barrier, user, results) -> None:
    import pwd

    from s1mig import db

    barrier.wait()
    db.ensure_system_user(user)
    results.put(pwd.getpwnam(user).pw_uid)


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/sbin/useradd"), reason="creates a system user: root only"
)
def test_commands_starting_at_once_make_the_server_user_once():
    """Run as root, the server runs as a system user the first start creates. Four processes
    released at once on a machine without it (a fresh CI machine's test workers) all see the
    same user: with the wheel's own `useradd` check, the later ones rewrote /etc/passwd with
    other uids about every other time, and a data folder given to a lost uid failed initdb.
    A throwaway user name, removed at the end."""
    import multiprocessing
    import pwd

    user = f"s1mig_probe_{os.getpid()}"
    ctx = multiprocessing.get_context("spawn")
    try:
        for _ in range(3):
            subprocess.run(["userdel", user], capture_output=True)
            subprocess.run(["groupdel", user], capture_output=True)
            barrier = ctx.Barrier(4)
            results = ctx.Queue()
            procs = [ctx.Process(target=_make_user_at_barrier, args=(barrier, user, results)) for _ in range(4)]
            for proc in procs:
                proc.start()
            for proc in procs:
                proc.join(60)
            assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
            uids = {results.get(timeout=5) for _ in procs}
            assert uids == {pwd.getpwnam(user).pw_uid}
    finally:
        subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["groupdel", user], capture_output=True)
