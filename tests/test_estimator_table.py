"""The estimator table: each record's facts by hand, its target against the hand-written function,
and a new estimator that trains end to end from one entry registered here alone."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn import DQNConfig, init_q_params, make_acting_q_fn, make_q_fn, make_train, preset
from jaxdqn.cli.reports import method_name
from jaxdqn.estimators import (
    ESTIMATORS,
    Current,
    Estimator,
    act_mean,
    averaged_target,
    clipped_double_target,
    configurable_size,
    double_dqn_target,
    double_q_target,
    dqn_target,
    maxmin_target,
    munchausen_target,
    target_only,
)
from jaxdqn.memory import network_passes

# (estimator, extra fields) -> (online members, target networks or snapshots, trained members,
# a key per step, forward passes per gradient step), for M = 3 where the count is free.
HAND = {
    ("dqn", ()): (1, 1, "only", False, 1 + 0 + 1),
    ("double_dqn", ()): (1, 1, "only", False, 1 + 1 + 1),
    ("double_q", ()): (2, 2, "random", True, 2 + 2 + 1),
    ("clipped_double", ()): (2, 2, "all", False, 2 + 1 + 2),
    ("maxmin", (("ensemble_size", 3),)): (3, 3, "random", True, 3 + 0 + 1),
    ("maxmin", (("ensemble_size", 3), ("update_all_members", True))): (3, 3, "all", False, 3 + 3),
    ("averaged", (("ensemble_size", 3),)): (1, 3, "only", False, 3 + 0 + 1),
    ("munchausen", ()): (1, 1, "only", False, 1 + 1 + 0 + 1),  # the target network at s' and s
}


def test_the_table_lists_every_estimator_in_order():
    assert list(ESTIMATORS) == ["dqn", "double_dqn", "double_q", "clipped_double", "maxmin",
                                "averaged", "munchausen"]
    assert all(name == e.name for name, e in ESTIMATORS.items())
    assert [name for name, e in ESTIMATORS.items() if e.snapshots] == ["averaged"]
    assert [name for name, e in ESTIMATORS.items() if e.train_all_option] == ["maxmin"]


@pytest.mark.parametrize("estimator, extra", list(HAND), ids=[
    f"{e}{'_all' if dict(x).get('update_all_members') else ''}" for e, x in HAND])
def test_members_snapshots_trained_members_and_network_passes(estimator, extra):
    members, targets, trained, keyed, passes = HAND[estimator, extra]
    cfg = DQNConfig(estimator=estimator, **dict(extra))
    assert cfg.num_members == members
    assert cfg.ensemble_size == targets
    assert cfg.trained_members == trained
    assert (cfg.trained_members == "random") is keyed
    assert network_passes(cfg) == passes


def test_default_sizes_labels_and_size_rules():
    assert {n: DQNConfig(estimator=n).ensemble_size for n in ESTIMATORS} == {
        "dqn": 1, "double_dqn": 1, "double_q": 2, "clipped_double": 2, "maxmin": 2, "averaged": 2,
        "munchausen": 1}
    assert [method_name(DQNConfig(estimator=n, ensemble_size=None if e.size.fixed else 4))
            for n, e in ESTIMATORS.items()] == ["DQN", "Double DQN", "Double Q",
                                                "Clipped double Q", "Maxmin N=4", "Averaged N=4",
                                                "Munchausen DQN"]
    assert DQNConfig(estimator="maxmin", ensemble_size=1).num_members == 1
    with pytest.raises(ValueError, match=r"ensemble_size=1 is invalid: must be 2 \(or None\) "
                                         "with estimator='clipped_double'"):
        DQNConfig(estimator="clipped_double", ensemble_size=1)
    with pytest.raises(ValueError, match="ensemble_size=0 is invalid: must be >= 1 with "
                                         "estimator='averaged'"):
        DQNConfig(estimator="averaged", ensemble_size=0)


# Two rows, three actions; row 1 terminal; row 0 allows actions 0 and 2 only.
R = jnp.array([1.0, -1.0])
TERM = jnp.array([False, True])
LEGAL = jnp.array([[True, False, True], [True, True, True]])
TARGET = jnp.array([[[1.0, 5.0, 2.0], [0.0, 3.0, 1.0]],
                    [[4.0, 0.0, -1.0], [2.0, 2.0, 2.0]],
                    [[0.5, 1.0, 3.0], [1.0, 0.0, 0.0]]])  # [M=3, B=2, A=3]
ONLINE = jnp.array([[[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]],
                    [[2.0, 9.0, 0.0], [0.0, 0.0, 1.0]],
                    [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])

# What a target of ``reads_current`` reads at s: the target network's values (the numbers of
# ONLINE[1]), the stored action, the same legal actions as at s'; its coefficients: the config's.
Q_AT_S = ONLINE[1]
ACTION = jnp.array([2, 1])
CURRENT = {"hparams": DQNConfig(estimator="munchausen")}

# The arrays a record's target reads, by the record's facts, and the hand-written function.
HAND_TARGETS = {
    "dqn": (TARGET[0], None, lambda m: dqn_target(R, TERM, 0.9, TARGET[0], m)),
    "double_dqn": (TARGET[0], ONLINE[0],
                   lambda m: double_dqn_target(R, TERM, 0.9, TARGET[0], ONLINE[0], m)),
    "double_q": (TARGET[:2], ONLINE[:2],
                 lambda m: double_q_target(R, TERM, 0.9, TARGET[:2], ONLINE[:2], m)),
    "clipped_double": (TARGET[:2], ONLINE[0],
                       lambda m: clipped_double_target(R, TERM, 0.9, TARGET[:2], ONLINE[0], m)),
    "maxmin": (TARGET, None, lambda m: maxmin_target(R, TERM, 0.9, TARGET, m)),
    "averaged": (TARGET, None, lambda m: averaged_target(R, TERM, 0.9, TARGET, m)),
    "munchausen": (TARGET[0], None, lambda m: munchausen_target(
        R, TERM, 0.9, TARGET[0], Q_AT_S, ACTION, 0.03, 0.9, -1.0, m, m)),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_each_record_target_is_its_hand_written_function(name):
    record = ESTIMATORS[name]
    next_q_target, next_q_online, by_hand = HAND_TARGETS[name]
    assert (next_q_target.ndim == 3) is record.stacked
    assert {"none": None, "first": 2, "every": 3}[record.online_next] == (
        None if next_q_online is None else next_q_online.ndim)
    for legal in (None, LEGAL):
        current = (dict(current=Current(Q_AT_S, ACTION, legal), **CURRENT)
                   if record.reads_current else {})
        y = record.target(R, TERM, 0.9, next_q_target, next_q_online, legal, **current)
        np.testing.assert_array_equal(y, by_hand(legal))
    assert y.shape == ((2, 2) if name == "double_q" else (2,))


def test_acting_rules_by_hand():
    cfg = DQNConfig(env_id="Probe4", hidden_sizes=(4,), estimator="maxmin", ensemble_size=3)
    params = init_q_params(cfg, jax.random.key(0))
    obs = jnp.zeros((5, 1))
    q = jax.vmap(make_q_fn(cfg), in_axes=(0, None))(params, obs)  # [3, 5, A]
    acting = {name: make_acting_q_fn(cfg.replace(estimator=name, ensemble_size=3))
              for name in ("maxmin", "averaged")}
    np.testing.assert_array_equal(acting["maxmin"](params, obs), q.min(0))
    one = jax.tree.map(lambda x: x[1], params)
    np.testing.assert_array_equal(acting["averaged"](one, obs), make_q_fn(cfg)(one, obs))
    two = jax.tree.map(lambda x: x[:2], params)
    for name, want in (("double_q", q[:2].mean(0)), ("clipped_double", q[0])):
        np.testing.assert_allclose(make_acting_q_fn(cfg.replace(estimator=name))(two, obs), want,
                                   rtol=1e-6)


# ---- a new estimator from one entry: the mean of the members' targets ---------------------------

def mean_target(reward, terminated, gamma, next_q_target, next_legal=None):
    """``v = max_a mean_i Q'_i(s', a)`` over the members' target networks."""
    q = jnp.mean(next_q_target, axis=0)
    v = jnp.max(q if next_legal is None else jnp.where(next_legal, q, -jnp.inf), axis=-1)
    v = v if next_legal is None else jnp.where(next_legal.any(-1), v, 0.0)
    return jax.lax.stop_gradient(reward + gamma * v * (1.0 - terminated.astype(jnp.float32)))


