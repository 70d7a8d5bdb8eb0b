"""The training loop end to end: probes, determinism, seeds, truncation, target syncs, metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal, stacked_over_keys

import jaxdqn
from jaxdqn import DQNConfig, expected_q, make_q_fn, make_train, make_trainer
from jaxdqn.envs.probes import PROBE_TOLERANCES

SEEDS = jax.random.split(jax.random.key(42), 4)


@pytest.mark.parametrize("probe, tol", PROBE_TOLERANCES.items())
def test_every_probe_learns_its_exact_q_values_for_every_seed(probe, tol):
    cfg = jaxdqn.preset("probes").replace(env_id=probe)
    out = stacked_over_keys(make_train(cfg), SEEDS)
    q_fn = make_q_fn(cfg)
    for obs, q_expected in expected_q(probe, cfg.gamma).items():
        q = jax.vmap(q_fn, in_axes=(0, None))(out.params, jnp.array(obs))
        assert q.shape == (len(SEEDS), len(q_expected))
        legal = ~np.isnan(q_expected)  # an illegal action has no value (Probe6's in [1])
        np.testing.assert_allclose(q[:, legal], np.broadcast_to(q_expected, q.shape)[:, legal],
                                   atol=tol, err_msg=f"{probe} Q({obs})")


@pytest.fixture(scope="module")
def cartpole_small():
    cfg = DQNConfig(total_timesteps=4000, buffer_size=2000, learning_starts=500, batch_size=32,
                    train_frequency=4, num_envs=4, target_update_freq=200, log_interval=400)
    return cfg, jax.jit(make_train(cfg))


def test_same_key_same_result_bit_for_bit_and_legacy_keys_match(cartpole_small):
    cfg, train = cartpole_small
    a = train(jax.random.key(7))
    b = train(jax.random.key(7))
    c = jax.jit(make_train(cfg))(jax.random.PRNGKey(7))  # legacy uint32 key, same stream
    assert_trees_equal(a, b)
    assert_trees_equal(a, c)


def test_vmapped_seeds_really_differ():
    cfg = DQNConfig(total_timesteps=800, buffer_size=400, learning_starts=200, batch_size=32,
                    train_frequency=4, num_envs=4, log_interval=400)
    trainer = make_trainer(cfg)
    states = jax.jit(jax.vmap(trainer.init))(jax.random.split(jax.random.key(0), 3))
    kernels = np.asarray(states.train.params["params"]["Dense_0"]["kernel"])
    assert not np.allclose(kernels[0], kernels[1]) and not np.allclose(kernels[1], kernels[2])
    obs = np.asarray(states.obs)  # env resets differ across seeds and across env copies
    assert not np.allclose(obs[0], obs[1]) and not np.allclose(obs[0, 0], obs[0, 1])
    out = jax.jit(jax.vmap(make_train(cfg)))(jax.random.split(jax.random.key(0), 3))
    returns = np.asarray(out.metrics.episode_return)
    assert not np.allclose(returns[0], returns[1], equal_nan=True)


def _cartpole_step(obs, action):
    """Gymnasium's CartPole-v1 Euler step, by hand."""
    x, x_dot, theta, theta_dot = obs.T
    force = np.where(action == 1, 10.0, -10.0)
    cos, sin = np.cos(theta), np.sin(theta)
    temp = (force + 0.05 * theta_dot**2 * sin) / 1.1
    theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4.0 / 3.0 - 0.1 * cos**2 / 1.1))
    x_acc = temp - 0.05 * theta_acc * cos / 1.1
    return np.stack([x + 0.02 * x_dot, x_dot + 0.02 * x_acc, theta + 0.02 * theta_dot,
                     theta_dot + 0.02 * theta_acc], 1)


def test_truncation_keeps_bootstrapping_and_stores_the_true_final_observation():
    # Episodes cut at 7 steps by the time limit: many truncations, some natural terminations.
    cfg = DQNConfig(total_timesteps=2000, buffer_size=2000, learning_starts=2000, batch_size=32,
                    train_frequency=1, max_episode_steps=7, log_interval=2000)
    trainer = make_trainer(cfg)
    state = trainer.init(jax.random.key(3))
    state, metrics = jax.jit(trainer.run, static_argnums=3)(state, None, 0, cfg.num_log_rows)
    data = jax.tree.map(np.asarray, state.buffer.data)
    # next_obs is the physical successor of obs under the stored action, never an auto-reset obs
    np.testing.assert_allclose(data.next_obs, _cartpole_step(data.obs, data.action), atol=1e-5)
    fell = ((np.abs(data.next_obs[:, 0]) > 2.4)
            | (np.abs(data.next_obs[:, 2]) > 12 * 2 * np.pi / 360))
    np.testing.assert_array_equal(data.terminated, fell)  # only natural ends are terminal
    # Within an episode s' is the next s; across a boundary the next s is a fresh reset.
    continues = np.all(np.isclose(data.next_obs[:-1], data.obs[1:], atol=1e-6), axis=1)
    boundaries = np.flatnonzero(~continues)
    lengths = np.diff(np.concatenate([[-1], boundaries]))
    assert lengths.max() == 7 and (lengths == 7).sum() > 100  # time-limit truncations happened
    truncated_rows = boundaries[lengths == 7]
    assert not data.terminated[truncated_rows[~fell[truncated_rows]]].any()
    # every episode end was counted (the last transition may end one too)
    assert int(metrics.episodes.sum()) - len(boundaries) in (0, 1)


