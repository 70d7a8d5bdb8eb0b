"""jaxdqn.load: the agent of one seed of a run folder, final or best; Q-values and actions for one
observation or a batch, numpy or JAX in, numpy out; clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal

import jaxdqn
from jaxdqn import DQNConfig, init_q_params
from jaxdqn.checkpoint import CheckpointError, save_checkpoint
from jaxdqn.run_folder import BEST_CHECKPOINT, FINAL_CHECKPOINT

CFG = DQNConfig(total_timesteps=400, buffer_size=200, learning_starts=64, batch_size=32,
                hidden_sizes=(16,), log_interval=200, eval_interval=200)


def _params(num_seeds, seed):
    keys = jax.random.split(jax.random.key(seed), num_seeds)
    return jax.tree.map(np.asarray, jax.vmap(lambda k: init_q_params(CFG, k))(keys))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    save_checkpoint(path / FINAL_CHECKPOINT, _params(3, 0), CFG, {"seed": 0, "which": "final"})
    save_checkpoint(path / BEST_CHECKPOINT, _params(3, 1), CFG,
                    {"seed": 0, "which": "best", "best_eval_return": [10.0, 20.0, 30.0],
                     "best_env_steps": [200, 400, 200]})
    return path


def test_load_picks_the_seed_and_the_params_asked_for(run_dir):
    final, best = _params(3, 0), _params(3, 1)
    agent = jaxdqn.load(run_dir, seed_index=2)
    assert agent.config == CFG and agent.which == "final" and agent.seed_index == 2
    assert_trees_equal(agent.params, jax.tree.map(lambda x: x[2], final))
    agent = jaxdqn.load(run_dir, seed_index=1, which="best")
    assert agent.which == "best"
    assert agent.metadata["best_eval_return"] == 20.0 and agent.metadata["best_env_steps"] == 400
    assert_trees_equal(agent.params, jax.tree.map(lambda x: x[1], best))
    file_agent = jaxdqn.load(run_dir / BEST_CHECKPOINT, seed_index=1)  # a checkpoint file works too
    np.testing.assert_array_equal(file_agent.q_values(np.ones(4)), agent.q_values(np.ones(4)))


def test_q_values_and_actions_for_one_observation_or_a_batch_numpy_or_jax(run_dir):
    agent = jaxdqn.load(run_dir, seed_index=0)
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    want = np.asarray(jaxdqn.make_q_fn(CFG)(agent.params, obs))
    q = agent.q_values(obs)
    assert isinstance(q, np.ndarray) and q.shape == (64, 2)
    np.testing.assert_allclose(q, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(agent.q_values(jnp.asarray(obs[3])), want[3], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(agent.q_values(obs[3].tolist()), want[3], rtol=1e-6, atol=1e-6)
    actions = agent.act(obs)
    assert isinstance(actions, np.ndarray) and actions.dtype == np.int32
    np.testing.assert_array_equal(actions, np.argmax(want, axis=-1))
    assert 0 < actions.sum() < 64  # both actions appear: the check can tell argmax from a constant
    one = agent.act(jnp.asarray(obs[5]))
    assert isinstance(one, np.integer) and one == np.argmax(want[5])


def test_epsilon_greedy_acting_takes_a_key_and_follows_epsilon(run_dir):
    agent = jaxdqn.load(run_dir)
    obs = np.zeros((4000, 4), np.float32)  # one greedy action everywhere
    greedy = agent.act(obs[0])
    key = jax.random.key(3)
    explored = agent.act(obs, epsilon=0.5, key=key)
    np.testing.assert_array_equal(explored, agent.act(obs, epsilon=0.5, key=key))  # same key
    np.testing.assert_array_equal(explored, jaxdqn.epsilon_greedy(
        key, jaxdqn.make_q_fn(CFG)(agent.params, jnp.asarray(obs)), 0.5))
    # P(other action) = epsilon / 2 = 0.25; 4000 draws: 5 standard deviations is +-0.034
    assert abs(np.mean(explored != greedy) - 0.25) < 0.034
    with pytest.raises(ValueError, match="needs a key"):
        agent.act(obs, epsilon=0.1)
    with pytest.raises(ValueError, match=r"epsilon=1.5 is invalid"):
        agent.act(obs, epsilon=1.5, key=key)


@pytest.mark.parametrize("call, message", [
    (lambda d: jaxdqn.load(d, seed_index=3), r"seed_index=3 is invalid: .* holds 3 seed\(s\)"),
    (lambda d: jaxdqn.load(d, which="last"), r"which='last' is invalid: must be 'final' or 'best'"),
    (lambda d: jaxdqn.load(d / "nope"), r"does not exist"),
    (lambda d: jaxdqn.load(d).act(np.zeros(5)), r"obs has shape \(5,\); CartPole-v1 observations "
                                                r"have shape \(4,\)"),
])
def test_mistakes_are_one_clear_value_error(run_dir, call, message):
    with pytest.raises(ValueError, match=message):
        call(run_dir)


def test_a_run_without_evaluation_during_training_has_no_best_params(tmp_path):
    save_checkpoint(tmp_path / FINAL_CHECKPOINT, _params(1, 0), CFG)
    with pytest.raises(CheckpointError, match=r"holds no best params \(best_checkpoint.msgpack\): "
                                              r"it did not evaluate during training"):
        jaxdqn.load(tmp_path, which="best")
    assert jaxdqn.load(tmp_path).which == "final"