MEAN = Estimator("mean_members", "Mean of members N={n}", "max of the mean of N members",
                 configurable_size(3), online_next="none", trains="all", act=act_mean,
                 target=target_only(mean_target))


def test_the_method_name_lists_the_components_that_are_on():
    assert method_name(DQNConfig()) == "DQN"
    assert method_name(preset("rainbow-minatar")) == (
        "Double DQN with n-step 3, prioritized replay, C51, dueling, noisy nets")
    assert method_name(DQNConfig(estimator="maxmin", ensemble_size=3, n_step=5,
                                 distributional="none", dueling=True)) == (
        "Maxmin N=3 with n-step 5, dueling")
    assert method_name(DQNConfig(distributional="qr")) == "DQN with QR-DQN"


@pytest.fixture
def mean_members(monkeypatch):
    monkeypatch.setitem(ESTIMATORS, MEAN.name, MEAN)
    return MEAN


def test_a_new_estimator_is_one_entry_and_trains_end_to_end(mean_members):
    cfg = DQNConfig(env_id="CartPole-v1", estimator="mean_members", total_timesteps=1000,
                    buffer_size=500, learning_starts=200, batch_size=32, hidden_sizes=(16,),
                    train_frequency=4, target_update_freq=100, log_interval=500)
    assert (cfg.num_members, cfg.ensemble_size, cfg.trained_members) == (3, 3, "all")
    assert network_passes(cfg) == 3 + 0 + 3
    assert method_name(cfg) == "Mean of members N=3"
    with pytest.raises(ValueError, match="update_all_members=True is invalid"):
        cfg.replace(update_all_members=True)

    out = jax.jit(make_train(cfg))(jax.random.key(0))
    assert jax.tree.leaves(out.params)[0].shape[0] == 3
    assert int(out.metrics.updates[-1]) == cfg.num_updates > 0
    assert np.all(np.isfinite(np.asarray(out.metrics.td_loss)))
    kernel = out.params["params"]["Dense_0"]["kernel"]
    assert kernel.shape[0] == 3 and not np.allclose(kernel[0], kernel[1])


