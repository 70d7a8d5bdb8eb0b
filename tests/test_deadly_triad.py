"""TriadMDP (Sutton and Barto's "w, 2w", section 11.2, as a control problem): its transitions, one
semi-gradient Q-learning step computed by hand, the tabular run converging to Q*, and the on- and
off-policy runs on either side of the derived threshold."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import stacked_over_keys

from jaxdqn import DQNConfig, known_env_ids, make_env
from jaxdqn.buffer import Transition
from jaxdqn.envs.deadly_triad import (
    expected_growth,
    go_probability,
    on_policy_fixed_point,
    optimal_q,
)
from jaxdqn.networks import make_q_fn
from jaxdqn.train import make_train
from jaxdqn.update import TrainState, make_optimizer, make_td_update

GAMMA = 0.99
LINEAR = dict(hidden_sizes=(), optimizer="sgd", gamma=GAMMA, batch_size=32, train_frequency=1,
              target_update_freq=1, learning_starts=100, start_epsilon=1.0, end_epsilon=1.0)


@pytest.fixture(scope="module")
def stepper():
    def make(env_id):
        env, params = make_env(env_id)
        step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
        reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
        return env, params, reset, step

    return {env_id: make(env_id) for env_id in ("TriadMDP", "TriadMDP-tabular", "TriadMDP-mc")}


def test_registered():
    assert {"TriadMDP", "TriadMDP-tabular", "TriadMDP-mc"} <= set(known_env_ids())
    env, _ = make_env("TriadMDP")
    assert env.num_actions == 8


@pytest.mark.parametrize("env_id, phi_a, phi_b, end, pays", [
    ("TriadMDP", [1.0], [2.0], [0.0], (0.0, 1.0)),
    ("TriadMDP-tabular", [1.0, 0.0], [0.0, 1.0], [0.0, 0.0], (0.0, 1.0)),
    ("TriadMDP-mc", [1.0], [2.0], [0.0], (1.0, 1.0)),
])
def test_go_waits_and_the_end(stepper, env_id, phi_a, phi_b, end, pays):
    env, params, reset, step = stepper[env_id]
    n = env.num_actions
    obs, state = reset(jax.random.split(jax.random.key(0), n), params)
    np.testing.assert_array_equal(obs, np.tile(phi_a, (n, 1)))
    keys = jax.random.split(jax.random.key(1), 2 * n).reshape(2, n)
    obs, state, reward, terminated, truncated, _ = step(keys[0], state, jnp.arange(n), params)
    go = np.arange(n) == 0  # action 0 goes to B, the others wait in A
    np.testing.assert_array_equal(obs, np.where(go[:, None], phi_b, phi_a))
    np.testing.assert_array_equal(reward, np.full(n, pays[0]))
    assert not np.any(terminated) and not np.any(truncated)
    # From B (only the first copy is there) every action ends the episode.
    obs, state, reward, terminated, _, info = step(keys[1], state, jnp.full(n, 5), params)
    assert terminated.tolist() == go.tolist()
    assert reward[0] == pays[1]
    np.testing.assert_array_equal(info["final_observation"][0], end)
    np.testing.assert_array_equal(obs[0], phi_a)  # reset to A


@pytest.fixture(scope="module")
def td_update():
    config = DQNConfig(env_id="TriadMDP", total_timesteps=1000, buffer_size=1000,
                       learning_rate=0.1, **LINEAR)
    optimizer = make_optimizer(config)
    return make_td_update(config, make_q_fn(config), optimizer), optimizer


def test_one_expected_step_by_hand(td_update):
    """Under epsilon = 1 replay holds (A, a) with weight 1/9 and (B, a) with 1/72 for each a: a
    batch of 8 of each (A, a) and 1 of each (B, a) makes the SGD step the expected one.

    From W = 1 (every action), lr 0.1, half squared error:
      row 0 (go):   (8 * (0 + 0.99 * 2 * 1 - 1) * 1 + 1 * (1 - 2 * 1) * 2) / 72 = 5.84 / 72
      row j (wait): (8 * (0 + 0.99 * 1 * 1 - 1) * 1 + 1 * (1 - 2 * 1) * 2) / 72 = -2.08 / 72
    so W[0] = 1 + 0.1 * 5.84 / 72 = 1.0081111 and W[j] = 1 - 0.1 * 2.08 / 72 = 0.9971111: the
    greedy row grows (the wait rows' 1.0 is also max_a Q(A, a), their target)."""
    update, optimizer = td_update
    a = np.repeat(np.arange(8), 8)
    b = np.arange(8)
    obs = np.concatenate([np.ones(64), np.full(8, 2.0)])[:, None].astype(np.float32)
    next_obs = np.concatenate([np.where(a == 0, 2.0, 1.0), np.zeros(8)])[:, None]
    batch = Transition(obs=jnp.asarray(obs), action=jnp.asarray(np.concatenate([a, b]), jnp.int32),
                       reward=jnp.asarray(np.concatenate([np.zeros(64), np.ones(8)]), jnp.float32),
                       terminated=jnp.asarray(np.arange(72) >= 64),
                       next_obs=jnp.asarray(next_obs, jnp.float32))
    params = {"params": {"Dense_0": {"kernel": jnp.ones((1, 8), jnp.float32)}}}
    state = TrainState(params=params, target_params=params, opt_state=optimizer.init(params))
    state, _ = update(state, batch, GAMMA)
    w = np.asarray(state.params["params"]["Dense_0"]["kernel"])[0]
    np.testing.assert_allclose(w[0], 1.0081111, rtol=0, atol=1e-6)
    np.testing.assert_allclose(w[1:], 0.9971111, rtol=0, atol=1e-6)
    # The same step from the module's formula: lr * g/(1+g) * ((2 gamma - 1 - 4 g) w + 2 g).
    g = go_probability(1.0)
    assert g == 1 / 8
    assert 1 + 0.1 * (expected_growth(GAMMA, g) + 2 * g * g / (1 + g)) == pytest.approx(
        1.0081111, abs=1e-6)


def test_tabular_run_converges_to_the_hand_values():
    """One-hot features: Q-learning reaches Q*(B, .) = 1, Q*(A, go) = 0.99 and
    Q*(A, wait) = 0.99 * 0.99 = 0.9801 (deterministic MDP: constant steps converge exactly)."""
    config = DQNConfig(env_id="TriadMDP-tabular", total_timesteps=6000, buffer_size=1000,
                       learning_rate=0.2, **LINEAR)
    out = jax.jit(make_train(config))(jax.random.key(0))
    table = np.asarray(out.params["params"]["Dense_0"]["kernel"])  # [state, action]
    assert optimal_q(GAMMA) == {"A": [0.99] + [0.9801] * 7, "B": [1.0] * 8}
    np.testing.assert_allclose(table[0], [0.99] + [0.9801] * 7, atol=1e-3)
    np.testing.assert_allclose(table[1], [1.0] * 8, atol=1e-3)


def test_off_policy_features_diverge_and_on_policy_settle():
    """The same features and lr 0.05: epsilon = 1 (g = 1/8 < 0.245) grows the greedy row by
    about e^(0.05 * 0.0533) per update, past 1e3 within 5000 steps; epsilon = 0 (g = 1) settles
    W[0] at 2 / (5 - 2 * 0.99) = 0.662 with the wait rows untouched."""
    base = DQNConfig(env_id="TriadMDP", total_timesteps=5000, buffer_size=1000,
                     learning_rate=0.05, **LINEAR)
    keys = jax.random.split(jax.random.key(3), 2)
    off = stacked_over_keys(make_train(base), keys)
    w_off = np.asarray(off.params["params"]["Dense_0"]["kernel"])[:, 0]
    assert np.all(w_off[:, 0] > 1e3) and np.all(w_off[:, 0] == w_off.max(axis=1))
    on = stacked_over_keys(make_train(base.replace(start_epsilon=0.0, end_epsilon=0.0)), keys)
    w_on = np.asarray(on.params["params"]["Dense_0"]["kernel"])[:, 0]
    assert on_policy_fixed_point(GAMMA) == pytest.approx(0.662, abs=1e-3)
    np.testing.assert_allclose(w_on[:, 0], 0.662, atol=0.04)
    np.testing.assert_array_equal(w_on[:, 1:], 0.0)
