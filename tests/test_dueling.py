"""The dueling head (``DQNConfig.dueling``): Q = V + A - mean of A over the legal actions, checked
on random and on hand-set networks, its parameter counts by hand, every estimator's target over a
dueling network with a mask, and the probes learned with it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from trees import stacked_over_keys

import jaxdqn
from jaxdqn import DQNConfig, expected_q, init_q_params, make_q_fn, make_train
from jaxdqn.buffer import Transition
from jaxdqn.checkpoint import load_checkpoint, save_checkpoint
from jaxdqn.envs import env_spec
from jaxdqn.envs.probes import PROBE_TOLERANCES
from jaxdqn.estimators import ESTIMATORS
from jaxdqn.networks import cnn_apply, dueling_q, make_q_network, num_params
from jaxdqn.run_folder import CheckpointError
from jaxdqn.update import init_train_state, make_td_update

MLP = DQNConfig(dueling=True)  # CartPole: 4 -> 120 -> 84 -> V+A2
CNN = jaxdqn.preset("minatar").replace(dueling=True)  # 10x10x4 -> conv16k3 -> 128 -> V+A3


def _streams(cfg, params, obs, legal=None):
    """``(Q, V)`` of flax's ``QNetwork.apply``: V is the ``value`` layer's output ``f32[..., 1]``,
    captured on the way."""
    q, state = make_q_network(cfg).apply(params, obs, legal, capture_intermediates=True,
                                         mutable=["intermediates"])
    return q, state["intermediates"]["value"]["__call__"][0]


def _random_obs(cfg, key, n):
    spec = env_spec(cfg)
    if spec.obs_dtype == np.bool_:
        return jax.random.bernoulli(key, 0.3, (n, *spec.obs_shape))
    return jax.random.normal(key, (n, *spec.obs_shape))


def _noisy(params, key):
    """Params with nonzero biases, so the streams' means are far from 0."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [x + 0.3 * jax.random.normal(k, x.shape)
                                        for x, k in zip(leaves, keys)])


