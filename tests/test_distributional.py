"""Distributional heads (``DQNConfig.distributional``): C51's projection, cross-entropy and mean,
QR-DQN's quantile Huber loss, all by hand; the heads' networks (shapes, dueling per atom, the CNN);
the target of ``dqn`` and ``double_dqn`` through a hand-set network (the next action by the means,
legal actions, terminal rows, ties); the config fields; checkpoints; the probes learned with each
head; and the quantiles of a Bernoulli return learned by QR-DQN."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdqn
from jaxdqn import DQNConfig, expected_q, init_q_params, make_q_fn, make_train, make_trainer
from jaxdqn import envs as envs_module
from jaxdqn.agent import Agent
from jaxdqn.buffer import Transition
from jaxdqn.checkpoint import load_checkpoint, save_checkpoint
from jaxdqn.cli.options import parse_field_value, resolve_config
from jaxdqn.config import TRACED_FIELDS
from jaxdqn.distributional import (
    HEADS,
    c51_mean,
    c51_project,
    c51_support,
    c51_target,
    cross_entropy,
    quantile_huber_loss,
    quantile_midpoints,
)
from jaxdqn.envs import env_spec, register
from jaxdqn.envs.probes import PROBE_TOLERANCES, Probe1
from jaxdqn.networks import cnn_apply, make_head_fn, make_q_network, num_params
from jaxdqn.run_folder import CheckpointError
from jaxdqn.runs import train_seeds
from jaxdqn.sweep import expand_grid, shape_groups
from jaxdqn.train import HParams
from jaxdqn.update import init_train_state, make_td_update, step_takes_key

LN2 = math.log(2.0)


# ---- C51: projection, cross-entropy, mean --------------------------------------------------------

def test_the_c51_projection_by_hand():
    """Support z = [-2, -1, 0, 1, 2] (dz = 1), next probabilities p = [.1, .2, .3, .2, .2]."""
    support = c51_support(-2.0, 2.0, 5)
    np.testing.assert_array_equal(support, [-2.0, -1.0, 0.0, 1.0, 2.0])
    p = jnp.array([0.1, 0.2, 0.3, 0.2, 0.2])
    reward = jnp.array([0.5, 1.5, -2.5, 0.3])
    discount = jnp.array([0.25, 1.0, 0.5, 0.0])
    target = c51_target(reward, discount, jnp.log(jnp.broadcast_to(p, (4, 5))), support)
    expected = [
        # gamma^2 = 0.25 (a two-step return), r = 0.5: atoms [0, .25, .5, .75, 1]. 0 and 1 lie on
        # support points and keep all their mass there; .25 gives 3/4 to 0 and 1/4 to 1, ...
        # z=0: .1 + .2 * .75 + .3 * .5 + .2 * .25; z=1: .2 * .25 + .3 * .5 + .2 * .75 + .2.
        [0.0, 0.0, 0.45, 0.55, 0.0],
        # r = 1.5, discount 1: atoms [-.5, .5, 1.5, 2.5, 3.5]; the last two lie above v_max = 2
        # and put all their mass on it.
        [0.0, 0.05, 0.15, 0.25, 0.55],
        # r = -2.5, discount .5: atoms [-3.5, -3, -2.5, -2, -1.5]; three below v_min, one on it.
        [0.9, 0.1, 0.0, 0.0, 0.0],
        # A terminal row (discount 0): every atom at r = .3, split .7 / .3 between 0 and 1.
        [0.0, 0.0, 0.7, 0.3, 0.0],
    ]
    np.testing.assert_allclose(target, expected, atol=1e-6)
    np.testing.assert_allclose(target.sum(-1), 1.0, atol=1e-6)
    # Inside the support the projection keeps the mean: .5 + .25 * E[Z] = .5 + .25 * .2.
    assert float(target[0] @ support) == pytest.approx(0.55, abs=1e-6)


def test_rows_stay_normalised_on_the_default_support():
    support = c51_support(-10.0, 10.0, 51)
    key_r, key_p = jax.random.split(jax.random.key(0))
    atoms = 30.0 * jax.random.normal(key_r, (64, 51))  # many beyond [v_min, v_max]
    probs = jax.nn.softmax(3.0 * jax.random.normal(key_p, (64, 51)))
    projected = c51_project(atoms, probs, support)
    assert float(projected.min()) >= 0.0
    np.testing.assert_allclose(projected.sum(-1), 1.0, atol=1e-5)


def test_cross_entropy_and_mean_by_hand():
    logits = jnp.array([[0.0, math.log(3.0)]])  # softmax: [.25, .75]
    # -(.5 ln .25 + .5 ln .75)
    np.testing.assert_allclose(cross_entropy(logits, jnp.array([[0.5, 0.5]])),
                               [0.5 * (math.log(4.0) + math.log(4.0 / 3.0))], rtol=1e-6)
    np.testing.assert_allclose(c51_mean(logits, jnp.array([-1.0, 1.0])), [0.5], rtol=1e-6)


# ---- QR-DQN: the quantile Huber loss -------------------------------------------------------------

def test_quantile_midpoints():
    np.testing.assert_allclose(quantile_midpoints(4), [0.125, 0.375, 0.625, 0.875])


@pytest.mark.parametrize("kappa, expected", [(1.0, 0.90625), (2.0, 0.640625)])
def test_the_quantile_huber_loss_by_hand(kappa, expected):
    """Quantiles [0, 1] at tau_hat [.25, .75], target samples [.5, 3]: u_ij = T_j - theta_i.

    kappa 1: theta_0: u = [.5, 3] (.5 inside kappa: u^2/2 = .125; 3 outside: 3 - .5 = 2.5), both
    positive, weight .25: mean .25 * 1.3125 = .328125. theta_1: u = [-.5, 2]: .25 * .125 and
    .75 * (2 - .5): mean .578125. Sum .90625. kappa 2 (divided by 2): theta_0: .25 * [.0625, 2]
    (3 outside: 2 (3 - 1) / 2), mean .2578125; theta_1: .25 * .0625 and .75 * 1 (2 on the edge:
    4/2/2), mean .3828125. Sum .640625. A second row at its target has loss 0."""
    quantiles = jnp.array([[0.0, 1.0], [1.0, 1.0]])
    targets = jnp.array([[0.5, 3.0], [1.0, 1.0]])
    np.testing.assert_allclose(quantile_huber_loss(quantiles, targets, kappa), [expected, 0.0],
                               rtol=1e-6)


# ---- networks ------------------------------------------------------------------------------------

C51 = DQNConfig(distributional="c51")
QR = DQNConfig(distributional="qr")


def test_parameter_counts_by_hand():
    # CartPole: 4*120 + 120, 120*84 + 84, then the head 84 * (2 * 51) + 102.
    for cfg in (C51, QR):
        assert num_params(init_q_params(cfg, jax.random.key(0))) == 600 + 10_164 + 8_670
    # Dueling: value 84 * 51 + 51, advantage 84 * 102 + 102.
    duel = init_q_params(C51.replace(dueling=True), jax.random.key(0))
    assert num_params(duel) == 600 + 10_164 + 4_335 + 8_670
    assert make_q_network(DQNConfig()).num_atoms == 0  # the scalar head: the program of before


def _noisy(params, key):
    """Params with nonzero biases, so the streams' means are far from 0."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [x + 0.3 * jax.random.normal(k, x.shape)
                                        for x, k in zip(leaves, keys)])


