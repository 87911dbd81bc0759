"""One training worker: what every Horovod process runs (`python -m training.worker`, or in-process for one).

Rank 0 alone talks to MLflow, writes checkpoints and registers the trained model; every rank reads its
shard of the same pinned snapshot and takes part in each collective operation in the same order.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lake import Config, EmptyInputError, Lake, SeqrecError, registry
from lake.registry import ModelCard
from lake.vocab import item_vocab_fingerprint, vocab_size
from training.checkpoint import Checkpoints, local_folder
from training.data import ExampleSource
from training.distributed import Workers, start, weights_digest
from training.export import write_model_folder
from training.models import MODEL_KINDS, SequentialRecommender, VocabSizes, build_model, step_features
from training.settings import TrainSettings
from training.trainer import Progress, Trainer

__all__ = ["TrainRequest", "mlflow_metric_name", "train", "train_in_spark_task"]

log = logging.getLogger(__name__)

PINNED_TABLES = ("train_examples", "item_vocab", "category_vocab")


@dataclass(frozen=True)
class TrainRequest:
    """What the launcher decides once for all workers: the ds, the pinned table versions, resume or not.

    ``launch_id`` tags the MLflow run and the registered version, so a launcher finds the version its
    workers registered even when rank 0 ran on another host. ``run_key`` (the scheduler's run of the training
    task) makes registration idempotent: a retried task gets back the version its first try registered.
    """

    ds: str
    launch_id: str
    versions: dict[str, int]
    resume: bool = False
    run_key: str | None = None

    def encode(self) -> str:
        return base64.urlsafe_b64encode(json.dumps(asdict(self)).encode()).decode()

    @classmethod
    def decode(cls, text: str) -> TrainRequest:
        return cls(**json.loads(base64.urlsafe_b64decode(text)))


def mlflow_metric_name(name: str) -> str:
    """MLflow refuses '@' in metric names: valid_ndcg@10 is logged as valid_ndcg_at_10."""
    return name.replace("@", "_at_")


def train(config: Config, request: TrainRequest) -> ModelCard | None:
    """Train on this worker's shard; rank 0 registers the model and returns its card, other ranks None."""
    settings = TrainSettings.from_config(config)
    workers = start(settings.seed, settings.torch_threads)
    lake = Lake.from_config(config)
    item_vocab_size, fingerprint = item_vocab_fingerprint(lake, version=request.versions["item_vocab"])
    vocab = VocabSizes(items=item_vocab_size, categories=_category_vocab_size(lake, request.versions),
                       gap_buckets=settings.max_gap_bucket + 1)
    source, rows = _examples(lake, settings, request)
    model = build_model(settings, vocab).to(workers.device)

    checkpoints = resume_from = None
    if workers.is_chief:
        checkpoints = Checkpoints(checkpoint_folder(config, settings, request.ds))
        resume_from = checkpoints.load() if request.resume else None
        if request.resume and resume_from is None:
            log.info("--resume: no checkpoint in %s, starting from the first epoch", checkpoints.folder)
        if resume_from is None:
            checkpoints.clear()
    with _chief_run(config, settings, request, checkpoints, workers) as run_id:
        progress = Trainer(
            model, settings, workers, source, train_rows=rows["train"], valid_rows=rows.get("valid", 0),
            item_vocab_size=vocab.items,
            checkpoints=checkpoints, resume_from=resume_from,
            log_metrics=_log_epoch if workers.is_chief else None,
            checkpoint_about={"run_id": run_id, "versions": request.versions,
                              "architecture": settings.architecture()},
        ).fit()
        _check_identical(model, workers)
        if not workers.is_chief:
            return None
        meta = _meta(settings, request, vocab, fingerprint, progress, workers)
        card = _publish(config, lake, model, settings, meta, run_id, request.run_key)
    log.info("registered %s version %s (%s, valid NDCG@10 %.4f)", card.name, card.version, settings.model_type,
             progress.best_score)
    return card


