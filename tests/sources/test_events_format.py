"""The user/item/behaviour/timestamp adapter: held-out rows placed last, ids offset, and the pipeline on it."""

import dataclasses
import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from featurization.featurize import featurize
from featurization.ingest import ingest
from lake import Config, InputError, Lake, load_config
from sources.events_format import DEFAULT_COLUMNS, convert_events, read_events

DAY = dt.datetime(2018, 1, 1, 12, tzinfo=dt.UTC)
T = int(DAY.timestamp())
# Retailrocket's layout: numbered from 0, views, carts and buys; user 2 has no history, only a held-out row.
INTERACTIONS = [
    "user\titem\tbehavior\ttimestamp",
    f"0\t3\tview\t{T}", f"0\t1\tcart\t{T + 60}", f"0\t3\tview\t{T + 120}",
    f"1\t1\tview\t{T + 10}", f"1\t0\tview\t{T + 20}", f"1\t2\tbuy\t{T + 30}",
]
HELDOUT = ["user\titem", "0\t2", "1\t3", "2\t0"]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    interactions, heldout = tmp_path / "train_interactions.tsv", tmp_path / "test_buy.tsv"
    interactions.write_text("\n".join(INTERACTIONS) + "\n")
    heldout.write_text("\n".join(HELDOUT) + "\n")
    return interactions, heldout


def test_each_heldout_row_becomes_its_users_last_event_and_users_without_history_are_counted(
    files: tuple[Path, Path], tmp_path: Path
):
    interactions, heldout = files
    result = convert_events(interactions, tmp_path / "out", "UTC", heldout_path=heldout, id_offset=1)
    assert (result.events, result.heldout_events, result.heldout_without_history) == (8, 2, 1)
    assert (result.users, result.items, result.non_positive_ids) == (2, 4, 0)
    assert result.first_ds == result.last_ds == "2018-01-01"
    rows = pq.read_table(result.events_file).to_pylist()
    last = {}
    for row in sorted(rows, key=lambda r: r["event_time"]):
        last[row["user_id"]] = (row["item_id"], row["behaviour"], row["event_time"] - T)
    # ids shifted by the offset; the held-out buy one second after the user's last event
    assert last == {1: (3, "buy", 121), 2: (4, "buy", 31)}
    assert {r["category_id"] for r in rows} == {0}


def test_ids_numbered_from_zero_are_reported_without_an_offset(files: tuple[Path, Path], tmp_path: Path):
    interactions, _ = files
    result = convert_events(interactions, tmp_path / "out", "UTC")
    assert (result.events, result.non_positive_ids) == (6, 4)  # user 0's three rows and item 0's one


def test_a_file_without_the_named_columns_is_refused(files: tuple[Path, Path]):
    interactions, _ = files
    with pytest.raises(InputError, match="expected a header"):
        read_events(interactions, dataclasses.replace(DEFAULT_COLUMNS, time="ts"))


@pytest.mark.spark
@pytest.mark.slow
def test_converted_files_run_through_ingest_and_featurize_with_the_heldout_buy_as_test_target(
    files: tuple[Path, Path], tmp_path: Path, config: Config, spark
):
    interactions, heldout = files
    result = convert_events(interactions, tmp_path / "out", "UTC", heldout_path=heldout, id_offset=1,
                            base=dict(config.overrides))
    converted = load_config(result.config_file, environ={})
    assert converted.lake.root == config.lake.root  # the written file is the only --config needed

    counts = ingest(converted, result.last_ds, result.events_file, spark=spark, now=NOW)
    assert (counts.accepted, counts.quarantined, counts.other_day) == (8, 0, 0)
    featurize(converted, result.last_ds, spark=spark)
    lake = Lake.from_config(converted)
    index = {r["item_id"]: r["item_index"] for r in lake.read("item_vocab").to_pylist()}
    tests = {r["user_id"]: r["targets"][-1] for r in lake.read("train_examples", partition=result.last_ds).to_pylist()
             if r["split"] == "test"}
    assert tests == {1: index[3], 2: index[4]}  # each user's held-out purchase is what the test split ranks