def test_q_values_are_the_means_of_the_head_output():
    obs = jax.random.normal(jax.random.key(2), (16, 4))
    for cfg in (C51, QR, C51.replace(dueling=True)):
        params = _noisy(init_q_params(cfg, jax.random.key(0)), jax.random.key(1))
        out = make_head_fn(cfg)(params, obs)
        assert out.shape == (16, 2, 51)
        mean = (c51_mean(out, c51_support(-10.0, 10.0, 51)) if cfg.distributional == "c51"
                else out.mean(-1))
        np.testing.assert_allclose(make_q_fn(cfg)(params, obs), mean, rtol=1e-6)


def test_a_dueling_head_centres_the_advantages_per_atom_over_the_legal_actions():
    cfg = DQNConfig(env_id="MaxBiasMDP-book", hidden_sizes=(16,), dueling=True,
                    distributional="c51", num_atoms=5)
    params = _noisy(init_q_params(cfg, jax.random.key(0)), jax.random.key(1))
    obs = jnp.array([[1.0, 0.0], [0.0, 1.0]])  # in A (2 legal of 10), in B (all 10)
    legal = env_spec(cfg).legal_fn(obs)
    out, state = make_q_network(cfg).apply(params, obs, legal, capture_intermediates=True,
                                           mutable=["intermediates"])
    value = state["intermediates"]["value"]["__call__"][0]  # [2, 5]
    np.testing.assert_allclose(make_head_fn(cfg)(params, obs), out)  # the mask from obs
    advantage = np.asarray(out - value[:, None, :])  # [2, 10, 5]
    np.testing.assert_allclose((advantage * np.asarray(legal)[..., None]).sum(1), 0.0,
                               atol=1e-5)
    assert abs(advantage[0].mean(0)).max() > 1e-2  # over all 10 actions in A it is not 0


