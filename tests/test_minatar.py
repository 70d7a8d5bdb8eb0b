"""MinAtar: gymnax's games with bool observations, the CNN Q-network (shapes, parameter count,
its im2col form against flax's), bool observations in the replay buffer and the memory estimate,
and a short vmapped run."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn import DQNConfig, QNetwork, init_q_params, make_q_fn
from jaxdqn.buffer import Transition, buffer_add, buffer_bytes, buffer_init, buffer_sample
from jaxdqn.config import preset
from jaxdqn.envs import MINATAR_ENV_IDS, make_env
from jaxdqn.memory import estimate_memory, transition_bytes
from jaxdqn.networks import env_spec, network_kind, num_params
from jaxdqn.parallel import make_train_seeds

CHANNELS = {"Asterix-MinAtar": (4, 5), "Breakout-MinAtar": (4, 3), "Freeway-MinAtar": (7, 3),
            "Seaquest-MinAtar": (10, 6), "SpaceInvaders-MinAtar": (6, 4)}


@pytest.mark.parametrize("env_id", MINATAR_ENV_IDS)
def test_every_minatar_id_resets_and_steps_with_gymnax_frames_as_bools(env_id):
    env, params = make_env(env_id)
    raw_env, raw_params = gymnax.make(env_id)
    channels, actions = CHANNELS[env_id]
    assert env.num_actions == actions
    assert env.observation_space(params).shape == (10, 10, channels)
    assert env.observation_space(params).dtype == jnp.bool_
    key = jax.random.key(0)
    obs, state = env.reset(key, params)
    raw_obs, _ = raw_env.reset(key, raw_params)
    assert obs.dtype == jnp.bool_ and obs.shape == (10, 10, channels)
    np.testing.assert_array_equal(obs, raw_obs.astype(bool))
    assert set(np.unique(np.asarray(raw_obs))) <= {0.0, 1.0}  # the cast loses nothing
    for t in range(5):
        k = jax.random.fold_in(key, t)
        out = env.step(k, state, t % actions, params)
        raw = raw_env.step(k, state, t % actions, raw_params)
        assert out[0].dtype == jnp.bool_ and out[5]["final_observation"].dtype == jnp.bool_
        np.testing.assert_array_equal(out[0], raw[0])
        np.testing.assert_array_equal(out[5]["final_observation"], raw[5]["final_observation"])
        state = out[1]


def test_minatar_picks_the_papers_cnn_with_132179_parameters():
    cfg = preset("minatar")
    assert network_kind(cfg) == "cnn"
    params = init_q_params(cfg, jax.random.key(0))["params"]
    shapes = jax.tree.map(lambda x: x.shape, params)
    assert shapes == {"Conv_0": {"kernel": (3, 3, 4, 16), "bias": (16,)},
                      "Dense_0": {"kernel": (8 * 8 * 16, 128), "bias": (128,)},
                      "Dense_1": {"kernel": (128, 3), "bias": (3,)}}
    # conv 3*3*4*16 + 16, dense 1024*128 + 128, head 128*3 + 3
    assert num_params(params) == 592 + 131_200 + 387 == 132_179
    with pytest.raises(ValueError, match="network='mlp' is invalid for env_id='Breakout-MinAtar'"):
        network_kind(cfg.replace(network="mlp"))


@pytest.mark.parametrize("env_id, conv_channels, kernel", [
    ("Breakout-MinAtar", (16,), 3), ("Seaquest-MinAtar", (8, 5), 2)])
def test_cnn_q_fn_equals_flax_qnetwork_and_its_gradients(env_id, conv_channels, kernel):
    cfg = DQNConfig(env_id=env_id, hidden_sizes=(32, 16), conv_channels=conv_channels,
                    conv_kernel_size=kernel)
    obs_shape, num_actions = env_spec(cfg)
    params = init_q_params(cfg, jax.random.key(1))
    params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(2), x.shape),
                          params)  # nonzero biases too
    flax_net = QNetwork(num_actions, (32, 16), conv_channels, kernel)
    obs = jax.random.bernoulli(jax.random.key(3), 0.3, (2, 5, *obs_shape))  # any leading axes
    q_fn = make_q_fn(cfg)
    q, ref = q_fn(params, obs), flax_net.apply(params, obs)
    assert q.shape == (2, 5, num_actions)
    np.testing.assert_allclose(q, ref, rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda p: jnp.sum(jnp.sin(f(p, obs)))  # noqa: E731
    grads, ref_grads = jax.grad(loss(q_fn))(params), jax.grad(loss(flax_net.apply))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 grads, ref_grads)


def test_bool_observations_are_stored_and_sampled_exactly():
    obs = jax.random.bernoulli(jax.random.key(0), 0.2, (7, 10, 10, 4))
    next_obs = jnp.logical_not(obs)
    buf = buffer_init(5, (10, 10, 4), jnp.bool_)
    batch = Transition(obs, jnp.arange(7), jnp.arange(7.0), jnp.arange(7) % 2 == 0, next_obs)
    buf = buffer_add(buf, batch)  # wraps: slots hold transitions 5, 6, 2, 3, 4
    assert buf.data.obs.dtype == jnp.bool_ and buf.data.next_obs.dtype == jnp.bool_
    np.testing.assert_array_equal(buf.data.obs, obs[np.array([5, 6, 2, 3, 4])])
    sample = buffer_sample(buf, jax.random.key(1), 64)
    assert sample.obs.dtype == jnp.bool_
    for o, n, a in zip(sample.obs, sample.next_obs, sample.action):
        np.testing.assert_array_equal(o, obs[a])
        np.testing.assert_array_equal(n, next_obs[a])
    # 400 + 400 bool cells, action i32, reward f32, terminated bool
    assert buffer_bytes(buf) == 5 * 809


def test_memory_estimate_counts_bool_observations():
    cfg = preset("minatar-fast")
    assert transition_bytes(cfg) == 809
    assert estimate_memory(cfg, 1).buffer_bytes == 100_000 * 809  # 80.9 MB (f32: 320.9 MB)


def test_a_short_minatar_run_compiles_and_runs_vmapped_within_its_memory_estimate():
    cfg = preset("minatar-fast").replace(total_timesteps=400, buffer_size=256, learning_starts=64,
                                         target_update_freq=100, log_interval=200)
    keys = jax.random.key_data(jax.random.split(jax.random.key(0), 2))
    fn = make_train_seeds(cfg, None)
    compiled = fn.lower(keys, None).compile()
    stats = compiled.memory_analysis()
    actual = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
    assert actual <= estimate_memory(cfg, 2, len(jax.devices())).device_bytes
    out = compiled(keys, None)
    assert out.metrics.updates.shape == (2, 2)
    # first update after iteration ceil(64 / 4) - 1 = 15 of 100 (4 env steps each)
    np.testing.assert_array_equal(out.metrics.updates[0], [50 - 15, 100 - 15])
    assert np.isfinite(np.asarray(out.metrics.td_loss)).all()
    assert not np.allclose(out.params["params"]["Conv_0"]["kernel"][0],
                           out.params["params"]["Conv_0"]["kernel"][1])
