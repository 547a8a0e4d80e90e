"""The order of dbt's nodes on its threads (s1mig.dbt_schedule): dbt's own queue, given the
longest remaining path's scores, starts the node with the most work behind it, where
dbt's own scores (the depth in the graph, ties by name) start the shallowest; the times
of the nodes a command ran are kept for the next command's order, by dbt in this process
and by dbt in a child process (`python -m s1mig.dbt_main`)."""

from __future__ import annotations

import json
import os
import subprocess
import threading

import networkx as nx
import pytest
from dbt.graph.queue import GraphQueue

from s1mig import config, dbt, dbt_schedule


def _graph() -> nx.DiGraph:
    # model.z_chain -> test -> model.z_next -> model.z_last: the long chain; model.a_side
    # and model.b_side: cheap ends, shallower and earlier by name
    graph = nx.DiGraph()
    graph.add_edge("model.p.z_chain", "test.p.not_null_z_chain")
    graph.add_edge("test.p.not_null_z_chain", "model.p.z_next")
    graph.add_edge("model.p.z_next", "model.p.z_last")
    graph.add_node("model.p.a_side")
    graph.add_node("model.p.b_side")
    return graph


def _first_ready(graph: nx.DiGraph) -> list[str]:
    queue = GraphQueue(graph, manifest=None, selected=set(graph.nodes))  # type: ignore[arg-type]
    order = []
    while not queue.inner.empty():
        order.append(queue.inner.get_nowait()[1])
    return order


def test_the_longest_remaining_path_starts_first(tmp_path, monkeypatch):
    graph = _graph()
    dbt_schedule.install()  # also done by any dbt command this process ran before
    with monkeypatch.context() as own:
        own.setattr(GraphQueue, "_get_scores", GraphQueue._get_scores.dbt_own)
        assert _first_ready(graph.copy()) == ["model.p.a_side", "model.p.b_side", "model.p.z_chain"]  # dbt's order

    # never timed: a model counts 1 s, a test 0.1 s, so the chain (3.1 s) goes first
    monkeypatch.setenv(dbt_schedule.TIMES_ENV, str(tmp_path / "none.json"))
    assert _first_ready(graph.copy()) == ["model.p.z_chain", "model.p.a_side", "model.p.b_side"]

    # timed: a side model that took longer than the whole chain goes first
    times = tmp_path / "node_times.json"
    times.write_text(json.dumps({"model.p.b_side": 9.0, "model.p.z_chain": 2.0, "model.p.z_last": 3.0}))
    monkeypatch.setenv(dbt_schedule.TIMES_ENV, str(times))
    assert _first_ready(graph.copy()) == ["model.p.b_side", "model.p.z_chain", "model.p.a_side"]
    scores = dbt_schedule.remaining_path_scores(graph, dbt_schedule.node_weights(times))
    assert scores["model.p.z_chain"] == -(2.0 + 0.1 + 1.0 + 3.0)


def _national_day() -> tuple[nx.DiGraph, dict[str, float]]:
    # the start of a national day's build (day 7, docs/performance.md): the chain's first
    # model waits for the events (10.5 s) and for the responsibilities, which wait for
    # the attempts and the installations, and for the COF records
    graph = nx.DiGraph()
    for upstream, model in [
        ("events", "completions"), ("responsibilities", "completions"), ("cofs", "completions"),
        ("attempts", "responsibilities"), ("installations", "responsibilities"), ("completions", "states"),
    ]:  # fmt: skip
        graph.add_edge(f"model.p.{upstream}", f"model.p.{model}")
    seconds = {"events": 10.5, "attempts": 4.1, "installations": 1.4, "responsibilities": 4.5, "cofs": 3.6}
    weights = {f"model.p.{name}": t for name, t in {**seconds, "completions": 9.7, "states": 9.2}.items()}
    return graph, weights


