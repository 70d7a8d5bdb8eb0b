"""Batched runs and sweeps: grid expansion, shape groups, one compile per group, hyperparameters
routed to the right combination. (That segmented, interrupted and resumed runs equal one-call runs
bit for bit is tested end to end in test_cli.py.)"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn import DQNConfig, epsilon_at, make_q_fn
from jaxdqn.runs import make_runs, rows_per_segment, run_in_segments
from jaxdqn.sweep import GroupResult, expand_grid, rank_combinations, run_sweep, shape_groups
from jaxdqn.train import HParams, TrainMetrics

TINY = DQNConfig(env_id="Probe3", total_timesteps=400, buffer_size=200, learning_starts=64,
                 batch_size=32, hidden_sizes=(8,), log_interval=40)


def test_expand_grid_is_row_major_and_applies_values():
    combos = expand_grid(TINY, {"learning_rate": [1e-3, 1e-2], "gamma": [0.5, 0.9, 0.99]})
    assert [c.index for c in combos] == list(range(6))
    assert [(c.values["learning_rate"], c.values["gamma"]) for c in combos] == [
        (1e-3, 0.5), (1e-3, 0.9), (1e-3, 0.99), (1e-2, 0.5), (1e-2, 0.9), (1e-2, 0.99)]
    assert all(c.config.learning_rate == c.values["learning_rate"]
               and c.config.gamma == c.values["gamma"] and c.config.buffer_size == 200
               for c in combos)
    # Derived defaults follow the grid: learning_starts is re-derived from each buffer_size.
    derived = expand_grid(DQNConfig(total_timesteps=1000), {"buffer_size": [300, 500]})
    assert [c.config.learning_starts for c in derived] == [300, 500]


@pytest.mark.parametrize("grid, message", [
    ({"learnig_rate": [1e-3]}, "grid field 'learnig_rate' is not a DQNConfig field"),
    ({"gamma": []}, "grid field 'gamma' has no values"),
    ({"gamma": [0.9, 0.9]}, "repeats a value"),
    ({"learning_rate": [1e-3], "gamma": [0.9, 1.5]},
     r"grid combination learning_rate=0.001, gamma=1.5: DQNConfig.gamma=1.5 is invalid"),
    ({"batch_size": [32, 500]}, "batch_size=500 is invalid: must be <= buffer_size=200"),
    # A traced field is still validated per combination: 10 env steps per iteration in TINY.
    ({"target_update_freq": [10, 5]},
     r"grid combination target_update_freq=5: DQNConfig.target_update_freq=5 is invalid: "
     r"must be >= 10, the env steps of one iteration"),
])
def test_invalid_grids_are_refused_before_anything_compiles(grid, message):
    with pytest.raises(ValueError, match=message):
        expand_grid(TINY, grid)


def test_shape_groups_batch_traced_fields_and_split_on_the_others():
    grid = {"learning_rate": [1e-3, 1e-2], "buffer_size": [200, 100], "gamma": [0.5, 0.9],
            "target_update_freq": [50, 100]}
    groups = shape_groups(expand_grid(TINY, grid))
    assert len(groups) == 2  # buffer_size changes array shapes; the other three are traced
    for group, size in zip(groups, (200, 100)):
        assert group.config.buffer_size == size and len(group.combinations) == 8
        assert group.static_values(list(grid)) == {"buffer_size": size}
        assert all(c.config.buffer_size == size for c in group.combinations)
        hp = group.hparams
        assert hp.learning_rate.dtype == np.float32 and hp.target_update_freq.dtype == np.int32
        np.testing.assert_array_equal(
            hp.learning_rate, np.float32([c.values["learning_rate"] for c in group.combinations]))
        np.testing.assert_array_equal(hp.gamma, np.float32([0.5, 0.5, 0.9, 0.9] * 2))
        np.testing.assert_array_equal(hp.target_update_freq, [50, 100] * 4)
        np.testing.assert_array_equal(hp.tau, np.ones(8, np.float32))  # from the base config
    assert {c.index for g in groups for c in g.combinations} == set(range(16))


@pytest.mark.parametrize("num_rows, target, expected", [
    (100, 20, 5), (100, 10, 10), (60, 20, 3), (1, 20, 1), (7, 20, 1), (97, 20, 1), (200, 20, 10),
])
def test_segment_rows_divide_the_run_into_about_the_target_number_of_segments(num_rows, target,
                                                                          expected):
    assert rows_per_segment(num_rows, target) == expected
    assert num_rows % expected == 0


def test_segments_must_divide_the_rows_left():
    batch = make_runs(TINY, 1)  # nothing compiles: the check comes first
    with pytest.raises(ValueError, match="segment_rows=3 must divide the 10 rows left"):
        next(run_in_segments(batch, None, None, 0, 3))
    with pytest.raises(ValueError, match="segment_rows=4 must divide the 6 rows left"):
        next(run_in_segments(batch, None, None, 4, 4))


def _count_compiles(caplog, name):
    return sum(f"Compiling jit({name})" in r.getMessage() for r in caplog.records)


def test_sweep_of_3_learning_rates_x_2_gammas_x_8_seeds_compiles_once_per_shape_group(caplog):
    grid = {"learning_rate": [1e-3, 1e-2, 3e-2], "gamma": [0.5, 0.9], "buffer_size": [200, 100]}
    caplog.set_level(logging.WARNING)
    with jax.log_compiles(True):
        results, ranked = run_sweep(TINY, grid, num_seeds=8, seed=0, num_episodes=3,
                                    target_segments=5)
    assert len(results) == 2  # two buffer sizes: two shape groups of 6 combinations
    for name in ("init_runs", "run_rows", "evaluate_runs"):
        assert _count_compiles(caplog, name) == 2, name
    for res in results:
        assert res.metrics.env_steps.shape == (6, 8, 10)
        assert res.eval_returns.shape == (6, 8, 3)
        assert jax.tree.leaves(res.params)[0].shape[:2] == (6, 8)
    assert sorted(r.combination.index for r in ranked) == list(range(12))
    assert [r.rank for r in ranked] == list(range(1, 13))


def test_sweep_routes_each_combination_its_own_hyperparameters():
    """Probe3's exact answer is Q([0]) = gamma, so each combination's learned Q-value says which
    gamma it trained with; its epsilon rows say which schedule it followed."""
    cfg = DQNConfig(env_id="Probe3", total_timesteps=3000, buffer_size=1000, learning_starts=256,
                    batch_size=128, learning_rate=1e-2, anneal_lr=True, train_frequency=1,
                    target_update_freq=100, exploration_fraction=0.5, hidden_sizes=(32,))
    grid = {"gamma": [0.5, 0.9], "end_epsilon": [0.5, 0.2]}
    results, _ = run_sweep(cfg, grid, num_seeds=2, seed=1, num_episodes=2)
    (res,) = results
    q_fn = make_q_fn(cfg)
    for ci, combo in enumerate(res.group.combinations):
        params = jax.tree.map(lambda x, ci=ci: x[ci], res.params)
        q0 = jax.vmap(q_fn, in_axes=(0, None))(params, jnp.zeros((1,)))
        np.testing.assert_allclose(q0[:, 0], combo.values["gamma"], atol=5e-3)
        expected_eps = epsilon_at(res.metrics.env_steps[ci, 0], 1.0, combo.values["end_epsilon"],
                                  0.5, cfg.total_timesteps)
        np.testing.assert_allclose(res.metrics.epsilon[ci, 0], expected_eps, rtol=1e-6)


def test_a_grid_over_exploration_steps_is_one_group_beside_the_fraction():
    """``exploration_steps`` is traced: the base's fraction and two step counts share one compiled
    program, each combination's epsilon following its own schedule."""
    groups = shape_groups(expand_grid(TINY, {"exploration_steps": [None, 100, 300]}))
    (group,) = groups
    assert [c.config.exploration_fraction for c in group.combinations] == [0.2, None, None]
    np.testing.assert_array_equal(group.hparams.exploration_steps, [0, 100, 300])
    np.testing.assert_array_equal(group.hparams.exploration_fraction, np.float32([0.2, 0, 0]))
    eps = jax.vmap(lambda f, n: epsilon_at(80, 1.0, 0.0, f, TINY.total_timesteps, n))(
        group.hparams.exploration_fraction, group.hparams.exploration_steps)
    np.testing.assert_allclose(eps, [0.0, 0.2, 1 - 80 / 300], atol=1e-6)


def _result(group_index, combos, finals):
    from jaxdqn.sweep import Combination, ShapeGroup

    cs = tuple(Combination(i, {"gamma": g}, TINY.replace(gamma=g)) for i, g in combos)
    group = ShapeGroup(TINY, cs, HParams(*(np.zeros(len(cs)),) * len(HParams._fields)))
    returns = np.asarray(finals, np.float32)[..., None]  # one evaluation episode per seed
    metrics = TrainMetrics(*(np.zeros((len(cs), 2, 1)),) * len(TrainMetrics._fields))
    return GroupResult(group_index, group, metrics, {}, returns)


def test_ranking_is_by_mean_final_return_then_lower_spread_across_groups():
    a = _result(0, [(0, 0.5), (1, 0.6)], [[10.0, 30.0], [20.0, 20.0]])  # means 20 (std 10), 20
    b = _result(1, [(2, 0.7)], [[50.0, 0.0]])  # mean 25
    ranked = rank_combinations([a, b])
    assert [r.combination.index for r in ranked] == [2, 1, 0]
    assert [r.group_index for r in ranked] == [1, 0, 0]
    top = ranked[0]
    assert (top.mean, top.std, top.median, top.min, top.max) == (25.0, 25.0, 25.0, 0.0, 50.0)
