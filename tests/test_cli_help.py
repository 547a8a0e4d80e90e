"""Every `s1mig` subcommand's --help describes its options and their defaults (issue 16,
item 6): walked over the real parser, subcommands registered by cli_db and cli_service
included. `s1mig dbt` with no arguments shows dbt's own help; `s1mig backfill` names the
missing drops of its range, in one line, before running any date."""

from __future__ import annotations

import argparse
import datetime as dt

from s1mig import cli, cli_db, cli_service
from tests.support.cli import run_cli

NO_DEFAULT = (None, False, argparse.SUPPRESS, [])


def _subcommands(parser: argparse.ArgumentParser, path: str = "s1mig"):
    """(path, parser, its help line in the parent's list) of every subcommand, nested ones too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", sub, helps.get(name)
                yield from _subcommands(sub, f"{path} {name}")


def _needs_default(action: argparse.Action) -> bool:
    """An argument the user may leave out: its help must say what happens then."""
    if action.required or action.nargs == argparse.REMAINDER:
        return False
    if action.nargs == 0:  # a flag (--first, --all): off unless given, its help says what it does
        return False
    if not action.option_strings:  # a positional: only when it may be left out
        return action.nargs in ("?", "*")
    return True


def _problems(path: str, parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        if not action.help or action.help == argparse.SUPPRESS:
            found.append(f"{path} {name}: no help text")
            continue
        text = formatter._expand_help(action)
        if not _needs_default(action):
            continue
        if "default" not in text.lower():
            found.append(f"{path} {name}: the help does not state the default ({text!r})")
        elif action.default not in NO_DEFAULT and str(action.default) not in text:
            found.append(f"{path} {name}: the help does not name the default {action.default!r} ({text!r})")
    return found


def test_every_option_of_every_subcommand_states_its_help_and_default():
    parser = cli.build_parser()
    walked = {path: (sub, line) for path, sub, line in _subcommands(parser)}
    # what cli_db and cli_service register (others extend them) is walked too
    registered = argparse.ArgumentParser().add_subparsers()
    cli_db.register(registered)
    cli_service.register(registered)
    names = {f"s1mig {n}" for n in registered.choices}
    assert names <= set(walked) and {"s1mig db", "s1mig env"} <= names
    assert {f"s1mig {n}" for n in ("run", "backfill", "generate", "land", "breaks", "dbt")} <= set(walked)

    problems = _problems("s1mig", parser)
    for path, (sub, line) in walked.items():
        if not line:
            problems.append(f"{path}: no help line in `s1mig --help`")
        problems += _problems(path, sub)
    assert not problems, "\n".join(problems)


def test_the_walk_finds_what_it_checks():
    """The check fails on an option without help, and on one whose default is not stated."""
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--quiet", action="store_true", help="say less")  # a flag: its help is enough
    parser.add_argument("--loud", action="store_true")
    parser.add_argument("--days", type=int, default=7, help="how many days (default: a week)")
    parser.add_argument("--name")
    parser.add_argument("--where", required=True, help="where to (required)")
    parser.add_argument("--seed", type=int, default=1, help="seed (default: %(default)s)")
    assert _problems("x", parser) == [
        "x --loud: no help text",
        "x --days: the help does not name the default 7 ('how many days (default: a week)')",
        "x --name: no help text",
    ]


def test_dbt_without_arguments_shows_dbts_help():
    proc = run_cli("dbt")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: dbt [OPTIONS] [COMMAND]") and "  build " in proc.stdout


def test_backfill_names_every_missing_drop_before_running_any(tmp_path):
    landing = tmp_path / "landing"
    start = dt.date(2020, 7, 30)
    for day in (start, start + dt.timedelta(days=3)):  # 07-30 and 08-02 delivered
        (landing / day.isoformat()).mkdir(parents=True)
        (landing / day.isoformat() / "manifest.json").write_text("{}")
    (landing / "2020-08-04").mkdir()  # a folder without its manifest is not a delivered drop
    proc = run_cli(
        "backfill", "--landing", str(landing), "--start", "2020-07-30", "--end", "2020-08-04", "--out", str(tmp_path)
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        "s1mig: error: backfill 2020-07-30..2020-08-04: no drop for 4 date(s): 2020-07-31..2020-08-01, "
        f"2020-08-03..2020-08-04 (each needs {landing}/<D>/manifest.json); nothing was run\n"
    )
    assert proc.stdout == ""  # no date was started