@pytest.mark.parametrize("dueling", [False, True])
def test_cnn_apply_is_flax_apply_for_a_distributional_head(dueling):
    cfg = jaxdqn.preset("minatar").replace(distributional="c51", dueling=dueling)
    params = _noisy(init_q_params(cfg, jax.random.key(3)), jax.random.key(4))
    obs = jax.random.bernoulli(jax.random.key(5), 0.3, (8, 10, 10, 4))
    out = cnn_apply(params, obs, 1, num_atoms=51)
    assert out.shape == (8, 3, 51)
    # Outputs of magnitude ~50 (the noisy params): equal to float rounding.
    np.testing.assert_allclose(out, make_q_network(cfg).apply(params, obs), rtol=1e-4,
                               atol=1e-4)


# ---- the target through a hand-set network ----------------------------------------------------

def _linear(cfg, online, target):
    """A linear network (no hidden layer, no bias) on a one-dimensional observation [x]: its
    output at x = 1 is ``kernel`` as ``[A, K]``; online and target params given per action."""
    def params(rows):
        return {"params": {"Dense_0": {"kernel": jnp.array([np.concatenate(rows)],
                                                           jnp.float32)}}}
    p, t = params(online), params(target)
    assert jax.tree.map(jnp.shape, p) == jax.tree.map(jnp.shape,
                                                      init_q_params(cfg, jax.random.key(0)))
    return init_train_state(cfg, p, optax.sgd(0.0))._replace(target_params=t)


def _batch(n=2):
    """Two samples from s = [1], action 0, to s' = [1]: reward 0, then a terminal one of
    reward .5; gamma^m per sample (an n-step batch)."""
    return (Transition(obs=jnp.ones((n, 1)), action=jnp.zeros((n,), jnp.int32),
                       reward=jnp.array([0.0, 0.5])[:n],
                       terminated=jnp.array([False, True])[:n], next_obs=jnp.ones((n, 1))),
            jnp.array([0.9, 0.81])[:n])


# C51 on the support [-1, 0, 1]. Online logits at [1]: action 0 [0, ln 2, 0] (p = [.25, .5, .25],
# mean 0), action 1 [0, 0, ln 2] (mean .25). Target: the two swapped, so the target network's
# greedy action is 0 and the online network's 1.
C51_ONLINE = ([0.0, LN2, 0.0], [0.0, 0.0, LN2])
C51_TARGET = ([0.0, 0.0, LN2], [0.0, LN2, 0.0])
# QR with 2 quantiles (tau_hat .25, .75). Online at [1]: action 0 [-1, 0] (mean -.5), action 1
# [0, 1] (mean .5); target: swapped.
QR_ONLINE = ([-1.0, 0.0], [0.0, 1.0])
QR_TARGET = ([0.0, 1.0], [-1.0, 0.0])


