"""The SASRec adapter: order kept per user, one behaviour, and the same ingest -> featurize pipeline on it."""

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from featurization.featurize import featurize
from featurization.ingest import ingest
from lake import Config, InputError, Lake, load_config
from sources.sasrec_format import convert_sasrec, read_sasrec, sasrec_events

# Users' lines interleave: order must be kept per user, wherever the lines are.
SASREC_LINES = ["1 30", "1 10", "2 10", "1 20", "2 30", "3 20", "2 20", "3 10", "3 30", "1 10"]
DS = "2018-01-01"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def sasrec_file(tmp_path: Path) -> Path:
    path = tmp_path / "games.txt"
    path.write_text("\n".join(SASREC_LINES) + "\n")
    return path


def test_each_users_lines_become_clicks_one_second_apart_in_file_order(sasrec_file: Path):
    events = sasrec_events(read_sasrec(sasrec_file), DS, "Asia/Shanghai").to_pylist()
    midnight = int(dt.datetime(2018, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp())
    per_user: dict[int, list[tuple[int, int]]] = {}
    for e in events:
        assert (e["behaviour"], e["category_id"]) == ("click", 0)
        per_user.setdefault(e["user_id"], []).append((e["event_time"] - midnight, e["item_id"]))
    assert per_user == {
        1: [(0, 30), (1, 10), (2, 20), (3, 10)],
        2: [(0, 10), (1, 30), (2, 20)],
        3: [(0, 20), (1, 10), (2, 30)],
    }


def test_a_file_that_is_not_integer_pairs_is_refused(tmp_path: Path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 10\n1 ten\n")
    with pytest.raises(InputError, match="integer pairs"):
        read_sasrec(bad)


@pytest.mark.spark
@pytest.mark.slow
def test_converted_file_runs_through_ingest_and_featurize_with_its_config(
    sasrec_file: Path, tmp_path: Path, config: Config, spark
):
    result = convert_sasrec(sasrec_file, tmp_path / "out", DS, "Asia/Shanghai", base=dict(config.overrides))
    assert (result.events, result.users, result.items) == (10, 3, 3)
    assert pq.read_table(result.events_file).num_rows == 10
    converted = load_config(result.config_file, environ={})
    assert converted.lake.root == config.lake.root  # the written file is the only --config needed

    counts = ingest(converted, DS, result.events_file, spark=spark, now=NOW)
    assert (counts.accepted, counts.quarantined, counts.other_day) == (10, 0, 0)
    stats = featurize(converted, DS, spark=spark)
    assert [s.removed for s in stats.steps[:5]] == [0, 0, 0, 0, 0]  # nothing cleaned away

    lake = Lake.from_config(converted)
    index = {r["item_id"]: r["item_index"] for r in lake.read("item_vocab").to_pylist()}
    sequences = {r["user_id"]: r["items"] for r in lake.read("user_sequences", partition=DS).to_pylist()}
    assert sequences == {
        1: [index[i] for i in (30, 10, 20, 10)],
        2: [index[i] for i in (10, 30, 20)],
        3: [index[i] for i in (20, 10, 30)],
    }
