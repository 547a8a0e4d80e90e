"""Property-based tests: random migration histories (tests/support/histories.py) against the
independent reference (tests/reference/).

* ``test_reference_properties`` (pure Python, hypothesis with shrinking): the generator
  only makes valid input, and on it the reference keeps the contract's own promises --
  completion final from the first date it holds, 001 = the Success rows of 006,
  cumulative counts that never go down and add up the daily rows, late records only for
  Successes -- and a history means the same packed among others as alone.
* ``test_random_histories_match_reference`` (integration): S1MIG_FUZZ_EXAMPLES histories
  (400 by default) drawn from S1MIG_FUZZ_SEED, packed into ONE set of daily drops, run
  through the direct path (land, dbt build, gate, export) date by date, and every exported
  file of every date compared with the reference, and the break register's W2 instances
  with the reference's late records. A failure prints the seed, the command
  that reproduces it, the first differing rows and the histories behind them.
  ``make fuzz`` runs it with many more histories and a new seed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests import reference as ref
from tests.support import histories as H

EXAMPLES = int(os.environ.get("S1MIG_FUZZ_EXAMPLES") or 400)
SEED = int(os.environ.get("S1MIG_FUZZ_SEED") or 20201025)
SHOWN_DIFFERENCES = 15
SHOWN_HISTORIES = 3


# ============================================================================ the reference on random histories


@seed(SEED)
@settings(
    max_examples=max(60, EXAMPLES // 10),
    database=None,  # reproduced by the seed, not by a .hypothesis folder in the working tree
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(H.history(), min_size=1, max_size=6))
def test_reference_properties(histories):
    packed = H.pack(histories)
    assert H.validate(packed) == []
    assert H.validate(H.pack(H.reductions(histories[0]))) == []  # shrinking keeps the input valid
    wh = H.to_warehouse(packed)
    first: dict[str, ref.Completion] = {}
    cumulative: dict[tuple[str, str], tuple[int, int]] = {}
    packed_views: dict[date, dict[str, ref.Completion | None]] = {}  # each date's model, computed once
    for d in H.DATES:
        model = ref.Model(wh, d)
        packed_views[d] = {av.attempt.attempt_id: av.completion for av in model.attempts}
        # completion is final: once complete, the same completion as at the end of every later date
        for av in model.attempts:
            if av.completion is not None:
                assert first.setdefault(av.attempt.attempt_id, av.completion) == av.completion, av.attempt
            else:
                assert av.attempt.attempt_id not in first, av.attempt
        # 001 = the Success rows of 006
        key = (
            "party_id",
            "installation_id",
            "attempt_no",
            "fuel",
            "mpan",
            "mprn",
            "cohort",
            "group_id",
            "completed_at",
        )
        successes = [tuple(r[k] for k in key) for r in ref.report_006(wh, d) if r["completion_status"] == "Success"]
        assert [tuple(r[k] for k in key) for r in ref.report_001(wh, d)] == successes
        # 005's cumulative columns never go down: each date adds its daily columns (the first
        # date also counts what completed before it: the first drop carries everything before it)
        rows_005 = {(r["party_id"], r["cohort"]): r for r in ref.report_005(wh, d)}
        for k in set(rows_005) | set(cumulative):
            r = rows_005.get(k)
            now = (int(r["cumulative_succeeded"]), int(r["cumulative_failed"])) if r else (0, 0)
            daily = (int(r["succeeded"]), int(r["failed"])) if r else (0, 0)
            if d != H.DATES[0]:
                before = cumulative.get(k, (0, 0))
                assert now == (before[0] + daily[0], before[1] + daily[1]), (k, d)
            cumulative[k] = now
        # late records are failures dated after the day of a Success
        completions = packed_views[d]
        for late in ref.late_records(wh, d):
            success = completions[late.attempt_id]
            assert success.status == "Success" and ref.local_day(late.at) > ref.local_day(success.completed_at)
    # a history means the same alone as packed among others
    for index, h in enumerate(histories):
        alone = H.to_warehouse(H.pack({index: h}))
        mine = {aid for aid, owners in packed.owner.items() if owners == {index} and aid.startswith("H")}
        for d in H.DATES:
            packed_view = packed_views[d]
            alone_view = {av.attempt.attempt_id: av.completion for av in ref.Model(alone, d).attempts}
            assert {a: c for a, c in packed_view.items() if a in mine} == alone_view


# ============================================================================ the pipeline on random histories


@pytest.mark.integration
def test_random_histories_match_reference(warehouse, server_url, monkeypatch, tmp_path):
    started = time.monotonic()
    reproduce = (
        f"S1MIG_FUZZ_SEED={SEED} S1MIG_FUZZ_EXAMPLES={EXAMPLES} "
        ".venv/bin/pytest tests/test_properties.py -k test_random_histories_match_reference"
    )
    print(f"\nproperty test: seed {SEED}, {EXAMPLES} histories; reproduce: {reproduce}")
    histories = H.draw(EXAMPLES, SEED)
    assert len(histories) == EXAMPLES
    packed = H.pack(histories)
    problems = H.validate(packed)
    assert not problems, f"seed {SEED}: the generator made invalid input: {problems[:5]}"
    coverage = H.coverage(packed)
    print("exercised:", ", ".join(f"{k}: {v}" for k, v in coverage.items()))
    for case in (
        "PASS after the COF, same day",
        "PASS after the COF, a later day",
        "Success with late failures",
        "late records (event) of a split-supplier attempt",
        "late records (cof) of a split-supplier attempt",
        "failure at or after the Success time, same day (Failure wins)",
        "supplier/version change between scheduling and completion",
        "supplier/version change after completion",
        "COF of a party not responsible",
        "retries (attempt_no > 1)",
        "split-supplier attempts",
        "ties (equal timestamps)",
    ):  # a pack that misses a v1.1 case checks too little: draw more histories or another seed
        assert coverage.get(case, 0) > 0, f"seed {SEED}: no '{case}' among {EXAMPLES} histories"
    generated = time.monotonic()

    landing, differences = build_and_compare(packed, tmp_path, warehouse, reproduce)
    print(
        f"property test: {EXAMPLES} histories, {sum(len(r) for t in packed.drops.values() for r in t.values())} "
        f"records, {len(H.DATES)} dates; generate {generated - started:.1f} s, "
        f"build and compare {time.monotonic() - generated:.1f} s"
    )
    if differences:
        message = report(differences, packed, landing, reproduce)
        if os.environ.get("S1MIG_FUZZ_SHRINK") == "1":
            message += "\n\n" + shrink(differences, packed, landing, server_url, monkeypatch, tmp_path)
        pytest.fail(message, pytrace=False)


def build_and_compare(packed: H.Packed, root: Path, url: str, reproduce: str) -> tuple[Path, list[dict]]:
    """Write the drops, run every date through the direct path on the warehouse at `url`
    (S1MIG_DATABASE_URL), and compare every exported file and the W2 breaks with the
    reference. A run that stops (rejected drop, blocked gate) fails the test with its message."""
    from s1mig import pipeline
    from s1mig.errors import S1migError

    landing, out = H.write_landing(root / "landing", packed), root / "out"
    for d in H.DATES:
        try:
            pipeline.run_direct(landing, d, out, run_id=f"property_{SEED}_{d}")
        except S1migError as exc:  # a blocked gate names its rules; a rejected drop its file and line
            pytest.fail(f"seed {SEED}: the run of {d} stopped: {exc}\nreproduce: {reproduce}", pytrace=False)
    differences = []
    for d in H.DATES:
        differences += compare_date(landing, out, d)
    differences += compare_late_records(url, landing)
    return landing, differences


SHRINK_ROUNDS = int(os.environ.get("S1MIG_FUZZ_SHRINK_ROUNDS") or 12)


def shrink(differences, packed, landing, server_url, monkeypatch, tmp_path) -> str:
    """Batched shrinking (make fuzz): the first history a difference points at alone, then
    all its one-step reductions (histories.reductions) packed into ONE build per round on a
    fresh warehouse; the smallest variant that still differs is kept, until none does or
    SHRINK_ROUNDS. Only differences that point at exactly one history count."""
    from tests.support.databases import fresh_database

    def failing(diffs, pk, land) -> set[int]:
        return {owners[0] for diff in diffs if "what" not in diff and len(owners := implicated(diff, pk, land)) == 1}

    target = next((i for diff in differences if "what" not in diff for i in [implicated(diff, packed, landing)]
                   if len(i) == 1), None)  # fmt: skip
    if target is None:
        return "shrinking: no difference points at a single history"
    current = packed.histories[target[0]]
    lines = [f"shrinking history {target[0]} (size {current.size()}), one build per round:"]
    last = None  # (pack, its differences, landing, index) of the smallest failing history so far
    for n in range(SHRINK_ROUNDS):
        batch = {0: current, **{i: v for i, v in enumerate(H.reductions(current), start=1)}}
        with fresh_database(server_url, f"s1mig_shrink_{os.getpid()}_{n}") as url:
            monkeypatch.setenv("S1MIG_DATABASE_URL", url)
            batch_packed = H.pack(batch)
            land, diffs = build_and_compare(batch_packed, tmp_path / f"shrink{n}", url, "(shrinking)")
        bad = failing(diffs, batch_packed, land)
        if 0 not in bad and last is None:
            return lines[0] + " it does not differ alone (the difference needs other histories of the pack)"
        smaller = sorted((batch[i].size(), i) for i in bad if i != 0)
        lines.append(f"  round {n + 1}: {len(batch) - 1} smaller variants, {len(smaller)} still differ")
        chosen = smaller[0][1] if smaller else 0
        mine = [d for d in diffs if "what" not in d and implicated(d, batch_packed, land) == [chosen]]
        last = (batch_packed, mine, land, chosen)
        current = batch[chosen]
        if not smaller:
            break
    assert last is not None
    batch_packed, diffs, land, chosen = last
    lines.append(f"smallest history found (size {current.size()}), as drawn: {current!r}")
    lines.append(report(diffs, batch_packed, land, "(see above)").split("\n", 3)[3])
    return "\n".join(lines)


# ============================================================================ comparison and its report


def compare_date(landing: Path, out: Path, d: date) -> list[dict]:
    """Every difference between the exported files of D and the reference: missing or extra
    files, manifest entries, and rows (by the report's key: missing, unexpected, changed)."""
    wh = ref.load(landing, d)
    expected = ref.expected_files(wh, d)
    folder = out / d.isoformat()
    found = []
    if not (folder / "manifest.json").is_file():
        return [{"date": d, "what": f"no export of {d} (no manifest.json)"}]
    manifest = {f["path"]: f for f in json.loads((folder / "manifest.json").read_text())["files"]}
    expected_paths = {ref.file_name(rid, party, d): (party, rid) for party in expected for rid in expected[party]}
    on_disk = {str(p.relative_to(folder)) for p in folder.glob("*/*.csv")}
    for path in sorted(set(expected_paths) ^ on_disk):
        found.append({"date": d, "what": f"{path}: {'missing' if path in expected_paths else 'not expected'}"})
    for path in sorted(set(manifest) ^ on_disk):
        found.append({"date": d, "what": f"{path}: manifest and folder disagree"})
    for path, (party, rid) in sorted(expected_paths.items()):
        if path not in on_disk:
            continue
        data = (folder / path).read_bytes()
        text = data.decode("utf-8")
        got_rows = list(csv.DictReader(io.StringIO(text)))
        entry = manifest.get(path)
        if entry and (entry["rows"], entry["sha256"]) != (len(got_rows), hashlib.sha256(data).hexdigest()):
            found.append({"date": d, "what": f"{path}: its manifest entry (rows, sha256) does not describe the file"})
        want = ref.to_csv(rid, expected[party][rid])
        if text == want:
            continue
        keyed_got = {tuple(r.get(k) for k in ref.KEYS[rid]): r for r in got_rows}
        if len(keyed_got) != len(got_rows):
            found.append({"date": d, "what": f"{path}: {len(got_rows) - len(keyed_got)} rows repeat a key"})
        keyed_want = {tuple(r[k] for k in ref.KEYS[rid]): r for r in expected[party][rid]}
        before = len(found)
        for key in sorted(set(keyed_got) | set(keyed_want), key=lambda k: tuple(str(x) for x in k)):
            g, w = keyed_got.get(key), keyed_want.get(key)
            if g == w:
                continue
            changed = sorted(c for c in ref.COLUMNS[rid] if (g or {}).get(c) != (w or {}).get(c)) if g and w else []
            found.append(
                {"date": d, "report": rid, "party": party, "key": key, "got": g, "want": w, "changed": changed}
            )
        if len(found) == before:  # same rows: order, header or formatting
            found.append({"date": d, "what": f"{path}: same rows as the reference, different bytes (order/header)"})
    return found


W2_INSTANCE = re.compile(
    r"attempt (?P<attempt>\S+) party (?P<party>\S+): (?P<kind>FAIL event|FAILURE COF) (?P<record>\S+) .*"
    r"in drop (?P<drop>\d{4}-\d{2}-\d{2})"
)


def compare_late_records(url: str, landing: Path) -> list[dict]:
    """The W2 instances of the break register (spec section 6) against the reference's late
    records as at end of the last date: (drop, attempt, party, record kind, record id)."""
    import psycopg

    want = {r[:5] for r in ref.late_records(ref.load(landing, H.DATES[-1]), H.DATES[-1])}
    with psycopg.connect(url) as conn:
        if conn.execute("select to_regclass('audit.breaks')").fetchone()[0] is None:
            return [
                {"date": H.DATES[-1], "what": f"no break register (audit.breaks); {len(want)} late records expected"}
            ]
        instances = conn.execute("select instance, first_seen from audit.breaks where rule_id = 'W2'").fetchall()
    got, found = set(), []
    for instance, first_seen in instances:
        m = W2_INSTANCE.search(instance)
        if m is None:
            found.append({"date": first_seen, "what": f"W2 instance not understood: {instance!r}"})
            continue
        kind = "event" if m["kind"] == "FAIL event" else "cof"
        got.add((date.fromisoformat(m["drop"]), m["attempt"], m["party"], kind, m["record"]))
    for late in sorted(got ^ want):
        d, attempt_id, party_id, kind, record_id = late
        row = {"attempt_id": attempt_id, "party_id": party_id, "kind": kind, "record_id": record_id}
        found.append(
            {
                "date": d,
                "report": "W2 (break register)",
                "party": party_id,
                "key": (attempt_id, record_id),
                "got": row if late in got else None,
                "want": row if late in want else None,
                "changed": [],
            }
        )
    return found


def implicated(diff: dict, packed: H.Packed, landing: Path) -> list[int]:
    """The histories behind a differing row: by its installation, COF or MA file, or group
    (one per history); for the party-level reports 004 and 005, the histories with an
    attempt or allocation of that party behind the row."""
    row = diff.get("want") or diff.get("got") or {}
    for column in ("installation_id", "attempt_id", "cof_file_name", "ma_file_name", "group_id"):
        if row.get(column) and row[column] in packed.owner and len(packed.owner[row[column]]) <= SHOWN_HISTORIES:
            return sorted(packed.owner[row[column]])
    if diff.get("report") not in ("S1MIG-004", "S1MIG-005"):
        return sorted(packed.owner.get(row.get("group_id", ""), set()))
    d = diff["date"]
    m = ref.Model(ref.load(landing, d), d)
    out = set()
    for av in m.attempts:
        parties = {r.party_id for r in av.parties} | {av.attempt.party_id}
        if row.get("party_id") in parties and row.get("cohort", av.cohort) == av.cohort:
            touches = av.attempt.scheduled_for == d or (
                av.completion and ref.local_day(av.completion.completed_at) <= d
            )
            if touches:
                out |= packed.owner.get(av.attempt.attempt_id, set())
    return sorted(out)


def report(differences: list[dict], packed: H.Packed, landing: Path, reproduce: str) -> str:
    by_report: dict[str, int] = defaultdict(int)
    for diff in differences:
        by_report[diff.get("report", "files")] += 1
    lines = [
        f"seed {SEED}: the pipeline's exports differ from the reference in {len(differences)} row(s)/file(s) "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(by_report.items()))}) over {len(packed.histories)} histories",
        f"reproduce: {reproduce}",
        "",
    ]
    shown: list[int] = []
    for diff in differences[:SHOWN_DIFFERENCES]:
        if "what" in diff:
            lines.append(f"{diff['date']} {diff['what']}")
            continue
        owners = implicated(diff, packed, landing)
        who = f"histories {owners[:SHOWN_HISTORIES]}{' ...' if len(owners) > SHOWN_HISTORIES else ''}"
        head = f"{diff['date']} {diff['report']} {diff['party']} key={diff['key']} ({len(owners)} {who})"
        if diff["got"] is None:
            lines.append(f"{head}: MISSING, the reference has {diff['want']}")
        elif diff["want"] is None:
            lines.append(f"{head}: NOT EXPECTED, the pipeline has {diff['got']}")
        else:
            changes = "; ".join(
                f"{c}: pipeline {diff['got'][c]!r}, reference {diff['want'][c]!r}" for c in diff["changed"]
            )
            lines.append(f"{head}: {changes}")
        shown += [i for i in owners[:1] if i not in shown]
    if len(differences) > SHOWN_DIFFERENCES:
        lines.append(f"... and {len(differences) - SHOWN_DIFFERENCES} more")
    for index in shown[:SHOWN_HISTORIES]:
        lines += ["", H.describe(packed, index)]
    return "\n".join(lines)