@pytest.mark.parametrize("head, estimator, target, losses", [
    # dqn: a* = 0 (the target's means [.25, 0]): its distribution [.25, .25, .5] at
    # .9 * [-1, 0, 1] projects to [.225, .325, .45] (mean .225); against the online [.25, .5, .25]
    # the cross-entropy is .675 ln 4 + .325 ln 2. The terminal row's target is .5 on 0 and 1:
    # .5 ln 2 + .5 ln 4.
    ("c51", "dqn", (0.225 + 0.5) / 2,
     [0.675 * math.log(4) + 0.325 * LN2, 0.5 * LN2 + 0.5 * math.log(4)]),
    # double_dqn: a* = 1 (the online means [0, .25]): the target's [.25, .5, .25] projects to
    # [.225, .55, .225] (mean 0): .45 ln 4 + .55 ln 2.
    ("c51", "double_dqn", (0.0 + 0.5) / 2,
     [0.45 * math.log(4) + 0.55 * LN2, 0.5 * LN2 + 0.5 * math.log(4)]),
    # dqn: a* = 0 (target means [.5, -.5]): samples .9 * [0, 1] for the online [-1, 0]:
    # theta_0 (tau .25): u = [1, 1.9]: .25 * [.5, 1.4], mean .2375; theta_1 (tau .75):
    # u = [0, .9]: .75 * [0, .405], mean .151875. Terminal: samples [.5, .5]: .25 * 1 + .75 * .125.
    ("qr", "dqn", (0.45 + 0.5) / 2, [0.2375 + 0.151875, 0.25 + 0.09375]),
    # double_dqn: a* = 1 (online means [-.5, .5]): samples .9 * [-1, 0] = [-.9, 0]: theta_0:
    # u = [.1, 1]: .25 * [.005, .5], mean .063125; theta_1: u = [-.9, 0]: .25 * .405 / 2.
    ("qr", "double_dqn", (-0.45 + 0.5) / 2, [0.063125 + 0.050625, 0.25 + 0.09375]),
])
def test_the_target_bootstraps_from_the_next_action_by_the_means(head, estimator, target,
                                                                  losses):
    fields = (dict(num_atoms=3, v_min=-1.0, v_max=1.0) if head == "c51"
              else dict(num_quantiles=2))
    cfg = DQNConfig(env_id="Probe5", hidden_sizes=(), buffer_size=64, learning_starts=32,
                    batch_size=2, estimator=estimator, distributional=head, **fields)
    online, target_params = (C51_ONLINE, C51_TARGET) if head == "c51" else (QR_ONLINE, QR_TARGET)
    state = _linear(cfg, online, target_params)
    batch, gamma = _batch()
    _, info = make_td_update(cfg, make_q_fn(cfg), optax.sgd(0.0))(state, batch, gamma)
    assert float(info.target) == pytest.approx(target, abs=1e-6)  # of the means
    np.testing.assert_allclose(info.td_error, losses, rtol=1e-5)  # the per-sample loss
    assert float(info.loss) == pytest.approx(np.mean(losses), rel=1e-5)
    # Q-values are the online means at s = [1]: action 0's and the larger of the two.
    q = [0.0, 0.25] if head == "c51" else [-0.5, 0.5]
    assert (float(info.q_taken), float(info.q_max)) == pytest.approx((q[0], q[1]), abs=1e-6)
    # Importance weights weight the per-sample losses.
    _, weighted = make_td_update(cfg, make_q_fn(cfg), optax.sgd(0.0))(
        state, batch, gamma, None, jnp.array([1.0, 0.5]))
    assert float(weighted.loss) == pytest.approx((losses[0] + 0.5 * losses[1]) / 2, rel=1e-5)


@pytest.mark.parametrize("estimator", ["dqn", "double_dqn"])
def test_the_next_action_ranges_over_the_legal_actions(estimator):
    """Probe6: in s' = [1] only action 0 is legal. Both networks rate the illegal action 1
    higher (mean .25 against 0); the target is that of action 0: mean 0, not .9 * .25."""
    cfg = DQNConfig(env_id="Probe6", hidden_sizes=(), buffer_size=64, learning_starts=32,
                    batch_size=1, estimator=estimator, distributional="c51", num_atoms=3,
                    v_min=-1.0, v_max=1.0)
    state = _linear(cfg, C51_ONLINE, C51_ONLINE)
    batch, gamma = _batch(1)
    td_update = make_td_update(cfg, make_q_fn(cfg), optax.sgd(0.0), env_spec(cfg).legal_fn)
    _, info = td_update(state, batch, gamma)
    assert float(info.target) == pytest.approx(0.0, abs=1e-6)
    assert float(info.q_max) == pytest.approx(0.0, abs=1e-6)  # over the legal action


