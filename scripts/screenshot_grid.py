#!/usr/bin/env python3
"""Screenshot of the Airflow UI's grid view of one s1mig_daily run, as a PNG, taken with
headless Chromium (Debian's /usr/bin/chromium; `apt-get install chromium`) from the running
`s1mig serve` of this $S1MIG_HOME. No network beyond 127.0.0.1 is used.

    .venv/bin/python scripts/screenshot_grid.py [--date D | --run RUN_ID] [--out grid.png]
                                                [--size 1600,1000] [--wait 90]

* the run: --run RUN_ID, else the latest run of --date D, else the latest run;
* the login: the UI needs one. The script logs in through the REST API with the stored admin
  login ($S1MIG_HOME/serve/passwords.json, mode 0600; or --user NAME with
  S1MIG_AIRFLOW_PASSWORD) and hands the JWT to the browser as the UI's own `_token` cookie
  (HttpOnly, 127.0.0.1 only) through Chromium's DevTools protocol over a pipe
  (--remote-debugging-pipe: no port another local user could reach), in a throw-away
  profile; no password reaches the command line or the browser;
* the page: <url>/dags/s1mig_daily/runs/<run_id> (the grid with the run selected), captured
  once the grid shows the run's tasks (at most --wait seconds);
* prints the PNG's path; exit code 1 with one line when it cannot (serve not running, no
  run, Chromium missing, the page never showed the grid).
Chromium and its profile are removed at the end, also on failure or Ctrl-C."""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from s1mig import service
from s1mig.errors import S1migError

TASKS = ("wait_for_drop", "take_lease", "land", "publish")  # shown in the grid once it is drawn


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise S1migError("chromium not found: apt-get install chromium")


class DevTools:
    """The few DevTools protocol calls needed, over Chromium's --remote-debugging-pipe (it
    reads commands on its fd 3 and answers on its fd 4, each message ending with a NUL)."""

    def __init__(self, to_browser: int, from_browser: int):
        self.to_browser, self.from_browser = to_browser, from_browser
        self.buffer = b""
        self.next_id = 0
        self.session: str | None = None

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_browser], [], [], left)[0]:
                raise S1migError("Chromium's DevTools did not answer within 60 s")
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise S1migError("Chromium ended")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, **params):
        self.next_id += 1
        request: dict = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            request["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            msg = self._message(deadline)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise S1migError(f"Chromium: {method}: {msg['error'].get('message')}")
                return msg.get("result", {})

    def attach_page(self) -> None:
        """Talk to the browser's page from now on (a flat session)."""
        pages = [t for t in self.call("Target.getTargets")["targetInfos"] if t.get("type") == "page"]
        target = pages[0]["targetId"] if pages else self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def close(self) -> None:
        for fd in (self.to_browser, self.from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)


def start_chromium(profile: str, width: int, height: int) -> tuple[subprocess.Popen, DevTools]:
    """Headless Chromium on a throw-away profile, driven over --remote-debugging-pipe."""
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--remote-debugging-pipe",
        "about:blank",
    ]
    commands_r, commands_w = os.pipe()  # Chromium's fd 3: the commands it reads
    answers_r, answers_w = os.pipe()  # Chromium's fd 4: its answers
    # its two ends above fd 4 first, so that placing one at 3 or 4 cannot close the other
    high_r, high_w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (commands_r, answers_w))
    for fd in (commands_r, answers_w):
        os.close(fd)

    def as_fds_3_and_4() -> None:  # in the child, before exec (dup2 leaves them open across it)
        os.dup2(high_r, 3)
        os.dup2(high_w, 4)

    browser = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        pass_fds=(3, 4),  # kept when the other descriptors are closed, after as_fds_3_and_4
        preexec_fn=as_fds_3_and_4,
    )
    os.close(high_r)
    os.close(high_w)
    tools = DevTools(commands_w, answers_r)
    return browser, tools


def _pick_run(api, run_id: str | None, day: dt.date | None) -> dict:
    runs = api.runs(limit=100)
    if run_id:
        found = [r for r in runs if r["dag_run_id"] == run_id]
    elif day:
        found = [r for r in runs if service.run_date(r) == day.isoformat()]
    else:
        found = runs
    if not found:
        what = f"run {run_id}" if run_id else f"run for {day}" if day else "run"
        raise S1migError(f"no {what} of {service.DAG_ID} on {api.base_url}")
    return found[0]


def screenshot(out: Path, run_id: str | None, day: dt.date | None, size: str, wait: float, user: str | None) -> Path:
    api, state = service.client(user)
    run = _pick_run(api, run_id, day)
    base = state["url"].rstrip("/")
    page = f"{base}/dags/{service.DAG_ID}/runs/{urllib.parse.quote(run['dag_run_id'], safe='')}"
    width, height = (int(x) for x in size.split(","))
    profile = tempfile.mkdtemp(prefix="s1mig-chromium-")
    browser, tools = start_chromium(profile, width, height)
    try:
        tools.attach_page()
        tools.call("Network.enable")
        tools.call("Network.setCookie", name="_token", value=api.token(), url=base + "/", path="/", httpOnly=True)
        tools.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        tools.call("Page.enable")
        tools.call("Page.navigate", url=page)
        deadline = time.monotonic() + wait
        found = " && ".join(f"t.includes({json.dumps(task)})" for task in TASKS)
        probe = f"(() => {{ const t = document.body ? document.body.innerText : ''; return {found}; }})()"
        while not tools.call("Runtime.evaluate", expression=probe, returnByValue=True)["result"].get("value"):
            if time.monotonic() > deadline:
                shown = tools.call("Runtime.evaluate", expression="location.href", returnByValue=True)["result"]
                raise S1migError(
                    f"the grid of {run['dag_run_id']} did not show within {wait:.0f} s ({shown.get('value')})"
                )
            time.sleep(1.0)
        # the grid's cells and the run's details load after the task names: wait until the page
        # stops changing (2 s alike), within the same deadline
        last, alike = None, 0
        while alike < 4 and time.monotonic() < deadline:
            size = tools.call("Runtime.evaluate", expression="document.body.innerHTML.length", returnByValue=True)
            now = size["result"].get("value")
            alike = alike + 1 if now == last else 0
            last = now
            time.sleep(0.5)
        shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        return out
    finally:
        tools.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGKILL)
        browser.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--date", type=dt.date.fromisoformat, help="the latest run of report date D (default: latest run)"
    )
    which.add_argument("--run", help="the run id (default: the latest run)")
    p.add_argument("--out", type=Path, default=Path("grid.png"), help="the PNG to write (default: grid.png)")
    p.add_argument("--size", default="1600,1000", help="window WIDTH,HEIGHT in pixels (default: 1600,1000)")
    p.add_argument("--wait", type=float, default=90.0, help="seconds the grid may take to show (default: 90)")
    p.add_argument("--user", help="Airflow login (default: the stored admin login)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        path = screenshot(args.out.resolve(), args.run, args.date, args.size, args.wait, args.user)
    except (S1migError, ValueError) as err:
        print(f"screenshot_grid: error: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
