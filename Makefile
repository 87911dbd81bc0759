.PHONY: setup sample sample-cluster test test-fast lint

# Create .venv (jobs) and .venv-airflow, build horovod once, verify. Skips itself when nothing changed.
setup:
	bash scripts/setup.sh

# The whole nightly job, as an Airflow backfill over the shipped Taobao sample days.
sample: setup
	bash scripts/run_sample.sh

# The same nightly job with its Spark stages on a Spark standalone cluster (loopback), through delta-spark.
sample-cluster: setup
	bash scripts/run_sample_cluster.sh

# The full suite: unit tests plus the real Spark / Delta / Horovod / Airflow / cluster end-to-end tests, on two
# xdist workers (tests sharing an expensive session fixture stay on one: tests/conftest.py, _XDIST_GROUPS).
test: setup
	.venv/bin/pytest -n 2 --dist loadgroup

# Unit tests only (no JVM, no subprocess launches): seconds.
test-fast:
	.venv/bin/pytest -m "not slow and not spark and not horovod and not airflow"

lint:
	.venv/bin/ruff check .
