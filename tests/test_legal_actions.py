"""Legal actions where they are easy to drop unseen: the TD target's max and argmax at ``s'``
(Probe6 is the one shipped env whose next state has an illegal action) and greedy evaluation on
the book's MaxBiasMDP. Each test fails if the mask is dropped at that place."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdqn import (
    DQNConfig,
    Transition,
    evaluate_episodes,
    init_train_state,
    make_env,
    make_td_update,
)
from jaxdqn.envs import legal_actions_fn
from jaxdqn.evaluation import start_state_value
from jaxdqn.networks import make_q_fn

# Probe6 with a linear Q: Q([1]) = [-1, 5], and action 1 is illegal in [1]. From s = [0] with
# reward 0 into s' = [1] the target is gamma * max over legal actions = 0.9 * -1, whatever the
# estimator; with the illegal action it would be 0.9 * 5.
W = jnp.array([[-1.0, 5.0]])


@pytest.mark.parametrize("estimator", ["dqn", "double_dqn", "double_q", "clipped_double",
                                       "maxmin", "averaged"])
def test_every_estimator_bootstraps_over_the_legal_actions_of_the_next_state(estimator):
    cfg = DQNConfig(env_id="Probe6", hidden_sizes=(), buffer_size=64, learning_starts=32,
                    batch_size=2, estimator=estimator, optimizer="sgd")
    env, env_params = make_env("Probe6")
    members = 1 if estimator in ("dqn", "double_dqn", "averaged") else cfg.num_members
    kernel = W if members == 1 else jnp.broadcast_to(W, (members, *W.shape))
    params = {"params": {"Dense_0": {"kernel": kernel}}}
    state = init_train_state(cfg, params, optax.sgd(0.0))
    batch = Transition(obs=jnp.zeros((2, 1)), action=jnp.zeros((2,), jnp.int32),
                       reward=jnp.zeros((2,)), terminated=jnp.zeros((2,), bool),
                       next_obs=jnp.ones((2, 1)))
    td_update = make_td_update(cfg, make_q_fn(cfg), optax.sgd(0.0),
                               legal_actions_fn(env, env_params))
    _, info = td_update(state, batch, 0.9, jax.random.key(0))
    assert float(info.target) == pytest.approx(0.9 * -1.0)


@pytest.fixture(scope="module")
def book_agent():
    """A linear Q on MaxBiasMDP-book whose largest value in A is the illegal action 3 (it would
    go right and end the episode in one step); among A's legal actions, 0 (left, to B) is best."""
    cfg = DQNConfig(env_id="MaxBiasMDP-book", hidden_sizes=(), buffer_size=64,
                    learning_starts=32, batch_size=2)
    kernel = jnp.zeros((2, 10)).at[0, 0].set(1.0).at[0, 3].set(5.0)
    return cfg, {"params": {"Dense_0": {"kernel": kernel}}}


def test_greedy_evaluation_acts_over_legal_actions_only(book_agent):
    cfg, params = book_agent
    stats = evaluate_episodes(cfg, params, jax.random.key(0), 8)
    np.testing.assert_array_equal(stats.lengths, 2)  # left to B, then one action in B


def test_start_state_value_is_the_max_over_legal_actions(book_agent):
    cfg, params = book_agent
    assert float(start_state_value(cfg, params, jax.random.key(0), 4)) == pytest.approx(1.0)
