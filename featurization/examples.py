"""Training examples (``train_examples``) from per-user step arrays, as DataFrame transforms.

One row per (user, split). All list columns are oldest first, the same length and not padded;
``items/behaviours/categories/gap_buckets`` are the inputs at each position and ``targets`` the item index
to predict there (0 = no loss at that position). Every row keeps only its most recent ``max_len`` positions.

Leave-one-out (SASRec, BERT4Rec), for a user's cleaned events s_1..s_n:

- n >= 3: ``train``: inputs s_1..s_{n-3}, targets s_2..s_{n-2} (only when n >= 4, so the inputs are not
  empty); ``valid``: inputs s_1..s_{n-2}, targets [0, ..., 0, s_{n-1}];
  ``test``: inputs s_1..s_{n-1}, targets [0, ..., 0, s_n];
- n = 2: one ``train`` row (inputs s_1, target s_2), as SASRec keeps users with fewer than 3 events for
  training only; n = 1: no row (nothing to predict).

Time split with cutoff day C, for a user with events p_1..p_m on or before C:

- the user's first event after C, if any, is the ``test`` target: inputs p_1..p_m, targets [0, ..., 0, next];
- p_m is the ``valid`` target (inputs p_1..p_{m-1}) and p_2..p_{m-1} the ``train`` targets;
- rows whose inputs would be empty are not written (a user first seen after C gets no row).

Behaviour, category, gap bucket and day (the local day ds, in days since 1970-01-01) at a position are those
of the input event there; ``target_behaviours`` holds the behaviour of each target event (0 where no
target), so evaluation can rank next-purchase targets and apply the serving rules' exclusion window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from featurization.sequences import last_steps, step_values

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["Split", "example_window", "train_examples"]

Split = Literal["leave_one_out", "time"]
# The per-position input arrays of a row: sequences.step_values' plus each step's day.
FIELDS = ("items", "behaviours", "categories", "gap_buckets", "days")


def example_window(steps: Column, max_len: int, split: Split) -> list[Column]:
    """``window, test_at, valid_at, train_end``: the steps a user's rows need and where each row ends.

    ``window`` holds just the steps the rows read (at most max_len + 3) as a struct of int arrays
    (``step_values``: items, behaviours, ...), so the rows only slice arrays; ``test_at`` and ``valid_at`` are
    1-based positions in it of the test and validation targets and ``train_end`` that of the last train
    target. A row exists only when its position is >= 2 (its inputs are not empty).

    Args:
        steps: all of a user's steps, oldest first (``user_steps``), with ``after_cutoff`` set for ``time``.
    """
    from pyspark.sql import functions as F

    if split == "leave_one_out":
        n = F.size(steps)
        window = last_steps(steps, max_len + 3)
        size = F.size(window)
        test_at = F.when(n >= 3, size).otherwise(0)
        valid_at = F.when(n >= 3, size - 1).otherwise(0)
        train_end = F.when(n >= 3, size - 2).otherwise(n)
    elif split == "time":
        before = F.filter(steps, lambda s: ~s["after_cutoff"])
        after = F.filter(steps, lambda s: s["after_cutoff"])
        window = F.concat(last_steps(before, max_len + 2), F.slice(after, 1, 1))
        size = F.size(window)
        has_test = F.size(after) > 0
        test_at = F.when(has_test, size).otherwise(0)
        valid_at = F.when(has_test, size - 1).otherwise(size)
        train_end = valid_at - 1
    else:
        raise ValueError(f"unknown split {split!r}; use leave_one_out or time")
    return [
        F.struct(*step_values(window), F.transform(window, lambda step: step["day"]).alias("days")).alias("window"),
        test_at.cast("int").alias("test_at"),
        valid_at.cast("int").alias("valid_at"),
        train_end.cast("int").alias("train_end"),
    ]


def _inputs(first: Column, count: Column) -> list[Column]:
    from pyspark.sql import functions as F

    return [F.slice(F.col("window")[field], first, count).alias(field) for field in FIELDS]


def _evaluation_row(at: Column, max_len: int) -> list[Column]:
    """Inputs: the (up to max_len) steps before position ``at``; targets: zeros, then the item at ``at``."""
    from pyspark.sql import functions as F

    first = F.greatest(at - max_len, F.lit(1))
    count = at - first
    leading_zeros = F.array_repeat(F.lit(0), count - 1)
    target = F.element_at(F.col("window.items"), at)
    behaviour = F.element_at(F.col("window.behaviours"), at)
    return [*_inputs(first, count), F.concat(leading_zeros, F.array(target)).alias("targets"),
            F.concat(leading_zeros, F.array(behaviour)).alias("target_behaviours")]


def _train_row(end: Column, max_len: int) -> list[Column]:
    """Inputs: the (up to max_len) steps before ``end``; targets: the item that follows each of them."""
    from pyspark.sql import functions as F

    first = F.greatest(end - max_len, F.lit(1))
    count = end - first
    return [*_inputs(first, count), F.slice(F.col("window.items"), first + 1, count).alias("targets"),
            F.slice(F.col("window.behaviours"), first + 1, count).alias("target_behaviours")]


def train_examples(windows: DataFrame, max_len: int, ds: str) -> DataFrame:
    """``train_examples`` rows (user_id, split, items, behaviours, categories, gap_buckets, days, targets,
    target_behaviours, ds).

    A user's rows come out of one explode of their window row, so they stay in the task (and the file)
    that holds the user: every file carries all three splits of its users, and no shuffle is needed.

    Args:
        windows: ``user_id`` plus the ``example_window`` columns.
    """
    from pyspark.sql import functions as F

    def row(split: str, position: str, columns: list[Column]) -> Column:
        return F.when(F.col(position) >= 2, F.struct(F.lit(split).alias("split"), *columns))

    rows = F.array(
        row("train", "train_end", _train_row(F.col("train_end"), max_len)),
        row("valid", "valid_at", _evaluation_row(F.col("valid_at"), max_len)),
        row("test", "test_at", _evaluation_row(F.col("test_at"), max_len)),
    )
    return windows.select("user_id", F.explode(F.filter(rows, lambda r: r.isNotNull())).alias("row")).select(
        "user_id", "row.*", F.lit(ds).alias("ds")
    )
