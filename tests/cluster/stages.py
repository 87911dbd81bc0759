"""Stages of the nightly job for one ds, run in order in one Spark session of the given master (one JVM,
where the CLI would start one per stage): the reference for the cluster's runs and the driver of the
object-store runs.

    python -m tests.cluster.stages --ds D [--master local[2]] [--source FILE] --stages ingest,featurize,...

Stages: ingest, featurize, train (one in-process worker), gate, score, publish. Config: $SEQREC_CONFIG.
"""

from __future__ import annotations

import argparse

from lake import load_config
from lake.spark import get_spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ds", required=True)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--source", default="")
    parser.add_argument("--stages", default="featurize,score,publish")
    args = parser.parse_args()
    config = load_config().with_overrides({"spark": {"master": args.master}})
    spark = get_spark(config)
    for stage in args.stages.split(","):
        if stage == "ingest":
            from featurization.ingest import ingest

            ingest(config, args.ds, args.source, spark=spark)
        elif stage == "featurize":
            from featurization.featurize import featurize

            featurize(config, args.ds, spark=spark)
        elif stage == "train":
            from evaluation.gate import gate
            from training.launch import launch

            card = launch(config, args.ds)
            gate(config, card.version, ds=args.ds)
        elif stage == "score":
            from scoring.score import score

            score(config, args.ds, spark=spark)
        elif stage == "publish":
            from scoring.publish import publish

            publish(config, args.ds, spark=spark)
        else:
            raise SystemExit(f"unknown stage {stage!r}")
        print(f"stage {stage} ds={args.ds}: done", flush=True)


if __name__ == "__main__":
    main()
