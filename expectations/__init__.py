"""The reconciliation gate (spec section 6) as a Great Expectations Core 1.x suite.

Installed as the package `s1mig_expectations`. Every rule is an expectation that runs
inside PostgreSQL (UnexpectedRowsExpectation SQL), scoped to one report date."""

from s1mig_expectations.checkpoint import RuleOutcome, prepare_checkpoint, run_checkpoint, update_data_docs
from s1mig_expectations.rules import RULES, Rule

__all__ = ["RULES", "Rule", "RuleOutcome", "prepare_checkpoint", "run_checkpoint", "update_data_docs"]
