"""Measured maximization bias: returns-to-go and Q - G on hand-built trajectories, the evaluation
rollout on a probe with hand-set weights, and DQN against Double DQN on MaxBiasMDP."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_close

from jaxdqn import DQNConfig, init_q_params, make_trainer
from jaxdqn.bias import (
    BiasStats,
    Trajectory,
    ValueEvalSpec,
    bootstrap_ci,
    make_max_bias_probe,
    make_value_estimator,
    make_value_study,
    measure_bias,
    realised_left_fraction,
    return_was_cut,
    returns_to_go,
    tail_bound,
    tail_steps,
    value_eval_spec,
)
from jaxdqn.train import TrainMetrics

# Two episodes and a piece of a third in one column, gamma = 0.5 (exact in float32):
#   t:        0    1    2  |  3    4  |  5
#   reward:   1    2    4  |  8    0  |  2
#   end:           terminated   truncated   (runs off the end)
#   G:        3    4    4  |  8    0  |  2        G_0 = 1 + .5 * (2 + .5 * 4); G_3 = 8 + .5 * 0
#   Q:      3.5    4    3  |  9    1  |  2
HAND = dict(
    reward=[1.0, 2.0, 4.0, 8.0, 0.0, 2.0],
    terminated=[False, False, True, False, False, False],
    truncated=[False, False, False, False, True, False],
    q_taken=[3.5, 4.0, 3.0, 9.0, 1.0, 2.0],
    g=[3.0, 4.0, 4.0, 8.0, 0.0, 2.0],
    cut=[False, False, False, True, True, True],
)


def hand_trajectory(columns=1):
    col = lambda name, dtype: jnp.asarray(np.tile(np.asarray(HAND[name])[:, None],  # noqa: E731
                                                  (1, columns)), dtype)
    return Trajectory(q_taken=col("q_taken", jnp.float32), reward=col("reward", jnp.float32),
                      terminated=col("terminated", bool), truncated=col("truncated", bool))


def test_returns_to_go_are_exact_and_stop_at_every_episode_end():
    traj = hand_trajectory()
    done = jnp.logical_or(traj.terminated, traj.truncated)
    g = returns_to_go(traj.reward, done, 0.5)
    np.testing.assert_array_equal(g[:, 0], HAND["g"])
    np.testing.assert_array_equal(return_was_cut(traj.terminated, traj.truncated)[:, 0],
                                  HAND["cut"])
    # gamma = 1: plain sums within each episode.
    np.testing.assert_array_equal(returns_to_go(traj.reward, done, 1.0)[:, 0],
                                  [7.0, 6.0, 4.0, 8.0, 0.0, 2.0])


def test_measure_bias_is_exact_on_the_hand_built_trajectory():
    traj = hand_trajectory()
    stats = jax.jit(measure_bias)(traj, 0.5, jnp.ones((6, 1), bool))
    # Q - G = [0.5, 0, -1, 1, 1, 0]
    expected = BiasStats(q_mean=22.5 / 6, g_mean=21.0 / 6, bias=1.5 / 6, num_states=6,
                         cut_fraction=0.5)
    for name, value in expected._asdict().items():
        assert float(getattr(stats, name)) == pytest.approx(value, abs=1e-6), name
    first_four = jnp.asarray([True, True, True, True, False, False])[:, None]
    stats = measure_bias(traj, 0.5, first_four)
    assert float(stats.bias) == pytest.approx(0.125, abs=1e-7)
    assert float(stats.cut_fraction) == 0.25 and int(stats.num_states) == 4
    assert math.isnan(float(measure_bias(traj, 0.5, jnp.zeros((6, 1), bool)).bias))


def test_measure_bias_pools_columns_as_states():
    two = hand_trajectory(2)
    mask = jnp.asarray(np.array([[True, True, True, True, True, True],
                                 [False, False, False, True, False, False]]).T)
    stats = measure_bias(two, 0.5, mask)
    assert int(stats.num_states) == 7
    assert float(stats.bias) == pytest.approx((1.5 + 1.0) / 7, abs=1e-6)


def test_tail_steps_and_default_spec_bound_the_cut_tail():
    n = tail_steps(0.99, 1e-4)
    assert 0.99**n / 0.01 <= 1e-4 < 0.99 ** (n - 1) / 0.01
    cfg = DQNConfig(total_timesteps=1000, buffer_size=500, learning_starts=500)
    spec = value_eval_spec(cfg)
    assert spec.measure_steps == 500 and spec.horizon == 500 + n and spec.epsilon == 0.0
    assert tail_bound(0.99, spec) <= 1e-4
    assert tail_bound(1.0, spec) == math.inf
    with pytest.raises(ValueError, match="horizon=10"):
        value_eval_spec(cfg, measure_steps=20, horizon=10)
    with pytest.raises(ValueError, match=r"num_episodes=0"):
        value_eval_spec(cfg, num_episodes=0)
    with pytest.raises(ValueError, match=r"epsilon=1\.5"):
        value_eval_spec(cfg, epsilon=1.5)


def _probe3_params(cfg):
    """Weights giving Q([0]) = 0.75 and Q([1]) = 1.25: hidden unit 0 = relu(obs + 1), others 0."""
    params = init_q_params(cfg, jax.random.key(0))
    p = jax.tree.map(jnp.zeros_like, params)["params"]
    p["Dense_0"]["kernel"] = p["Dense_0"]["kernel"].at[0, 0].set(1.0)
    p["Dense_0"]["bias"] = p["Dense_0"]["bias"].at[0].set(1.0)
    p["Dense_1"]["kernel"] = p["Dense_1"]["kernel"].at[0, 0].set(0.5)
    p["Dense_1"]["bias"] = p["Dense_1"]["bias"].at[0].set(0.25)
    return {"params": p}


def test_value_estimator_on_probe3_with_hand_set_weights():
    # Probe3: [0] -(reward 0)-> [1] -(reward 1)-> end. With gamma = 0.5: G = 0.5 then 1.
    cfg = DQNConfig(env_id="Probe3", gamma=0.5, hidden_sizes=(4,), total_timesteps=100,
                    buffer_size=100, batch_size=10)
    params = _probe3_params(cfg)
    full = make_value_estimator(cfg, ValueEvalSpec(num_episodes=3, measure_steps=8, horizon=8))
    est = jax.jit(full)(params, jax.random.key(1), 0.5)
    assert int(est.stats.num_states) == 6  # 2 steps per episode; auto-reset steps masked
    assert float(est.stats.q_mean) == pytest.approx(1.0)
    assert float(est.stats.g_mean) == pytest.approx(0.75)
    assert float(est.stats.bias) == pytest.approx(0.25)
    assert float(est.stats.cut_fraction) == 0.0 and float(est.eval_return) == 1.0
    first = make_value_estimator(cfg, ValueEvalSpec(num_episodes=3, measure_steps=1, horizon=8))
    est = first(params, jax.random.key(1), 0.5)
    assert int(est.stats.num_states) == 3
    assert float(est.stats.bias) == pytest.approx(0.75 - 0.5)
    # A horizon of 1 truncates every episode after its first step: G = 0 there, flagged as cut.
    cut = make_value_estimator(cfg, ValueEvalSpec(num_episodes=3, measure_steps=1, horizon=1))
    est = cut(params, jax.random.key(1), 0.5)
    assert float(est.stats.g_mean) == 0.0 and float(est.stats.cut_fraction) == 1.0


def test_max_bias_probe_on_hand_set_q_values():
    cfg = DQNConfig(env_id="MaxBiasMDP", hidden_sizes=(4,), total_timesteps=100,
                    buffer_size=100, batch_size=10)
    params = jax.tree.map(jnp.zeros_like, init_q_params(cfg, jax.random.key(0)))
    head = jnp.asarray([0.1, 0.3, 0.5, -0.2, 0.0, 0.2, 0.4, 0.1, -1.0, 0.45])  # Q = head everywhere
    params["params"]["Dense_1"]["bias"] = head
    probe = make_max_bias_probe(cfg)(params, 0.1)
    assert float(probe.left_prob) == pytest.approx(0.9 + 0.1 * 0.5)  # argmax 2 is even: left
    assert float(probe.q_a_left) == pytest.approx(0.5)
    assert float(probe.q_a_right) == pytest.approx(0.45)
    assert float(probe.q_b_max) == pytest.approx(0.5)
    params["params"]["Dense_1"]["bias"] = head.at[9].set(0.9)  # argmax 9 is odd: right
    assert float(make_max_bias_probe(cfg)(params, 0.1).left_prob) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="MaxBiasMDP"):
        make_max_bias_probe(cfg.replace(env_id="Probe4"))


def test_realised_left_fraction_from_episode_lengths():
    nan = float("nan")
    metrics = TrainMetrics(*[jnp.zeros(4)] * len(TrainMetrics._fields))._replace(
        episodes=jnp.asarray([2, 3, 0, 4]), episode_length=jnp.asarray([1.5, 2.0, nan, 1.0]))
    np.testing.assert_allclose(realised_left_fraction(metrics, 2), [4 / 5, 0.0])
    with pytest.raises(ValueError, match="num_segments=3"):
        realised_left_fraction(metrics, 3)


def test_bootstrap_ci():
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    x = np.random.default_rng(0).normal(1.0, 2.0, size=400)
    mean, low, high = bootstrap_ci(x, seed=1)
    assert low < mean < high and bootstrap_ci(x, seed=1) == (mean, low, high)
    assert (high - low) == pytest.approx(2 * 1.96 * x.std() / 20, rel=0.1)
    with pytest.raises(ValueError, match="values"):
        bootstrap_ci([1.0, float("nan")])


# MaxBiasMDP, as in scripts/max_bias.py but 2000 steps: DQN's bootstrapped max over B's noisy
# action values makes "left" look better than it is; Double DQN's decoupled target much less so.
MDP = dict(env_id="MaxBiasMDP", total_timesteps=2000, buffer_size=200, batch_size=32, gamma=1.0,
           learning_rate=1e-3, target_update_freq=400, start_epsilon=0.1, end_epsilon=0.1,
           exploration_fraction=1.0, learning_starts=100, train_frequency=1, num_envs=1,
           hidden_sizes=(32,), log_interval=200)
SEGMENTS = 10
SEEDS = jax.random.split(jax.random.key(0), 8)


@pytest.fixture(scope="module")
def mdp_studies():
    out = {}
    for double_q in (False, True):
        cfg = DQNConfig(estimator="double_dqn" if double_q else "dqn", **MDP)
        spec = value_eval_spec(cfg, num_episodes=512, epsilon=0.1)
        study = make_value_study(cfg, spec, SEGMENTS, make_max_bias_probe(cfg))
        out[double_q] = (cfg, jax.jit(jax.vmap(study))(SEEDS))
    return out


def test_dqn_overestimates_and_goes_left_more_than_double_dqn(mdp_studies):
    (_, dqn), (_, ddqn) = mdp_studies[False], mdp_studies[True]
    bias = {k: np.asarray(v[1].points.value.stats.bias).mean(1) for k, v in mdp_studies.items()}
    left = {k: np.nanmean(np.asarray(realised_left_fraction(v[1].metrics, SEGMENTS)), 1)
            for k, v in mdp_studies.items()}
    p_left = {k: np.asarray(v[1].points.probe.left_prob).mean(1) for k, v in mdp_studies.items()}
    # Seed sets key(0) .. key(7), 8 seeds each, gave DQN bias 0.15-0.23 against 0.06-0.12 (gap
    # 0.085-0.14), realised left fraction gap 0.22-0.40, P(left) gap 0.21-0.50. This is key(0):
    # gaps 0.13, 0.40, 0.50.
    assert bias[False].mean() > 0.1
    assert bias[False].mean() > bias[True].mean() + 0.05, bias
    assert left[False].mean() > left[True].mean() + 0.15, left
    assert p_left[False].mean() > p_left[True].mean() + 0.15, p_left
    assert dqn.points.env_steps.shape == (8, SEGMENTS)
    np.testing.assert_array_equal(dqn.points.env_steps[0], np.arange(1, SEGMENTS + 1) * 200)
    assert np.all(np.diff(np.asarray(ddqn.points.episodes), axis=1) > 0)


def test_study_trains_exactly_the_agent_the_trainer_trains(mdp_studies):
    cfg, out = mdp_studies[False]
    train_key, _ = jax.random.split(SEEDS[3])
    direct = jax.jit(make_trainer(cfg).train)(train_key)
    assert_trees_close(direct.params, jax.tree.map(lambda x: x[3], out.params), rtol=1e-5,
                       atol=1e-6)
    np.testing.assert_array_equal(direct.metrics.episodes, out.metrics.episodes[3])
    with pytest.raises(ValueError, match="num_segments=3"):
        make_value_study(cfg, value_eval_spec(cfg), 3)
