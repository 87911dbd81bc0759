"""The recommenders, built by name from the `train:` settings: the one place that dispatches on model_type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from training.models.base import SequentialRecommender, VocabSizes
from training.models.popularity import Popularity
from training.models.recurrent import RecurrentRecommender
from training.models.sasrec import SASRec
from training.settings import TrainSettings

__all__ = [
    "MODEL_KINDS",
    "ModelKind",
    "Popularity",
    "RecurrentRecommender",
    "SASRec",
    "SequentialRecommender",
    "VocabSizes",
    "build_model",
    "step_features",
]


@dataclass(frozen=True)
class ModelKind:
    """What training needs to know about one ``train.model_type``."""

    build: Callable[[TrainSettings, VocabSizes], SequentialRecommender]
    learned: bool  # trained by a loss over embeddings (popularity counts items instead)
    positions: bool  # adds position embeddings to each step


MODEL_KINDS: dict[str, ModelKind] = {
    "sasrec": ModelKind(SASRec, learned=True, positions=True),
    "gru": ModelKind(lambda settings, vocab: RecurrentRecommender(settings, vocab, "gru"), learned=True,
                     positions=False),
    "lstm": ModelKind(lambda settings, vocab: RecurrentRecommender(settings, vocab, "lstm"), learned=True,
                      positions=False),
    "popularity": ModelKind(Popularity, learned=False, positions=False),
}


def build_model(settings: TrainSettings, vocab: VocabSizes) -> SequentialRecommender:
    """The model ``settings.model_type`` names, freshly initialised."""
    return MODEL_KINDS[settings.model_type].build(settings, vocab)


def step_features(settings: TrainSettings) -> dict[str, bool]:
    """Which embeddings are summed into each step of ``settings.model_type``'s inputs."""
    kind = MODEL_KINDS[settings.model_type]
    return {
        "item": True,
        "position": kind.positions,
        "behaviour": settings.use_behaviour and kind.learned,
        "category": settings.use_category and kind.learned,
        "time_gap": settings.use_time_gap and kind.learned,
    }
