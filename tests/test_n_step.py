"""n-step returns computed at sampling time: a hand-written trajectory of 2 env copies with a
termination and a truncation inside the windows, windows cut at the write head, n = 1 as before."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal

from jaxdqn import DQNConfig, make_trainer
from jaxdqn.buffer import Transition, buffer_add, buffer_init, buffer_sample
from jaxdqn.replay import n_step_window, replay_sample

GAMMA = 0.5  # powers of 1/2 are exact in float32: every expected value below is exact

# Six vector steps of 2 env copies, written as the loop writes them: slot 2t + e holds env e's
# step t. Env 0 terminates at its step 2; env 1 is truncated by the time limit at its step 1.
REWARD = {0: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 1: [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]}
TERMINATED = {0: [0, 0, 1, 0, 0, 0], 1: [0, 0, 0, 0, 0, 0]}
TRUNCATED = {0: [0, 0, 0, 0, 0, 0], 1: [0, 1, 0, 0, 0, 0]}


def _obs(e, t):
    return 100.0 * e + t  # obs of env e at step t; its next obs is _obs(e, t) + 0.5


def _buffer(capacity):
    buf = buffer_init(capacity, (1,), truncated=True)
    for t in range(6):
        e = np.arange(2)
        buf = buffer_add(buf, Transition(
            obs=jnp.array([[_obs(0, t)], [_obs(1, t)]]), action=jnp.array([t, t + 10]),
            reward=jnp.array([REWARD[0][t], REWARD[1][t]]),
            terminated=jnp.array([TERMINATED[0][t], TERMINATED[1][t]], bool),
            next_obs=jnp.array([[_obs(0, t) + 0.5], [_obs(1, t) + 0.5]]),
            truncated=jnp.array([TRUNCATED[i][t] for i in e], bool)))
    return buf


# Per (env, step t): (n-step reward, terminated, discount, step whose next obs bootstraps), by
# hand. n = 3, gamma 1/2: env 0 from t=0 reads steps 0, 1, 2 and stops at the termination,
# 1 + 2/2 + 3/4 = 2.75; env 1 from t=0 stops after the truncation at step 1: 10 + 20/2 = 20,
# bootstrapping from step 1's stored final observation with gamma^2; t=4 and 5 reach the write
# head (step 6 is not written yet).
EXPECTED = {
    1: {(0, t): (REWARD[0][t], TERMINATED[0][t], 0.5, t) for t in range(6)}
    | {(1, t): (REWARD[1][t], 0, 0.5, t) for t in range(6)},
    3: {
        (0, 0): (2.75, 1, 0.125, 2), (0, 1): (3.5, 1, 0.25, 2), (0, 2): (3.0, 1, 0.5, 2),
        (0, 3): (8.0, 0, 0.125, 5), (0, 4): (8.0, 0, 0.25, 5), (0, 5): (6.0, 0, 0.5, 5),
        (1, 0): (20.0, 0, 0.25, 1), (1, 1): (20.0, 0, 0.5, 1), (1, 2): (62.5, 0, 0.125, 4),
        (1, 3): (80.0, 0, 0.125, 5), (1, 4): (80.0, 0, 0.25, 5), (1, 5): (60.0, 0, 0.5, 5),
    },
    5: {
        (0, 0): (2.75, 1, 0.125, 2), (0, 1): (3.5, 1, 0.25, 2), (0, 2): (3.0, 1, 0.5, 2),
        (0, 3): (8.0, 0, 0.125, 5), (0, 4): (8.0, 0, 0.25, 5), (0, 5): (6.0, 0, 0.5, 5),
        (1, 0): (20.0, 0, 0.25, 1), (1, 1): (20.0, 0, 0.5, 1), (1, 2): (70.0, 0, 0.0625, 5),
        (1, 3): (80.0, 0, 0.125, 5), (1, 4): (80.0, 0, 0.25, 5), (1, 5): (60.0, 0, 0.5, 5),
    },
}


@pytest.fixture(scope="module")
def window():
    return jax.jit(n_step_window, static_argnums=(2, 3))


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("capacity", [12, 16])  # full (the head at slot 0) and not yet full
def test_n_step_windows_by_hand(window, n, capacity):
    buf = _buffer(capacity)
    keys = sorted(EXPECTED[n], key=lambda et: 2 * et[1] + et[0])  # slot order
    index = jnp.array([2 * t + e for e, t in keys], jnp.int32)
    batch, discount = window(buf, index, n, 2, GAMMA)
    reward, terminated, disc, last = (np.array([EXPECTED[n][k][i] for k in keys]) for i in range(4))
    np.testing.assert_array_equal(batch.reward, reward)
    np.testing.assert_array_equal(batch.terminated, terminated.astype(bool))
    np.testing.assert_array_equal(discount, disc)
    np.testing.assert_array_equal(batch.next_obs[:, 0], [_obs(e, t) + 0.5
                                                         for (e, _), t in zip(keys, last)])
    np.testing.assert_array_equal(batch.obs[:, 0], [_obs(e, t) for e, t in keys])
    np.testing.assert_array_equal(batch.action, [t + 10 * e for e, t in keys])


def test_windows_never_read_overwritten_slots(window):
    # Capacity 8: steps 4 and 5 overwrote steps 0 and 1 (slots 0..3); the head is at slot 4, the
    # oldest data. From step 3 (slots 6, 7) a 3-step window reads steps 3, 4, 5 across the wrap;
    # from step 5 (slots 2, 3) nothing after it is written, so it is a 1-step sample, not a window
    # into the old steps 2 and 3 at slots 4 and 5.
    buf = _buffer(8)
    assert int(buf.pos) == 4 and int(buf.size) == 8
    batch, discount = window(buf, jnp.array([6, 7, 2, 3, 4]), 3, 2, GAMMA)
    np.testing.assert_array_equal(batch.reward, [8.0, 80.0, 6.0, 60.0, 3.0])
    np.testing.assert_array_equal(discount, [0.125, 0.125, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(batch.next_obs[:, 0], [5.5, 105.5, 5.5, 105.5, 2.5])
    np.testing.assert_array_equal(batch.terminated, [False, False, False, False, True])


def test_one_step_sampling_is_buffer_sample_and_the_scalar_gamma():
    buf = _buffer(16)
    key = jax.random.key(3)
    sample = replay_sample(buf, key, 64, GAMMA)
    assert sample.discount is None and sample.weight is None and sample.index is None
    assert_trees_equal(sample.batch, buffer_sample(buf, key, 64))


def test_n_step_samples_draw_the_slots_buffer_sample_draws():
    buf = _buffer(16)
    key = jax.random.key(3)
    one = buffer_sample(buf, key, 64)
    sample = replay_sample(buf, key, 64, GAMMA, n_step=3, stride=2)
    np.testing.assert_array_equal(sample.batch.obs, one.obs)
    assert sample.discount.shape == (64,) and sample.weight is None


def test_n_step_validation_names_the_field_and_the_rule():
    with pytest.raises(ValueError, match=r"buffer_size=1001 is invalid: must be a multiple of "
                                         r"num_envs=4 with n_step=3"):
        DQNConfig(n_step=3, num_envs=4, buffer_size=1001, train_frequency=4)
    with pytest.raises(ValueError, match=r"n_step=300 is invalid: must be <= buffer_size / "
                                         r"num_envs = 250"):
        DQNConfig(n_step=300, num_envs=4, buffer_size=1000, train_frequency=4)
    with pytest.raises(ValueError, match=r"n_step=0 is invalid: must be > 0"):
        DQNConfig(n_step=0)
    with pytest.raises(ValueError, match=r"n_step=2.0 is invalid: must be an int"):
        DQNConfig(n_step=2.0)
    DQNConfig(n_step=3, num_envs=4, buffer_size=1001 - 1, train_frequency=4)
    DQNConfig(buffer_size=1001, num_envs=4, train_frequency=4)  # n_step=1 needs no multiple


@pytest.mark.parametrize("estimator", ["dqn", "double_q"])
def test_an_n_step_run_stores_truncations_and_trains(estimator):
    # Episodes cut at 7 steps: the truncation flags reach the buffer; every estimator takes the
    # n-step return (members broadcast the per-sample discount over their axis).
    cfg = DQNConfig(total_timesteps=800, buffer_size=400, learning_starts=200, batch_size=32,
                    train_frequency=4, num_envs=2, max_episode_steps=7, n_step=3,
                    estimator=estimator, log_interval=400)
    trainer = make_trainer(cfg)
    state, metrics = jax.jit(trainer.run, static_argnums=3)(
        trainer.init(jax.random.key(0)), None, 0, cfg.num_log_rows)
    truncated = np.asarray(state.buffer.data.truncated)
    assert truncated.shape == (400,) and 0 < truncated.sum() < 400
    assert np.all(np.isfinite(np.asarray(metrics.td_loss)))
