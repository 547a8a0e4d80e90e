"""Build and run the GX checkpoint for one report date.

The suite is rebuilt for each date (its SQL carries the date, so Data Docs show exactly
what ran) inside a file-backed GX project under $S1MIG_HOME/gx; the datasource reads
the warehouse URL from the environment (${S1MIG_GX_URL}), never from a file."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s1mig_expectations.data_docs import make_offline
from s1mig_expectations.rules import RULES, Rule

from s1mig.relations import RELATIONS

DATASOURCE = "s1mig_warehouse"
ASSET = "s1mig_006"
BATCH_MODEL = "s1mig_006"  # the mart GX validates ({batch} in every rule): a public model (s1mig.relations)
SAMPLE_KEYS = 5


@dataclass
class RuleOutcome:
    rule: Rule
    success: bool
    failing_count: int
    sample_keys: list[str] = field(default_factory=list)
    error: str | None = None  # the rule's query could not run (it fails: nothing was checked)

    @property
    def status(self) -> str:
        if self.success:
            return "pass"
        return "fail" if self.rule.severity == "blocking" else "warn"

    def line(self) -> str:
        if self.error:
            return f"{self.rule.rule_id} {self.rule.name}: could not be checked: {self.error}"
        text = f"{self.rule.rule_id} {self.rule.name}: {self.failing_count} failing"
        if self.sample_keys:
            text += " (e.g. " + "; ".join(self.sample_keys) + ")"
        return text


def _context(gx_root: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx_root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    datasource = context.data_sources.add_or_update_postgres(name=DATASOURCE, connection_string="${S1MIG_GX_URL}")
    try:
        asset = datasource.get_asset(ASSET)
    except LookupError:
        schema, table = RELATIONS[BATCH_MODEL]
        asset = datasource.add_table_asset(name=ASSET, table_name=table, schema_name=schema)
    try:
        batch_definition = asset.get_batch_definition("whole_table")
    except KeyError:
        batch_definition = asset.add_batch_definition_whole_table("whole_table")
    return context, batch_definition


# The count travels with the sample rows, so each rule's query runs once (see
# _rule_expectation_class).
COUNT_COLUMN = "s1mig_failing_count"


def counted_query(query: str) -> str:
    """A rule's query wrapped to return at most SAMPLE_KEYS of its rows, each carrying
    the total number of unexpected rows (a window count over all of them)."""
    return (
        f"select violations.*, count(*) over () as {COUNT_COLUMN}\n"
        f"from (\n{query.strip()}\n) as violations\nlimit {SAMPLE_KEYS}"
    )


_EXPECTATION_CLASS = None


def _rule_expectation_class():
    """UnexpectedRowsExpectation, evaluated with one query instead of two.

    GX's UnexpectedRowsExpectation resolves two metrics, the query's row count and its
    rows, so the database runs every rule twice (docs/performance.md, B4). This subclass
    depends on the rows metric only; the query (counted_query) returns the sample rows
    with the total count in COUNT_COLUMN, so the outcome (success when there is no
    unexpected row, observed_value = the count) is the same from one execution. Defined
    lazily so that importing this module does not import GX."""
    global _EXPECTATION_CLASS
    if _EXPECTATION_CLASS is None:
        from typing import ClassVar

        import great_expectations as gx

        class ExpectNoUnexpectedRowsCounted(gx.expectations.UnexpectedRowsExpectation):
            metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.table",)

            def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
                rows = list(metrics["unexpected_rows_query.table"] or [])
                count = int(rows[0][COUNT_COLUMN]) if rows else 0
                sample = [{k: v for k, v in dict(row).items() if k != COUNT_COLUMN} for row in rows]
                return {
                    "success": count == 0,
                    "result": {"observed_value": count, "details": {"unexpected_rows": sample}},
                }

        _EXPECTATION_CLASS = ExpectNoUnexpectedRowsCounted
    return _EXPECTATION_CLASS


def build_suite(report_date: dt.date, rules: tuple[Rule, ...] = RULES, part: str = ""):
    import great_expectations as gx

    expectation = _rule_expectation_class()
    suite = gx.ExpectationSuite(name=f"s1mig_gate_{report_date.isoformat()}{part}")
    for rule in rules:
        suite.add_expectation(
            expectation(
                unexpected_rows_query=counted_query(rule.query(report_date)),
                description=f"{rule.rule_id} {rule.name} ({rule.severity}): {rule.description}",
                meta={"rule_id": rule.rule_id, "severity": rule.severity},
            )
        )
    return suite


def run_checkpoint(report_date: dt.date, gx_root: Path, rules: tuple[Rule, ...] = RULES) -> list[RuleOutcome]:
    """Run every rule for the date and update Data Docs; returns one outcome per rule
    (does not raise)."""
    checkpoint = prepare_checkpoint(report_date, gx_root, rules)
    outcomes = checkpoint.run()
    update_data_docs(checkpoint)
    return outcomes


@dataclass
class PreparedCheckpoint:
    """A checkpoint of the date, saved in the GX project: GX imported, the project,
    datasource, suite and validation definition in place. Preparing reads no data. It
    has no action: update_data_docs renders its result (with those of the date's other
    parts, in one build of the site) once it has run."""

    context: Any
    batch_definition: Any
    checkpoint: Any
    rules: tuple[Rule, ...]
    result: Any = None

    def run(self) -> list[RuleOutcome]:
        self.result = self.checkpoint.run()
        return _outcomes(self.result, self.rules)


def prepare_checkpoint(
    report_date: dt.date,
    gx_root: Path,
    rules: tuple[Rule, ...] = RULES,
    part: str = "",
    after: PreparedCheckpoint | None = None,
) -> PreparedCheckpoint:
    """`part` names a checkpoint of some of the rules (its suffix on the suite, validation
    and checkpoint names), so that two parts of one date's rules keep their own results;
    `after`, a checkpoint prepared before in this process, lends its GX project."""
    import great_expectations as gx

    if after is not None:
        context, batch_definition = after.context, after.batch_definition
    else:
        context, batch_definition = _context(gx_root)
    name = f"s1mig_gate_{report_date.isoformat()}{part}"
    suite = context.suites.add_or_update(build_suite(report_date, rules, part))
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"s1mig_gate{part}",
            validation_definitions=[validation],
            result_format={"result_format": "COMPLETE"},
        )
    )
    return PreparedCheckpoint(context=context, batch_definition=batch_definition, checkpoint=checkpoint, rules=rules)


def update_data_docs(*checkpoints: PreparedCheckpoint) -> None:
    """Render the results of checkpoints that have run (and their suites) into the project's
    Data Docs, in one build of the site and its index, as GX's UpdateDataDocsAction does
    for one; then make the site work offline."""
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    identifiers: list = []
    for checkpoint in checkpoints:
        for identifier, result in checkpoint.result.run_results.items():
            identifiers += [identifier, ExpectationSuiteIdentifier(name=result.suite_name)]
    context = checkpoints[0].context
    context.build_data_docs(resource_identifiers=identifiers, build_index=True)
    for site in data_docs_sites(context):
        make_offline(site)


def _outcomes(result, rules: tuple[Rule, ...]) -> list[RuleOutcome]:
    outcomes: list[RuleOutcome] = []
    by_id = {r.rule_id: r for r in rules}
    for run_result in result.run_results.values():
        for er in run_result.results:
            rule = by_id[er.expectation_config.meta["rule_id"]]
            res = er.result or {}
            rows = (res.get("details") or {}).get("unexpected_rows") or []
            outcomes.append(
                RuleOutcome(
                    rule=rule,
                    success=bool(er.success),
                    failing_count=int(res.get("observed_value") or 0),
                    sample_keys=[_key(row) for row in list(rows)[:SAMPLE_KEYS]],
                    error=_error(er),
                )
            )
    order = {r.rule_id: i for i, r in enumerate(rules)}
    return sorted(outcomes, key=lambda o: order[o.rule.rule_id])


def data_docs_sites(context) -> list[Path]:
    """The folders of the project's filesystem Data Docs sites (local_site by default)."""
    sites = []
    for config in (context.variables.data_docs_sites or {}).values():
        base = (config.get("store_backend") or {}).get("base_directory")
        if base:
            path = Path(base)
            sites.append(path if path.is_absolute() else Path(context.root_directory) / path)
    return sites


def _error(er) -> str | None:
    """The database's one-line reason when a rule's query raised (GX records it instead)."""
    info = er.exception_info or {}
    # either one record, or one per metric that raised (GX 1.x keys them by metric id)
    records = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    raised = [r for r in records if r.get("raised_exception")]
    if not raised:
        return None
    message = str(raised[0].get("exception_message") or "query failed")
    # the driver's first line names the problem (e.g. relation "x" does not exist)
    for line in message.splitlines():
        if line.strip():
            return line.strip()[:300]
    return "query failed"


def _key(row) -> str:
    if isinstance(row, dict) and "record" in row:
        return str(row["record"])
    values = list(row.values()) if isinstance(row, dict) else list(row)
    return "/".join("" if v is None else str(v) for v in values)
