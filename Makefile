# s1mig — the SMETS1 Migration Reporting warehouse.
# `make run` runs the daily pipeline on generated sample data; `make test` runs the tests.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export S1MIG_HOME ?= $(CURDIR)/.s1mig

SAMPLE_START ?= 2020-07-31
SAMPLE_DAYS  ?= 7
SAMPLE_END   ?= $(shell $(PYTHON) -c "import datetime as d; print(d.date.fromisoformat('$(SAMPLE_START)') + d.timedelta(days=$(SAMPLE_DAYS) - 1))")
SAMPLE_INSTALLATIONS ?= 2000
LANDING ?= $(S1MIG_HOME)/sample/landing
OUT     ?= $(S1MIG_HOME)/exports

.PHONY: install run test lint format clean db-stop fuzz serve

install: $(STAMP)

# Re-installs only when the lock or the project metadata changed.
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: Python 3.11 is required"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --progress-bar off -c constraints.txt -e ".[dev,celery]"
	touch $(STAMP)

run: install
	rm -rf $(LANDING)
	$(BIN)/s1mig generate --out $(LANDING) --start $(SAMPLE_START) --days $(SAMPLE_DAYS) \
		--installations $(SAMPLE_INSTALLATIONS) --seed 1
	$(BIN)/s1mig backfill --landing $(LANDING) --start $(SAMPLE_START) --end $(SAMPLE_END) --out $(OUT) --first
	@echo "Reports: $(OUT)/<date>/<party>/"

# The daily DAG as a service (foreground; Ctrl-C or `s1mig serve --stop` stops it): Airflow's
# UI and REST API on http://127.0.0.1:$(SERVE_PORT), drops read from $(SERVE_LANDING)/<date>/,
# reports published to $(SERVE_OUT)/<date>/ after `s1mig approve <date>` (four-eyes release).
# On an empty warehouse, name its first drop: make serve FIRST_DROP=2020-07-31
SERVE_PORT    ?= $(or $(S1MIG_SERVE_PORT),8080)
SERVE_LANDING ?= $(or $(S1MIG_LANDING_DIR),$(S1MIG_HOME)/landing)
SERVE_OUT     ?= $(or $(S1MIG_EXPORT_DIR),$(S1MIG_HOME)/exports)
FIRST_DROP    ?=
serve: install
	$(if $(FIRST_DROP),S1MIG_FIRST_DROP=$(FIRST_DROP)) $(BIN)/s1mig serve --port $(SERVE_PORT) \
		--landing $(SERVE_LANDING) --out $(SERVE_OUT)

# A dedicated temp folder: pytest's shared /tmp/pytest-of-<user> rotation would delete
# the embedded server's data of a concurrent session. The tests run on TEST_WORKERS
# pytest-xdist workers, a module at a time (each worker has its own S1MIG_HOME and embedded
# PostgreSQL), in the order tests/conftest.py gives (LONGEST_FIRST, not reordered by
# xdist); TEST_WORKERS=0 runs them in this one process. One worker more than the 2
# cores: several tests spend minutes waiting on Airflow's scheduler (measured on 2 cores,
# loaded: 3 workers 11.0 min, 2 workers 17.0 min).
TEST_WORKERS ?= 3
test: install
	mkdir -p $(S1MIG_HOME)
	$(BIN)/pytest --basetemp=$(S1MIG_HOME)/pytest-tmp --durations=15 \
		$(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder,-p no:xdist)

# Property-based fuzzing (tests/test_properties.py): `make test` checks 400 random
# histories from a fixed seed; `make fuzz` checks S1MIG_FUZZ_EXAMPLES (5000) from a new
# seed, printed first. Reproduce a failure with S1MIG_FUZZ_SEED=<seed> make fuzz.
S1MIG_FUZZ_EXAMPLES ?= 5000
fuzz: install
	mkdir -p $(S1MIG_HOME)
	@seed=$${S1MIG_FUZZ_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "make fuzz: seed $$seed, $(S1MIG_FUZZ_EXAMPLES) histories (reproduce: S1MIG_FUZZ_SEED=$$seed S1MIG_FUZZ_EXAMPLES=$(S1MIG_FUZZ_EXAMPLES) make fuzz)"; \
	S1MIG_FUZZ_SEED=$$seed S1MIG_FUZZ_EXAMPLES=$(S1MIG_FUZZ_EXAMPLES) S1MIG_FUZZ_SHRINK=$${S1MIG_FUZZ_SHRINK:-1} \
		$(BIN)/pytest --basetemp=$(S1MIG_HOME)/pytest-tmp -p no:cacheprovider -s tests/test_properties.py

lint: install
	$(BIN)/ruff check src dags expectations tests
	$(BIN)/ruff format --check src dags expectations tests
	$(BIN)/sqlfluff lint dbt_project/models dbt_project/macros
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src dags expectations tests
	$(BIN)/ruff check --fix src dags expectations tests

db-stop:
	-$(BIN)/s1mig db stop

clean: db-stop
	rm -rf $(S1MIG_HOME) dbt_project/target dbt_project/logs

include bench/Makefile.inc
include examples/Makefile.inc