@pytest.mark.parametrize("cfg", [MLP, CNN], ids=["mlp", "cnn"])
def test_advantages_average_to_zero_at_every_state(cfg):
    params = _noisy(init_q_params(cfg, jax.random.key(0)), jax.random.key(1))
    obs = _random_obs(cfg, jax.random.key(2), 64)
    q_fn = jax.jit(make_q_fn(cfg))  # cnn_apply for the CNN
    q = q_fn(params, obs)
    q_ref, value = _streams(cfg, params, obs)
    np.testing.assert_allclose(q, q_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose((q - value).mean(-1), 0.0, atol=1e-5)
    assert float(jnp.abs(q.mean(-1)).min()) > 1e-3  # Q's mean is V, not 0
    # The advantage stream raised by 1 everywhere (its mean far from 0): the same Q.
    raised = jax.tree.map(lambda x: x, params)
    raised["params"]["advantage"]["bias"] = params["params"]["advantage"]["bias"] + 1.0
    np.testing.assert_allclose(q_fn(raised, obs), q, rtol=1e-5, atol=1e-5)


def test_with_a_mask_the_advantages_of_the_legal_actions_average_to_zero():
    cfg = DQNConfig(env_id="MaxBiasMDP-book", hidden_sizes=(16,), dueling=True)
    params = _noisy(init_q_params(cfg, jax.random.key(0)), jax.random.key(1))
    obs = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # in A (2 legal of 10), in B, after
    legal = env_spec(cfg).legal_fn(obs)
    assert legal.sum(-1).tolist() == [2, 10, 10]
    q = make_q_fn(cfg)(params, obs)  # the mask comes from the observation
    q_ref, value = _streams(cfg, params, obs, legal)
    np.testing.assert_allclose(q, q_ref, rtol=1e-6)
    advantage = np.asarray(q - value)
    legal = np.asarray(legal)
    np.testing.assert_allclose((advantage * legal).sum(-1), 0.0, atol=1e-5)
    assert abs(advantage[0].mean()) > 1e-2  # over all 10 actions in A it is not 0


def test_cnn_apply_takes_the_mean_over_legal_actions_as_flax_does():
    params = _noisy(init_q_params(CNN, jax.random.key(3)), jax.random.key(4))
    obs = _random_obs(CNN, jax.random.key(5), 8)
    legal = jnp.array([[True, True, True], [True, False, True], [False, False, True]] * 3)[:8]
    q = cnn_apply(params, obs, 1, legal)
    q_ref, value = _streams(CNN, params, obs, legal)
    np.testing.assert_allclose(q, q_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(((q_ref - value) * legal).sum(-1), 0.0, atol=1e-5)


def _hand_params():
    """Probe6 (obs [x], 2 actions): h = relu(x * [1, -1] + [0.5, 0.5]), V = h @ [2, 1] + 1,
    A = h @ [[1, 3], [2, -1]] + [0, 1]."""
    f = lambda *a: jnp.array(a, jnp.float32)  # noqa: E731
    return {"params": {
        "Dense_0": {"kernel": f([1.0, -1.0]), "bias": f(0.5, 0.5)},
        "value": {"kernel": f([2.0], [1.0]), "bias": f(1.0)},
        "advantage": {"kernel": f([1.0, 3.0], [2.0, -1.0]), "bias": f(0.0, 1.0)}}}


def test_q_is_v_plus_a_minus_the_mean_of_a_on_a_hand_set_network():
    cfg = DQNConfig(env_id="Probe6", hidden_sizes=(2,), dueling=True)
    q = make_q_fn(cfg)(_hand_params(), jnp.array([[0.0], [1.0]]))
    # x = 0: h = [0.5, 0.5], V = 2.5, A = [1.5, 2.0], mean 1.75: Q = [2.25, 2.75].
    # x = 1: h = [1.5, 0], V = 4, A = [1.5, 5.5]; only action 0 is legal, mean 1.5: Q = [4, 8].
    np.testing.assert_allclose(q, [[2.25, 2.75], [4.0, 8.0]], rtol=1e-6)
    # Without the mask (Probe5 has none) the mean at x = 1 is 3.5: Q = [2, 6].
    unmasked = make_q_fn(cfg.replace(env_id="Probe5"))(_hand_params(), jnp.array([[1.0]]))
    np.testing.assert_allclose(unmasked, [[2.0, 6.0]], rtol=1e-6)


def test_a_state_without_legal_actions_takes_a_mean_of_zero():
    q = dueling_q(jnp.array([[1.0]]), jnp.array([[2.0, 3.0]]), jnp.array([[False, False]]))
    np.testing.assert_array_equal(q, [[3.0, 4.0]])


def test_parameter_counts_by_hand():
    # CartPole: 4*120 + 120, 120*84 + 84, advantage 84*2 + 2, value 84 + 1.
    assert num_params(init_q_params(MLP, jax.random.key(0))) == 600 + 10_164 + 170 + 85 == 11_019
    # Breakout-MinAtar: conv 3*3*4*16 + 16, dense 1024*128 + 128, advantage 128*3 + 3, value 129.
    params = init_q_params(CNN, jax.random.key(0))["params"]
    assert jax.tree.map(jnp.shape, params) == {
        "Conv_0": {"kernel": (3, 3, 4, 16), "bias": (16,)},
        "Dense_0": {"kernel": (1024, 128), "bias": (128,)},
        "advantage": {"kernel": (128, 3), "bias": (3,)},
        "value": {"kernel": (128, 1), "bias": (1,)}}
    assert num_params(params) == 592 + 131_200 + 387 + 129 == 132_308


def test_off_the_params_are_the_plain_networks():
    for cfg in (MLP, CNN):
        plain = cfg.replace(dueling=False)
        assert cfg.dueling and not plain.dueling
        layers = set(init_q_params(plain, jax.random.key(0))["params"])
        assert "value" not in layers and "advantage" not in layers
    assert not DQNConfig().dueling and not make_q_network(DQNConfig()).dueling


def test_dueling_must_be_a_bool():
    with pytest.raises(ValueError, match=r"DQNConfig.dueling=1 is invalid: must be True or False"):
        DQNConfig(dueling=1)


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_every_estimator_bootstraps_a_dueling_head_over_the_legal_actions(estimator):
    """A linear dueling Q on Probe6, one head per member: V([1]) = -1, A([1]) = [0, 6]. Over the
    legal action 0 alone Q([1]) = [-1, 5]; the target from s' = [1] with reward 0 is
    ``0.9 * -1`` (with the illegal action it would be ``0.9 * 5``), Munchausen's plus its bonus."""
    cfg = DQNConfig(env_id="Probe6", hidden_sizes=(), buffer_size=64, learning_starts=32,
                    batch_size=2, estimator=estimator, optimizer="sgd", dueling=True)
    members = cfg.num_members
    stack = (lambda x: x) if members == 1 else (
        lambda x: jnp.broadcast_to(x, (members, *x.shape)))
    params = {"params": {"value": {"kernel": stack(jnp.array([[-1.0]]))},
                         "advantage": {"kernel": stack(jnp.array([[0.0, 6.0]]))}}}
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, init_q_params(cfg, jax.random.key(0)))
    state = init_train_state(cfg, params, optax.sgd(0.0))
    batch = Transition(obs=jnp.zeros((2, 1)), action=jnp.zeros((2,), jnp.int32),
                       reward=jnp.zeros((2,)), terminated=jnp.zeros((2,), bool),
                       next_obs=jnp.ones((2, 1)))
    td_update = make_td_update(cfg, make_q_fn(cfg), optax.sgd(0.0), env_spec(cfg).legal_fn)
    _, info = td_update(state, batch, 0.9, jax.random.key(0))
    expected = 0.9 * -1.0
    if estimator == "munchausen":
        # Its soft value over the one legal action is Q'([1], 0) = -1 too; at s = [0] both actions
        # are legal and Q' = [0, 0], so pi'(a|s) = 1/2 and the bonus is alpha tau log(1/2).
        expected += cfg.munchausen_alpha * cfg.munchausen_tau * np.log(0.5)
    assert float(info.target) == pytest.approx(expected)


def test_a_checkpoint_records_the_dueling_head(tmp_path):
    params = jax.tree.map(lambda x: x[None], init_q_params(MLP, jax.random.key(0)))
    save_checkpoint(tmp_path / "cp.msgpack", params, MLP)
    ckpt = load_checkpoint(tmp_path / "cp.msgpack", config=MLP)
    assert ckpt.config.dueling
    with pytest.raises(CheckpointError, match=r"holds a 4 -> 120 -> 84 -> V\+A2 network"):
        load_checkpoint(tmp_path / "cp.msgpack", config=MLP.replace(dueling=False))


@pytest.mark.parametrize("probe, tol", PROBE_TOLERANCES.items())
def test_every_probe_learns_its_exact_q_values_with_a_dueling_head(probe, tol):
    cfg = jaxdqn.preset("probes").replace(env_id=probe, dueling=True)
    out = stacked_over_keys(make_train(cfg), jax.random.split(jax.random.key(42), 4))
    q_fn = make_q_fn(cfg)
    for obs, q_expected in expected_q(probe, cfg.gamma).items():
        q = jax.vmap(q_fn, in_axes=(0, None))(out.params, jnp.array(obs))
        legal = ~np.isnan(q_expected)  # an illegal action has no value (Probe6's in [1])
        np.testing.assert_allclose(q[:, legal], np.broadcast_to(q_expected, q.shape)[:, legal],
                                   atol=tol, err_msg=f"{probe} Q({obs})")