def checkpoint_folder(config: Config, settings: TrainSettings, ds: str) -> Path:
    return local_folder(settings.checkpoint_dir, config, "_checkpoints") / ds / settings.model_type


def model_store(config: Config, settings: TrainSettings) -> Path:
    return local_folder(settings.model_store, config, "_models") / registry.MODEL_NAME


# -- data and vocabularies --------------------------------------------------------------------------
def _category_vocab_size(lake: Lake, versions: dict[str, int]) -> int:
    if versions.get("category_vocab") is None:
        return 2  # padding and unknown only: categories are then all unknown
    return vocab_size(lake, "category_vocab", version=versions["category_vocab"])


def _examples(lake: Lake, settings: TrainSettings, request: TrainRequest) -> tuple[ExampleSource, dict[str, int]]:
    """The pinned snapshot and its rows per split (train rows set the steps, valid rows the validation sample)."""
    source = ExampleSource.from_lake(lake, request.ds, version=request.versions["train_examples"],
                                     max_len=settings.max_len, reader_pool=settings.reader_pool,
                                     reader_workers=settings.reader_workers)
    rows = source.split_rows(lake)
    if rows.get("train", 0) == 0:
        raise EmptyInputError(
            f"train_examples has no 'train' rows for ds={request.ds} (version {source.version}); run featurize "
            f"for this ds"
        )
    return source, rows


# -- MLflow, checks and publication (rank 0) --------------------------------------------------------
@contextmanager
def _chief_run(config: Config, settings: TrainSettings, request: TrainRequest, checkpoints: Checkpoints | None,
               workers: Workers) -> Iterator[str]:
    """Rank 0: the MLflow run (continued when resuming), yielding its id. Other ranks: nothing, ''."""
    if not workers.is_chief:
        yield ""
        return
    import mlflow

    previous = checkpoints.latest() if checkpoints is not None and request.resume else None
    run_id = previous.get("run_id") if previous else None
    with registry.tracking(config):
        experiment = None if run_id else registry.experiment_id(config)
        with mlflow.start_run(run_id=run_id, experiment_id=experiment,
                              run_name=f"{settings.model_type}-{request.ds}") as run:
            if run_id is None:
                mlflow.log_params({**settings.as_dict(), "ds": request.ds, "world_size": workers.size,
                                   **{f"{table}_version": v for table, v in request.versions.items()}})
            mlflow.set_tags({"seqrec.ds": request.ds, "seqrec.launch_id": request.launch_id})
            if previous is not None:
                _log_checkpointed_epoch(run.info.run_id, previous)
            yield run.info.run_id


def _log_checkpointed_epoch(run_id: str, manifest: dict[str, Any]) -> None:
    """Log the resumed checkpoint's epoch if the killed run died between checkpointing and logging it."""
    from mlflow.tracking import MlflowClient

    metrics, epoch = manifest.get("metrics"), manifest["epoch"]
    if not metrics:
        return  # a checkpoint from before the manifest kept its epoch's metrics
    first = mlflow_metric_name(next(iter(metrics)))
    if any(entry.step == epoch for entry in MlflowClient().get_metric_history(run_id, first)):
        return
    log.info("logging epoch %d's metrics from its checkpoint: the killed run did not log them", epoch)
    _log_epoch(metrics, epoch)


def _log_epoch(metrics: dict[str, float], epoch: int) -> None:
    import mlflow

    mlflow.log_metrics({mlflow_metric_name(k): v for k, v in metrics.items()}, step=epoch)


def _check_identical(model: SequentialRecommender, workers: Workers) -> None:
    digest = weights_digest(model)
    log.info("worker %d of %d: final weights sha256 %s", workers.rank, workers.size, digest)
    digests = workers.gather(digest, "weights_digest")
    if len(set(digests)) > 1:
        raise RuntimeError(f"workers finished with different weights ({digests}); Horovod lost synchronisation")


