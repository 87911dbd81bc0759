.PHONY: setup sample test test-fast lint

# Create .venv (jobs) and .venv-airflow, build horovod once, verify. Skips itself when nothing changed.
setup:
	bash scripts/setup.sh

# The whole nightly job, as an Airflow backfill over the shipped Taobao sample days.
sample: setup
	bash scripts/run_sample.sh

# The full suite: unit tests plus the real Spark / Delta / Horovod / Airflow end-to-end tests.
test: setup
	.venv/bin/pytest

# Unit tests only (no JVM, no subprocess launches): seconds.
test-fast:
	.venv/bin/pytest -m "not slow and not spark and not horovod and not airflow"

lint:
	.venv/bin/ruff check .
