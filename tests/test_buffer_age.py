"""buffer_age_metrics: the step and behaviour probability stored with each transition, and the
age, off-policy fraction and importance ratio of sampled minibatches, against hand-computed
values."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn import DQNConfig, make_trainer
from jaxdqn.buffer import Transition, buffer_add, buffer_init
from jaxdqn.loggers import scalar_rows
from jaxdqn.memory import transition_bytes
from jaxdqn.policy import epsilon_greedy, epsilon_greedy_probability
from jaxdqn.runs import concat_metrics
from jaxdqn.train import HParams, Loop, TrainMetrics, sampled_replay_age

# Two CartPole copies, 3 vector steps (global steps 0..5), no gradient step, epsilon from 1 to 0
# over 4 steps: the vector steps at global steps 0, 2, 4 act with epsilon 1, 0.5, 0.
HAND = DQNConfig(total_timesteps=6, num_envs=2, train_frequency=2, buffer_size=8, batch_size=1,
                 learning_starts=8, start_epsilon=1.0, end_epsilon=0.0, exploration_steps=4,
                 hidden_sizes=(4,), log_interval=6, buffer_age_metrics=True)


def constant_q_params(config, key):
    """Params whose Q-values are ``[0, 1]`` at every observation: action 1 is greedy."""
    params = jax.tree.map(jnp.zeros_like, make_trainer(config).init(key).train.params)
    params["params"]["Dense_1"]["bias"] = jnp.array([0.0, 1.0])
    return params


@pytest.fixture(scope="module")
def hand_run():
    trainer = make_trainer(HAND)
    state = trainer.init(jax.random.PRNGKey(3))
    params = constant_q_params(HAND, jax.random.PRNGKey(3))
    state = state._replace(train=state.train._replace(params=params, target_params=params))
    state, metrics = jax.jit(trainer.run, static_argnums=3)(state, None, 0, 1)
    return state, metrics


def test_each_transition_stores_its_step_and_the_behaviour_probability_of_its_action(hand_run):
    state, metrics = hand_run
    data = state.buffer.data
    np.testing.assert_array_equal(data.step, [0, 1, 2, 3, 4, 5, 0, 0])
    action = np.asarray(data.action)
    # epsilon 1: either action 1/2; epsilon 0.5: 0.5/2 + 0.5 for the greedy action 1, 0.5/2 for
    # action 0; epsilon 0: the greedy action with probability 1
    expected = [0.5, 0.5, *(0.75 if a == 1 else 0.25 for a in action[2:4]), 1.0, 1.0, 0.0, 0.0]
    np.testing.assert_allclose(data.behaviour_prob, expected, rtol=1e-6)
    np.testing.assert_array_equal(action[4:6], [1, 1])
    # no gradient step in the row: the replay columns are NaN, like td_loss
    for column in (metrics.sample_age, metrics.sample_age_p90, metrics.off_policy_fraction,
                   metrics.importance_ratio, metrics.trace_coefficient, metrics.td_loss):
        assert np.isnan(column).all()


def test_sampled_ages_count_from_the_newest_transition_and_pi_uses_the_current_epsilon():
    # epsilon decays over 8 steps here: after 6 stored steps, the next step's epsilon is 0.25
    config = HAND.replace(buffer_size=4, exploration_steps=8)
    loop = Loop.of(config)
    params = constant_q_params(config, jax.random.PRNGKey(0))
    buffer = buffer_init(4, (4,), behaviour=True)
    for first in (0, 3):  # steps 0..5 into 4 slots: slots hold steps 4, 5, 2, 3
        buffer = buffer_add(buffer, Transition(
            obs=jnp.zeros((3, 4)), action=jnp.array([1, 0, 1]), reward=jnp.zeros(3),
            terminated=jnp.zeros(3, bool), next_obs=jnp.zeros((3, 4)),
            step=first + jnp.arange(3), behaviour_prob=jnp.array([0.625, 0.5, 0.5])))
    np.testing.assert_array_equal(buffer.data.step, [4, 5, 2, 3])
    stats = sampled_replay_age(loop, HParams.from_config(config), buffer, buffer.data, params)
    # ages 1, 0, 3, 2; the 90th percentile interpolates between the sorted ages 2 and 3 at 0.7
    np.testing.assert_allclose(stats.sample_age, 1.5)
    np.testing.assert_allclose(stats.sample_age_p90, 2.7, rtol=1e-6)
    # slot 0: step 4, action 0, mu 0.5; slot 1: step 5, action 1, mu 0.5; slot 2: step 2,
    # action 1, mu 0.5; slot 3: step 3, action 1, mu 0.625
    np.testing.assert_array_equal(buffer.data.action, [0, 1, 1, 1])
    np.testing.assert_allclose(stats.off_policy_fraction, 0.25)
    # pi(1) = 0.25/2 + 0.75 = 0.875, pi(0) = 0.25/2 = 0.125
    ratios = [0.125 / 0.5, 0.875 / 0.5, 0.875 / 0.5, 0.875 / 0.625]
    np.testing.assert_allclose(stats.importance_ratio, 1.2875, rtol=1e-6)
    np.testing.assert_allclose(np.mean(ratios), 1.2875)
    np.testing.assert_allclose(stats.trace_coefficient, (0.25 + 1 + 1 + 1) / 4, rtol=1e-6)


@pytest.mark.parametrize("replay", [{}, {"n_step": 3, "prioritized": True}])
def test_greedy_behaviour_and_an_unchanging_policy_are_on_policy(replay):
    """Epsilon 0 throughout and a step size too small to move any parameter: every sampled action
    is the current greedy one, pi = mu = 1 (with n-step windows: their first action)."""
    config = DQNConfig(total_timesteps=2000, num_envs=4, train_frequency=4, buffer_size=500,
                       batch_size=32, learning_starts=404, log_interval=400, start_epsilon=0.0,
                       end_epsilon=0.0, optimizer="sgd", learning_rate=1e-30, hidden_sizes=(16,),
                       buffer_age_metrics=True, **replay)
    trainer = make_trainer(config)
    key = jax.random.PRNGKey(0)
    out = jax.jit(trainer.train)(key)
    m = out.metrics
    assert np.isnan(m.off_policy_fraction[0]) and np.isnan(m.sample_age[0])  # no update yet
    np.testing.assert_array_equal(m.off_policy_fraction[1:], 0.0)
    np.testing.assert_array_equal(m.importance_ratio[1:], 1.0)
    np.testing.assert_array_equal(m.trace_coefficient[1:], 1.0)
    # the buffer is full from row 2 on: ages lie in [0, 499], their mean near 249.5
    assert (m.sample_age_p90[2:] <= 499).all() and (abs(m.sample_age[2:] - 249.5) < 60).all()
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-20), out.params,
                 trainer.init(key).train.params)


@pytest.mark.parametrize("legal, tie_break, expected", [
    # q = [1, 3, 3, 0], epsilon 0.4
    (None, False, [0.1, 0.7, 0.1, 0.1]),  # greedy: action 1, the lowest of the tied maxima
    (None, True, [0.1, 0.4, 0.4, 0.1]),  # the tied maxima share 0.6
    ([True, True, True, False], False, [0.4 / 3, 0.4 / 3 + 0.6, 0.4 / 3, 0.0]),
    ([True, True, True, False], True, [0.4 / 3, 0.4 / 3 + 0.3, 0.4 / 3 + 0.3, 0.0]),
    ([True, False, False, True], False, [0.2 + 0.6, 0.0, 0.0, 0.2]),
])
def test_behaviour_probability_matches_epsilon_greedy(legal, tie_break, expected):
    n = 200_000
    q = jnp.broadcast_to(jnp.array([1.0, 3.0, 3.0, 0.0]), (n, 4))
    mask = None if legal is None else jnp.broadcast_to(jnp.array(legal), (n, 4))
    prob = epsilon_greedy_probability(q[:4], jnp.arange(4), 0.4,
                                      None if mask is None else mask[:4], tie_break)
    np.testing.assert_allclose(prob, expected, rtol=1e-6)
    actions = epsilon_greedy(jax.random.PRNGKey(1), q, 0.4, mask, tie_break)
    frequency = np.bincount(np.asarray(actions), minlength=4) / n
    np.testing.assert_allclose(frequency, expected, atol=5 * np.sqrt(0.25 / n))


def test_off_the_buffer_and_the_metrics_are_those_without_the_option():
    off = HAND.replace(buffer_age_metrics=False)
    shapes = {}
    for config in (off, HAND):
        trainer = make_trainer(config)
        state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
        shapes[config.buffer_age_metrics] = state, jax.eval_shape(
            functools.partial(trainer.run, num_rows=1), state, None, 0)[1]
    (state, metrics), (state_on, metrics_on) = shapes[False], shapes[True]
    assert state.buffer.data.step is None and state.buffer.data.behaviour_prob is None
    assert len(jax.tree.leaves(state.buffer.data)) == 5
    assert state_on.buffer.data.step.dtype == jnp.int32
    assert transition_bytes(HAND) - transition_bytes(off) == 8  # an i32 step and an f32 prob
    assert list(metrics.columns()) == [f for f in TrainMetrics._fields
                                       if f not in TrainMetrics._field_defaults]
    assert concat_metrics([_numpy(metrics)] * 2, 1).sample_age is None
    assert list(metrics_on.columns())[-5:] == ["sample_age", "sample_age_p90",
                                               "off_policy_fraction", "importance_ratio",
                                               "trace_coefficient"]


def _numpy(metrics):
    return jax.tree.map(lambda x: np.zeros((1, *x.shape), x.dtype), metrics)


def test_loggers_write_the_replay_columns_a_run_has():
    rows = TrainMetrics(**{f: np.ones((1, 1), np.float32) for f in TrainMetrics._fields
                           if f not in TrainMetrics._field_defaults})
    tags = [set(v) for _, _, v in scalar_rows(rows)]
    assert not any(t.startswith("replay/") for t in tags[0])
    on = rows._replace(sample_age=np.full((1, 1), 7.0), sample_age_p90=np.full((1, 1), 9.0),
                       off_policy_fraction=np.full((1, 1), 0.5),
                       importance_ratio=np.full((1, 1), np.nan))
    (_, _, values), = scalar_rows(on)
    assert {k: v for k, v in values.items() if k.startswith("replay/")} == {
        "replay/sample_age": 7.0, "replay/sample_age_p90": 9.0,
        "replay/off_policy_fraction": 0.5}  # NaN left out


def test_the_flag_must_be_a_bool():
    with pytest.raises(ValueError, match=r"^DQNConfig\.buffer_age_metrics='yes' is invalid: "
                                         "must be True or False$"):
        DQNConfig(buffer_age_metrics="yes")
