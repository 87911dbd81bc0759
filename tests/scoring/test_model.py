"""Model choice and loading: champion or named version, vocabulary check, files loaded from bytes, files
shipped to the executors (verified before, and under a name unique to each job)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import torch

from lake import ArtifactIntegrityError, Config, Lake, ModelNotFoundError
from lake.artifacts import ITEM_EMBEDDINGS, MODEL_FILES, load, verify
from lake.registry import fetch, load_model
from scoring.model import select_model, ship
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


def test_shipped_files_reach_every_task_under_a_name_unique_to_each_job(scoring_config: Config, spark):
    card = _card(scoring_config, "1")
    first = ship(spark.sparkContext, scoring_config, card)
    second = ship(spark.sparkContext, scoring_config, card)  # Spark refuses a name added twice
    assert first.prefix != second.prefix and first.folder is None
    added = {uri.rsplit("/", 1)[-1] for uri in spark.sparkContext.listFiles}
    assert {f"{shipped.prefix}{name}" for shipped in (first, second) for name in MODEL_FILES} <= added

    def read_in_a_task(_):
        files = first.files()
        verify(files.contents, files.card.sha256, what="shipped")
        return sorted(files.contents)

    assert spark.sparkContext.parallelize([0], 1).map(read_in_a_task).collect() == [sorted(MODEL_FILES)]


def test_a_file_changed_in_the_artifact_store_is_refused_before_it_is_shipped(config: Config, spark,
                                                                               tmp_path: Path):
    version = register_model(config, tmp_path / "model")
    stored, = Path(config.lake.mlflow_artifact_root).rglob(ITEM_EMBEDDINGS)
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF
    stored.write_bytes(bytes(data))
    added = list(spark.sparkContext.listFiles)
    with pytest.raises(ArtifactIntegrityError, match=f"model version {version}: {ITEM_EMBEDDINGS} does not match"):
        ship(spark.sparkContext, config, _card(config, version))
    assert list(spark.sparkContext.listFiles) == added, "nothing was added to the session"
