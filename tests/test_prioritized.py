"""Prioritized replay: importance weights and priorities by hand, max-priority insertion, the loop's
wiring (sampling, priority updates, vmapped runs, resume bit for bit), and a probe learned with it.
The sum tree's own sampling frequencies and drift are tested in test_sum_tree.py."""

import contextlib
import io
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal, stacked_over_keys

import jaxdqn
import jaxdqn.runs
from jaxdqn import DQNConfig, expected_q, make_q_fn, make_train, make_trainer, run_folder
from jaxdqn.buffer import Transition, buffer_add, buffer_init
from jaxdqn.checkpoint import load_checkpoint
from jaxdqn.cli import main
from jaxdqn.replay import (
    importance_exponent_at,
    importance_weights,
    insert_priorities,
    replay_sample,
    update_priorities,
)
from jaxdqn.sum_tree import sum_tree_leaves, sum_tree_total


def _buffer(n=4, capacity=8):
    """A prioritized buffer holding ``n`` transitions whose action is their slot."""
    buf = buffer_init(capacity, (1,), prioritized=True)
    ids = jnp.arange(n)
    buf = buffer_add(buf, Transition(ids[:, None] * 1.0, ids, ids * 1.0, jnp.zeros(n, bool),
                                     ids[:, None] * 1.0))
    return insert_priorities(buf, 0, n, 0.5)


def _leaves(buf, n):
    return np.asarray(sum_tree_leaves(buf.priorities, jnp.arange(n)))


def test_new_transitions_enter_at_the_largest_priority_so_far():
    buf = _buffer(4)
    # Before any update the largest priority is 1.0, so every new leaf is 1^alpha = 1.
    np.testing.assert_array_equal(_leaves(buf, 8), [1, 1, 1, 1, 0, 0, 0, 0])
    assert float(buf.max_priority) == 1.0
    buf = update_priorities(buf, jnp.array([1]), jnp.array([-8.5]), 0.5, 0.5)  # p = 9
    assert float(buf.max_priority) == 9.0
    buf = insert_priorities(buf, 6, 3, 0.5)  # slots 6, 7 and (around the circle) 0
    np.testing.assert_array_equal(_leaves(buf, 8), [3, 3, 1, 1, 0, 0, 3, 3])
    assert float(sum_tree_total(buf.priorities)) == 14.0
    # A smaller error never lowers the running max.
    buf = update_priorities(buf, jnp.array([2]), jnp.array([0.5]), 0.5, 0.5)
    assert float(buf.max_priority) == 9.0 and _leaves(buf, 3)[2] == 1.0


def test_priority_update_with_repeated_indices_keeps_the_last():
    buf = _buffer(4)
    # p = |delta| + 1: slot 2 is drawn twice, its second sample's error (8) wins; slot 0's 3.
    buf = update_priorities(buf, jnp.array([2, 0, 2]), jnp.array([-1.0, 3.0, 8.0]), 1.0, 1.0)
    np.testing.assert_array_equal(_leaves(buf, 4), [4, 1, 9, 1])
    assert float(buf.max_priority) == 9.0
    buf = update_priorities(buf, jnp.array([3, 3]), jnp.array([15.0, 0.0]), 1.0, 1.0)
    np.testing.assert_array_equal(_leaves(buf, 4), [4, 1, 9, 1])  # the last error: 0 + 1
    assert float(buf.max_priority) == 16.0  # the max over the whole batch, as DQN Zoo keeps it


