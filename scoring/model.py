"""Which registered model scores a ds, and its files as bytes so executors can load it themselves.

A loaded torch.export program does not pickle, so the driver broadcasts the version's files and each
executor process loads them once (see ``scoring.ranker``).
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lake import Config, Lake, ModelNotFoundError
from lake.registry import CHAMPION, ModelCard, Scorer, find, tracking
from lake.vocab import item_vocab_fingerprint

__all__ = ["ModelFiles", "fetch_model_files", "load_scorer_from_files", "select_model"]

_PROGRAMS = ("scorer.pt2", "scorer.pt")


@dataclass(frozen=True)
class ModelFiles:
    """A registered version's files: the encoder program, the item embeddings ``[V, H]`` and meta."""

    card: ModelCard
    program_name: str
    program: bytes
    item_embeddings: bytes
    meta: dict[str, Any]

    @property
    def item_vocab_size(self) -> int:
        return int(self.meta["item_vocab_size"])

    @property
    def max_len(self) -> int:
        return int(self.meta["max_len"])


def select_model(config: Config, lake: Lake, *, version: str | None = None) -> ModelCard:
    """The named ``version``, else the quality gate's ``champion``, checked against today's item vocabulary.

    Raises:
        ModelNotFoundError: no such version, no champion yet, or the model was trained on a vocabulary whose
            first ``item_vocab_size`` entries differ from today's ``item_vocab`` table.
    """
    card = find(config, version=version, alias=CHAMPION)
    if card is None:
        wanted = f"version {version}" if version else f"a '{CHAMPION}' alias"
        raise ModelNotFoundError(
            f"no registered model with {wanted}; train one (`seqrec train`) and let the quality gate "
            f"approve it (`seqrec gate`), or name an existing version with --model"
        )
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


def fetch_model_files(config: Config, card: ModelCard) -> ModelFiles:
    """Download ``card``'s artifacts and return them as bytes (what the driver broadcasts)."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix=f"seqrec-score-{card.version}-") as tmp, tracking(config):
        uri = f"models:/{card.name}/{card.version}"
        folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))
        program_name = next((n for n in _PROGRAMS if (folder / n).exists()), None)
        if program_name is None or not (folder / "item_embeddings.pt").exists():
            raise ModelNotFoundError(f"model version {card.version} lacks scorer.pt2/scorer.pt or "
                                     f"item_embeddings.pt; re-register it with the training job")
        meta_file = folder / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else dict(card.meta)
        return ModelFiles(card, program_name, (folder / program_name).read_bytes(),
                          (folder / "item_embeddings.pt").read_bytes(), meta)


def load_scorer_from_files(files: ModelFiles, device: str = "cpu") -> Scorer:
    """The same Scorer ``lake.registry.load_scorer`` builds, from bytes, with its tensors on ``device``."""
    import torch

    if files.program_name == "scorer.pt2":
        program = torch.export.load(io.BytesIO(files.program)).module().to(device)
    else:
        program = torch.jit.load(io.BytesIO(files.program), map_location=device)
    item_embeddings = torch.load(io.BytesIO(files.item_embeddings), map_location=device, weights_only=True)
    return Scorer(card=files.card, program=program, item_embeddings=item_embeddings.float(), meta=files.meta)
