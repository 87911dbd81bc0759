"""Model choice and loading: champion or named version, vocabulary check, files loaded from bytes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import torch

from lake import Config, Lake, ModelNotFoundError
from lake.artifacts import load
from lake.registry import fetch, load_model
from scoring.model import select_model
from tests.scoring.conftest import MODEL_VOCAB_SIZE, register_model, vocab_table


def test_the_champion_is_chosen_when_no_version_is_named(scoring_config: Config):
    lake = Lake.from_config(scoring_config)
    lake.write("item_vocab", vocab_table(), mode="overwrite")
    card = select_model(scoring_config, lake)
    assert (card.version, card.meta["item_vocab_size"]) == ("1", MODEL_VOCAB_SIZE)
    assert "champion" in card.aliases


def test_a_vocabulary_whose_prefix_changed_is_refused(scoring_config: Config):
    lake = Lake.from_config(scoring_config)
    vocab = vocab_table().to_pydict()
    vocab["item_id"][0] = 5000  # index 2 now names another item
    lake.write("item_vocab", pa.table(vocab, schema=vocab_table().schema), mode="overwrite")
    with pytest.raises(ModelNotFoundError, match="different item vocabulary.*--model"):
        select_model(scoring_config, lake)


def test_an_unregistered_version_is_refused(scoring_config: Config):
    with pytest.raises(ModelNotFoundError, match="version 42"):
        select_model(scoring_config, Lake.from_config(scoring_config), version="42")


def test_without_a_champion_only_a_named_version_is_used(config: Config, tmp_path: Path):
    register_model(config, tmp_path / "model", champion=False)
    lake = Lake.from_config(config)
    lake.write("item_vocab", vocab_table(), mode="overwrite")
    with pytest.raises(ModelNotFoundError, match="'champion' alias.*seqrec gate.*publish"):
        select_model(config, lake)
    assert select_model(config, lake, version="1").version == "1"


def _card(config: Config, version: str):
    from lake.registry import find

    return find(config, version=version)


def test_files_loaded_from_bytes_score_like_the_registry_loader(scoring_config: Config):
    files = fetch(scoring_config, _card(scoring_config, "1"))
    from_bytes = load(files)
    reference = load_model(scoring_config, "1")
    items = torch.tensor([[0, 0, 3, 2], [0, 5, 6, 7]])
    others = [torch.ones_like(items) for _ in range(3)]
    assert torch.equal(from_bytes.encode(items, *others), reference.encode(items, *others))
    assert torch.equal(from_bytes.item_embeddings, reference.item_embeddings)
    assert files.max_len == 4 and files.item_vocab_size == MODEL_VOCAB_SIZE