def test_importance_weights_by_hand():
    # p = |delta| + 1 = [4, 1, 2, 9], alpha = 1/2: leaves [2, 1, sqrt 2, 3], total 6 + sqrt 2.
    buf = update_priorities(_buffer(4), jnp.arange(4), jnp.array([3.0, 0.0, -1.0, 8.0]), 0.5,
                            1.0)
    np.testing.assert_allclose(_leaves(buf, 4), [2, 1, np.sqrt(2), 3], rtol=1e-6)
    np.testing.assert_allclose(float(sum_tree_total(buf.priorities)), 6 + np.sqrt(2), rtol=1e-6)
    # A batch of slots 0, 3, 3, 1: w_i = (N P(i))^-beta / max_j w_j, N = 4, P = leaf / total;
    # slot 1 has the smallest P, so the largest weight, 1. beta = 1/2: (1 / leaf)^(1/2).
    leaves = sum_tree_leaves(buf.priorities, jnp.array([0, 3, 3, 1]))
    np.testing.assert_allclose(importance_weights(leaves, 0.5),
                               [2 ** -0.5, 3 ** -0.5, 3 ** -0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(importance_weights(leaves, 1.0), [0.5, 1 / 3, 1 / 3, 1.0],
                               rtol=1e-6)
    np.testing.assert_array_equal(importance_weights(leaves, 0.0), [1, 1, 1, 1])


def test_a_sample_carries_its_slots_weights_and_the_drawn_transitions():
    buf = update_priorities(_buffer(4), jnp.arange(4), jnp.array([3.0, 0.0, -1.0, 8.0]), 0.5,
                            1.0)
    sample = jax.jit(replay_sample, static_argnums=2)(buf, jax.random.key(0), 256, 0.9,
                                                      importance_exponent=0.5)
    index = np.asarray(sample.index)
    assert sample.discount is None and set(index) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(sample.batch.action, index)  # rows follow their slots
    leaf = np.array([2, 1, np.sqrt(2), 3])[index]
    np.testing.assert_allclose(sample.weight, (leaf.min() / leaf) ** 0.5, rtol=1e-6)


def test_alpha_0_and_beta_0_sample_uniformly_with_unit_weights():
    buf = _buffer(10, capacity=16)
    buf = update_priorities(buf, jnp.arange(10), jnp.arange(10) * 7.0, 0.0, 1e-6)
    np.testing.assert_array_equal(_leaves(buf, 16), [1] * 10 + [0] * 6)  # p^0 = 1
    sample = jax.jit(replay_sample, static_argnums=2)(buf, jax.random.key(1), 20_000, 0.9,
                                                      importance_exponent=0.0)
    np.testing.assert_array_equal(sample.weight, np.ones(20_000))
    counts = np.bincount(np.asarray(sample.index), minlength=16)
    assert counts[10:].sum() == 0
    # Each of the 10 filled slots: expected 2000, sd ~42; 5 sd is a loose, reliable bound.
    assert np.all(np.abs(counts[:10] - 2000) < 5 * 42)


def test_importance_exponent_anneals_linearly_to_1_at_the_end():
    beta = [float(importance_exponent_at(s, 0.4, 1000)) for s in (0, 250, 1000, 2000)]
    np.testing.assert_allclose(beta, [0.4, 0.55, 1.0, 1.0], rtol=1e-6)


def test_prioritized_validation_names_the_field():
    for kwargs, message in ((dict(priority_exponent=-0.5), "priority_exponent=-0.5 is invalid"),
                            (dict(importance_exponent=1.5), "importance_exponent=1.5 is invalid"),
                            (dict(priority_epsilon=0.0), "priority_epsilon=0.0 is invalid"),
                            (dict(prioritized=1), "prioritized=1 is invalid")):
        with pytest.raises(ValueError, match=message):
            DQNConfig(**kwargs)


def test_a_sweep_batches_the_prioritized_fields_in_one_program():
    from jaxdqn.sweep import expand_grid, shape_groups

    base = DQNConfig(total_timesteps=400, buffer_size=200, learning_starts=64, batch_size=32,
                     prioritized=True)
    grid = {"priority_exponent": [0.0, 0.5, 1.0], "importance_exponent": [0.4, 1.0],
            "priority_epsilon": [1e-6, 1e-2], "n_step": [1, 3]}
    groups = shape_groups(expand_grid(base, grid))
    assert [g.config.n_step for g in groups] == [1, 3]  # n_step changes shapes; the rest traced
    hp = groups[0].hparams
    np.testing.assert_array_equal(hp.priority_exponent, np.float32([0, 0, 0, 0, .5, .5, .5, .5,
                                                                    1, 1, 1, 1]))
    np.testing.assert_array_equal(hp.importance_exponent, np.float32([0.4, 0.4, 1, 1] * 3))
    np.testing.assert_array_equal(hp.priority_epsilon, np.float32([1e-6, 1e-2] * 6))


TINY = DQNConfig(total_timesteps=800, buffer_size=400, learning_starts=200, batch_size=32,
                 train_frequency=4, num_envs=2, hidden_sizes=(16,), log_interval=400,
                 prioritized=True)


def test_the_loop_inserts_and_updates_priorities_per_run():
    # Two runs vmapped with RUNNER_STATE_AXES: one tree per run, pos/size shared.
    trainer = make_trainer(TINY)
    axes = jaxdqn.train.RUNNER_STATE_AXES
    keys = jax.random.split(jax.random.key(0), 2)
    state = jax.jit(jax.vmap(trainer.init, out_axes=axes))(keys)
    run = jax.jit(jax.vmap(trainer.run, in_axes=(axes, None, None, None), out_axes=(axes, 0)),
                  static_argnums=3)
    # Before learning starts every written slot is at the initial largest priority, 1.0.
    before = TINY.replace(learning_starts=400, total_timesteps=400, log_interval=200)
    early = make_trainer(before)
    s0 = jax.jit(early.run, static_argnums=3)(early.init(keys[0]), None, 0, 1)[0]
    leaves = np.asarray(sum_tree_leaves(s0.buffer.priorities, jnp.arange(400)))
    np.testing.assert_array_equal(leaves, [1.0] * 200 + [0.0] * 200)
    state, metrics = run(state, None, 0, TINY.num_log_rows)
    assert state.buffer.priorities.leaves.shape == (2, 400)  # one leaf per slot, per run
    assert state.buffer.pos.shape == ()
    for r in range(2):
        leaves = np.asarray(sum_tree_leaves(jax.tree.map(lambda x, r=r: x[r],
                                                         state.buffer.priorities),
                                            jnp.arange(400)))
        max_p = float(state.buffer.max_priority[r])
        assert max_p > 1.0 and np.all(leaves > 0)
        # Updated leaves are |delta| + eps to the power 1/2, never above the running max's.
        assert np.all(leaves <= max_p ** 0.5 * (1 + 1e-6)) and len(np.unique(leaves)) > 100
    assert not np.array_equal(state.buffer.max_priority[0], state.buffer.max_priority[1])
    assert np.all(np.isfinite(np.asarray(metrics.td_loss)))


@pytest.mark.parametrize("probe, extra", [("Probe3", {}), ("Probe5", {"n_step": 3})])
def test_a_prioritized_run_learns_the_probe_values(probe, extra):
    cfg = jaxdqn.preset("probes").replace(env_id=probe, prioritized=True, **extra)
    out = stacked_over_keys(make_train(cfg), jax.random.split(jax.random.key(42), 2))
    q_fn = make_q_fn(cfg)
    for obs, q_expected in expected_q(probe, cfg.gamma).items():
        q = jax.vmap(q_fn, in_axes=(0, None))(out.params, jnp.array(obs))
        legal = ~np.isnan(q_expected)
        np.testing.assert_allclose(q[:, legal], np.broadcast_to(q_expected, q.shape)[:, legal],
                                   atol=1e-3, err_msg=f"{probe} Q({obs})")


SETS = ["--set", "total_timesteps=2000", "--set", "buffer_size=500", "--set", "learning_starts=200",
        "--set", "batch_size=32", "--set", "hidden_sizes=16", "--set", "num_envs=2",
        "--set", "train_frequency=4", "--set", "target_update_freq=200",
        "--set", "prioritized=true", "--set", "n_step=3", "--set", "priority_exponent=0.6",
        "--seeds", "2", "--episodes", "3"]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A: a prioritized n-step run in one call. B: the same run in progress segments, stopped by
    Ctrl-C as its first segment came back, then resumed from its folder."""
    root = tmp_path_factory.mktemp("per")
    a, b = root / "A", root / "B"
    real = jaxdqn.runs.run_in_segments

    def interrupted(*args, **kwargs):
        for i, segment in enumerate(real(*args, **kwargs)):
            if i == 0:
                os.kill(os.getpid(), signal.SIGINT)
            yield segment

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", *SETS, "--no-progress", "--out", str(a)]) == 0
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(jaxdqn.runs, "run_in_segments", interrupted)
            stopped = main(["train", *SETS, "--out", str(b)])
        done = main(["train", "--resume", str(b), "--no-progress"])
    return a, b, stopped, done, err.getvalue()


def test_a_resumed_prioritized_run_equals_the_uninterrupted_one_bit_for_bit(resumed):
    a, b, stopped, done, err = resumed
    assert (stopped, done) == (130, 0), err
    with np.load(a / run_folder.METRICS_NPZ) as ma, np.load(b / run_folder.METRICS_NPZ) as mb:
        for name in ma.files:
            np.testing.assert_array_equal(mb[name], ma[name], err_msg=name)
    pa, pb = (load_checkpoint(d / run_folder.FINAL_CHECKPOINT) for d in (a, b))
    assert_trees_equal(pa.params, pb.params)
    agent = jaxdqn.load(b, seed_index=1)
    assert agent.config.prioritized and agent.config.n_step == 3
    assert agent.config.priority_exponent == 0.6
    assert agent.act(np.zeros(4, np.float32)) in (0, 1)
