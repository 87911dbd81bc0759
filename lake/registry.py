"""Model registry: MLflow tracking and registry, wrapped in the few verbs the stages need.

A registered version is the folder of files :mod:`lake.artifacts` describes (plain data, each file's sha256
recorded in the tag ``seqrec.sha256``); scoring and evaluation load it without importing ``training``.

Promotion has two phases, so nothing unapproved is served and a failure never leaves a moved alias: the
quality gate *approves* a version (tags ``seqrec.gate=approved`` and ``seqrec.approved_ds``), and publish
moves the ``champion`` alias to it only after it has validated that model's recommendations and switched
``recommendations_latest`` to them (tag ``seqrec.champion_since_ds``). The champion of a past day is the
version with the latest ``champion_since_ds`` on or before it (:func:`champion_as_of`).

Only "this model or alias does not exist" reads as "none": any other registry failure (a locked database, a
server down) raises :class:`~lake.errors.RegistryError`, so nothing decides on a missing answer.
The ``models`` Delta table mirrors the registry for SQL readers (:func:`mirror_to_table`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lake.config import Config
from lake.errors import ModelNotFoundError, RegistryError

if TYPE_CHECKING:
    from lake.artifacts import ModelFiles, Scorer
    from lake.tables import Lake

__all__ = [
    "CHAMPION",
    "MODEL_NAME",
    "ModelCard",
    "approve",
    "champion_as_of",
    "download",
    "fetch",
    "find",
    "find_by_run_key",
    "list_versions",
    "load_model",
    "mirror_to_table",
    "promote",
    "register",
    "resolve",
    "served_as_of",
    "tracking",
]

MODEL_NAME = "seqrec"
CHAMPION = "champion"
_META_TAG = "seqrec.meta"
_SHA256_TAG = "seqrec.sha256"
_RUN_KEY_TAG = "seqrec.run_key"
_GATE_TAG = "seqrec.gate"
_APPROVED_DS_TAG = "seqrec.approved_ds"
_CHAMPION_SINCE_TAG = "seqrec.champion_since_ds"
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
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> dict[str, str]:
        """{file name: sha256} recorded at registration (empty for a version registered without them)."""
        return json.loads(self.tags.get(_SHA256_TAG, "{}"))

    @property
    def approved(self) -> bool:
        """Whether the quality gate approved this version (it may then become champion at publish)."""
        return self.tags.get(_GATE_TAG) == "approved"

    @property
    def approved_ds(self) -> str | None:
        return self.tags.get(_APPROVED_DS_TAG)

    @property
    def champion_since_ds(self) -> str | None:
        return self.tags.get(_CHAMPION_SINCE_TAG)


@contextmanager
def _answering(what: str) -> Iterator[None]:
    """Turn MLflow's errors into RegistryError, except "not found", which the caller handles."""
    import mlflow

    try:
        yield
    except mlflow.exceptions.MlflowException as exc:
        if _not_found(exc):
            raise
        raise RegistryError(f"the model registry could not answer ({what}): {exc.message}; rerun the task "
                            f"when it is reachable") from exc


def _not_found(exc: Exception) -> bool:
    """MLflow's "no such model / version / alias" (an alias that was never set is INVALID_PARAMETER_VALUE)."""
    code = str(getattr(exc, "error_code", ""))
    message = str(getattr(exc, "message", exc))
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and " alias " in message and "not found" in message)


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