def test_random_tie_break_picks_among_next_actions_of_equal_means():
    """The target's means tie at s' (0 for both actions) with different distributions: action
    0's [.25, .5, .25], action 1's uniform. Without random_tie_break action 0 is taken; with it
    either, one per key."""
    cfg = DQNConfig(env_id="Probe5", hidden_sizes=(), buffer_size=64, learning_starts=32,
                    batch_size=1, distributional="c51", num_atoms=3, v_min=-1.0, v_max=1.0)
    tied = ([0.0, LN2, 0.0], [0.0, 0.0, 0.0])
    state = _linear(cfg, tied, tied)
    batch, gamma = _batch(1)
    assert not step_takes_key(cfg) and not step_takes_key(DQNConfig(random_tie_break=True))
    first = make_td_update(cfg, make_q_fn(cfg), optax.sgd(0.0))(state, batch, gamma)[1]
    cfg = cfg.replace(random_tie_break=True)
    assert step_takes_key(cfg)
    td_update = make_td_update(cfg, make_q_fn(cfg), optax.sgd(0.0))
    losses = {round(float(td_update(state, batch, gamma, k)[1].loss), 5)
              for k in jax.random.split(jax.random.key(0), 16)}
    assert len(losses) == 2 and round(float(first.loss), 5) in losses


# ---- config, CLI, checkpoints --------------------------------------------------------------------

def test_the_fields_and_their_errors():
    cfg = DQNConfig()
    assert (cfg.distributional, cfg.num_atoms, cfg.v_min, cfg.v_max, cfg.num_quantiles,
            cfg.kappa) == ("none", 51, -10.0, 10.0, 51, 1.0)
    assert tuple(HEADS) == ("none", "c51", "qr")
    assert "kappa" in TRACED_FIELDS and HParams._fields[-1] == "kappa"
    assert not {"distributional", "num_atoms", "num_quantiles", "v_min", "v_max"} & set(
        TRACED_FIELDS)
    for kwargs, message in (
        (dict(distributional="iqn"), r"distributional='iqn' is invalid: must be one of \('none', "
                                     r"'c51', 'qr'\)"),
        (dict(num_atoms=11), r"num_atoms=11 is invalid: applies to distributional='c51' only, "
                             r"not 'none' \(leave it at its default\)"),
        (dict(distributional="qr", v_max=5.0), r"v_max=5.0 is invalid: applies to "
                                               r"distributional='c51' only, not 'qr'"),
        (dict(distributional="c51", kappa=2.0), r"kappa=2.0 is invalid: applies to "
                                                r"distributional='qr' only, not 'c51'"),
        (dict(distributional="c51", num_atoms=1), r"num_atoms=1 is invalid: must be >= 2"),
        (dict(distributional="c51", v_min=1.0, v_max=1.0), r"v_max=1.0 is invalid: must be > "
                                                           r"v_min=1.0"),
        (dict(distributional="qr", num_quantiles=0), r"num_quantiles=0 is invalid: must be >= 1"),
        (dict(distributional="qr", kappa=0.0), r"kappa=0.0 is invalid: must be > 0"),
        (dict(distributional="c51", estimator="maxmin"),
         r"distributional='c51' is invalid: must be 'none' with estimator='maxmin': "
         r"distributional heads are defined with estimator='dqn' or 'double_dqn' only"),
    ):
        with pytest.raises(ValueError, match=message):
            DQNConfig(**kwargs)
    for estimator in ("double_q", "clipped_double", "averaged", "munchausen"):
        with pytest.raises(ValueError, match=f"with estimator='{estimator}'"):
            DQNConfig(distributional="qr", estimator=estimator)
    # kappa is traced: a sweep over it is one program; v_max (the support) is not.
    grid = expand_grid(DQNConfig(distributional="c51"), {"v_max": [5.0, 10.0]})
    assert len(shape_groups(grid)) == 2
    grid = expand_grid(DQNConfig(distributional="qr"), {"kappa": [0.5, 1.0, 2.0]})
    assert len(shape_groups(grid)) == 1
    # Changing the head resets the fields of the head left, as a change of estimator does.
    changed = DQNConfig(distributional="c51", num_atoms=11, v_max=5.0).replace(
        distributional="qr")
    assert (changed.num_atoms, changed.v_max) == (51, 10.0)


