"""Which registered model scores a ds. Its files travel as verified bytes (lake.artifacts): a loaded
torch.export program does not pickle, so the driver broadcasts the files and each executor process checks
and loads them once (see ``scoring.ranker``)."""

from __future__ import annotations

from lake import Config, Lake, ModelNotFoundError
from lake.registry import ModelCard, resolve, served_as_of
from lake.vocab import item_vocab_fingerprint

__all__ = ["select_model"]


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
