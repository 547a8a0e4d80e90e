"""The order in which dbt gives its threads the nodes that are ready: the longest remaining
path first (docs/performance.md, "The order of the build's nodes").

dbt hands a free thread the ready node with the lowest depth in the graph (dbt-core's
GraphQueue._get_scores: a node's topological level; ties by node id). On a national day
that starts the cheap, late-needed models first and leaves the long chain of the
completion and status versions and states waiting for a thread: the staging models of
events and rejects (8-10 s each, the rejects needed by nothing on that chain) ran before
`int_attempt_responsibilities`, which the chain starts from, and the chain then ran on one
thread while the other had nothing to do. dbt has no setting for the order, so its score
is replaced, in every process that runs dbt for s1mig (the child `python -m s1mig.dbt_main`
and dbt in this process), by the longest path of expected node times from the node to the
end of the graph, highest first (list scheduling by critical path). The expected time of a
node is its time in the last run that built it (`node_times.json` beside dbt's target
directory, written after each dbt command from its run_results.json); a node never timed
counts 1 s (a model, seed or snapshot) or 0.1 s (a test). Where a simulation of dbt's
threads over those times says that swapping two nodes of that order ends the build sooner,
they are swapped (scheduled_scores). Only the order changes: the same nodes run, each after
everything it depends on, with the same threads."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

TIMES_ENV = "S1MIG_DBT_NODE_TIMES"  # the node times file of this home (s1mig.dbt.dbt_env)
ORDER_ENV = "S1MIG_DBT_ORDER"  # "dbt": dbt's own order (to compare, or should a dbt upgrade need it)
UNTIMED_MODEL = 1.0
UNTIMED_TEST = 0.1


def node_weights(times_file: Path | None) -> dict[str, float]:
    """The last time of each node (unique id) that any dbt command of this home ran."""
    if times_file is None or not times_file.exists():
        return {}
    try:
        times = json.loads(times_file.read_text())
    except (OSError, ValueError):  # unreadable: the order falls back to untimed weights
        return {}
    return {str(node): float(seconds) for node, seconds in times.items() if isinstance(seconds, (int, float))}


def _weight(node: str, weights: dict[str, float]) -> float:
    if node in weights:
        return weights[node]
    return UNTIMED_TEST if node.startswith(("test.", "unit_test.")) else UNTIMED_MODEL


def remaining_path_scores(graph, weights: dict[str, float]) -> dict[str, float]:
    """Per node of `graph` (a networkx DiGraph, edges from a node to what waits for it): minus
    the longest path of weights from it to the end, so dbt's queue (lowest score first)
    starts the node with the most work behind it; ties go by node id, as in dbt."""
    import networkx as nx

    remaining: dict[str, float] = {}
    for node in reversed(list(nx.topological_sort(graph))):
        after = max((remaining[child] for child in graph.successors(node)), default=0.0)
        remaining[node] = _weight(node, weights) + after
    return {node: -length for node, length in remaining.items()}


THREADS_ENV = "S1MIG_DBT_THREADS"  # dbt's threads (profiles.yml reads the same, default 2)
# Reordering: how far apart two nodes of the order may be swapped, how many schedules may be
# simulated, and the least gain (seconds) a swap must bring to be kept.
SWAP_WINDOW = 8
MAX_SIMULATIONS = 3000
LEAST_GAIN = 0.05


def simulated_makespan(graph, weights: dict[str, float], order: list[str], threads: int) -> float:
    """When the last node of `graph` would end if each free thread took the ready node that
    comes first in `order`, every node taking its expected time (dbt's loop with the
    hand-out held back to free threads, install() below)."""
    import heapq

    rank = {node: i for i, node in enumerate(order)}
    waiting = {node: graph.in_degree(node) for node in graph.nodes}
    ready = [(rank[node], node) for node, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now, free, left = 0.0, max(1, threads), len(waiting)
    while left:
        while free and ready:
            node = heapq.heappop(ready)[1]
            heapq.heappush(running, (now + _weight(node, weights), node))
            free -= 1
        now, node = heapq.heappop(running)
        free, left = free + 1, left - 1
        for child in graph.successors(node):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (rank[child], child))
    return now


def scheduled_scores(graph, weights: dict[str, float], threads: int) -> dict[str, float]:
    """dbt's scores (lowest first): the order of the longest remaining path, improved where a
    simulation of the threads says so. The longest path alone starts the longest staging
    model first, though the model the two long chains meet at also waits for three shorter
    ones that then run one after the other on the other thread (a national day: the events
    10.5 s on one thread; the attempts, installations, responsibilities and COF records
    13.6 s on the other). So two nodes of the order up to SWAP_WINDOW apart are swapped
    where that makes the simulated build end at least LEAST_GAIN sooner, until no swap
    does (at most MAX_SIMULATIONS schedules, a few milliseconds each)."""
    path = remaining_path_scores(graph, weights)
    order = sorted(graph.nodes, key=lambda node: (path[node], node))
    best = simulated_makespan(graph, weights, order, threads)
    simulations, improved = 1, True
    while improved and simulations < MAX_SIMULATIONS:
        improved = False
        for i in range(len(order) - 1):
            for j in range(i + 1, min(i + 1 + SWAP_WINDOW, len(order))):
                if simulations >= MAX_SIMULATIONS:
                    break
                trial = order[:]
                trial[i], trial[j] = trial[j], trial[i]
                makespan = simulated_makespan(graph, weights, trial, threads)
                simulations += 1
                if makespan < best - LEAST_GAIN:
                    order, best, improved = trial, makespan, True
    return {node: float(i) for i, node in enumerate(order)}


def _threads() -> int:
    try:
        return max(1, int(os.environ.get(THREADS_ENV, "2")))
    except ValueError:
        return 2


def install() -> None:
    """Order dbt's nodes in this process (idempotent): the scores above, read from the file
    named by $S1MIG_DBT_NODE_TIMES when dbt builds its queue, and a node handed out only
    when one of dbt's threads is free. dbt's own loop takes every ready node off its queue
    at once and into its thread pool's first-come, first-served queue, so a score only
    ordered the nodes that became ready at the same moment: the long chain's next model,
    ready a moment after a cheap one, waited behind it. With the hand-out held back to one
    node per free thread (a semaphore of dbt's thread count, taken before the queue's get
    and given back when a node is marked done), every free thread takes the best node
    ready at that moment."""
    import threading

    from dbt.graph.queue import GraphQueue
    from dbt.task.runnable import GraphRunnableTask

    if getattr(GraphQueue._get_scores, "s1mig_longest_path_first", False) or os.environ.get(ORDER_ENV) == "dbt":
        return
    dbt_get_scores, dbt_get, dbt_mark_done = GraphQueue._get_scores, GraphQueue.get, GraphQueue.mark_done
    dbt_run_queue = GraphRunnableTask.run_queue

    def _get_scores(self, graph) -> dict[str, float]:
        times = os.environ.get(TIMES_ENV)
        return scheduled_scores(graph, node_weights(Path(times) if times else None), _threads())

    def get(self, block: bool = True, timeout: float | None = None):
        free = getattr(self, "s1mig_free_threads", None)
        if free is not None:
            free.acquire()
        try:
            return dbt_get(self, block, timeout)
        except BaseException:
            if free is not None:
                free.release()
            raise

    def mark_done(self, node_id) -> None:
        try:
            dbt_mark_done(self, node_id)
        finally:
            free = getattr(self, "s1mig_free_threads", None)
            if free is not None:
                free.release()

    def run_queue(self, pool) -> None:
        if self.job_queue is not None:
            self.job_queue.s1mig_free_threads = threading.Semaphore(max(1, int(self.config.threads or 1)))
        return dbt_run_queue(self, pool)

    _get_scores.s1mig_longest_path_first = True  # type: ignore[attr-defined]
    _get_scores.dbt_own = dbt_get_scores  # type: ignore[attr-defined]
    GraphQueue._get_scores = _get_scores  # type: ignore[method-assign,assignment]
    GraphQueue.get = get  # type: ignore[method-assign]
    GraphQueue.mark_done = mark_done  # type: ignore[method-assign]
    GraphRunnableTask.run_queue = run_queue  # type: ignore[method-assign]


def record(run_results: Path, times_file: Path) -> None:
    """Keep the time of every node the last dbt command ran (its run_results.json) in
    `times_file`, beside the times of the nodes it did not run; written whole and renamed
    into place, so a reader never sees half a file."""
    try:
        results = json.loads(run_results.read_text())["results"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # the command ran no node (or wrote nothing): the times stay as they were
    times = node_weights(times_file)
    for result in results:
        if isinstance(result, dict) and isinstance(result.get("execution_time"), (int, float)):
            times[str(result.get("unique_id"))] = round(float(result["execution_time"]), 3)
    partial = times_file.with_name(f".{times_file.name}.{os.getpid()}")
    try:
        partial.write_text(json.dumps(times, indent=0, sort_keys=True))
        partial.replace(times_file)
    except OSError as err:  # the order is an optimisation: never fail a build over it
        log.warning("could not keep dbt's node times in %s: %s", times_file, err)
        partial.unlink(missing_ok=True)
