"""Noisy nets (``DQNConfig.noisy``; Fortunato et al. 2018): the factorised noise and its moments, a
noisy layer against hand-computed values, the paper's initialisation, noise from keys (same key,
same noise; independent draws per pass and per member), deterministic evaluation on the mean
weights, the epsilons a noisy config acts with, and the probes learned with noisy layers."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from trees import assert_trees_equal

import jaxdqn
from jaxdqn import DQNConfig, expected_q, init_q_params, make_q_fn, make_train
from jaxdqn.agent import Agent
from jaxdqn.buffer import Transition
from jaxdqn.checkpoint import load_checkpoint, save_checkpoint
from jaxdqn.envs import env_spec
from jaxdqn.envs.probes import PROBE_TOLERANCES
from jaxdqn.estimators import ESTIMATORS
from jaxdqn.evaluation import make_greedy_episodes
from jaxdqn.networks import make_noisy_q_fn, num_params
from jaxdqn.noisy_nets import LayerNoise, NoisyDense, dense_apply, draw_noise, factorised
from jaxdqn.policy import make_acting_q_fn, make_noisy_acting_q_fn
from jaxdqn.run_folder import CheckpointError
from jaxdqn.train import HParams
from jaxdqn.update import init_train_state, make_td_update

MLP = DQNConfig(noisy=True)  # CartPole: 4 -> 120 -> 84 -> 2
CNN = jaxdqn.preset("minatar").replace(noisy=True, dueling=True)  # 10x10x4 -> conv -> 128 -> V+A3
MASKED = DQNConfig(env_id="MaxBiasMDP-book", hidden_sizes=(16,), dueling=True, noisy=True)


def _layer(p, q):
    """One noisy layer's params ``f32[p, q]`` (values irrelevant to the noise's shapes)."""
    return {"params": {"Dense_0": {"kernel": jnp.zeros((p, q)), "bias": jnp.zeros(q),
                                   "sigma_kernel": jnp.ones((p, q)), "sigma_bias": jnp.ones(q)}}}


def _random_obs(cfg, key, n):
    spec = env_spec(cfg)
    if spec.obs_dtype == np.bool_:
        return jax.random.bernoulli(key, 0.3, (n, *spec.obs_shape))
    return jax.random.normal(key, (n, *spec.obs_shape))


def _zero_sigma(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.zeros_like(x) if "sigma" in jax.tree_util.keystr(path) else x, params)


def test_f_of_a_hand_vector():
    x = jnp.array([-4.0, -0.25, 0.0, 1.0, 9.0])
    np.testing.assert_array_equal(factorised(x), [-2.0, -0.5, 0.0, 1.0, 3.0])


def test_the_factorised_noise_has_mean_zero_and_variance_two_over_pi():
    """eps_ij = f(a_i) f(b_j) with a, b unit normals: E = 0, Var = E[f(a)^2] E[f(b)^2] =
    (E|a|)^2 = 2 / pi; the bias noise f(b): Var = E|b| = sqrt(2 / pi)."""
    noise = draw_noise(jax.random.key(0), _layer(3, 2), (50_000,))["Dense_0"]
    assert noise.eps_in.shape == (50_000, 3) and noise.eps_out.shape == (50_000, 2)
    eps = np.asarray(noise.eps_in[:, :, None] * noise.eps_out[:, None, :]).reshape(50_000, 6)
    np.testing.assert_allclose(eps.mean(0), 0.0, atol=0.02)  # standard error 0.0036
    np.testing.assert_allclose(eps.var(0), 2 / np.pi, atol=0.02)  # 0.6366; s.e. 0.0035
    bias = np.asarray(noise.eps_out)
    np.testing.assert_allclose(bias.mean(0), 0.0, atol=0.02)
    np.testing.assert_allclose(bias.var(0), math.sqrt(2 / np.pi), atol=0.02)  # 0.7979


def test_a_noisy_layer_on_hand_set_noise():
    """mu = I, sigma_W = 0.5, eps_in = [2, 1], eps_out = [1, -1]: W = I + 0.5 [[2, -2], [1, -1]]
    = [[2, -1], [0.5, 0.5]]; b = [0.1, 0.2] + [1, 1] * [1, -1] = [1.1, -0.8]; x = [1, 2]:
    y = [2 + 1, -1 + 1] + b = [4.1, -0.8]. A second row with zero noise is the mean layer:
    [1, 2] + [0.1, 0.2]."""
    layer = {"kernel": jnp.eye(2), "bias": jnp.array([0.1, 0.2]),
             "sigma_kernel": jnp.full((2, 2), 0.5), "sigma_bias": jnp.ones(2)}
    x = jnp.array([[1.0, 2.0], [1.0, 2.0]])
    shared = LayerNoise(jnp.array([2.0, 1.0]), jnp.array([1.0, -1.0]))
    np.testing.assert_allclose(dense_apply(layer, x, shared), [[4.1, -0.8]] * 2, rtol=1e-6)
    per_row = LayerNoise(jnp.array([[2.0, 1.0], [0.0, 0.0]]), jnp.array([[1.0, -1.0], [0.0, 0.0]]))
    np.testing.assert_allclose(dense_apply(layer, x, per_row), [[4.1, -0.8], [1.1, 2.2]],
                               rtol=1e-6)
    np.testing.assert_allclose(dense_apply(layer, x), [[1.1, 2.2]] * 2, rtol=1e-6)
    flax_y = NoisyDense(2).apply({"params": layer}, x, shared)  # the flax module: the same
    np.testing.assert_allclose(flax_y, [[4.1, -0.8]] * 2, rtol=1e-6)


def test_a_noisy_layer_on_a_key_against_numpy():
    """The noise of key(7) is f of its normals in layer order, Dense_0 (1 -> 3: 1 + 3 normals)
    first, then Dense_1's 3 + 2; the layer is numpy's ``x @ (mu + sigma * outer(f_in, f_out))
    + mu_b + sigma_b * f_out``."""
    params = init_q_params(DQNConfig(env_id="Probe4", hidden_sizes=(3,), noisy=True),
                           jax.random.key(1))
    layer = jax.tree.map(np.asarray, params["params"]["Dense_1"])  # 3 -> 2
    z = np.asarray(jax.random.normal(jax.random.key(7), (1 + 3 + 3 + 2,)))[1 + 3:]
    f = np.sign(z) * np.sqrt(np.abs(z))
    noise = draw_noise(jax.random.key(7), params)["Dense_1"]
    np.testing.assert_allclose(noise.eps_in, f[:3], rtol=1e-6)
    np.testing.assert_allclose(noise.eps_out, f[3:], rtol=1e-6)
    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0]], np.float32)
    w = layer["kernel"] + layer["sigma_kernel"] * np.outer(f[:3], f[3:])
    want = x @ w + layer["bias"] + layer["sigma_bias"] * f[3:]
    np.testing.assert_allclose(dense_apply(layer, x, noise), want, rtol=1e-5)
    rows = LayerNoise(jnp.tile(noise.eps_in, (2, 1)), jnp.tile(noise.eps_out, (2, 1)))
    np.testing.assert_allclose(dense_apply(layer, x, rows), want, rtol=1e-5)  # per-row form


def test_init_is_the_papers_factorised_scheme_in_one_draw():
    params = init_q_params(MLP, jax.random.key(3))["params"]
    for name, fan_in in (("Dense_0", 4), ("Dense_1", 120), ("Dense_2", 84)):
        bound = 1 / math.sqrt(fan_in)
        for mean, sigma in (("kernel", "sigma_kernel"), ("bias", "sigma_bias")):
            np.testing.assert_allclose(params[name][sigma], 0.5 * bound, rtol=1e-6)
            assert np.all(np.abs(params[name][mean]) <= bound)
            assert np.all(params[name][mean] != 0)  # drawn, not zero
        assert np.abs(params[name]["kernel"]).max() > 0.9 * bound  # >= 168 draws span the range
    np.testing.assert_allclose(params["Dense_0"]["sigma_kernel"], 0.25)  # 0.5 / sqrt(4)
    w = np.asarray(params["Dense_1"]["kernel"]).ravel()  # 10,080 draws of U(-b, b): var b^2 / 3
    assert abs(w.var() * 3 * 120 - 1) < 0.05
    assert num_params(params) == 2 * 10_934  # a sigma for every mean
    # sigma_0 traced (HParams.noisy_sigma0): 0.2 / sqrt(4)
    traced = jax.jit(lambda s: init_q_params(MLP, jax.random.key(3), noisy_sigma0=s))(0.2)
    np.testing.assert_allclose(traced["params"]["Dense_0"]["sigma_bias"], 0.1, rtol=1e-6)
    assert HParams.from_config(MLP).noisy_sigma0 == 0.5
    # the CNN's convolution keeps the LeCun normal truncated at 2 sd (fan-in 3 * 3 * 4 = 36)
    conv = np.asarray(init_q_params(CNN, jax.random.key(4))["params"]["Conv_0"]["kernel"]).ravel()
    assert np.all(np.abs(conv) <= 2 / 6 / 0.87962566103423978 + 1e-6)
    assert abs(conv.var() * 36 - 1) < 0.15  # 576 draws
    cnn = init_q_params(CNN, jax.random.key(4))["params"]
    np.testing.assert_array_equal(cnn["Conv_0"]["bias"], 0.0)
    assert set(cnn["value"]) == {"kernel", "bias", "sigma_kernel", "sigma_bias"}
    np.testing.assert_allclose(cnn["Dense_0"]["sigma_kernel"], 0.5 / 32)  # fan-in 8 * 8 * 16


@pytest.mark.parametrize("cfg", [MLP, CNN, MASKED], ids=["mlp", "cnn-dueling", "masked-dueling"])
def test_the_noisy_forward_differs_from_the_mean_and_equals_it_with_zero_sigma(cfg):
    params = init_q_params(cfg, jax.random.key(0))
    obs = _random_obs(cfg, jax.random.key(1), 6)
    obs = obs.at[1].set(obs[0])  # one observation twice
    mean = jax.jit(make_q_fn(cfg))(params, obs)
    for per_row in (False, True):
        noisy = jax.jit(make_noisy_q_fn(cfg, per_row))
        q = noisy(params, obs, jax.random.key(2))
        assert q.shape == mean.shape
        assert float(jnp.abs(q - mean).min()) > 0  # every Q-value moved
        np.testing.assert_array_equal(noisy(params, obs, jax.random.key(2)), q)  # same key
        assert not np.allclose(noisy(params, obs, jax.random.key(3)), q)
        np.testing.assert_allclose(noisy(_zero_sigma(params), obs, jax.random.key(2)), mean,
                                   rtol=1e-6, atol=1e-6)
        # one draw for all rows, or each row its own
        assert np.array_equal(q[0], q[1]) != per_row


@pytest.fixture(scope="module")
def tiny_run():
    """A tiny noisy CartPole run (2 env copies, evaluation during training), jitted once and
    called twice with the same keys."""
    cfg = DQNConfig(noisy=True, total_timesteps=600, buffer_size=300, learning_starts=100,
                    batch_size=16, train_frequency=4, num_envs=2, hidden_sizes=(16,),
                    target_update_freq=100, log_interval=300, eval_interval=300, eval_episodes=2)
    train = jax.jit(jax.vmap(make_train(cfg)))
    keys = jax.random.split(jax.random.key(0), 2)
    return cfg, train(keys), train(keys)


def test_a_noisy_run_is_reproducible_and_acts_without_epsilon(tiny_run):
    _, out, again = tiny_run
    assert_trees_equal(out, again)
    np.testing.assert_array_equal(out.metrics.epsilon, 0.0)
    assert np.isfinite(out.metrics.td_loss[:, -1]).all()
    assert not np.allclose(out.params["params"]["Dense_0"]["kernel"][0],
                           out.params["params"]["Dense_0"]["kernel"][1])  # the seeds differ


def test_evaluation_and_loaded_agents_act_on_the_mean_weights(tiny_run, tmp_path):
    cfg, out, _ = tiny_run
    params = jax.tree.map(lambda x: x[0], out.params)
    obs = _random_obs(cfg, jax.random.key(5), 32)
    mean = make_q_fn(cfg)(params, obs)
    acting = make_acting_q_fn(cfg)
    np.testing.assert_array_equal(acting(params, obs), mean)
    np.testing.assert_array_equal(acting(params, obs), acting(params, obs))
    episodes = jax.jit(make_greedy_episodes(cfg, 3))
    first, second = episodes(params, jax.random.key(6)), episodes(params, jax.random.key(6))
    assert_trees_equal(first, second)
    save_checkpoint(tmp_path / "cp.msgpack", out.params, cfg)
    agent = jaxdqn.load(tmp_path / "cp.msgpack")
    np.testing.assert_array_equal(agent.q_values(obs), np.asarray(mean))
    np.testing.assert_array_equal(agent.act(obs), agent.act(obs))
    assert isinstance(Agent(cfg, params).act(obs[0]), np.integer)
    with pytest.raises(CheckpointError, match=r"4 -> 16 -> 2 \(noisy\) network"):
        load_checkpoint(tmp_path / "cp.msgpack", config=cfg.replace(noisy=False))


def _batch(obs, next_obs):
    n = obs.shape[0]
    return Transition(obs=obs, action=jnp.zeros((n,), jnp.int32), reward=jnp.zeros((n,)),
                      terminated=jnp.zeros((n,), bool), next_obs=next_obs)


def test_a_gradient_step_draws_independent_noise_for_each_pass():
    """Online and target networks equal, s' = s, reward 0, gamma 1: DQN's target
    ``max_a Q'(s', a)`` is the online ``max_a Q(s, a)`` but for their noise, so the two differ
    with sigma > 0 (independent draws) and agree with sigma = 0."""
    cfg = DQNConfig(env_id="Probe4", hidden_sizes=(8,), noisy=True, optimizer="sgd",
                    buffer_size=64, learning_starts=32, batch_size=4)
    params = init_q_params(cfg, jax.random.key(0))
    obs = jnp.zeros((4, 1))
    td_update = make_td_update(cfg, make_q_fn(cfg), optax.sgd(0.0))
    for p, differ in ((params, True), (_zero_sigma(params), False)):
        state = init_train_state(cfg, p, optax.sgd(0.0))
        _, info = td_update(state, _batch(obs, obs), 1.0, jax.random.key(1))
        assert (abs(float(info.target) - float(info.q_max)) > 1e-4) == differ
        _, again = td_update(state, _batch(obs, obs), 1.0, jax.random.key(1))
        assert_trees_equal(info, again)
    with pytest.raises(ValueError, match="with noisy draws random numbers"):
        td_update(state, _batch(obs, obs), 1.0)


def _fusions_computing(hlo: str, op_name: str) -> set[str]:
    """The output shapes of the fusions of optimised HLO ``hlo`` whose fused computation holds
    an op traced from ``op_name`` (its metadata)."""
    bodies, current = {}, None
    for line in hlo.splitlines():
        if line and not line.startswith(" ") and line.endswith("{"):
            current = line.split()[0].lstrip("%")
            bodies[current] = ""
        elif current:
            bodies[current] += line
    holding = {name for name, body in bodies.items() if op_name in body}
    return {m.group(1) for m in re.finditer(r"= (\S+) fusion\(.*?calls=%?([\w.\-]+)", hlo)
            if m.group(2) in holding}


def test_a_gradient_steps_noise_is_computed_once_not_inside_each_weights_fusion():
    """XLA:CPU would fuse the normal's inverse CDF into the perturbed weights' fusions, once per
    weight (a CartPole step 5x slower): the draw ``f32[passes, sum(p + q)]`` is computed alone."""
    cfg = DQNConfig(hidden_sizes=(16,), noisy=True, batch_size=8)
    params = init_q_params(cfg, jax.random.key(0))
    td_update = make_td_update(cfg, make_q_fn(cfg), optax.adam(1e-3))
    obs = jnp.zeros((8, 4))
    hlo = jax.jit(td_update).lower(init_train_state(cfg, params, optax.adam(1e-3)),
                                   _batch(obs, obs), 1.0, jax.random.key(1)).compile().as_text()
    # two passes (online at s, target at s'), each 4 -> 16 and 16 -> 2: 20 + 18 noise values
    assert {shape.split("{")[0] for shape in _fusions_computing(hlo, "erf_inv")} == {"f32[2,38]"}


def test_every_estimator_trains_and_acts_noisy_with_one_draw_per_member():
    obs = jnp.array([[0.0], [1.0], [0.0], [1.0]])
    for name in ESTIMATORS:
        cfg = DQNConfig(env_id="Probe5", hidden_sizes=(8,), noisy=True, estimator=name,
                        buffer_size=64, learning_starts=32, batch_size=4)
        params = init_q_params(cfg, jax.random.key(0))
        state = init_train_state(cfg, params, optax.adam(1e-3))
        td_update = make_td_update(cfg, make_q_fn(cfg), optax.adam(1e-3))
        new, info = td_update(state, _batch(obs, obs[::-1]), 0.9, jax.random.key(1))
        assert np.isfinite(float(info.loss)), name
        assert not np.allclose(new.params["params"]["Dense_0"]["sigma_kernel"],
                               params["params"]["Dense_0"]["sigma_kernel"]), name  # sigma learns
        if cfg.num_members > 1:  # one network acts as in tiny_run; members by their rule
            q = jax.jit(make_noisy_acting_q_fn(cfg))(params, obs, jax.random.key(2))
            assert q.shape == (4, 2) and np.isfinite(q).all(), name
    # Two members with the same params: under one shared draw their minimum (maxmin's acting
    # values) would equal their mean (double_q's); each member's own draw makes them differ.
    pair = dict(env_id="Probe5", hidden_sizes=(8,), noisy=True, ensemble_size=2)
    one = init_q_params(DQNConfig(env_id="Probe5", hidden_sizes=(8,), noisy=True),
                        jax.random.key(0))
    same = jax.tree.map(lambda x: jnp.stack([x, x]), one)
    q_min, q_mean = (jax.jit(make_noisy_acting_q_fn(DQNConfig(estimator=name, **pair)))(
        same, obs, jax.random.key(2)) for name in ("maxmin", "double_q"))
    assert np.all(q_min < q_mean)


def test_noisy_configs_act_without_epsilon_unless_one_is_set():
    assert (MLP.start_epsilon, MLP.end_epsilon) == (0.0, 0.0)
    assert (DQNConfig().start_epsilon, DQNConfig().end_epsilon) == (1.0, 0.1)
    set_end = DQNConfig(noisy=True, end_epsilon=0.01)  # one given: the other its usual default
    assert (set_end.start_epsilon, set_end.end_epsilon) == (1.0, 0.01)
    assert DQNConfig(noisy=True, start_epsilon=0.05, end_epsilon=0.05).start_epsilon == 0.05
    # replace: the default schedule is re-derived, a schedule that was set is kept
    assert (DQNConfig().replace(noisy=True).start_epsilon, MLP.replace(noisy=False).end_epsilon
            ) == (0.0, 0.1)
    kept = jaxdqn.preset("cartpole").replace(noisy=True)  # the preset sets end_epsilon=0.05
    assert (kept.start_epsilon, kept.end_epsilon) == (1.0, 0.05)
    assert MLP.replace(noisy_sigma0=0.1).replace(noisy=False).noisy_sigma0 == 0.5
    description = DQNConfig.__dataclass_fields__["noisy"].metadata["description"]
    assert "with neither start_epsilon nor end_epsilon given both are 0" in description


@pytest.mark.parametrize("changes, message", [
    (dict(noisy_sigma0=0.1), r"noisy_sigma0=0.1 is invalid: applies to noisy=True only"),
    (dict(noisy=True, noisy_sigma0=-0.5), r"noisy_sigma0=-0.5 is invalid: must be >= 0"),
    (dict(noisy=True, buffer_age_metrics=True), r"buffer_age_metrics=True is invalid: must be "
     "False with noisy=True"),
    (dict(noisy="yes"), r"noisy='yes' is invalid: must be True or False"),
])
def test_bad_noisy_fields_raise_one_clear_error(changes, message):
    with pytest.raises(ValueError, match=message):
        DQNConfig(**changes)


@pytest.mark.parametrize("probe", ["Probe1", "Probe2", "Probe3", "Probe4", "Probe5"])
def test_every_probe_learns_its_exact_q_values_with_noisy_layers(probe):
    """The probes preset (epsilon 1 -> 0.5, as it sets them) with noisy layers, on 10k steps
    (3k leave the noise of the targets ~1e-3 off the exact values); checked on the mean weights,
    the Q-values evaluation acts on."""
    cfg = jaxdqn.preset("probes").replace(env_id=probe, noisy=True, total_timesteps=10_000)
    out = jax.jit(jax.vmap(make_train(cfg)))(jax.random.split(jax.random.key(42), 4))
    q_fn = make_q_fn(cfg)
    for obs, q_expected in expected_q(probe, cfg.gamma).items():
        q = jax.vmap(q_fn, in_axes=(0, None))(out.params, jnp.array(obs))
        np.testing.assert_allclose(q, np.broadcast_to(q_expected, q.shape),
                                   atol=PROBE_TOLERANCES[probe], err_msg=f"{probe} Q({obs})")
