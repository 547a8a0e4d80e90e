"""s1mig tests: `make test` runs them all (see README.md); helpers are in tests/support/."""
