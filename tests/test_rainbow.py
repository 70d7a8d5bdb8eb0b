"""The Rainbow preset and the composition of its six components: noisy layers in a dueling C51
head on the MinAtar CNN, trained with n-step returns, prioritized replay and Double DQN."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn import DQNConfig, preset
from jaxdqn.networks import init_q_params, make_head_fn, make_noise_head_fn
from jaxdqn.noisy_nets import draw_noise
from jaxdqn.train import make_train

# Revisiting Rainbow's MinAtar settings (Configs/rainbow_*.gin on Dopamine's JaxDQNAgent defaults)
REVISITING_RAINBOW = dict(
    n_step=3, prioritized=True, priority_exponent=0.5, distributional="c51", num_atoms=51,
    v_min=-100.0, v_max=100.0, dueling=True, noisy=True, estimator="double_dqn",
    conv_channels=(16,), conv_kernel_size=3, hidden_sizes=(), learning_rate=1e-4,
    adam_eps=3.125e-4, batch_size=32, buffer_size=100_000, learning_starts=1000,
    train_frequency=4, target_update_freq=1000, gamma=0.99, start_epsilon=0.01,
    end_epsilon=0.01, exploration_steps=250_000, sticky_action_prob=0.1,
    total_timesteps=1_000_000)

# Rainbow minus each component, as the ablation trains them
MINUS = {"n_step": dict(n_step=1), "prioritized": dict(prioritized=False),
         "c51": dict(distributional="none"), "dueling": dict(dueling=False),
         "noisy": dict(noisy=False, start_epsilon=1.0), "double": dict(estimator="dqn")}


def test_the_preset_is_revisiting_rainbows_minatar_configuration():
    cfg = preset("rainbow-minatar")
    for name, value in REVISITING_RAINBOW.items():
        assert getattr(cfg, name) == value, name
    assert cfg.env_id == "Breakout-MinAtar" and cfg.network == "cnn"


@pytest.mark.parametrize("component", sorted(MINUS))
def test_rainbow_minus_each_component_is_a_valid_config(component):
    cfg = preset("rainbow-minatar").replace(**MINUS[component])
    changed = {f.name for f in dataclasses.fields(DQNConfig)
               if getattr(cfg, f.name) != getattr(preset("rainbow-minatar"), f.name)}
    # turning C51 off resets its support to the fields' defaults (the scalar head has none)
    resets = {"v_min", "v_max"} if component == "c51" else set()
    assert changed == set(MINUS[component]) | resets
    if component == "noisy":  # Dopamine's linear decay from 1 to 0.01 over 250k steps
        assert (cfg.start_epsilon, cfg.end_epsilon, cfg.exploration_steps) == (1.0, 0.01, 250_000)


def test_noisy_c51_dueling_head_is_its_mean_head_with_zero_sigma():
    cfg = preset("rainbow-minatar").replace(noisy_sigma0=0.0)
    params = init_q_params(cfg, jax.random.key(0))
    obs = jax.random.bernoulli(jax.random.key(1), 0.2, (5, 10, 10, 4))
    noise = draw_noise(jax.random.key(2), params)
    mean = make_head_fn(cfg)(params, obs)
    assert mean.shape == (5, 3, 51)  # Breakout-MinAtar's 3 actions, 51 atoms
    np.testing.assert_array_equal(make_noise_head_fn(cfg)(params, obs, noise), mean)
    # with sigma_0 = 0.5 the same draw moves every logit of the head
    noisy = init_q_params(cfg.replace(noisy_sigma0=0.5), jax.random.key(0))
    moved = make_noise_head_fn(cfg)(noisy, obs, noise) != make_head_fn(cfg)(noisy, obs)
    assert bool(jnp.all(moved))


def test_a_short_rainbow_run_learns_with_finite_losses():
    cfg = preset("rainbow-minatar").replace(total_timesteps=2000, learning_starts=500,
                                            buffer_size=2000, log_interval=500)
    out = jax.jit(make_train(cfg))(jax.random.key(0))
    loss = np.asarray(out.metrics.td_loss)
    assert np.all(np.isfinite(loss)) and np.all(loss > 0)
    assert np.all(np.asarray(out.metrics.nonfinite) == 0)
    # the C51 mean of a 2000-step run is small against the [-100, 100] support
    assert np.all(np.abs(np.asarray(out.metrics.q_taken)) < 5)