def _meta(settings: TrainSettings, request: TrainRequest, vocab: VocabSizes, fingerprint: str,
          progress: Progress, workers: Workers) -> dict[str, Any]:
    kind = MODEL_KINDS[settings.model_type]
    return {
        "model_type": settings.model_type,
        "max_len": settings.max_len,
        "hidden_size": settings.hidden_size if kind.learned else 1,
        "item_vocab_size": vocab.items,
        "vocab_fingerprint": fingerprint,
        "category_vocab_size": vocab.categories,
        "trained_ds": request.ds,
        "train_examples_version": request.versions["train_examples"],
        "item_vocab_version": request.versions["item_vocab"],
        "category_vocab_version": request.versions.get("category_vocab"),
        "code_version": code_version(),
        "valid_ndcg@10": progress.best_metrics["valid_ndcg@10"],
        "valid_hr@10": progress.best_metrics["valid_hr@10"],
        "valid_sampled_ndcg@10": progress.best_metrics["valid_sampled_ndcg@10"],
        "valid_sampled_hr@10": progress.best_metrics["valid_sampled_hr@10"],
        "early_stopping_metric": progress.metric,
        "best_epoch": progress.best_epoch,
        "epochs_trained": progress.epoch,
        "world_size": workers.size,
        "features": step_features(settings),
        "loss": settings.loss if kind.learned else "none (counts)",
        "train_config": settings.as_dict(),
        "launch_id": request.launch_id,
    }


def _publish(config: Config, lake: Lake, model: SequentialRecommender, settings: TrainSettings,
             meta: dict[str, Any], run_id: str, run_key: str | None) -> ModelCard:
    """Export, register (inside the run), move the folder to ``<model_store>/v<N>`` and mirror to `models`."""
    store = model_store(config, settings)
    staging = store / f".staging-{run_id}"
    shutil.rmtree(staging, ignore_errors=True)
    write_model_folder(model, staging, settings.max_len)
    card = registry.register(config, staging, meta, run_id=run_id, run_key=run_key)
    final = store / f"v{card.version}"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    registry.mirror_to_table(config, lake)
    return card


def code_version() -> str:
    """The git commit of this checkout, $SEQREC_CODE_VERSION where there is no checkout, else 'unknown'."""
    if os.environ.get("SEQREC_CODE_VERSION"):
        return os.environ["SEQREC_CODE_VERSION"]
    try:
        found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                               text=True, timeout=10, check=True)
        return found.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _log_to_stderr() -> None:
    """Worker processes have no entry point of their own to configure logging (jobs/ is not imported here)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def train_in_spark_task(overrides: dict[str, Any], request: str) -> str | None:
    """What horovod.spark.run runs in each Spark task: the registered version on rank 0, else None."""
    _log_to_stderr()
    card = train(Config(overrides, source="launcher"), TrainRequest.decode(request))
    return card.version if card is not None else None


SECRETS_FILE_ENV = "SEQREC_SECRETS_FILE"


def load_secrets() -> None:
    """Credentials the launcher kept off the command line (training.launch), from its 0600 file. A worker on
    another host has no such file and uses that host's own credentials (its environment or role)."""
    path = os.environ.get(SECRETS_FILE_ENV)
    if not path:
        return
    try:
        secrets = json.loads(Path(path).read_text())
    except FileNotFoundError:
        log.info("no credentials file %s on this host: using its own environment or role", path)
        return
    for name, value in secrets.items():
        os.environ.setdefault(name, value)
    log.info("read %d credential variable(s) from the launcher's file", len(secrets))


def main() -> None:
    """`python -m training.worker --request R --overrides O`, as horovodrun starts each worker."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--request", required=True, help="TrainRequest, base64 JSON (from the launcher)")
    parser.add_argument("--overrides", required=True, help="config overrides, base64 JSON (from the launcher)")
    args = parser.parse_args()
    _log_to_stderr()
    load_secrets()
    overrides = json.loads(base64.urlsafe_b64decode(args.overrides))
    try:
        train(Config(overrides, source="launcher"), TrainRequest.decode(args.request))
    except SeqrecError as exc:
        log.error("training failed (%s): %s", type(exc).__name__, exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