def register(config: Config, model_dir: Path, meta: dict[str, Any], *, run_id: str, run_key: str | None = None,
             name: str = MODEL_NAME) -> ModelCard:
    """Log ``model_dir`` (the files of :mod:`lake.artifacts`) to run ``run_id`` and register a new version,
    recording each file's sha256. With ``run_key`` (e.g. the Airflow run of a training task), a version
    already registered under that key is returned instead: a retried task never registers twice."""
    import mlflow
    from mlflow import MlflowClient

    from lake.artifacts import META, digests

    if run_key:
        existing = find_by_run_key(config, run_key, name=name)
        if existing is not None:
            return existing
    (model_dir / META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    tags = {_META_TAG: json.dumps(meta, sort_keys=True, default=str),
            _SHA256_TAG: json.dumps(digests(model_dir), sort_keys=True)}
    if run_key:
        tags[_RUN_KEY_TAG] = run_key
    with tracking(config), _answering("registering a model version"):
        client = MlflowClient()
        client.log_artifacts(run_id, str(model_dir), artifact_path=_ARTIFACT)
        try:
            client.create_registered_model(name)
        except mlflow.exceptions.MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        source = f"{client.get_run(run_id).info.artifact_uri}/{_ARTIFACT}"
        version = client.create_model_version(name, source, run_id=run_id, tags=tags)
        return _card(client.get_model_version(name, version.version))


def find_by_run_key(config: Config, run_key: str, *, name: str = MODEL_NAME) -> ModelCard | None:
    """The version registered under ``run_key``, if any."""
    return next((card for card in list_versions(config, name=name) if card.tags.get(_RUN_KEY_TAG) == run_key),
                None)


def _card(version: Any) -> ModelCard:
    return ModelCard(
        name=version.name,
        version=str(version.version),
        run_id=version.run_id or "",
        meta=json.loads(version.tags.get(_META_TAG, "{}")),
        aliases=tuple(sorted(getattr(version, "aliases", []) or [])),
        created_at=dt.datetime.fromtimestamp(version.creation_timestamp / 1000, dt.UTC),
        tags=dict(version.tags or {}),
    )


def find(config: Config, *, version: str | None = None, alias: str | None = CHAMPION,
         name: str = MODEL_NAME) -> ModelCard | None:
    """The card of ``version`` if given, else of the version carrying ``alias``; None if there is none.

    Raises:
        RegistryError: the registry failed for any other reason (retryable; never read as "none").
    """
    import mlflow
    from mlflow import MlflowClient

    with tracking(config), _answering(f"version {version}" if version is not None else f"alias {alias}"):
        client = MlflowClient()
        try:
            if version is not None:
                return _card(client.get_model_version(name, str(version)))
            return _card(client.get_model_version_by_alias(name, alias))
        except mlflow.exceptions.MlflowException as exc:
            if _not_found(exc):
                return None
            raise


def resolve(config: Config, reference: str | None = None, *, name: str = MODEL_NAME) -> ModelCard:
    """A model reference as users and the DAG write it: a version number, an alias (``champion``), or None
    for the champion.

    Raises:
        ModelNotFoundError: nothing carries that version or alias.
    """
    reference = reference or CHAMPION
    is_version = reference.isdigit()
    card = find(config, version=reference if is_version else None, alias=None if is_version else reference,
                name=name)
    if card is None:
        wanted = f"version {reference}" if is_version else f"a '{reference}' alias"
        raise ModelNotFoundError(
            f"no registered model with {wanted}; train one (`seqrec train`) and let the quality gate approve "
            f"it (`seqrec gate`) and publish promote it, or name an existing version with --model")
    return card


def served_as_of(config: Config, ds: str, *, name: str = MODEL_NAME) -> ModelCard | None:
    """The model the nightly job serves on ``ds``: a version the gate approved on or before ``ds`` that is newer
    than the champion of ``ds`` (approved, not yet promoted by a publish), else that champion."""
    cards = list_versions(config, name=name)
    champion = _champion_among(cards, ds)
    newer = [card for card in cards
             if card.approved and (card.approved_ds or "") <= ds
             and (champion is None or int(card.version) > int(champion.version))]
    return max(newer, key=lambda card: int(card.version)) if newer else champion


def champion_as_of(config: Config, ds: str, *, name: str = MODEL_NAME) -> ModelCard | None:
    """The champion on day ``ds``: the version that publish promoted last on or before ``ds``; the current
    champion when no version records when it was promoted; None when there is no champion at all."""
    return _champion_among(list_versions(config, name=name), ds)


def _champion_among(cards: list[ModelCard], ds: str) -> ModelCard | None:
    promoted = [card for card in cards if card.champion_since_ds and card.champion_since_ds <= ds]
    if promoted:
        return max(promoted, key=lambda card: (card.champion_since_ds, int(card.version)))
    if any(card.champion_since_ds for card in cards):
        return None  # every recorded promotion is later than ds: there was no champion yet
    return next((card for card in cards if CHAMPION in card.aliases), None)


def list_versions(config: Config, *, name: str = MODEL_NAME) -> list[ModelCard]:
    """Every registered version, oldest first."""
    from mlflow import MlflowClient

    with tracking(config), _answering("listing versions"):
        client = MlflowClient()
        # search results carry no aliases; fetching each version does (registries here hold few versions).
        versions = [client.get_model_version(name, v.version) for v in client.search_model_versions(f"name = '{name}'")]
        return sorted((_card(v) for v in versions), key=lambda c: int(c.version))


def approve(config: Config, version: str, ds: str, *, name: str = MODEL_NAME) -> ModelCard:
    """The gate's approval: tag ``version`` approved on ``ds``. No alias moves; publish promotes it."""
    from mlflow import MlflowClient

    if find(config, version=version, name=name) is None:
        raise ModelNotFoundError(f"model {name} version {version} is not registered")
    with tracking(config), _answering(f"approving version {version}"):
        client = MlflowClient()
        client.set_model_version_tag(name, str(version), _GATE_TAG, "approved")
        client.set_model_version_tag(name, str(version), _APPROVED_DS_TAG, ds)
        return _card(client.get_model_version(name, str(version)))


def promote(config: Config, version: str, *, alias: str = CHAMPION, since_ds: str | None = None,
            name: str = MODEL_NAME) -> ModelCard:
    """Move ``alias`` to ``version`` (publish does this for an approved version once its recommendations are
    live), recording from which day it is champion."""
    from mlflow import MlflowClient

    if find(config, version=version, name=name) is None:
        raise ModelNotFoundError(f"model {name} version {version} is not registered")
    with tracking(config), _answering(f"moving alias {alias} to version {version}"):
        client = MlflowClient()
        if since_ds is not None:
            client.set_model_version_tag(name, str(version), _CHAMPION_SINCE_TAG, since_ds)
        client.set_registered_model_alias(name, alias, str(version))
        return _card(client.get_model_version(name, str(version)))


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
        "approved": [c.approved for c in cards],
        "artifact_sha256": [json.dumps(c.sha256, sort_keys=True) for c in cards],
        "created_at": [c.created_at for c in cards],
    }
    from lake.schemas import spec

    lake.write("models", pa.table(rows, schema=spec("models").schema), mode="overwrite")
    return len(cards)


