# The two commands: `make run` and `make test`. Both create .venv from the pinned
# requirements when it is missing or out of date; nothing else needs installing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck format requirements check-containers clean bench bench-scale eval

$(STAMP): requirements/dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/kave run

# Two test processes (pytest-xdist), each a test session of its own with its own
# database, Redis database, S3 server and workers (tests/services.py); a file's tests run
# together on one. Most tests wait on real services, so two processes share two cores
# well: 8.5 minutes instead of 12.7 here. TEST_PROCESSES=0 runs them in this process
# (for a debugger).
TEST_PROCESSES ?= 2
test: $(STAMP)
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	scripts/check-containers
	scripts/check-deploy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The benchmark suite (bench/run.py; BENCHMARKS.md): starts its own Redis, scratch
# database, S3 server, receivers and workers, and prints the table: stages receiver,
# worker, memory, growth and tta (time to agent; ~17 minutes on 2 cores).
# BENCH_ARGS="--quick" for a short smoke run, "--only receiver,memory" for some
# stages, "--only hostile" for the hostile-input stages (webhooks, flood, mail,
# complexity; RELIABILITY.md), which the default run leaves out. `python -m bench.run
# --help` lists them all.
bench: $(STAMP)
	bench/ensure-wrk
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The scale bench (bench/scale/; BENCHMARKS.md "Kave at a million emails"): a scratch
# database filled to 1M emails with SQL, kave migrate under load, every list filter of
# the API timed, the operator commands measured (~45 minutes on 2 cores at 1M).
# SCALE_ARGS="--emails 100000" for a smaller database, "--skip-operators".
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale $(SCALE_ARGS)

# The evaluation of the derived fields on the labelled corpora under evaluation/corpora
# (EVALUATION.md): accuracy per field and per corpus, in a few seconds. EVAL_ARGS="--json"
# for tooling, "--corpus NAME" for one corpus, "--misses" to list the wrong cases.
eval: $(STAMP)
	$(BIN)/python -m evaluation.run $(EVAL_ARGS)

# Recompile the pins after editing requirements/*.in or deploy/tools-requirements.in.
# Existing pins are kept (add --upgrade-package NAME to move one). Every pin carries the
# hashes of its files, and every install uses --require-hashes: a tampered or substituted
# file of a pinned version fails the install.
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --strip-extras \
	--no-emit-index-url --no-emit-find-links
requirements: $(STAMP)
	cd requirements && for name in base receiver api worker dev; do \
		../$(PIP_COMPILE) $$name.in -o $$name.txt || exit 1; \
	done
	cd deploy && ../$(PIP_COMPILE) tools-requirements.in -o tools-requirements.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