def test_time_limit_on_a_probe_is_not_a_terminal_state():
    # Probe3 cut after one step: (obs 0, reward 0, s' = [1]) must be stored as non-terminal.
    cfg = DQNConfig(env_id="Probe3", total_timesteps=300, buffer_size=300, learning_starts=300,
                    batch_size=32, train_frequency=1, max_episode_steps=1, log_interval=300)
    trainer = make_trainer(cfg)
    state, _ = jax.jit(trainer.run, static_argnums=3)(trainer.init(jax.random.key(0)), None, 0, 1)
    data = jax.tree.map(np.asarray, state.buffer.data)
    np.testing.assert_array_equal(data.obs, 0.0)
    np.testing.assert_array_equal(data.next_obs, 1.0)  # the true final obs, not the reset [0]
    assert not data.terminated.any() and np.all(data.reward == 0.0)


def test_target_sync_schedule_by_hand():
    # target_update_freq=300, iterations of 4 env steps: syncs at the iterations that cross 300,
    # 600, 900.
    # After the run (1000 steps), the last sync was at ~900: 25 updates have moved params since.
    cfg = DQNConfig(env_id="Probe4", total_timesteps=1000, buffer_size=500, learning_starts=200,
                    batch_size=32, train_frequency=4, target_update_freq=300, log_interval=500)
    trainer = make_trainer(cfg)
    run = jax.jit(trainer.run, static_argnums=3)
    hp = jaxdqn.HParams.from_config(cfg)  # traced: the replay below is the same program
    state = trainer.init(jax.random.key(1))
    state, _ = run(state, hp, 0, 1)  # 500 steps: last sync in the iteration ending at 300
    s1 = state
    state, _ = run(state, hp, 1, 1)  # to 1000 steps: syncs at 600 and 900
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, state.train.params,
                                                state.train.target_params)))
    # Replaying the second half with target_update_freq=100 (4 steps per iteration divide 1000)
    # ends synced.
    synced, _ = run(s1, hp._replace(target_update_freq=100), 1, 1)
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, synced.train.params,
                                            synced.train.target_params)))


def test_metrics_rows(cartpole_small):
    cfg, train = cartpole_small
    m = train(jax.random.key(0)).metrics
    assert m.env_steps.shape == (cfg.num_log_rows,) == (10,)
    np.testing.assert_array_equal(m.env_steps, np.arange(1, 11) * 400)
    # first gradient step after the iteration whose end holds 500 transitions
    assert int(m.updates[-1]) == cfg.num_updates == 4000 // 4 - (500 // 4 - 1)
    assert np.isnan(m.td_loss[0]) and np.all(np.isfinite(m.td_loss[2:]))
    expected_eps = [jaxdqn.epsilon_at(s, 1.0, 0.1, 0.2, 4000) for s in np.asarray(m.env_steps)]
    np.testing.assert_allclose(m.epsilon, expected_eps, rtol=1e-6)
    assert int(m.episodes.sum()) > 0
    # CartPole pays +1 per step, so each row's mean return is its mean episode length
    np.testing.assert_allclose(m.episode_return, m.episode_length, rtol=1e-6)


def test_short_cartpole_run_learns_far_above_random():
    cfg = DQNConfig(total_timesteps=30_000, num_envs=4, train_frequency=4, batch_size=64,
                    buffer_size=10_000, learning_starts=1000, learning_rate=1e-3,
                    target_update_freq=400, exploration_fraction=0.2, end_epsilon=0.02)
    keys = jax.random.split(jax.random.key(0), 2)
    out = stacked_over_keys(make_train(cfg), keys)
    returns = jax.jit(jax.vmap(lambda p, k: jaxdqn.evaluate(cfg, p, k, 20)))(out.params, keys)
    assert float(returns.mean()) > 100  # a random policy averages ~22


def test_evaluate_greedy_by_hand():
    cfg = DQNConfig(env_id="Probe4", hidden_sizes=(4,), buffer_size=256, learning_starts=128)
    params = jax.tree.map(jnp.zeros_like, jaxdqn.init_q_params(cfg, jax.random.key(0)))

    def with_head_bias(bias):
        p = jax.tree.map(lambda x: x, params)
        p["params"]["Dense_1"]["bias"] = jnp.array(bias)
        return p

    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), with_head_bias([0.0, 1.0]),
                        with_head_bias([1.0, 0.0]))
    returns = jax.jit(jax.vmap(lambda p, k: jaxdqn.evaluate(cfg, p, k, 5)))(
        both, jax.random.split(jax.random.key(0), 2))
    np.testing.assert_array_equal(returns, [[1.0] * 5, [-1.0] * 5])
    with pytest.raises(ValueError, match="num_episodes=0"):
        jaxdqn.evaluate(cfg, params, jax.random.key(0), 0)


def test_exploration_steps_fix_the_decay_whatever_the_run_length():
    """A short run with ``exploration_steps`` decays epsilon over those steps (with the fraction,
    a short run also shortens exploration), in the loop's actions and in its metric rows."""
    cfg = DQNConfig(env_id="Probe1", total_timesteps=400, buffer_size=100, learning_starts=32,
                    batch_size=16, train_frequency=1, target_update_freq=50, hidden_sizes=(4,),
                    log_interval=50, end_epsilon=0.0, exploration_steps=300)
    m = jax.jit(make_train(cfg))(jax.random.key(0)).metrics
    np.testing.assert_allclose(m.epsilon, np.maximum(1 - np.asarray(m.env_steps) / 300, 0.0),
                               atol=1e-6)
    longer = cfg.replace(total_timesteps=800)
    m_longer = jax.jit(make_train(longer))(jax.random.key(0)).metrics
    np.testing.assert_array_equal(m_longer.epsilon[:8], m.epsilon)
    by_fraction = jax.jit(make_train(cfg.replace(exploration_fraction=0.75)))(jax.random.key(0))
    assert_trees_equal(by_fraction.metrics, m)  # 0.75 * 400 = 300: the same schedule and run
