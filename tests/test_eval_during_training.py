"""Greedy evaluation during training: rows, keys, best params, and a training trajectory that is
bit for bit the one without evaluation; greedy episodes against a step-by-step reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal, stacked_over_keys

import jaxdqn
from jaxdqn import DQNConfig, init_q_params, make_trainer
from jaxdqn.checkpoint import load_resume_state, save_resume_state
from jaxdqn.evaluation import make_greedy_episodes
from jaxdqn.runs import EVAL_STREAM, concat_metrics, make_runs
from jaxdqn.train import TrainMetrics, TrainOutput, best_params

CFG = DQNConfig(total_timesteps=4000, buffer_size=2000, learning_starts=500, batch_size=32,
                train_frequency=4, num_envs=4, target_update_freq=200, log_interval=400,
                hidden_sizes=(32,))
EVAL = CFG.replace(eval_interval=800, eval_episodes=4)  # rows 1, 3, 5, 7, 9 evaluate
KEYS = jax.random.split(jax.random.PRNGKey(11), 2)  # legacy keys: what the CLI saves


@pytest.fixture(scope="module")
def runs():
    """Both configs trained on the same keys as one call, and the eval config again in segments of
    two rows with the online params after each segment (the params each evaluation saw)."""
    plain = _train(make_runs(CFG, len(KEYS)), CFG.num_log_rows)[0]
    batch = make_runs(EVAL, len(KEYS))  # its init compiles once for both
    whole = _train(batch, EVAL.num_log_rows)[0]
    segmented, params_at = _train(batch, 2)
    return plain, whole, segmented, params_at


def _train(batch, rows_per_segment):
    cfg = batch.config
    state = batch.init(KEYS, None)
    segments, params_at = [], []
    for first in range(0, cfg.num_log_rows, rows_per_segment):
        state, metrics = batch.run(state, None, first, rows_per_segment)
        segments.append(metrics)
        params_at.append(jax.device_get(state.train.params))  # the next run consumes state
    metrics = concat_metrics(segments, 1)
    return TrainOutput(state.train.params, metrics, best_params(state)), params_at


def test_training_trajectory_is_bit_identical_with_evaluation_on(runs):
    plain, whole, *_ = runs
    whole_at_once = stacked_over_keys(jaxdqn.make_train(EVAL), KEYS)  # one fused program too
    plain_at_once = stacked_over_keys(jaxdqn.make_train(CFG), KEYS)
    def training(metrics):
        return {k: v for k, v in metrics.columns().items() if not k.startswith("eval_")}

    assert_trees_equal((plain_at_once.params, training(plain_at_once.metrics)),
                       (whole_at_once.params, training(whole_at_once.metrics)))
    assert plain.best is None and whole.best is not None
    for field in TrainMetrics._fields:
        if not field.startswith("eval_"):
            np.testing.assert_array_equal(getattr(plain.metrics, field),
                                          getattr(whole.metrics, field), err_msg=field)
    assert_trees_equal(plain.params, whole.params)
    assert np.isnan(plain.metrics.eval_return).all()
    assert np.isnan(plain.metrics.eval_truncated).all()


def test_eval_rows_hold_the_greedy_episodes_of_their_own_keys_and_nan_elsewhere(runs):
    _, whole, segmented, params_at = runs
    for field in TrainMetrics._fields:  # segmenting changes nothing, evaluation included
        np.testing.assert_array_equal(getattr(whole.metrics, field),
                                      getattr(segmented.metrics, field))
    evaluated = (np.arange(EVAL.num_log_rows) + 1) % 2 == 0
    assert np.isnan(whole.metrics.eval_return[:, ~evaluated]).all()
    assert np.isnan(whole.metrics.eval_truncated[:, ~evaluated]).all()
    episodes = jax.jit(make_greedy_episodes(EVAL, EVAL.eval_episodes))
    for seed, key in enumerate(KEYS):
        eval_key = jax.random.fold_in(key, EVAL_STREAM)
        for segment, row in enumerate(np.flatnonzero(evaluated)):
            params = jax.tree.map(lambda x, seed=seed: x[seed], params_at[segment])
            stats = episodes(params, jax.random.fold_in(eval_key, row))
            assert whole.metrics.eval_return[seed, row] == np.float32(stats.returns.mean())
            assert whole.metrics.eval_truncated[seed, row] == np.float32(stats.truncated.mean())


def test_best_params_are_those_of_the_latest_best_evaluation(runs):
    _, whole, _, params_at = runs
    rows = np.flatnonzero((np.arange(EVAL.num_log_rows) + 1) % 2 == 0)
    for seed in range(len(KEYS)):
        returns = whole.metrics.eval_return[seed, rows]
        best = np.flatnonzero(returns == returns.max())[-1]  # ties: the later evaluation
        assert whole.best.eval_return[seed] == returns.max()
        assert whole.best.env_steps[seed] == whole.metrics.env_steps[seed, rows[best]]
        assert_trees_equal(jax.tree.map(lambda x, seed=seed: x[seed], whole.best.params),
                           jax.tree.map(lambda x, seed=seed: x[seed], params_at[best]))


def test_eval_interval_must_be_a_multiple_of_log_interval():
    with pytest.raises(ValueError, match=r"DQNConfig.eval_interval=600 is invalid: must be a "
                                         r"multiple of log_interval=400"):
        CFG.replace(eval_interval=600)
    with pytest.raises(ValueError, match="eval_episodes=0"):
        CFG.replace(eval_interval=800, eval_episodes=0)


def test_greedy_episodes_match_a_step_by_step_gymnax_reference():
    """Returns, lengths and time-limit cuts of ``make_greedy_episodes`` against a Python loop over
    gymnax's own ``step`` with the documented keys."""
    cfg = DQNConfig(max_episode_steps=20, hidden_sizes=(8,))
    num_episodes = 6
    params = init_q_params(cfg, jax.random.key(2))
    key = jax.random.key(9)
    stats = jax.jit(make_greedy_episodes(cfg, num_episodes))(params, key)

    env, env_params = jaxdqn.make_env(cfg.env_id, cfg.max_episode_steps)
    q_fn = jaxdqn.make_q_fn(cfg)
    reset_key, step_key = jax.random.split(key)
    step_keys = jax.random.split(step_key, 20)
    for e, k in enumerate(jax.random.split(reset_key, num_episodes)):
        obs, state = env.reset(k, env_params)
        ret, length, cut = 0.0, 0, False
        for t in range(20):
            action = int(jnp.argmax(q_fn(params, obs)))
            obs, state, reward, terminated, truncated, _ = env.step(
                jax.random.split(step_keys[t], num_episodes)[e], state, action, env_params)
            ret, length = ret + float(reward), length + 1
            if terminated or truncated:
                cut = bool(truncated) and not bool(terminated)
                break
        assert (stats.returns[e], stats.lengths[e], bool(stats.truncated[e])) == (ret, length, cut)
    assert stats.truncated.any() and not stats.truncated.all()  # both endings were exercised


def test_resume_states_written_before_evaluation_still_load(tmp_path):
    trainer = make_trainer(CFG)
    state = jax.jit(jax.vmap(trainer.init))(KEYS)
    path = tmp_path / "old.msgpack"
    save_resume_state(path, state, CFG)
    from flax import serialization

    raw = serialization.msgpack_restore(path.read_bytes())
    del raw["state"]["eval"]  # as written before RunnerState had the field
    path.write_bytes(serialization.msgpack_serialize(raw))
    loaded, _ = load_resume_state(path, jax.eval_shape(jax.vmap(trainer.init), KEYS), CFG)
    assert loaded.eval is None
    np.testing.assert_array_equal(loaded.obs, state.obs)