def test_a_simulation_of_the_threads_reorders_what_the_longest_path_gets_wrong(tmp_path, monkeypatch):
    graph, weights = _national_day()
    path = dbt_schedule.remaining_path_scores(graph, weights)
    by_path = sorted(graph.nodes, key=lambda node: (path[node], node))
    # the longest path starts the events and the attempts; the other four models then run
    # one after the other on the second thread, and the chain starts at 13.6 s
    assert by_path[:2] == ["model.p.events", "model.p.attempts"]
    assert dbt_schedule.simulated_makespan(graph, weights, by_path, 2) == pytest.approx(13.6 + 9.7 + 9.2)
    # the installations first: the events end at 11.9 s, the other thread at 12.2 s
    scores = dbt_schedule.scheduled_scores(graph, weights, 2)
    order = sorted(graph.nodes, key=scores.__getitem__)
    assert dbt_schedule.simulated_makespan(graph, weights, order, 2) == pytest.approx(12.2 + 9.7 + 9.2)
    assert order[0] == "model.p.installations"
    # one thread: any order of the same work ends at the same time, so nothing is swapped
    assert dbt_schedule.scheduled_scores(graph, weights, 1) == {node: float(i) for i, node in enumerate(by_path)}

    # dbt's own queue, given those times and two threads, starts the installations
    times = tmp_path / "node_times.json"
    times.write_text(json.dumps(weights))
    monkeypatch.setenv(dbt_schedule.TIMES_ENV, str(times))
    monkeypatch.setenv(dbt_schedule.THREADS_ENV, "2")
    dbt_schedule.install()
    assert _first_ready(graph.copy())[0] == "model.p.installations"


class _Manifest:
    """What dbt's queue asks of the manifest when it hands a node out."""

    def expect(self, node_id):
        return node_id


def test_a_node_is_handed_out_only_to_a_free_thread():
    # dbt's loop takes every ready node at once into its pool's first-come queue; held
    # back to one per free thread, the next node is chosen when a thread frees
    dbt_schedule.install()
    graph = _graph()
    queue = GraphQueue(graph, manifest=_Manifest(), selected=set(graph.nodes))  # type: ignore[arg-type]
    queue.s1mig_free_threads = threading.Semaphore(1)  # as run_queue sets it: dbt's thread count
    first = queue.get()
    assert first == "model.p.z_chain"
    handed: list[str] = []
    waiting = threading.Thread(target=lambda: handed.append(queue.get()), daemon=True)
    waiting.start()
    waiting.join(0.5)
    assert handed == []  # the one thread is busy: nothing more is handed out
    queue.mark_done(first)
    waiting.join(5)
    # the chain's test, ready only now, goes before the side models ready all along
    assert handed == ["test.p.not_null_z_chain"]
    from dbt.task.runnable import GraphRunnableTask

    assert GraphRunnableTask.run_queue.__qualname__.startswith("install.")  # dbt's loop sets the semaphore


def test_record_keeps_the_times_of_the_nodes_not_run(tmp_path):
    times = tmp_path / "node_times.json"
    times.write_text(json.dumps({"model.p.a": 1.5, "model.p.b": 2.5}))
    results = tmp_path / "run_results.json"
    results.write_text(json.dumps({"results": [{"unique_id": "model.p.b", "execution_time": 4.25}]}))
    dbt_schedule.record(results, times)
    assert json.loads(times.read_text()) == {"model.p.a": 1.5, "model.p.b": 4.25}
    dbt_schedule.record(tmp_path / "missing.json", times)  # a command that ran nothing
    assert json.loads(times.read_text()) == {"model.p.a": 1.5, "model.p.b": 4.25}
    times.write_text("{not json")  # unreadable: untimed weights, and the next command rewrites it
    assert dbt_schedule.node_weights(times) == {}
    dbt_schedule.record(results, times)
    assert json.loads(times.read_text()) == {"model.p.b": 4.25}


@pytest.mark.integration
def test_dbt_commands_keep_their_node_times(warehouse):
    times = config.home() / "dbt" / "node_times.json"
    times.unlink(missing_ok=True)
    dbt.run_dbt(["seed", "--select", "reason_codes"], echo=None)  # dbt in this process (the tests')
    kept = {node for node in json.loads(times.read_text()) if not node.startswith("operation.")}  # hooks too
    assert kept == {"seed.s1mig.reason_codes"}, kept

    # dbt in a child process, as a DAG task runs it
    env = dbt.dbt_env(warehouse)
    done = subprocess.run(
        dbt.dbt_command(["seed", "--select", "ma_error_codes"]), env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:]
    kept = {node for node in json.loads(times.read_text()) if not node.startswith("operation.")}
    assert kept == {"seed.s1mig.reason_codes", "seed.s1mig.ma_error_codes"}, kept
    assert env[dbt_schedule.TIMES_ENV] == str(times) and os.path.exists(times)
