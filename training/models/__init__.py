"""The recommenders, built by name from the `train:` settings."""

from __future__ import annotations

from training.models.base import SequentialRecommender, VocabSizes
from training.models.popularity import Popularity
from training.models.recurrent import RecurrentRecommender
from training.models.sasrec import SASRec
from training.settings import TrainSettings

__all__ = ["Popularity", "RecurrentRecommender", "SASRec", "SequentialRecommender", "VocabSizes", "build_model"]


def build_model(settings: TrainSettings, vocab: VocabSizes) -> SequentialRecommender:
    """The model ``settings.model_type`` names, freshly initialised."""
    if settings.model_type == "sasrec":
        return SASRec(settings, vocab)
    if settings.model_type in ("gru", "lstm"):
        return RecurrentRecommender(settings, vocab, settings.model_type)
    return Popularity(settings, vocab)
