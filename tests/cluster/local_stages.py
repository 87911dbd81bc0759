"""Featurize, score and publish one ds in one Spark session of the given master: the local-mode reference
the cluster's runs are compared with (`python -m tests.cluster.local_stages --ds D --master local[2]`)."""

from __future__ import annotations

import argparse

from featurization.featurize import featurize
from lake import load_config
from lake.spark import get_spark
from scoring.publish import publish
from scoring.score import score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ds", required=True)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    config = load_config().with_overrides({"spark": {"master": args.master}})
    spark = get_spark(config)
    featurize(config, args.ds, spark=spark)
    score(config, args.ds, spark=spark)
    publish(config, args.ds, spark=spark)


if __name__ == "__main__":
    main()
