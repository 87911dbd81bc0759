"""Synthetic raw events at any size, in the Taobao UserBehavior format, for scale tests and benchmarks.

Writes one headerless CSV per local day (``user,item,category,pv|fav|cart|buy,unix_seconds``), the format
``seqrec ingest`` reads with its default configuration, so generated data flows through the real pipeline:
``seqrec ingest --ds D --source DIR/user_behavior_D.csv`` for each day.

What the data holds (all vectorised numpy, reproducible for a seed):

- sessions of page views (``pv``): a user drawn by a log-normal activity weight, a category drawn by a
  power law, a start second uniform within a day, a geometric number of views spaced by exponential gaps;
  items drawn by a power law within the session's category, so popularity is heavy-tailed;
- a funnel: after a view, a ``fav`` and/or a ``cart`` of the same item, and after a cart a ``buy``;
- reloads: a view repeated within seconds (bursts for featurize to collapse);
- bot users with thousands of uniform random views every day (for featurize's abnormal-user step);
- optionally (``next_session``), a chain from each user's session to their next: every view carries a
  behaviour drawn uniformly from pv/fav/cart/buy (so a behaviour never marks where a session ends), and the
  next session's category is the last one shifted by 0-3 places, the shift set by the session's last
  behaviour (``behaviour``: the control where behaviour-aware models must win) or drawn independently of it
  (``random``: the control where behaviour is noise and they must not);
- exact duplicate rows and a few malformed rows (for ingest to quarantine).

Rows = events exactly: normal + bot + duplicate + malformed rows add up to ``generate.events``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lake import Config, ConfigError, typed_section

__all__ = ["TAOBAO_BEHAVIOUR_CODES", "GenerateResult", "GenerateSettings", "day_starts", "generate", "generate_events"]

DEFAULTS = Path(__file__).with_name("defaults.yaml")
# Raw behaviour codes of the Taobao format, in funnel order; ingest maps them to click, favourite, cart, purchase.
TAOBAO_BEHAVIOUR_CODES = ("pv", "fav", "cart", "buy")
PV, FAV, CART, BUY = range(4)
SECONDS_PER_DAY = 86_400
# Ids are drawn from this range so they look like the real dump's (sparse, unordered).
ID_RANGE = 10_000_000
# Bots never take more than this share of the rows, so small test sizes stay mostly human.
MAX_BOT_SHARE = 0.2
# generate.next_session: how a user's session follows their previous one.
NEXT_SESSION_MODES = ("independent", "behaviour", "random")
# In the chained modes, a session's last behaviour (pv, fav, cart, buy) moves the next session this many
# categories on: one who only looked stays in the category, one who bought moves furthest.
CATEGORY_SHIFT = np.array([0, 1, 2, 3])
# Quiet time between a user's chained sessions, so one session's events never interleave with the next's.
SESSION_GAP_SECONDS = 1_800


@dataclass(frozen=True)
class GenerateSettings:
    events: int
    days: int
    start_ds: str
    seed: int
    events_per_user: int
    items_per_event: float
    categories: int
    item_popularity_exponent: float
    category_popularity_exponent: float
    session_views: int
    view_gap_seconds: int
    reload_probability: float
    favourite_probability: float
    cart_probability: float
    purchase_probability: float
    bot_users: int
    bot_events_per_day: int
    duplicate_fraction: float
    malformed_rows: int
    next_session: str

    @classmethod
    def from_config(cls, config: Config) -> GenerateSettings:
        settings = typed_section(cls, config, "generate", DEFAULTS)
        try:
            dt.date.fromisoformat(settings.start_ds)
        except ValueError:
            raise ConfigError(f"generate.start_ds must be YYYY-MM-DD, got {settings.start_ds!r}") from None
        for name in ("events", "days", "events_per_user", "categories", "session_views"):
            if getattr(settings, name) < 1:
                raise ConfigError(f"generate.{name} must be at least 1, got {getattr(settings, name)}")
        if settings.next_session not in NEXT_SESSION_MODES:
            raise ConfigError(f"generate.next_session must be one of {list(NEXT_SESSION_MODES)}, "
                              f"got {settings.next_session!r}")
        if settings.malformed_rows >= settings.events:
            raise ConfigError(f"generate.malformed_rows ({settings.malformed_rows}) must be below events")
        return settings


@dataclass(frozen=True)
class GenerateResult:
    files: list[str]
    rows: int
    normal_events: int
    bot_events: int
    duplicates: int
    malformed: int
    users: int
    bot_user_ids: list[int]
    items: int
    categories: int


def day_starts(start_ds: str, days: int, timezone: str) -> np.ndarray:
    """Epoch seconds of local midnight on ``days + 1`` days from ``start_ds`` (the last ends the window)."""
    zone = zoneinfo.ZoneInfo(timezone)
    first = dt.date.fromisoformat(start_ds)
    return np.array([
        int(dt.datetime.combine(first + dt.timedelta(days=d), dt.time(), zone).timestamp()) for d in range(days + 1)
    ], dtype=np.int64)


def _power_law_rank(rng: np.random.Generator, size: np.ndarray | int, exponent: float, n: int) -> np.ndarray:
    """Ranks in [0, size): floor(size * u ** exponent), heavier on low ranks as the exponent grows."""
    return np.minimum((size * rng.random(n) ** exponent).astype(np.int64), np.asarray(size) - 1)


def _catalogue(
    settings: GenerateSettings, rng: np.random.Generator, items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Item ids, category ids, and each category's first item and item count (items sorted by category)."""
    categories = min(settings.categories, items)
    # Popular categories also hold more items; every category holds at least one.
    extra = _power_law_rank(rng, categories, settings.category_popularity_exponent, items - categories)
    sizes = 1 + np.bincount(extra, minlength=categories)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    item_ids = rng.choice(ID_RANGE, size=items, replace=False) + 1
    category_ids = rng.choice(ID_RANGE, size=categories, replace=False) + 1
    return item_ids, category_ids, starts, sizes