def download(config: Config, card: ModelCard, into: Path) -> Path:
    """Download ``card``'s files into the folder ``into`` and verify them there against its recorded digests,
    file by file in chunks (nothing held in memory); returns the folder that holds them."""
    from lake.artifacts import verify_folder

    folder = _download(config, card, into)
    verify_folder(folder, card.sha256, what=f"model version {card.version}")
    return folder


def fetch(config: Config, card: ModelCard) -> ModelFiles:
    """Download ``card``'s files from the artifact store and verify the bytes read against its recorded
    digests."""
    from lake.artifacts import read, verify

    with tempfile.TemporaryDirectory(prefix=f"seqrec-model-{card.version}-") as tmp:
        files = read(card, _download(config, card, Path(tmp)))
    verify(files.contents, card.sha256, what=f"model version {card.version}")
    return files


def _download(config: Config, card: ModelCard, into: Path) -> Path:
    import mlflow

    from lake.artifacts import MODEL_FILES

    with tracking(config):
        folder = Path(mlflow.artifacts.download_artifacts(f"models:/{card.name}/{card.version}", dst_path=str(into)))
    present = {path.name for path in folder.iterdir()}
    if not set(MODEL_FILES) <= present:
        raise ModelNotFoundError(f"model version {card.version} holds {sorted(present)}, not the files "
                                 f"{list(MODEL_FILES)} this release loads; retrain it with `seqrec train`")
    return folder


def load_model(config: Config, reference: str | None = None, device: str = "cpu") -> Scorer:
    """Resolve ``reference`` (a version number or an alias; the champion by default), fetch, verify, load."""
    from lake.artifacts import load

    return load(fetch(config, resolve(config, reference)), device)
