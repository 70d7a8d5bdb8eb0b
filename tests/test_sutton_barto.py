"""scripts/sutton_barto_6_7.py: per-episode left flags from per-step metric rows."""

import importlib.util
import os

import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "sutton_barto_6_7.py")
_spec = importlib.util.spec_from_file_location("sutton_barto_6_7", _PATH)
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)


def test_left_per_episode_reads_episode_ends_and_lengths():
    nan = np.nan
    # run 0: right, left (2 steps), right, left; run 1: left, left, right (then nothing)
    episodes = np.array([[1, 0, 1, 1, 0, 1], [0, 1, 0, 1, 1, 0]])
    length = np.array([[1, nan, 2, 1, nan, 2], [nan, 2, nan, 2, 1, nan]])
    left = sb.left_per_episode(episodes, length, 3)
    np.testing.assert_array_equal(left, [[False, True, False], [True, True, False]])
    with pytest.raises(ValueError, match="fewer than 4 episodes"):
        sb.left_per_episode(episodes, length, 4)


def test_the_book_config_is_online_tabular_learning():
    cfg = sb.book_config(300, "double_q")
    assert cfg.total_timesteps == 600 and cfg.num_log_rows == 600
    assert (cfg.buffer_size, cfg.batch_size, cfg.learning_starts, cfg.train_frequency,
            cfg.target_update_freq, cfg.first_learning_iteration) == (1, 1, 1, 1, 1, 0)
    assert cfg.hidden_sizes == () and cfg.optimizer == "sgd" and cfg.random_tie_break