def _sessions_views(settings: GenerateSettings, rng: np.random.Generator, views: int, users: int, window: int,
                    starts: np.ndarray, sizes: np.ndarray) -> dict[str, np.ndarray]:
    """``views`` page views grouped in sessions: user, item rank (index into the catalogue), time, behaviour,
    and whether the view is pinned (a chained session's last event, which the funnel must keep as it is)."""
    activity = rng.lognormal(0.0, 1.0, users)
    user_cdf = np.cumsum(activity) / activity.sum()
    lengths = rng.geometric(1.0 / settings.session_views, size=views // settings.session_views * 2 + 16)
    sessions = int(np.searchsorted(np.cumsum(lengths), views)) + 1
    lengths = lengths[:sessions]
    lengths[-1] -= int(lengths.sum()) - views
    session_user = np.searchsorted(user_cdf, rng.random(sessions), side="right") + 1
    session_category = _power_law_rank(rng, len(sizes), settings.category_popularity_exponent, sessions)
    session_start = rng.integers(0, window, sessions)

    session_of_view = np.repeat(np.arange(sessions), lengths)
    gaps = rng.exponential(settings.view_gap_seconds, views).astype(np.int64) + 1
    # Seconds since the session's first view: a running sum restarted at each session.
    running = np.cumsum(gaps)
    first_of_session = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    elapsed = running - np.repeat(running[first_of_session], lengths)
    behaviour = np.full(views, PV, np.int8)
    pinned = np.zeros(views, bool)
    if settings.next_session != "independent":
        last_of_session = first_of_session + lengths - 1
        session_user, session_start, session_category, last_behaviour = _chain_sessions(
            settings, rng, session_user, session_start, session_category, elapsed[last_of_session], window, len(sizes))
        behaviour = rng.integers(0, len(TAOBAO_BEHAVIOUR_CODES), views).astype(np.int8)
        behaviour[last_of_session] = last_behaviour
        pinned[last_of_session] = True
    category = session_category[session_of_view]
    item = starts[category] + _power_law_rank(rng, sizes[category], settings.item_popularity_exponent, views)
    return {
        "user": session_user[session_of_view],
        "item": item,
        "offset": (session_start[session_of_view] + elapsed) % window,
        "behaviour": behaviour,
        "pinned": pinned,
    }


def _chain_sessions(
    settings: GenerateSettings, rng: np.random.Generator, user: np.ndarray, start: np.ndarray,
    category: np.ndarray, duration: np.ndarray, window: int, categories: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sessions reordered by (user, start), laid end to end per user, each session's category the previous
    one's shifted by CATEGORY_SHIFT: returns user, start, category and the behaviour of each session's last event.

    The sessions keep their drawn lengths (iid), so reordering the users and starts is a relabelling.
    """
    order = np.lexsort((start, user))
    user, start = user[order], start[order]
    first = np.concatenate([[True], user[1:] != user[:-1]])
    group = np.cumsum(first) - 1
    group_first = np.flatnonzero(first)

    def exclusive_sum_within_user(values: np.ndarray) -> np.ndarray:
        running = np.cumsum(values)
        return running - values - (running - values)[group_first][group]

    # Starts squeezed into what the user's sessions leave of the window, then pushed past the earlier ones.
    span = duration + SESSION_GAP_SECONDS
    room = np.maximum(window - np.bincount(group, weights=span).astype(np.int64), 0)[group]
    start = start * room // window + exclusive_sum_within_user(span)
    last_behaviour = rng.integers(0, len(TAOBAO_BEHAVIOUR_CODES), len(user)).astype(np.int8)
    if settings.next_session == "behaviour":
        shift = CATEGORY_SHIFT[last_behaviour]
    else:
        shift = rng.choice(CATEGORY_SHIFT, len(user))
    # A user's first session keeps its drawn (popularity-weighted) category; each later one follows the chain.
    category = (category[group_first][group] + exclusive_sum_within_user(shift)) % categories
    return user, start, category, last_behaviour


def _funnel(
    settings: GenerateSettings, rng: np.random.Generator, views: dict[str, np.ndarray], window: int
) -> dict[str, np.ndarray]:
    """Views plus their reloads, favourites, carts and purchases (same user and item, a little later)."""
    n = len(views["user"])
    parts = [(np.arange(n), views["behaviour"], views["offset"])]
    # A chained session's last event is the signal under test: nothing follows it.
    free = ~views["pinned"]

    def follow(source: np.ndarray, behaviour: int, offset: np.ndarray, low: int, high: int) -> np.ndarray:
        # Clipped at the window's end rather than wrapped, so a step never precedes the one it follows.
        later = np.minimum(offset + rng.integers(low, high, len(source)), window - 1)
        parts.append((source, behaviour, later))
        return later

    reload = np.flatnonzero((rng.random(n) < settings.reload_probability) & free)
    follow(reload, PV, views["offset"][reload], 1, 10)
    favourite = np.flatnonzero((rng.random(n) < settings.favourite_probability) & free)
    follow(favourite, FAV, views["offset"][favourite], 5, 120)
    cart = np.flatnonzero((rng.random(n) < settings.cart_probability) & free)
    cart_offset = follow(cart, CART, views["offset"][cart], 5, 300)
    bought = rng.random(len(cart)) < settings.purchase_probability
    follow(cart[bought], BUY, cart_offset[bought], 30, 1800)
    source = np.concatenate([p[0] for p in parts])
    return {
        "user": views["user"][source],
        "item": views["item"][source],
        "behaviour": np.concatenate([np.broadcast_to(np.int8(p[1]), len(p[0])) for p in parts]),
        "offset": np.concatenate([p[2] for p in parts]),
        # A view nothing follows: dropping it leaves every funnel whole.
        "lone_view": np.concatenate([(np.bincount(source, minlength=n) == 1) & free, np.zeros(len(source) - n, bool)]),
    }


def generate_events(settings: GenerateSettings, timezone: str) -> tuple[pa.Table, GenerateResult]:
    """The well-formed rows (normal, bot and duplicate events), sorted by time, and what they hold.

    Returns:
        A table ``user_id, item_id, category_id, behaviour (pv|fav|cart|buy), timestamp (unix seconds)``
        of ``settings.events - settings.malformed_rows`` rows, and the counts (``files`` left empty).
    """
    rng = np.random.default_rng(settings.seed)
    starts_of_days = day_starts(settings.start_ds, settings.days, timezone)
    window = int(starts_of_days[-1] - starts_of_days[0])
    rows = settings.events - settings.malformed_rows
    bot_events = min(settings.bot_users * settings.bot_events_per_day * settings.days, int(rows * MAX_BOT_SHARE))
    duplicates = int(rows * settings.duplicate_fraction)
    normal = rows - bot_events - duplicates
    users = max(1, normal // settings.events_per_user)
    items = max(settings.categories, int(settings.events * settings.items_per_event), 1)
    item_ids, category_ids, starts, sizes = _catalogue(settings, rng, items)
    item_category = np.repeat(np.arange(len(sizes)), sizes)

    events_per_view = 1 + settings.reload_probability + settings.favourite_probability + settings.cart_probability * (
        1 + settings.purchase_probability)
    view_count = int(normal / events_per_view * 1.05) + 16
    while True:
        views = _sessions_views(settings, rng, view_count, users, window, starts, sizes)
        funnel = _funnel(settings, rng, views, window)
        surplus = len(funnel["user"]) - normal
        if surplus >= 0 and funnel["lone_view"].sum() >= surplus:
            break
        view_count = int(view_count * 1.1) + 16
    # The funnel's size is random; drop surplus lone views so exactly `normal` events remain.
    dropped = rng.choice(np.flatnonzero(funnel["lone_view"]), size=surplus, replace=False)
    keep = np.setdiff1d(np.arange(len(funnel["user"])), dropped)
    user = funnel["user"][keep]
    item = funnel["item"][keep]
    behaviour = funnel["behaviour"][keep]
    offset = funnel["offset"][keep]

    bot_user_ids = np.arange(users + 1, users + 1 + settings.bot_users) if bot_events else np.array([], np.int64)
    if bot_events:
        user = np.concatenate([user, rng.choice(bot_user_ids, bot_events)])
        item = np.concatenate([item, rng.integers(0, items, bot_events)])
        behaviour = np.concatenate([behaviour, np.full(bot_events, PV)])
        offset = np.concatenate([offset, rng.integers(0, window, bot_events)])
    copies = rng.choice(len(user), size=duplicates, replace=False)
    user, item, behaviour, offset = (np.concatenate([a, a[copies]]) for a in (user, item, behaviour, offset))

    timestamp = starts_of_days[0] + offset
    order = np.lexsort((item, user, timestamp))
    table = pa.table({
        "user_id": user[order].astype(np.int64),
        "item_id": item_ids[item[order]],
        "category_id": category_ids[item_category[item[order]]],
        "behaviour": pa.DictionaryArray.from_arrays(behaviour[order].astype(np.int8), list(TAOBAO_BEHAVIOUR_CODES)),
        "timestamp": timestamp[order],
    })
    result = GenerateResult(
        files=[], rows=settings.events, normal_events=normal, bot_events=bot_events, duplicates=duplicates,
        malformed=settings.malformed_rows, users=users, bot_user_ids=bot_user_ids.tolist(), items=items,
        categories=len(sizes),
    )
    return table, result


def _malformed_lines(rng: np.random.Generator, count: int, day_start: int) -> list[str]:
    """Rows ingest must refuse: wrong width, non-integer ids, unknown behaviour, bad or impossible times."""
    kinds = [
        lambda u, t: f"{u},{u * 7},{u * 3},pv",
        lambda u, t: f"user{u},{u * 7},{u * 3},pv,{t}",
        lambda u, t: f"{u},,{u * 3},cart,{t}",
        lambda u, t: f"{u},{u * 7},{u * 3},like,{t}",
        lambda u, t: f"{u},{u * 7},{u * 3},buy,yesterday",
        lambda u, t: f"{u},{u * 7},{u * 3},pv,0",
    ]
    users = rng.integers(1, 1000, count)
    seconds = rng.integers(0, SECONDS_PER_DAY, count)
    return [kinds[i % len(kinds)](int(users[i]), int(day_start + seconds[i])) for i in range(count)]


def generate(settings: GenerateSettings, output: str | Path, timezone: str) -> GenerateResult:
    """Write ``settings.events`` rows as one Taobao-format CSV per local day under ``output``."""
    table, result = generate_events(settings, timezone)
    starts_of_days = day_starts(settings.start_ds, settings.days, timezone)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    day_of_row = np.searchsorted(starts_of_days, table.column("timestamp").to_numpy(), side="right") - 1
    bounds = np.searchsorted(day_of_row, np.arange(settings.days + 1))
    rng = np.random.default_rng([settings.seed, 1])
    malformed_day = rng.integers(0, settings.days, settings.malformed_rows)
    table = table.set_column(3, "behaviour", pc.cast(table.column("behaviour"), pa.string()))
    files = []
    for day in range(settings.days):
        ds = (dt.date.fromisoformat(settings.start_ds) + dt.timedelta(days=day)).isoformat()
        path = folder / f"user_behavior_{ds}.csv"
        rows = table.slice(bounds[day], bounds[day + 1] - bounds[day])
        pacsv.write_csv(rows, path, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
        bad = _malformed_lines(rng, int((malformed_day == day).sum()), int(starts_of_days[day]))
        if bad:
            with path.open("a") as handle:
                handle.write("\n".join(bad) + "\n")
        files.append(str(path))
    return GenerateResult(**{**result.__dict__, "files": files})
