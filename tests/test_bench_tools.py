"""bench/dbt_statements.py reads dbt's own debug log (the format dbt 1.11 writes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
E = "\x1b[0m"
LOG = f"""{E}05:20:59.122253 [info ] [MainThread]: Running with dbt=1.11.16
{E}05:21:01.390783 [debug] [Thread-1 (]: On model.s1mig.int_a: /* {{"app": "dbt"}} */

        create temporary table "int_a__dbt_tmp0521" as (
          select 1
        )
{E}05:21:01.400000 [debug] [Thread-2 (]: On model.s1mig.s1mig_008: /* {{"app": "dbt"}} */
  insert into "db"."marts"."s1mig_008" select 2
{E}05:21:02.100000 [debug] [Thread-2 (]: SQL status: INSERT 0 5 in 0.700 seconds
{E}05:21:03.390783 [debug] [Thread-1 (]: SQL status: SELECT 8 in 2.000 seconds
{E}05:27:45.352319 [info ] [MainThread]: Running with dbt=1.11.16
{E}05:27:46.000000 [debug] [Thread-1 (]: On model.s1mig.int_a: /* c */ create temporary table "int_a__dbt_tmp1" as (
  select 1)
{E}05:27:51.000000 [debug] [Thread-1 (]: SQL status: SELECT 9 in 5.000 seconds
{E}05:27:52.000000 [debug] [Thread-1 (]: On model.s1mig.int_a: set local enable_nestloop = on; update x set y = 1
{E}05:27:53.000000 [debug] [Thread-1 (]: SQL status: INSERT 0 1 in 1.000 seconds
"""


def _tool():
    spec = importlib.util.spec_from_file_location("dbt_statements", ROOT / "bench" / "dbt_statements.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_statements_are_given_to_their_node_across_interleaved_threads():
    tool = _tool()
    runs = list(tool.invocations(LOG.splitlines(keepends=True)))
    assert [len(r) for r in runs] == [2, 2]
    first = {(s.node, s.kind): s.seconds for s in runs[0]}
    assert first == {("s1mig_008", "insert"): 0.7, ("int_a", "select"): 2.0}
    second = tool.by_node_and_kind(runs[1])
    assert second == {("int_a", "select"): 5.0, ("int_a", "close versions + checks"): 1.0}


def test_compare_and_errors_are_one_liners(tmp_path, capsys):
    tool = _tool()
    log = tmp_path / "dbt.log"
    log.write_text(LOG)
    assert tool.main([str(log), "--compare", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert "2.00 ->    5.00 s (+3.00)  int_a  select" in out
    assert tool.main([str(log), "--run", "5"]) == 2
    assert capsys.readouterr().err.strip() == f"dbt_statements: {log} holds 2 invocations"
    assert tool.main([str(tmp_path / "missing.log")]) == 2
    assert "cannot read" in capsys.readouterr().err
