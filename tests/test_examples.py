"""examples/ never drifts from the code (issue 17, item 1).

The examples are regenerated with the same script as `make examples`
(scripts/make_examples.py: the product generator, the real pipeline on a throw-away
database of this session's server) into a temporary folder, and every byte of drops/ and
reports/ is compared with examples/. The README's quoted lines are checked against the
files it cites, so its walk-through cannot drift either."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SCRIPT = REPO / "scripts" / "make_examples.py"
TREES = ("drops", "reports")
REFRESH = "refresh with `make examples`, review `git diff examples/` and commit it"


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for sub in TREES for p in (root / sub).rglob("*") if p.is_file()}


def _first_difference(a: Path, b: Path) -> str:
    """Where two files first differ: the line number and both lines (text), else the byte offset."""
    x, y = a.read_bytes(), b.read_bytes()
    try:
        xl, yl = x.decode().splitlines(), y.decode().splitlines()
    except UnicodeDecodeError:
        i = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
        return f"first difference at byte {i}"
    for n, (p, q) in enumerate(zip(xl, yl, strict=False), start=1):
        if p != q:
            return f"line {n}: examples/ has {p[:160]!r}, the code now writes {q[:160]!r}"
    return f"examples/ has {len(xl)} lines, the code now writes {len(yl)}"


def compare(expected_root: Path, actual_root: Path) -> list[str]:
    """Differences between examples/ (expected) and a fresh regeneration (actual), one line each."""
    expected, actual = _files(expected_root), _files(actual_root)
    problems = [f"{name}: written by the code, missing from examples/" for name in sorted(actual.keys() - expected)]
    problems += [f"{name}: in examples/, no longer written by the code" for name in sorted(expected.keys() - actual)]
    for name in sorted(expected.keys() & actual.keys()):
        if expected[name].read_bytes() != actual[name].read_bytes():
            problems.append(f"{name}: differs, {_first_difference(expected[name], actual[name])}")
    return problems


@pytest.mark.integration
def test_examples_are_what_the_code_writes(server_url, tmp_path):
    out = tmp_path / "examples"
    env = dict(os.environ)
    env.pop("S1MIG_DATABASE_URL", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--server-url", server_url],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=900,
    )
    assert proc.returncode == 0, f"scripts/make_examples.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    problems = compare(EXAMPLES, out)
    shown = "\n  ".join(problems[:8]) + (f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else "")
    assert not problems, f"examples/ differs from the code's output ({len(problems)} files):\n  {shown}\n{REFRESH}"


# A quote in the README: a ```csv block; the file is the last `drops/...` or `reports/...` named
# before it, and "line N", "lines N-M" or "lines N, M and K" after that name gives where its lines are.
BLOCK = re.compile(r"```csv\n(.*?)\n```", re.S)
CITED = re.compile(r"`((?:drops|reports)/[^`]+)`")
LINES = re.compile(r"\blines? (\d+(?:(?:-|, | and )\d+)*)")


def _line_numbers(text: str) -> list[int]:
    numbers: list[int] = []
    for part in re.split(r", | and ", text):
        first, _, last = part.partition("-")
        numbers += range(int(first), int(last or first) + 1)
    return numbers


def readme_quotes(readme: str) -> list[tuple[str, list[int], list[str]]]:
    """(cited file, line numbers or [], quoted lines) for every csv block of the README."""
    quotes = []
    for block in BLOCK.finditer(readme):
        before = readme[: block.start()]
        cited = CITED.findall(before)
        name = cited[-1] if cited else ""
        where = LINES.search(before[before.rfind(f"`{name}`") :]) if name else None
        quotes.append((name, _line_numbers(where.group(1)) if where else [], block.group(1).splitlines()))
    return quotes


def test_readme_quotes_are_the_lines_of_the_files_they_cite():
    quotes = readme_quotes((EXAMPLES / "README.md").read_text())
    assert len(quotes) >= 10, "the README quotes the files it cites (a line naming `reports/...`, then a csv block)"
    wrong = []
    for name, numbers, block in quotes:
        path = EXAMPLES / name
        if not name or not path.is_file():
            wrong.append(f"a quote cites {name or 'no file'!r}, not a file of examples/: {block[0][:60]!r}")
            continue
        lines = path.read_text().splitlines()
        if not numbers:
            wrong += [f"{name}: no line {line!r}" for line in block if line not in lines]
        elif len(numbers) != len(block):
            wrong.append(f"{name}: the README cites lines {numbers} but quotes {len(block)} lines")
        else:
            wrong += [
                f"{name} line {n}: {lines[n - 1] if n <= len(lines) else None!r}, the README quotes {line!r}"
                for n, line in zip(numbers, block, strict=True)
                if n > len(lines) or lines[n - 1] != line
            ]
    assert not wrong, "examples/README.md quotes lines its files do not have:\n  " + "\n  ".join(wrong[:10])


def test_readme_counts_are_those_of_the_files():
    """The README's table of rows per drop and its file and row counts are those of examples/."""
    readme = (EXAMPLES / "README.md").read_text()
    for drop in sorted((EXAMPLES / "drops").iterdir()):
        manifest = json.loads((drop / "manifest.json").read_text())
        row = re.search(rf"^\| {drop.name}[^|]*\|((?: \d+ \|)+)$", readme, re.M)
        assert row, f"examples/README.md has no row for the drop {drop.name} in its table of extracts"
        counts = [int(c) for c in row.group(1).split("|")[:-1]]
        assert counts == [e["rows"] for e in manifest["extracts"]], f"README's row counts of drop {drop.name}"
    csvs = sorted((EXAMPLES / "reports").glob("*/*/*.csv"))
    lines = [len(p.read_text().splitlines()) for p in csvs]
    said = re.search(r"= (\d+) CSV files \((\d+) data rows in all; (\d+) files hold only", readme)
    assert said, "examples/README.md says how many CSV files, data rows and header-only files there are"
    assert [int(n) for n in said.groups()] == [len(csvs), sum(lines) - len(lines), lines.count(1)]


def test_line_numbers_of_a_quote():
    assert _line_numbers("3") == [3]
    assert _line_numbers("1-4") == [1, 2, 3, 4]
    assert _line_numbers("73, 100 and 118") == [73, 100, 118]
    quotes = readme_quotes("See `reports/x.csv` lines 2-3:\n\n```csv\na\nb\n```\n")
    assert quotes == [("reports/x.csv", [2, 3], ["a", "b"])]


def test_compare_names_the_differing_file(tmp_path):
    """The comparison itself can fail: a changed byte, a missing and an extra file are named."""
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "reports" / "D").mkdir(parents=True)
        (root / "drops").mkdir()
        (root / "reports" / "D" / "same.csv").write_text("h\n1\n")
    (a / "reports" / "D" / "x.csv").write_text("h\n1\n")
    (b / "reports" / "D" / "x.csv").write_text("h\n2\n")
    (a / "drops" / "gone.csv").write_text("")
    (b / "drops" / "new.csv").write_text("")
    problems = compare(a, b)
    assert problems == [
        "drops/new.csv: written by the code, missing from examples/",
        "drops/gone.csv: in examples/, no longer written by the code",
        "reports/D/x.csv: differs, line 2: examples/ has '1', the code now writes '2'",
    ]
