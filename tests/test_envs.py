"""The env of a config is built once: ``env_spec`` carries what the library derives from it."""

import jax.numpy as jnp

from jaxdqn import DQNConfig, envs
from jaxdqn.envs import env_spec, env_spec_of, register
from jaxdqn.envs.max_bias import MaxBiasMDP
from jaxdqn.envs.probes import PROBES


def test_spec_holds_what_the_library_derives_from_the_env():
    spec = env_spec(DQNConfig(env_id="CartPole-v1", max_episode_steps=200))
    assert (spec.obs_shape, spec.obs_dtype, spec.num_actions) == ((4,), jnp.float32, 2)
    assert spec.max_steps == 200 == int(spec.params.max_steps_in_episode)
    assert spec.legal_fn is None  # every action legal
    minatar = env_spec(DQNConfig(env_id="Breakout-MinAtar"))
    assert (minatar.obs_shape, minatar.obs_dtype) == ((10, 10, 4), jnp.bool_)  # as stored
    book = env_spec_of("MaxBiasMDP-book")
    assert book.legal_fn(jnp.eye(2)[:1]).shape == (1, book.num_actions)


def test_spec_is_built_once_per_env_id_and_time_limit():
    cfg = DQNConfig(env_id="CartPole-v1")
    assert env_spec(cfg) is env_spec(cfg.replace(gamma=0.5)) is env_spec_of("CartPole-v1")
    assert env_spec(cfg) is not env_spec(cfg.replace(max_episode_steps=100))


def test_registering_an_id_again_replaces_its_spec():
    try:
        register("SpecTestEnv", PROBES["Probe1"])
        assert env_spec_of("SpecTestEnv").num_actions == 1
        register("SpecTestEnv", MaxBiasMDP)
        assert env_spec_of("SpecTestEnv").num_actions == 10
    finally:
        envs._OWN_ENVS.pop("SpecTestEnv", None)
        envs._built_env_spec.cache_clear()
