import numpy as np

from lake.user_sample import in_user_sample, sample_share


def test_user_sample_is_a_fixed_nested_share_of_the_users():
    users = np.arange(1, 200_001, dtype=np.int64)
    tenth = in_user_sample(users, 0.1, seed=5)
    assert 0.095 < tenth.mean() < 0.105, "about the share asked for, consecutive ids or not"
    assert np.array_equal(tenth, in_user_sample(users, 0.1, seed=5)), "the same users every time"
    assert not (tenth & ~in_user_sample(users, 0.3, seed=5)).any(), "a larger share keeps every user a smaller one had"
    assert not np.array_equal(tenth, in_user_sample(users, 0.1, seed=6))
    assert in_user_sample(users, 1.0, seed=5).all()


def test_sample_share_keeps_everyone_unless_there_are_more_users_than_asked():
    assert sample_share(0, 1_000) == 1.0, "0 = every user"
    assert sample_share(1_000, 1_000) == 1.0
    assert sample_share(5_000, 1_000) == 1.0
    assert sample_share(250, 1_000) == 0.25
