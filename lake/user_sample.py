"""A fixed, seeded sample of users: which users large-day evaluation and training validation rank.

Shared by evaluation (``evaluate.max_users``) and training (``train.valid_max_users``) so both stages pick
users the same way: a pure function of (user id, share, seed), so the same users every night and for every
model (the gate's paired comparison stays paired), and a larger share keeps every user a smaller one picked.
"""

from __future__ import annotations

import numpy as np

__all__ = ["in_user_sample", "sample_share"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def in_user_sample(user_ids: np.ndarray, share: float, seed: int) -> np.ndarray:
    """``[B]`` bool: whether each user falls in the ``share`` of users a seeded hash of their id picks.

    The hash is splitmix64's finaliser, which spreads consecutive ids.
    """
    if share >= 1.0:
        return np.ones(len(user_ids), dtype=bool)
    with np.errstate(over="ignore"):
        z = user_ids.astype(np.uint64) + np.uint64(seed) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) < share * 2.0**53


def sample_share(max_users: int, users: int) -> float:
    """The share of ``users`` that keeps about ``max_users`` of them: 1.0 (everyone) when ``max_users`` is 0
    or not below ``users``."""
    return max_users / users if 0 < max_users < users else 1.0