def test_the_fields_parse_from_the_command_line():
    assert parse_field_value("distributional", "c51", "--set") == "c51"
    cfg, _ = resolve_config("reference", None, ["distributional=c51", "num_atoms=21",
                                                "v_max=5", "estimator=double_dqn"], None)
    assert (cfg.distributional, cfg.num_atoms, cfg.v_max, cfg.estimator) == ("c51", 21, 5.0,
                                                                            "double_dqn")


def test_a_checkpoint_records_the_head_and_load_gives_the_means(tmp_path):
    params = _noisy(init_q_params(C51, jax.random.key(0)), jax.random.key(1))
    save_checkpoint(tmp_path / "cp.msgpack", jax.tree.map(lambda x: x[None], params), C51)
    ckpt = load_checkpoint(tmp_path / "cp.msgpack", config=C51)
    assert ckpt.config == C51
    with pytest.raises(CheckpointError, match=r"holds a 4 -> 120 -> 84 -> 2x51 c51 network"):
        load_checkpoint(tmp_path / "cp.msgpack", config=QR)
    obs = np.array([[0.1, -0.2, 0.3, 0.0]], np.float32)
    agent = Agent(ckpt.config, jax.tree.map(lambda x: x[0], ckpt.params))
    np.testing.assert_allclose(agent.q_values(obs), make_q_fn(C51)(params, obs), atol=1e-5)


# ---- learning ------------------------------------------------------------------------------------

def _probe_config(head, probe):
    """The probes preset with a distributional head. C51 at a learning rate of .2: the preset's
    1e-2 leaves mass on the atoms the target never reaches (cross-entropy's gradient there is
    their own small probability), and that mass pulls the mean towards the support's centre:
    1.25e-2 off on Probe1 after 3000 steps. QR with 8 quantiles: a probe's return is one value,
    and each quantile learns it; fewer quantiles keep the [batch, N, N] loss cheap."""
    cfg = jaxdqn.preset("probes").replace(env_id=probe, distributional=head)
    return cfg.replace(learning_rate=0.2) if head == "c51" else cfg.replace(num_quantiles=8)


@pytest.mark.parametrize("probe", [p for p in PROBE_TOLERANCES if p != "Probe6"])
@pytest.mark.parametrize("head", ["c51", "qr"])
def test_every_probe_learns_its_exact_q_values(head, probe):
    cfg = _probe_config(head, probe)
    out = jax.jit(jax.vmap(make_train(cfg)))(jax.random.split(jax.random.key(42), 2))
    q_fn, tol = make_q_fn(cfg), PROBE_TOLERANCES[probe]
    for obs, q_expected in expected_q(probe, cfg.gamma).items():
        q = jax.vmap(q_fn, in_axes=(0, None))(out.params, jnp.array(obs))
        np.testing.assert_allclose(q, np.broadcast_to(q_expected, q.shape), atol=tol,
                                   err_msg=f"{probe} Q({obs})")
    if probe == "Probe1":  # the return is 1: C51 splits it between the atoms .8 and 1.2
        out1 = jax.vmap(make_head_fn(cfg), in_axes=(0, None))(out.params, jnp.zeros(1))[:, 0]
        if head == "c51":
            np.testing.assert_allclose(jax.nn.softmax(out1)[:, 27:29], 0.5, atol=1e-3)
        else:
            np.testing.assert_allclose(out1, 1.0, atol=1e-3)


@pytest.mark.parametrize("head", ["c51", "qr"])
def test_a_head_composes_with_n_step_prioritized_replay_dueling_and_double_dqn(head):
    """One short CartPole run with every option a head composes with: it trains (finite losses;
    C51's Q-values, means on the support, within it), and the priorities are the per-sample
    losses (C51's cross-entropy starts near ln 51 = 3.93, QR's sum over 51 quantiles higher;
    both above the initial 1.0)."""
    cfg = DQNConfig(total_timesteps=800, buffer_size=400, learning_starts=200, batch_size=32,
                    train_frequency=4, target_update_freq=100, hidden_sizes=(32,),
                    distributional=head, dueling=True, estimator="double_dqn", n_step=3,
                    prioritized=True, random_tie_break=True)
    trainer = make_trainer(cfg)
    runner, metrics = jax.jit(lambda k: trainer.run(trainer.init(k), None, 0, cfg.num_log_rows))(
        jax.random.key(0))
    losses = np.asarray(metrics.td_loss)[np.asarray(metrics.updates) > 0]
    assert len(losses) and np.isfinite(losses).all()
    if head == "c51":
        assert np.all(np.abs(np.asarray(metrics.q_max)[np.asarray(metrics.updates) > 0]) <= 10)
    assert float(runner.buffer.max_priority) > 3.0


