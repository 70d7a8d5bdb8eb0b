"""MaxBiasMDP (Sutton and Barto, Example 6.7): transitions, rewards, termination, registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn import DQNConfig, known_env_ids, make_env
from jaxdqn.envs.max_bias import (
    MaxBiasMDP,
    MaxBiasParams,
    is_left,
    left_action_fraction,
    true_q_values,
)


@pytest.fixture(scope="module")
def env():
    env, params = make_env("MaxBiasMDP")
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    return env, params, reset, step


def test_registered_and_configurable():
    assert "MaxBiasMDP" in known_env_ids()
    cfg = DQNConfig(env_id="MaxBiasMDP", buffer_size=200, batch_size=32, total_timesteps=1000)
    env, params = make_env(cfg.env_id)
    assert isinstance(env, MaxBiasMDP) and env.num_actions == 10
    assert env.observation_space(params).shape == (2,)


def test_left_is_even_actions_and_fraction():
    assert is_left(jnp.arange(6)).tolist() == [True, False, True, False, True, False]
    assert left_action_fraction(10) == 0.5
    assert left_action_fraction(3) == pytest.approx(2 / 3)
    assert left_action_fraction(2) == 0.5


def test_transitions_from_a(env):
    env, params, reset, step = env
    n = env.num_actions
    obs, state = reset(jax.random.split(jax.random.key(0), n), params)
    np.testing.assert_array_equal(obs, np.tile([1.0, 0.0], (n, 1)))
    action = jnp.arange(n)
    obs, state, reward, terminated, truncated, info = step(
        jax.random.split(jax.random.key(1), n), state, action, params)
    left = np.arange(n) % 2 == 0
    np.testing.assert_array_equal(reward, np.zeros(n))  # both ways out of A pay 0
    np.testing.assert_array_equal(terminated, ~left)  # right ends the episode
    assert not np.any(truncated)
    # Left lands in B; right ends (final obs all zeros) and auto-resets to A.
    np.testing.assert_array_equal(info["final_observation"],
                                  np.where(left[:, None], [0.0, 1.0], [0.0, 0.0]))
    np.testing.assert_array_equal(obs, np.where(left[:, None], [0.0, 1.0], [1.0, 0.0]))


def _rewards_from_b(env, params, reset, step, action, n, seed):
    obs, state = reset(jax.random.split(jax.random.key(seed), n), params)
    keys = jax.random.split(jax.random.key(seed + 1), 2 * n).reshape(2, n)
    _, state, *_ = step(keys[0], state, jnp.zeros(n, jnp.int32), params)  # go left to B
    obs, state, reward, terminated, truncated, _ = step(
        keys[1], state, jnp.full(n, action, jnp.int32), params)
    assert np.all(terminated) and not np.any(truncated)
    np.testing.assert_array_equal(obs, np.tile([1.0, 0.0], (n, 1)))  # reset to A
    return np.asarray(reward, np.float64)


def test_rewards_in_b_are_normal_minus_point_one_one_for_every_action(env):
    env, params, reset, step = env
    n = 20_000
    for action in (0, 3, 9):
        r = _rewards_from_b(env, params, reset, step, action, n, seed=10 * action)
        se = 1.0 / np.sqrt(n)
        assert abs(r.mean() - (-0.1)) < 4 * se, (action, r.mean())
        assert abs(r.std() - 1.0) < 0.03, (action, r.std())
        # Normal shape: about 68.3% within one sd, skew ~ 0.
        assert abs(np.mean(np.abs(r + 0.1) < 1.0) - 0.6827) < 0.015
        assert abs(np.mean(((r - r.mean()) / r.std()) ** 3)) < 0.07


def test_reward_parameters_are_honoured(env):
    env, _, reset, step = env
    params = MaxBiasParams(reward_mean=2.0, reward_std=0.0)
    r = _rewards_from_b(env, params, reset, step, 1, 64, seed=3)
    np.testing.assert_array_equal(r, np.full(64, 2.0))


def test_true_q_values_and_validation():
    assert true_q_values(0.9) == {"A_left": pytest.approx(-0.09), "A_right": 0.0, "B": -0.1}
    assert MaxBiasMDP(num_actions=4).num_actions == 4
    for bad in (1, 0, 2.0, True):
        with pytest.raises(ValueError, match="num_actions"):
            MaxBiasMDP(num_actions=bad)
