"""Munchausen DQN: its target against values worked out by hand, its record and its inputs in a
gradient step, the config's fields, and short runs that learn probes' (soft) Q-values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from trees import stacked_over_keys

import jaxdqn
from jaxdqn import ESTIMATORS, DQNConfig, Transition, make_q_fn, make_train
from jaxdqn.envs import legal_actions_fn
from jaxdqn.envs.probes import PROBE_TOLERANCES
from jaxdqn.estimators import Current, munchausen_target
from jaxdqn.memory import network_passes
from jaxdqn.update import init_train_state, make_optimizer, make_td_update

LN2, LN3 = math.log(2.0), math.log(3.0)
TAU, ALPHA, CLIP = 0.5, 0.9, -1.0
# Three rows, three actions, tau = 0.5 (so Q/tau doubles each value):
# row 0: Q'(s) = [0, ln2/2, 0] -> pi'(.|s) = [1/4, 1/2, 1/4]; a = 1: log pi' = -ln2 (> -1, kept);
#        Q'(s') = [1, 1, 1]: soft value tau * logsumexp(Q'/tau) = 0.5 * (2 + ln3) = 1 + ln3/2
#        (the sum: pi' = 1/3 each, Q' - tau log pi' = 1 + 0.5 ln3);
#        y = 1 + 0.9 * 0.5 * (-ln2) + 0.9 * (1 + ln3/2)
# row 1: terminal; Q'(s) = [2, 0, 0], a = 2: log pi' = -ln(e^4 + 2) ~ -4.07, clipped to -1;
#        y = -1 + 0.9 * 0.5 * (-1) = -1.45 (nothing bootstrapped)
# row 2: at s only actions 0, 1 legal: Q'(s) = [0, 0, 9] -> pi' = [1/2, 1/2, 0] (unmasked,
#        log pi'(0|s) ~ -18 would be clipped to -1); a = 0: log pi' = -ln2.
#        At s' actions 0, 2 legal: Q'(s') = [0, 5, ln3/2]: soft value 0.5 * ln(e^0 + e^ln3)
#        = 0.5 * ln4 = ln2 (the illegal 5 would dominate); gamma^2 = 0.81 (a two-step return):
#        y = 0.5 + 0.9 * 0.5 * (-ln2) + 0.81 * ln2
REWARD = jnp.array([1.0, -1.0, 0.5])
TERMINATED = jnp.array([False, True, False])
GAMMA = jnp.array([0.9, 0.9, 0.81])
ACTION = jnp.array([1, 2, 0])
Q_TARGET = jnp.array([[0.0, LN2 / 2, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
NEXT_Q_TARGET = jnp.array([[1.0, 1.0, 1.0], [3.0, -2.0, 0.0], [0.0, 5.0, LN3 / 2]])
LEGAL = jnp.array([[True, True, True], [True, True, True], [True, True, False]])
NEXT_LEGAL = jnp.array([[True, True, True], [True, True, True], [True, False, True]])
Y_BY_HAND = [1 - 0.45 * LN2 + 0.9 * (1 + LN3 / 2), -1.45, 0.5 - 0.45 * LN2 + 0.81 * LN2]


def test_target_by_hand_terminal_clip_masks_and_per_sample_gamma():
    y = munchausen_target(REWARD, TERMINATED, GAMMA, NEXT_Q_TARGET, Q_TARGET, ACTION, TAU, ALPHA,
                          CLIP, NEXT_LEGAL, LEGAL)
    np.testing.assert_allclose(y, Y_BY_HAND, rtol=1e-6)
    np.testing.assert_allclose(Y_BY_HAND, [2.082459, -1.45, 0.749533], atol=1e-6)
    # The record's target reads the same through Current and the hparams' fields.
    hp = DQNConfig(estimator="munchausen", munchausen_tau=TAU, munchausen_alpha=ALPHA,
                   munchausen_clip=CLIP)
    y_record = ESTIMATORS["munchausen"].target(
        REWARD, TERMINATED, GAMMA, NEXT_Q_TARGET, None, NEXT_LEGAL,
        current=Current(Q_TARGET, ACTION, LEGAL), hparams=hp)
    np.testing.assert_array_equal(y_record, y)


def test_alpha_zero_and_clip_zero_drop_the_bonus():
    # Without the bonus row 0 is soft DQN's 1 + 0.9 * (1 + ln3/2), row 1 the reward -1.
    for alpha, clip in ((0.0, -1.0), (0.9, 0.0)):
        y = munchausen_target(REWARD, TERMINATED, GAMMA, NEXT_Q_TARGET, Q_TARGET, ACTION, TAU,
                              alpha, clip, NEXT_LEGAL, LEGAL)
        np.testing.assert_allclose(y, [1 + 0.9 * (1 + LN3 / 2), -1.0, 0.5 + 0.81 * LN2],
                                   rtol=1e-6)


def test_small_tau_tends_to_the_dqn_target():
    # The bonus is in [alpha * tau * l0, 0] and the soft value in [max, max + tau * ln A], so
    # |y - (r + gamma * max)| <= tau * (alpha * |l0| + gamma * ln 3) = 2.0e-4 at tau = 1e-4.
    tau = 1e-4
    bound = tau * (ALPHA * 1.0 + 0.9 * LN3)
    y = munchausen_target(REWARD, TERMINATED, GAMMA, NEXT_Q_TARGET, Q_TARGET, ACTION, tau, ALPHA,
                          CLIP, NEXT_LEGAL, LEGAL)
    # r + gamma * (1 - term) * max over legal: 1 + 0.9 * 1; -1; 0.5 + 0.81 * ln3/2
    dqn = np.array([1.9, -1.0, 0.5 + 0.81 * LN3 / 2])
    assert np.all(np.abs(np.asarray(y) - dqn) <= bound + 1e-6)
    # and it is not already there at the paper's tau = 0.03 (row 1 pays the clipped bonus)
    y = munchausen_target(REWARD, TERMINATED, GAMMA, NEXT_Q_TARGET, Q_TARGET, ACTION, 0.03, ALPHA,
                          CLIP, NEXT_LEGAL, LEGAL)
    assert float(y[1]) == pytest.approx(-1.0 - 0.9 * 0.03, abs=1e-6)


def test_target_carries_no_gradient():
    g = jax.grad(lambda q, qs: munchausen_target(REWARD, TERMINATED, GAMMA, q, qs, ACTION, TAU,
                                                 ALPHA, CLIP).sum(), argnums=(0, 1))(
        NEXT_Q_TARGET, Q_TARGET)
    for x in g:
        np.testing.assert_array_equal(x, 0.0)


def test_record_network_passes_and_acting():
    record = ESTIMATORS["munchausen"]
    assert record.reads_current and not record.argmax_target and not record.stacked
    assert [n for n, e in ESTIMATORS.items() if e.reads_current] == ["munchausen"]
    cfg = DQNConfig(estimator="munchausen")
    assert (cfg.num_members, cfg.ensemble_size, cfg.trained_members) == (1, 1, "only")
    # the target network at s' and at s, the online network at s
    assert network_passes(cfg) == 3
    # epsilon-greedy on Q, as the paper: the agent acts on the online network's own values
    q_fn, obs = make_q_fn(cfg), jnp.array([[0.5, -0.1, 0.2, 1.0]])
    params = jaxdqn.init_q_params(cfg, jax.random.key(0))
    np.testing.assert_array_equal(jaxdqn.make_acting_q_fn(cfg)(params, obs), q_fn(params, obs))


def test_a_gradient_step_reads_the_target_network_at_s_and_the_traced_coefficients():
    # A linear Q of Probe4 (2 actions) at obs [1]: Q(s) = the kernel's row. Target network
    # [0, ln3/2] at s and s' -> pi' = [1/4, 3/4]; the stored action 0: log pi' = -ln4 < -1, clipped;
    # soft value 0.5 * ln(1 + 3) = ln2; y = 1 + 0.9 * 0.5 * (-1) + 0.5 * ln2.
    # The online network [5, -5] would give pi'(0|s) ~ 1, no bonus: it must not be the one read.
    cfg = DQNConfig(env_id="Probe4", hidden_sizes=(), estimator="munchausen", buffer_size=256,
                    learning_starts=128, munchausen_tau=TAU, optimizer="sgd")
    q_fn = make_q_fn(cfg)
    params = {"params": {"Dense_0": {"kernel": jnp.array([[5.0, -5.0]])}}}
    target = {"params": {"Dense_0": {"kernel": jnp.array([[0.0, LN3 / 2]])}}}
    opt = make_optimizer(cfg)
    state = init_train_state(cfg, params, opt)._replace(target_params=target)
    batch = Transition(obs=jnp.ones((1, 1)), action=jnp.array([0]), reward=jnp.array([1.0]),
                       terminated=jnp.array([False]), next_obs=jnp.ones((1, 1)))
    _, info = make_td_update(cfg, q_fn, opt)(state, batch, 0.5)
    assert float(info.target) == pytest.approx(1 - 0.45 + 0.5 * LN2, abs=1e-6)
    # the coefficients of train.HParams (traced in the loop) win over the config's: alpha = 0
    hp = jaxdqn.HParams.from_config(cfg)._replace(munchausen_alpha=jnp.float32(0.0))
    _, info = make_td_update(cfg, q_fn, opt, hparams=hp)(state, batch, 0.5)
    assert float(info.target) == pytest.approx(1 + 0.5 * LN2, abs=1e-6)


def test_a_gradient_step_masks_the_policy_with_the_envs_legal_actions():
    # Probe6 with a linear Q (as tests/test_legal_actions.py): Q'([1]) = [-1, 5], where action 1 is
    # illegal: pi'(.|[1]) = [1, 0] and the soft value is -1 (with action 1: ~5). At s = [0] both
    # actions are legal and Q'([0]) = [0, 0]: log pi'(0|s) = -ln2, bonus 0.9 * 0.03 * (-ln2).
    cfg = DQNConfig(env_id="Probe6", hidden_sizes=(), buffer_size=64, learning_starts=32,
                    batch_size=2, estimator="munchausen", optimizer="sgd")
    env, env_params = jaxdqn.make_env("Probe6")
    params = {"params": {"Dense_0": {"kernel": jnp.array([[-1.0, 5.0]])}}}
    state = init_train_state(cfg, params, optax.sgd(0.0))
    batch = Transition(obs=jnp.zeros((2, 1)), action=jnp.zeros((2,), jnp.int32),
                       reward=jnp.zeros((2,)), terminated=jnp.zeros((2,), bool),
                       next_obs=jnp.ones((2, 1)))
    td_update = make_td_update(cfg, make_q_fn(cfg), optax.sgd(0.0),
                               legal_actions_fn(env, env_params))
    _, info = td_update(state, batch, 0.9)
    assert float(info.target) == pytest.approx(0.9 * -1.0 - 0.9 * 0.03 * LN2, abs=1e-6)


def test_fields_validated_with_munchausen_and_rejected_with_another_estimator():
    cfg = DQNConfig(estimator="munchausen")
    assert (cfg.munchausen_tau, cfg.munchausen_alpha, cfg.munchausen_clip) == (0.03, 0.9, -1.0)
    for field, bad, allowed in (("munchausen_tau", 0.0, "> 0"),
                                ("munchausen_alpha", 1.5, r"in \[0, 1\]"),
                                ("munchausen_clip", 0.5, "<= 0")):
        with pytest.raises(ValueError, match=rf"DQNConfig.{field}={bad} is invalid: "
                                             rf"must be {allowed}"):
            DQNConfig(estimator="munchausen", **{field: bad})
    with pytest.raises(ValueError, match=r"DQNConfig\.munchausen_tau=0\.1 is invalid: applies to "
                                         r"estimator='munchausen' only, not 'double_dqn'"):
        DQNConfig(estimator="double_dqn", munchausen_tau=0.1)
    DQNConfig(estimator="dqn", munchausen_alpha=0.9)  # the default: nothing to reject
    # leaving munchausen resets its fields, as a fresh config would have them
    tuned = DQNConfig(estimator="munchausen", munchausen_tau=0.1)
    assert tuned.replace(estimator="dqn").munchausen_tau == 0.03
    assert tuned.replace(gamma=0.9).munchausen_tau == 0.1
    assert DQNConfig.from_dict(tuned.to_dict()) == tuned


# Probe3 (one action: log pi' = 0, the soft value is Q') learns DQN's values, gamma = 0.99;
# Probe4's action 0 pays the clipped bonus, since pi'(0) = softmax(Q'/0.03)(0) ~ e^(-2/0.03) is far
# below e^-1: Q([0]) = [-1 + 0.9 * 0.03 * (-1), +1] = [-1.027, 1].
SOFT_Q = {"Probe3": {(0.0,): [0.99], (1.0,): [1.0]}, "Probe4": {(0.0,): [-1.027, 1.0]}}


@pytest.mark.parametrize("probe", list(SOFT_Q))
def test_probe_runs_learn_the_soft_q_values_for_every_seed(probe):
    cfg = jaxdqn.preset("probes").replace(env_id=probe, estimator="munchausen")
    seeds = jax.random.split(jax.random.key(42), 4)
    out = stacked_over_keys(make_train(cfg), seeds)
    for obs, want in SOFT_Q[probe].items():
        q = jax.vmap(make_q_fn(cfg), in_axes=(0, None))(out.params, jnp.array(obs))
        np.testing.assert_allclose(q, np.broadcast_to(want, q.shape),
                                   atol=PROBE_TOLERANCES[probe], err_msg=f"{probe} Q({obs})")
