"""Model registry: MLflow tracking and registry, wrapped in the few verbs the stages need.

A registered model version is a folder of plain files (no pickled Python classes), so scoring and
evaluation load it without importing ``training``:

- ``scorer.pt2`` (``torch.export``) or ``scorer.pt`` (TorchScript): a program mapping left-padded int64
  sequences ``items, behaviours, categories, gap_buckets`` ``[B, L]`` to user vectors ``[B, H]``;
- ``item_embeddings.pt``: a float tensor ``[V, H]`` (row = item index); scores are ``user @ items.T``;
- ``meta.json``: model type, max_len, item_vocab_size, vocab_fingerprint, trained_ds, validation metrics.

The quality gate's approval is the registry alias ``champion``; scoring loads that alias.
The ``models`` Delta table mirrors the registry for SQL readers (:func:`mirror_to_table`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lake.config import Config
from lake.errors import ModelNotFoundError

if TYPE_CHECKING:
    import torch

    from lake.tables import Lake

__all__ = [
    "CHAMPION",
    "MODEL_NAME",
    "ModelCard",
    "Scorer",
    "find",
    "list_versions",
    "load_scorer",
    "mirror_to_table",
    "promote",
    "register",
    "tracking",
]

MODEL_NAME = "seqrec"
CHAMPION = "champion"
_META_TAG = "seqrec.meta"
_ARTIFACT = "scorer"


@dataclass(frozen=True)
class ModelCard:
    """One registered model version and what seqrec recorded about it."""

    name: str
    version: str
    run_id: str
    meta: dict[str, Any]
    aliases: tuple[str, ...] = ()
    created_at: dt.datetime | None = None


@dataclass
class Scorer:
    """A loaded model: ``encode`` sequences to user vectors and rank against ``item_embeddings``."""

    card: ModelCard
    program: Any
    item_embeddings: torch.Tensor  # [V, H]
    meta: dict[str, Any] = field(default_factory=dict)

    def encode(self, items: torch.Tensor, behaviours: torch.Tensor, categories: torch.Tensor,
               gap_buckets: torch.Tensor) -> torch.Tensor:
        """Left-padded int64 ``[B, L]`` inputs -> user vectors ``[B, H]``."""
        return self.program(items, behaviours, categories, gap_buckets)


@contextmanager
def tracking(config: Config) -> Iterator[None]:
    """Point MLflow at the configured tracking/registry store for the duration of the block."""
    import mlflow

    from lake.storage import is_s3, mlflow_s3_environment

    settings = config.lake
    if is_s3(settings.mlflow_artifact_root):
        for name, value in mlflow_s3_environment(settings.storage_options).items():
            os.environ.setdefault(name, value)
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + os.path.abspath(uri[len("sqlite:///") :])
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        if previous is not None:
            mlflow.set_tracking_uri(previous)


def experiment_id(config: Config, name: str = MODEL_NAME) -> str:
    """The MLflow experiment for training runs, created with the configured artifact root if missing."""
    import mlflow

    with tracking(config):
        found = mlflow.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        root = config.lake.mlflow_artifact_root
        location = root if "://" in root else Path(os.path.abspath(root)).as_uri()
        return mlflow.create_experiment(name, artifact_location=location)


def register(config: Config, model_dir: Path, meta: dict[str, Any], *, run_id: str,
             name: str = MODEL_NAME) -> ModelCard:
    """Log ``model_dir`` (scorer, item embeddings, meta.json) to run ``run_id`` and register a new version."""
    import mlflow
    from mlflow import MlflowClient

    required = {"item_embeddings.pt"}
    present = {p.name for p in model_dir.iterdir()}
    if not required <= present or not present & {"scorer.pt2", "scorer.pt"}:
        raise ValueError(f"{model_dir} must hold scorer.pt2 or scorer.pt and item_embeddings.pt; has {sorted(present)}")
    (model_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    with tracking(config):
        client = MlflowClient()
        client.log_artifacts(run_id, str(model_dir), artifact_path=_ARTIFACT)
        try:
            client.create_registered_model(name)
        except mlflow.exceptions.MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        source = f"{client.get_run(run_id).info.artifact_uri}/{_ARTIFACT}"
        version = client.create_model_version(
            name, source, run_id=run_id, tags={_META_TAG: json.dumps(meta, sort_keys=True, default=str)}
        )
        return _card(client.get_model_version(name, version.version))


def _card(version: Any) -> ModelCard:
    return ModelCard(
        name=version.name,
        version=str(version.version),
        run_id=version.run_id or "",
        meta=json.loads(version.tags.get(_META_TAG, "{}")),
        aliases=tuple(sorted(getattr(version, "aliases", []) or [])),
        created_at=dt.datetime.fromtimestamp(version.creation_timestamp / 1000, dt.UTC),
    )


def find(config: Config, *, version: str | None = None, alias: str | None = CHAMPION,
         name: str = MODEL_NAME) -> ModelCard | None:
    """The card of ``version`` if given, else of the version carrying ``alias``; None if there is none."""
    import mlflow
    from mlflow import MlflowClient

    with tracking(config):
        client = MlflowClient()
        try:
            if version is not None:
                return _card(client.get_model_version(name, str(version)))
            return _card(client.get_model_version_by_alias(name, alias))
        except mlflow.exceptions.MlflowException:
            return None


def list_versions(config: Config, *, name: str = MODEL_NAME) -> list[ModelCard]:
    """Every registered version, oldest first."""
    from mlflow import MlflowClient

    with tracking(config):
        client = MlflowClient()
        # search results carry no aliases; fetching each version does (registries here hold few versions).
        versions = [client.get_model_version(name, v.version) for v in client.search_model_versions(f"name = '{name}'")]
        return sorted((_card(v) for v in versions), key=lambda c: int(c.version))


def promote(config: Config, version: str, *, alias: str = CHAMPION, name: str = MODEL_NAME) -> ModelCard:
    """Move ``alias`` to ``version`` (what the quality gate does on approval)."""
    from mlflow import MlflowClient

    if find(config, version=version, name=name) is None:
        raise ModelNotFoundError(f"model {name} version {version} is not registered")
    with tracking(config):
        client = MlflowClient()
        client.set_registered_model_alias(name, alias, str(version))
        return _card(client.get_model_version(name, str(version)))


def load_scorer(config: Config, *, version: str | None = None, alias: str = CHAMPION,
                name: str = MODEL_NAME) -> Scorer:
    """Download and load a registered version (``version``, else the one carrying ``alias``)."""
    import mlflow
    import torch

    card = find(config, version=version, alias=None if version else alias, name=name)
    if card is None:
        wanted = f"version {version}" if version else f"alias '{alias}'"
        raise ModelNotFoundError(
            f"no registered model {name} with {wanted}; train one (`seqrec train`) and let the quality gate "
            f"approve it (`seqrec gate`), or name an existing version with --model"
        )
    local = Path(tempfile.mkdtemp(prefix=f"seqrec-model-{card.version}-"))
    try:
        with tracking(config):
            path = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{card.version}", dst_path=str(local)))
        if (path / "scorer.pt2").exists():
            program = torch.export.load(str(path / "scorer.pt2")).module()
        else:
            program = torch.jit.load(str(path / "scorer.pt"), map_location="cpu")
        item_embeddings = torch.load(path / "item_embeddings.pt", map_location="cpu", weights_only=True)
        meta = json.loads((path / "meta.json").read_text())
    finally:
        shutil.rmtree(local, ignore_errors=True)
    return Scorer(card=card, program=program, item_embeddings=item_embeddings, meta=meta)


def mirror_to_table(config: Config, lake: Lake, *, name: str = MODEL_NAME) -> int:
    """Rewrite the ``models`` Delta table from the registry (one row per version); returns rows written."""
    import pyarrow as pa

    cards = list_versions(config, name=name)
    rows = {
        "model_name": [c.name for c in cards],
        "model_version": [c.version for c in cards],
        "run_id": [c.run_id for c in cards],
        "model_type": [str(c.meta.get("model_type", "")) for c in cards],
        "trained_ds": [str(c.meta.get("trained_ds", "")) for c in cards],
        "item_vocab_size": [int(c.meta.get("item_vocab_size", 0)) for c in cards],
        "vocab_fingerprint": [str(c.meta.get("vocab_fingerprint", "")) for c in cards],
        "valid_ndcg_at_10": [c.meta.get("valid_ndcg@10") for c in cards],
        "aliases": [",".join(c.aliases) for c in cards],
        "created_at": [c.created_at for c in cards],
    }
    from lake.schemas import spec

    lake.write("models", pa.table(rows, schema=spec("models").schema), mode="overwrite")
    return len(cards)
