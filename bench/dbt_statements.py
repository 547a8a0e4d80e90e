"""Where a dbt build's time goes, statement by statement, from dbt's own debug log.

dbt writes every statement it sends and its time ("SQL status: ... in N seconds") to
`<S1MIG_HOME>/dbt/logs/dbt.log` (or the home a bench run kept, e.g.
/tmp/nm/homes/month/dbt/logs/dbt.log). `run_results.json` gives a node's time; this
splits it into the model's select, the append, the versions' closing and checks, the
analyze, so a figure that grows over a month can be traced to one statement.

    python bench/dbt_statements.py LOG                  # the last invocation, statements >= 0.5 s
    python bench/dbt_statements.py LOG --min 1 --run 3  # the 4th invocation (0-based)
    python bench/dbt_statements.py LOG --compare 1 -1   # per node and kind: run 1 vs the last

Reads the log as a stream (one invocation's statements kept at a time per run asked for).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

HEAD = re.compile(r"^\S*\s*(\d\d:\d\d:\d\d\.\d+) \[\w+\s*\] \[([^\]]+)\]: (.*)$")
ON_NODE = re.compile(r"On ((?:model|test|seed|snapshot)\.\S+): (.*)", re.S)
STATUS = re.compile(r"SQL status: (.*) in ([\d.]+) seconds")
COMMENT = re.compile(r"/\*.*?\*/", re.S)


@dataclass(frozen=True)
class Statement:
    seconds: float
    node: str
    status: str
    sql: str  # the statement's first 110 characters, comments and line breaks removed

    @property
    def kind(self) -> str:
        if "enable_nestloop = on" in self.sql:
            return "close versions + checks"
        if self.sql.startswith("create temporary table") and "__dbt_tmp" in self.sql:
            return "select"
        return self.sql.split(" ", 1)[0].lower() if self.sql else "?"


def _messages(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(thread, message) for each log record; a record's continuation lines are joined."""
    thread, text = None, None
    for raw in lines:
        line = raw.rstrip("\n").replace("\x1b[0m", "")
        m = HEAD.match(line)
        if m:
            if thread is not None:
                yield thread, text
            thread, text = m.group(2), m.group(3)
        elif thread is not None:
            text += "\n" + line
    if thread is not None:
        yield thread, text


def invocations(lines: Iterable[str]) -> Iterator[list[Statement]]:
    """The statements of each dbt invocation in the log, in order."""
    current: list[Statement] | None = None
    last_sql: dict[str, tuple[str, str]] = {}
    for thread, text in _messages(lines):
        if "Running with dbt=" in text:
            if current is not None:
                yield current
            current, last_sql = [], {}
            continue
        if current is None:
            continue
        m = ON_NODE.match(text)
        if m:
            sql = " ".join(COMMENT.sub("", m.group(2)).split())[:110]
            last_sql[thread] = (m.group(1).split(".")[-1], sql)
            continue
        m = STATUS.match(text)
        if m and thread in last_sql:
            node, sql = last_sql[thread]
            current.append(Statement(float(m.group(2)), node, m.group(1), sql))
    if current is not None:
        yield current


def by_node_and_kind(statements: list[Statement]) -> collections.Counter:
    totals: collections.Counter = collections.Counter()
    for s in statements:
        totals[(s.node, s.kind)] += s.seconds
    return totals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("log", help="dbt's debug log (dbt.log)")
    p.add_argument("--min", type=float, default=0.5, help="list statements of at least this many seconds")
    p.add_argument("--run", type=int, default=-1, help="which invocation (0-based; -1 = the last)")
    p.add_argument("--compare", type=int, nargs=2, metavar=("A", "B"), help="per node and kind, run A vs run B")
    p.add_argument("--top", type=int, default=15, help="rows of the comparison")
    args = p.parse_args(argv)
    try:
        with open(args.log, errors="replace") as fh:
            runs = list(invocations(fh))
    except OSError as e:
        print(f"dbt_statements: cannot read {args.log}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        if args.compare:
            a, b = (by_node_and_kind(runs[i]) for i in args.compare)
            print(
                f"{len(runs)} invocations; run {args.compare[0]} {sum(a.values()):.1f} s of statements, "
                f"run {args.compare[1]} {sum(b.values()):.1f} s"
            )
            rows = sorted(((b[k] - a[k], k) for k in set(a) | set(b)), reverse=True)
            for diff, (node, kind) in rows[: args.top]:
                print(f"{a[(node, kind)]:7.2f} -> {b[(node, kind)]:7.2f} s ({diff:+.2f})  {node}  {kind}")
            return 0
        run = runs[args.run]
    except IndexError:
        print(f"dbt_statements: {args.log} holds {len(runs)} invocations", file=sys.stderr)
        return 2
    print(f"{len(runs)} invocations; run {args.run}: {len(run)} statements, {sum(s.seconds for s in run):.1f} s")
    for s in run:
        if s.seconds >= args.min:
            print(f"{s.seconds:7.2f} s  {s.node:40s} {s.status:18s} {s.sql}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