def test_the_new_estimators_target_is_what_the_update_regresses_to(mean_members):
    """One gradient step of the new entry: every member's target is ``mean_target``'s value."""
    from jaxdqn.buffer import Transition
    from jaxdqn.update import init_train_state, make_optimizer, make_td_update

    cfg = DQNConfig(env_id="Probe4", hidden_sizes=(4,), buffer_size=256, learning_starts=128,
                    batch_size=4, estimator="mean_members", ensemble_size=2)
    q_fn, opt = make_q_fn(cfg), make_optimizer(cfg)
    state = init_train_state(cfg, init_q_params(cfg, jax.random.key(1)), opt)
    batch = Transition(obs=jnp.ones((4, 1)), action=jnp.zeros(4, jnp.int32),
                       reward=jnp.arange(4.0), next_obs=jnp.zeros((4, 1)),
                       terminated=jnp.array([False, True, False, False]))
    _, info = make_td_update(cfg, q_fn, opt)(state, batch, 0.5)
    next_q = jax.vmap(q_fn, in_axes=(0, None))(state.target_params, batch.next_obs)
    want = mean_target(batch.reward, batch.terminated, 0.5, next_q).mean()
    np.testing.assert_allclose(info.target, want, rtol=1e-6)


def test_records_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ESTIMATORS["dqn"].trains = "all"
