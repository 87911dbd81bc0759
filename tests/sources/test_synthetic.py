"""Synthetic events: exact size, reproducible for a seed, with the structure featurize must handle."""

import datetime as dt
import itertools
import zoneinfo
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lake import Config, ConfigError
from sources.synthetic import GenerateSettings, day_starts, generate, generate_events

SMALL = {"events": 20_000, "days": 3, "categories": 20, "bot_users": 2, "bot_events_per_day": 500, "malformed_rows": 9}
TIMEZONE = "Asia/Shanghai"


def settings(config: Config, **overrides) -> GenerateSettings:
    return GenerateSettings.from_config(config.with_overrides({"generate": {**SMALL, **overrides}}))


def read_lines(files: list[str]) -> list[list[str]]:
    return [line.split(",") for file in files for line in Path(file).read_text().splitlines()]


def test_files_hold_exactly_the_requested_rows_and_repeat_for_a_seed(config: Config, tmp_path: Path):
    first = generate(settings(config), tmp_path / "a", TIMEZONE)
    again = generate(settings(config), tmp_path / "b", TIMEZONE)
    other = generate(settings(config, seed=8), tmp_path / "c", TIMEZONE)
    assert [Path(f).name for f in first.files] == [
        "user_behavior_2017-11-25.csv", "user_behavior_2017-11-26.csv", "user_behavior_2017-11-27.csv"]
    assert [Path(f).read_bytes() for f in first.files] == [Path(f).read_bytes() for f in again.files]
    assert [Path(f).read_bytes() for f in first.files] != [Path(f).read_bytes() for f in other.files]

    lines = read_lines(first.files)
    assert len(lines) == first.rows == 20_000
    assert first.normal_events + first.bot_events + first.duplicates + first.malformed == first.rows
    well_formed = [line for line in lines if len(line) == 5 and all(x.isdigit() for x in (*line[:3], line[4]))
                   and line[3] in ("pv", "fav", "cart", "buy") and int(line[4]) > 0]
    assert len(lines) - len(well_formed) == first.malformed == 9
    well_formed_set = {tuple(line) for line in well_formed}

    # each well-formed row lies in its file's local day
    zone = zoneinfo.ZoneInfo(TIMEZONE)
    for file in first.files:
        day = Path(file).stem.removeprefix("user_behavior_")
        days = {dt.datetime.fromtimestamp(int(line[4]), zone).date().isoformat()
                for line in read_lines([file]) if tuple(line) in well_formed_set}
        assert days == {day}


def test_events_have_power_law_items_a_funnel_bots_and_duplicates(config: Config):
    table, result = generate_events(settings(config), TIMEZONE)
    rows = table.to_pylist()
    assert len(rows) == result.rows - result.malformed
    behaviours = Counter(str(r["behaviour"]) for r in rows)
    assert behaviours["pv"] > behaviours["cart"] > behaviours["buy"] > 0 and behaviours["fav"] > 0

    # funnel: every purchase follows a cart, every favourite and cart follows a view, of the same user and item
    first_seen: dict[tuple, dict[str, int]] = {}
    for r in rows:
        first_seen.setdefault((r["user_id"], r["item_id"]), {}).setdefault(str(r["behaviour"]), r["timestamp"])
    for times in first_seen.values():
        if "buy" in times:
            assert times["cart"] <= times["buy"]
        for step in ("fav", "cart"):
            if step in times:
                assert times["pv"] <= times[step]

    # bots: far busier per local day than any real user
    starts = day_starts("2017-11-25", SMALL["days"], TIMEZONE)
    per_user_day = Counter((r["user_id"], int(np.searchsorted(starts, r["timestamp"], side="right"))) for r in rows)
    bot_days = [n for (user, _), n in per_user_day.items() if user in result.bot_user_ids]
    human_days = [n for (user, _), n in per_user_day.items() if user not in result.bot_user_ids]
    assert min(bot_days) > max(human_days)

    # power law: the top 5% of items take a large share of the human views (uniform: 5%)
    views = Counter(r["item_id"] for r in rows if r["user_id"] not in result.bot_user_ids)
    counts = np.sort(np.array(list(views.values())))[::-1]
    assert counts[: max(1, len(counts) // 20)].sum() > 0.3 * counts.sum()

    full_rows = Counter(tuple(r.values()) for r in rows)
    assert sum(n - 1 for n in full_rows.values()) >= result.duplicates > 0


def test_day_starts_are_local_midnights(config: Config):
    starts = day_starts("2017-11-25", 2, TIMEZONE)
    assert starts.tolist() == [1511539200, 1511625600, 1511712000]  # 2017-11-24T16:00Z = midnight in Shanghai
    with pytest.raises(ConfigError, match="start_ds"):
        settings(config, start_ds="25/11/2017")


CHAINED = {"session_views": 2, "reload_probability": 0.0, "favourite_probability": 0.0, "cart_probability": 0.0,
           "bot_users": 0, "duplicate_fraction": 0.0, "malformed_rows": 0}


def next_categories(config: Config, mode: str) -> dict[tuple[int, str], Counter]:
    """For each (category of a session's last event, its behaviour), the categories the user's next session is in."""
    table, _ = generate_events(settings(config, next_session=mode, **CHAINED), TIMEZONE)
    rows = sorted(table.to_pylist(), key=lambda r: (r["user_id"], r["timestamp"]))
    follows: dict[tuple[int, str], Counter] = {}
    for before, after in itertools.pairwise(rows):
        if before["user_id"] == after["user_id"] and after["timestamp"] - before["timestamp"] >= 1_800:
            follows.setdefault((before["category_id"], str(before["behaviour"])), Counter())[after["category_id"]] += 1
    return follows


def test_chained_sessions_follow_the_last_behaviour_only_in_the_behaviour_control(config: Config):
    follows = next_categories(config, "behaviour")
    assert {behaviour for _, behaviour in follows} == {"pv", "fav", "cart", "buy"}
    # the signal: a category and the behaviour that ended the session decide the next category ...
    assert all(len(after) == 1 for after in follows.values())
    # ... a view-only session stays put, the others move on, each behaviour to a different category
    for (category, behaviour), after in follows.items():
        assert (next(iter(after)) == category) == (behaviour == "pv")
    by_category: dict[int, set[int]] = {}
    for (category, _), after in follows.items():
        by_category.setdefault(category, set()).update(after)
    assert max(len(after) for after in by_category.values()) == 4

    # the random control: the same (category, behaviour) leads to several categories, so behaviour tells nothing
    random_follows = next_categories(config, "random")
    busy = [after for after in random_follows.values() if sum(after.values()) >= 20]
    assert busy and all(len(after) >= 3 for after in busy)


def test_chained_sessions_keep_the_row_count_and_each_users_sessions_apart(config: Config):
    table, result = generate_events(settings(config, next_session="behaviour", **CHAINED), TIMEZONE)
    assert table.num_rows == result.rows == SMALL["events"]
    behaviours = Counter(str(b) for b in table.column("behaviour").to_pylist())
    # every view's behaviour is drawn uniformly, so none of them marks a session's end
    assert all(0.2 < behaviours[b] / table.num_rows < 0.3 for b in ("pv", "fav", "cart", "buy"))
    with pytest.raises(ConfigError, match="next_session"):
        settings(config, next_session="sometimes")
