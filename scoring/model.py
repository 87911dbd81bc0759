"""Which registered model scores a ds, and how its files reach the executors.

A loaded torch.export program does not pickle, so executors load the model from its files. The driver
downloads them, verifies them on disk against the registered digests and ships them with Spark's own file
distribution (``SparkContext.addFile``): executors fetch the files from the driver, check the bytes they read
against the same digests and load them once per process (``scoring.ranker``). The driver never holds the
model in memory, however large the catalogue.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lake import Config, Lake, ModelNotFoundError
from lake.artifacts import MODEL_FILES, ModelFiles, read
from lake.registry import ModelCard, download, resolve, served_as_of
from lake.vocab import item_vocab_fingerprint

if TYPE_CHECKING:
    from pyspark import SparkContext

__all__ = ["ShippedModel", "select_model", "ship"]


@dataclass(frozen=True)
class ShippedModel:
    """Where an executor finds a model's files: ``<folder>/<prefix><file name>``; folder is this process's
    SparkFiles root (files added with ``SparkContext.addFile``) unless given (a single process, tests)."""

    card: ModelCard
    prefix: str
    folder: str | None = None

    def files(self) -> ModelFiles:
        """The files' bytes, not verified yet (``lake.artifacts.load`` verifies what it loads)."""
        from pyspark import SparkFiles

        return read(self.card, Path(self.folder or SparkFiles.getRootDirectory()), prefix=self.prefix)


def ship(spark_context: SparkContext, config: Config, card: ModelCard) -> ShippedModel:
    """Download ``card``'s files, verify them and add them to the session's files under a name unique to this
    call (Spark refuses a file name added twice with a different path, and a session may score several times).

    The files stay on the driver's disk, in the session's own temporary folder, until the session stops: Spark
    has no way to withdraw an added file, and an executor that joins the session later fetches every file added
    before it.
    """
    from pyspark import SparkFiles

    staging = Path(SparkFiles.getRootDirectory()) / "seqrec-models"
    staging.mkdir(exist_ok=True)
    folder = download(config, card, Path(tempfile.mkdtemp(prefix="download-", dir=staging)))
    prefix = f"seqrec-model-{card.version}-{uuid.uuid4().hex[:12]}-"
    for name in MODEL_FILES:
        shipped = staging / f"{prefix}{name}"
        (folder / name).rename(shipped)
        spark_context.addFile(str(shipped))
    return ShippedModel(card, prefix)


def select_model(config: Config, lake: Lake, *, ds: str | None = None, version: str | None = None) -> ModelCard:
    """The named ``version``, else the model served on day ``ds`` (the champion of that day, or a newer version
    the gate approved on or before it that publish has not promoted yet; the current champion without a ds),
    checked against today's item vocabulary. A rerun of an old day scores with the model that day served.

    Raises:
        ModelNotFoundError: no such version, no champion yet, or the model was trained on a vocabulary whose
            first ``item_vocab_size`` entries differ from today's ``item_vocab`` table.
    """
    if version is None and ds is not None:
        card = served_as_of(config, ds)
        if card is None:
            raise ModelNotFoundError(
                f"no model was champion or approved on {ds}; name a version with --model, or train one "
                f"(`seqrec train`) and let the quality gate approve it (`seqrec gate`)")
    else:
        card = resolve(config, version)
    missing = sorted({"item_vocab_size", "vocab_fingerprint", "max_len"} - set(card.meta))
    if missing:
        raise ModelNotFoundError(f"model version {card.version} was registered without {missing} in its "
                                 f"meta; re-register it with the training job")
    size = int(card.meta["item_vocab_size"])
    _, fingerprint = item_vocab_fingerprint(lake, size=size)
    if fingerprint != card.meta["vocab_fingerprint"]:
        raise ModelNotFoundError(
            f"model version {card.version} was trained on a different item vocabulary: the first {size} "
            f"entries of today's item_vocab do not match its fingerprint. Retrain on the current vocabulary "
            f"or name a version trained on it with --model"
        )
    return card
