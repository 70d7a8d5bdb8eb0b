import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn import DQNConfig, QNetwork, init_q_params, make_q_fn
from jaxdqn.networks import num_params


def test_cartpole_network_has_the_seeds_10934_parameters():
    params = init_q_params(DQNConfig(), jax.random.key(0))
    shapes = [x.shape for x in jax.tree.leaves(params)]
    assert sorted(shapes) == sorted([(120,), (4, 120), (84,), (120, 84), (2,), (84, 2)])
    assert num_params(params) == 10_934


def test_q_fn_is_linear_relu_linear_relu_linear():
    cfg = DQNConfig()
    params = init_q_params(cfg, jax.random.key(1))
    obs = np.asarray(jax.random.normal(jax.random.key(2), (7, 4)))
    p = jax.tree.map(np.asarray, params["params"])
    h = np.maximum(obs @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0)
    h = np.maximum(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], 0)
    expected = h @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"]  # no ReLU on the head
    q = make_q_fn(cfg)(params, obs)
    assert q.shape == (7, 2)
    np.testing.assert_allclose(q, expected, rtol=1e-5, atol=1e-5)
    assert (expected < 0).any()  # would fail if a ReLU were applied to the head


def test_q_fn_handles_any_leading_axes_and_vmaps_over_params():
    cfg = DQNConfig(env_id="Probe4", hidden_sizes=(8,), buffer_size=256, learning_starts=128)
    q_fn = make_q_fn(cfg)
    keys = jax.random.split(jax.random.key(0), 3)
    params = jax.vmap(lambda k: init_q_params(cfg, k))(keys)
    q = jax.vmap(q_fn, in_axes=(0, None))(params, jnp.ones((5, 6, 1)))
    assert q.shape == (3, 5, 6, 2)
    assert not np.allclose(q[0], q[1])  # each key gives its own init
    assert isinstance(QNetwork(num_actions=2), QNetwork)


def test_init_is_flax_dense_default_lecun_normal_kernels_and_zero_biases():
    params = init_q_params(DQNConfig(), jax.random.key(3))["params"]
    flax_params = QNetwork(num_actions=2).init(jax.random.key(3), jnp.zeros(4))["params"]
    for name, fan_in in (("Dense_0", 4), ("Dense_1", 120), ("Dense_2", 84)):
        np.testing.assert_array_equal(params[name]["bias"], 0.0)
        w = np.asarray(params[name]["kernel"])
        std = 1 / np.sqrt(fan_in)  # LeCun: variance 1 / fan_in, truncated at 2 sd of the raw normal
        assert w.shape == flax_params[name]["kernel"].shape
        assert np.all(np.abs(w) <= 2 * std / 0.87962566103423978 + 1e-6)
    w = np.asarray(params["Dense_1"]["kernel"]).ravel()  # 10,080 draws
    assert abs(w.var() * 120 - 1) < 0.05  # the estimate's sd is ~0.012
    assert abs(w.mean()) < 5 / np.sqrt(120 * w.size)
    # the same distribution as flax's own init (compare the two samples' spreads)
    ref = np.asarray(flax_params["Dense_1"]["kernel"]).ravel()
    assert abs(w.std() / ref.std() - 1) < 0.05
    # layers do not reuse each other's draws
    assert not np.allclose(params["Dense_2"]["kernel"][:, 0], params["Dense_1"]["kernel"][:84, 0])
