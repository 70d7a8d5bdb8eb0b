"""Target syncs, soft updates and gradient clipping observed through the training loop itself.

The loop runs one iteration per call (``log_interval = steps_per_iteration``), so after each call
the state shows what that iteration did: with a gradient step every iteration, the target equals
the online network exactly when the iteration synced (``tau = 1``); with ``tau < 1`` a sync moves
the target a ``tau`` fraction of the way; with plain SGD each step's parameter change is
``learning_rate * clip(gradient)``.
"""

import jax
import numpy as np
import optax
import pytest
from trees import assert_trees_close, assert_trees_equal, trees_equal

from jaxdqn import DQNConfig, make_train, make_trainer
from jaxdqn.train import loop_unrolls


def _iterations(cfg: DQNConfig):
    """The runner state after each iteration: ``[state_0, state_1, ...]`` (state_0 = init)."""
    assert cfg.log_interval == cfg.steps_per_iteration
    trainer = make_trainer(cfg)
    run = jax.jit(trainer.run, static_argnums=3)
    state = jax.jit(trainer.init)(jax.random.key(3))
    states = [state]
    for it in range(cfg.num_iterations):
        state, _ = run(state, None, it, 1)
        states.append(jax.device_get(state))
    return states


def expected_sync_iterations(cfg: DQNConfig) -> list[int]:
    """The documented schedule: every iteration from the first learning one whose env steps cross
    a multiple of target_update_freq."""
    s, f = cfg.steps_per_iteration, cfg.target_update_freq
    return [it for it in range(cfg.first_learning_iteration, cfg.num_iterations)
            if (it * s + s) // f > (it * s) // f]


# 8 env steps per iteration (num_envs=8), a period of 20 (not a multiple of 8), and learning from
# iteration 2, whose steps 16..24 cross 20: the first sync is on the first learning iteration.
SYNC_CONFIG = DQNConfig(total_timesteps=400, num_envs=8, train_frequency=8, buffer_size=400,
                        batch_size=16, learning_starts=24, target_update_freq=20,
                        learning_rate=1e-2, log_interval=8, hidden_sizes=(16,))


@pytest.fixture(scope="module")
def hard_sync_states():
    return _iterations(SYNC_CONFIG)


def test_target_syncs_are_counted_through_the_loop(hard_sync_states):
    cfg = SYNC_CONFIG
    assert cfg.first_learning_iteration == 2 and cfg.num_iterations == 50
    # By hand: iterations cover steps [8it, 8it + 8); multiples of 20 up to 400 are crossed at
    # it = 2 (20), 4 (40), 7 (60), 9 (80), 12 (100), ...: two in every five iterations, 20 syncs.
    expected = expected_sync_iterations(cfg)
    assert expected[:5] == [2, 4, 7, 9, 12] and len(expected) == 20
    synced = [it for it in range(cfg.first_learning_iteration, cfg.num_iterations)
              if trees_equal(hard_sync_states[it + 1].train.params,
                             hard_sync_states[it + 1].train.target_params)]
    assert synced == expected
    # Between syncs the target does not move; before learning starts nothing moves.
    for it in range(cfg.num_iterations):
        before, after = hard_sync_states[it].train, hard_sync_states[it + 1].train
        if it not in expected:
            assert_trees_equal(after.target_params, before.target_params)
        if it < cfg.first_learning_iteration:
            assert_trees_equal(after.params, before.params)


def test_soft_target_updates_through_the_loop():
    tau = 0.25
    cfg = SYNC_CONFIG.replace(tau=tau, total_timesteps=120)
    states = _iterations(cfg)
    expected = expected_sync_iterations(cfg)
    assert expected == [2, 4, 7, 9, 12, 14]
    for it in range(cfg.num_iterations):
        before, after = states[it].train, states[it + 1].train
        if it in expected:  # theta^- <- tau theta + (1 - tau) theta^-, with the new theta
            want = jax.tree.map(lambda o, t: tau * o + (1 - tau) * t, after.params,
                                before.target_params)
            assert_trees_close(after.target_params, want, rtol=1e-6, atol=1e-7)
            assert not trees_equal(after.target_params, after.params)
        else:
            assert_trees_equal(after.target_params, before.target_params)


def test_gradient_clipping_bounds_every_step_through_the_loop():
    """Plain SGD: a step changes the params by ``lr * g * min(1, c / |g|)``, so with a small
    ``max_grad_norm`` c every step's global norm is exactly ``lr * c``."""
    lr, clip = 0.5, 1e-3
    cfg = SYNC_CONFIG.replace(optimizer="sgd", learning_rate=lr, max_grad_norm=clip,
                              total_timesteps=80)
    states = _iterations(cfg)
    norms = [float(optax.tree.norm(jax.tree.map(lambda a, b: a - b, states[it + 1].train.params,
                                                  states[it].train.params)))
             for it in range(cfg.first_learning_iteration, cfg.num_iterations)]
    np.testing.assert_allclose(norms, lr * clip, rtol=1e-3)
    unclipped = _iterations(cfg.replace(max_grad_norm=None))  # the same first step, unclipped
    first = optax.tree.norm(jax.tree.map(lambda a, b: a - b, unclipped[3].train.params,
                                           unclipped[2].train.params))
    assert float(first) > 100 * lr * clip  # so the bound above really is the clipping


def test_a_period_of_one_iteration_syncs_every_learning_iteration_and_shorter_is_refused():
    """Every crossing counts: with ``target_update_freq`` equal to the env steps of an iteration
    (8) each learning iteration crosses one multiple and syncs; a shorter period would cross
    several in one iteration, of which the loop could perform one, so it is refused."""
    cfg = SYNC_CONFIG.replace(target_update_freq=8, total_timesteps=80)
    assert cfg.first_learning_iteration == 2 and cfg.num_iterations == 10
    states = _iterations(cfg)
    synced = [it for it in range(cfg.num_iterations)
              if trees_equal(states[it + 1].train.params, states[it + 1].train.target_params)
              and not trees_equal(states[it + 1].train.target_params,
                                  states[it].train.target_params)]
    assert synced == list(range(2, 10))  # by hand: 8 learning iterations, 8 syncs
    with pytest.raises(ValueError, match=r"target_update_freq=7 is invalid: must be >= 8"):
        SYNC_CONFIG.replace(target_update_freq=7)


def test_scan_unroll_puts_k_env_steps_in_a_loop_trip():
    """4 vector steps an iteration: the env-step loop is unrolled first, up to its length, then
    whole iterations."""
    cfg = DQNConfig(train_frequency=8, num_envs=2)
    assert [loop_unrolls(cfg.replace(scan_unroll=k)) for k in (1, 2, 4, 8, 9, 12)] == [
        (1, 1), (1, 2), (1, 4), (2, 4), (2, 4), (3, 4)]
    assert loop_unrolls(DQNConfig(scan_unroll=3, train_frequency=1)) == (3, 1)


def test_scan_unroll_gives_the_same_run_bit_for_bit():
    """Unrolled loops run the same operations in the same order: final state and metric rows are
    those of the plain loop (XLA:CPU), with the env-step loop unrolled in part (k = 2) and with
    whole iterations unrolled, their count not dividing a row's (k = 6: 3 of 5 iterations)."""
    cfg = DQNConfig(total_timesteps=400, num_envs=2, train_frequency=4, buffer_size=400,
                    batch_size=16, learning_starts=40, target_update_freq=20, log_interval=40,
                    hidden_sizes=(16,), prioritized=True, n_step=2)
    runs = [jax.jit(make_train(cfg.replace(scan_unroll=k)))(jax.random.key(5)) for k in (1, 2, 6)]
    assert_trees_equal(runs[0], runs[1])
    assert_trees_equal(runs[0], runs[2])