class BernoulliProbe(Probe1):
    """Obs [0], one action, one step, reward 1 with probability 1/4 and 0 otherwise."""

    def step_env(self, key, state, action, params):
        obs, state, _, done, info = super().step_env(key, state, action, params)
        return obs, state, jax.random.bernoulli(key, 0.25).astype(jnp.float32), done, info


@pytest.fixture(scope="module")
def bernoulli_quantiles():
    """``{kappa: f32[2 runs, 4]}``: QR-DQN's 4 quantiles of the Bernoulli probe, kappa .05 and 1
    (traced: both in one compiled program, one run each of two seeds)."""
    register("BernoulliProbe", BernoulliProbe)
    try:
        cfg = jaxdqn.preset("probes").replace(env_id="BernoulliProbe", distributional="qr",
                                              num_quantiles=4)
        kappas = jnp.array([0.05, 0.05, 1.0, 1.0])
        out = train_seeds(cfg, jax.random.split(jax.random.key(7), 4),
                          HParams.from_config(cfg)._replace(kappa=kappas))
        quantiles = jax.vmap(make_head_fn(cfg), in_axes=(0, None))(out.params, jnp.zeros(1))
    finally:
        envs_module._OWN_ENVS.pop("BernoulliProbe", None)
        envs_module._built_env_spec.cache_clear()
    return {0.05: np.asarray(quantiles[:2, 0]), 1.0: np.asarray(quantiles[2:, 0])}


def test_qr_learns_the_quantiles_of_a_bernoulli_return(bernoulli_quantiles):
    """The minimiser theta of the expected quantile Huber loss at level tau, for a return of 1 with
    probability 1/4 and 0 otherwise, sets .75 (1 - tau) min(theta, kappa) = .25 tau
    min(1 - theta, kappa). kappa .05: theta = tau kappa / (3 (1 - tau)) for tau < 3/4 and
    1 - theta = 3 (1 - tau) kappa / tau above: within kappa of the Bernoulli's quantiles
    [0, 0, 0, 1]."""
    tau = np.array([0.125, 0.375, 0.625, 0.875])
    kappa = 0.05
    expected = np.where(tau < 0.75, tau * kappa / (3 * (1 - tau)),
                        1 - 3 * (1 - tau) * kappa / tau)  # [.0024, .01, .0278, .9786]
    np.testing.assert_allclose(bernoulli_quantiles[kappa], np.broadcast_to(expected, (2, 4)),
                               atol=0.01)
    np.testing.assert_allclose(bernoulli_quantiles[kappa], np.broadcast_to([0, 0, 0, 1], (2, 4)),
                               atol=kappa)


def test_with_kappa_1_on_returns_in_0_1_qr_learns_expectiles(bernoulli_quantiles):
    """Every error is within kappa = 1: the loss is quadratic, and its minimiser is the
    expectile .25 tau / (.75 (1 - tau) + .25 tau) = [.045, .167, .357, .7], not the quantile.
    Expectiles move with the data: the buffer's last 1000 rewards give p = 1/4 to about +-.014,
    which moves them by up to about .03 (measured: .034 at most over the two runs)."""
    tau = np.array([0.125, 0.375, 0.625, 0.875])
    expected = 0.25 * tau / (0.75 * (1 - tau) + 0.25 * tau)
    np.testing.assert_allclose(bernoulli_quantiles[1.0], np.broadcast_to(expected, (2, 4)),
                               atol=0.05)
    assert np.abs(bernoulli_quantiles[1.0] - bernoulli_quantiles[0.05])[:, 1:].min() > 0.1
