"""preset("cartpole")'s definition and the start-state value that judges its calibration.

How reliably the preset solves CartPole and how well its values are calibrated are statistical
facts measured by scripts/solve_cartpole.py (docs/cartpole_preset.md), not tested here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdqn
from jaxdqn.plotting import value_ceiling


def _linear_params(kernel):
    return {"params": {"Dense_0": {"kernel": jnp.asarray(kernel, jnp.float32)}}}


def test_start_state_value_is_the_mean_max_q_over_reset_states():
    config = jaxdqn.DQNConfig(hidden_sizes=())  # a linear Q: obs @ kernel (no bias)
    kernel = np.array([[1.0, -1.0], [2.0, 0.5], [-3.0, 1.0], [0.0, 4.0]])
    params = _linear_params(kernel)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, jaxdqn.init_q_params(config, jax.random.key(0)))
    key = jax.random.key(3)
    value = jaxdqn.start_state_value(config, params, key, num_states=50)
    env, env_params = jaxdqn.make_env("CartPole-v1")
    obs = np.stack([np.asarray(env.reset(k, env_params)[0]) for k in jax.random.split(key, 50)])
    assert np.all(np.abs(obs) <= 0.05)  # CartPole's reset states
    expected = np.mean(np.max(obs @ kernel, axis=1))
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)
    # A Q that depends on the pole's angle alone, equal for both actions: the mean angle.
    angle = _linear_params(np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))
    assert float(jaxdqn.start_state_value(config, angle, key, 50)) == pytest.approx(
        obs[:, 2].mean(), rel=1e-5)


def test_start_state_value_refuses_no_states():
    config = jaxdqn.DQNConfig(hidden_sizes=())
    with pytest.raises(ValueError, match="num_states=0 is invalid"):
        jaxdqn.start_state_value(config, _linear_params(np.zeros((4, 2))),
                                 jax.random.key(0), 0)


def test_value_ceiling_is_one_over_one_minus_gamma_for_one_reward_per_step():
    assert value_ceiling("CartPole-v1", 0.99) == pytest.approx(100.0)
    assert value_ceiling("CartPole-v1", 0.995) == pytest.approx(200.0)
    assert value_ceiling("CartPole-v1", 1.0) is None  # no finite ceiling
    assert value_ceiling("Acrobot-v1", 0.99) is None  # pays -1 per step: 1/(1-gamma) means nothing


def test_cartpole_preset_definition():
    """The values docs/cartpole_preset.md's fourth round chose, and the loop they make."""
    config = jaxdqn.preset("cartpole")
    assert config.env_id == "CartPole-v1" and config.estimator == "double_dqn"
    assert (config.gamma, config.learning_rate, config.anneal_lr) == (0.99, 1.4e-2, True)
    assert (config.total_timesteps, config.num_envs, config.train_frequency) == (80_000, 8, 8)
    assert (config.batch_size, config.buffer_size, config.learning_starts) == (128, 50_000, 1000)
    assert (config.target_update_freq, config.tau) == (8, 0.02)
    assert (config.end_epsilon, config.exploration_fraction) == (0.05, 0.2)
    assert (config.loss, config.max_grad_norm) == ("mse", None)
    # One gradient step per 8 env steps once 1000 are stored (iterations 124..9999): 9,876
    # steps, each followed by a soft target update theta^- <- 0.02 theta + 0.98 theta^-.
    assert config.num_updates == 10_000 - 124
    assert config.target_update_freq == config.train_frequency
    # The start-state value a calibrated agent reports: 1 / (1 - 0.99).
    assert value_ceiling(config.env_id, config.gamma) == pytest.approx(100.0)
