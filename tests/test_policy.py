import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdqn import epsilon_at, epsilon_greedy


def seed_linear_schedule(current_step, start_e, end_e, exploration_fraction, total_timesteps):
    progress = min(current_step / (exploration_fraction * total_timesteps), 1.0)
    return start_e + (end_e - start_e) * progress


@pytest.mark.parametrize("step, expected", [(0, 1.0), (50_000, 0.55), (100_000, 0.1),
                                            (400_000, 0.1)])
def test_seed_schedule_values(step, expected):
    # The seed: 1.0 -> 0.1 over the first 20% of 500k steps.
    assert float(epsilon_at(step, 1.0, 0.1, 0.2, 500_000)) == pytest.approx(expected, abs=1e-6)


def test_matches_seed_formula_and_optax_where_they_agree():
    steps = np.arange(0, 1200, 7)
    ours = jax.vmap(lambda s: epsilon_at(s, 0.9, 0.05, 0.3, 3000))(steps)
    seed = [seed_linear_schedule(s, 0.9, 0.05, 0.3, 3000) for s in steps]
    np.testing.assert_allclose(ours, seed, atol=1e-6)
    optax_schedule = optax.linear_schedule(0.9, 0.05, transition_steps=900)
    np.testing.assert_allclose(ours, jax.vmap(optax_schedule)(steps), atol=1e-6)


def test_schedule_takes_traced_hyperparameters():
    eps = jax.jit(jax.vmap(epsilon_at, in_axes=(None, 0, None, 0, None)))(
        100, jnp.array([1.0, 0.5]), 0.0, jnp.array([0.1, 0.5]), 1000)
    np.testing.assert_allclose(eps, [0.0, 0.4], atol=1e-6)


def test_greedy_when_epsilon_is_zero():
    q = jnp.array([[0.0, 2.0, 1.0], [3.0, -1.0, 3.0], [-5.0, -4.0, -6.0]])
    actions = epsilon_greedy(jax.random.key(0), q, 0.0)
    np.testing.assert_array_equal(actions, [1, 0, 1])  # ties: lowest index


def test_uniform_when_epsilon_is_one_and_mixture_in_between():
    q = jnp.tile(jnp.array([0.0, 1.0, 0.0, 0.0]), (40_000, 1))
    counts = np.bincount(np.asarray(epsilon_greedy(jax.random.key(1), q, 1.0)), minlength=4)
    assert np.all(np.abs(counts / 40_000 - 0.25) < 0.01)
    # epsilon = 0.2: P(greedy) = 0.8 + 0.2/4 = 0.85
    frac = float(jnp.mean(epsilon_greedy(jax.random.key(2), q, 0.2) == 1))
    assert abs(frac - 0.85) < 0.01


def test_vmaps_over_keys_and_epsilons():
    q = jnp.zeros((4, 5, 2)).at[..., 1].set(1.0)
    keys = jax.random.split(jax.random.key(3), 4)
    actions = jax.jit(jax.vmap(epsilon_greedy))(keys, q, jnp.array([0.0, 0.0, 1.0, 1.0]))
    assert actions.shape == (4, 5) and actions.dtype == jnp.int32
    np.testing.assert_array_equal(actions[:2], 1)


def test_schedule_over_a_step_count_ignores_the_run_length():
    """``exploration_steps > 0`` sets the decay's length whatever ``total_timesteps``; 0 (a config
    that gives the fraction) keeps ``fraction * total`` bit for bit; both may be traced."""
    steps = jnp.arange(0, 4000, 250)
    for total in (3000, 30_000, 5_000_000):
        ours = jax.vmap(lambda s, t=total: epsilon_at(s, 1.0, 0.1, 0.0, t, 2000))(steps)
        np.testing.assert_allclose(ours, jax.vmap(optax.linear_schedule(1.0, 0.1, 2000))(steps),
                                   atol=1e-6)
    by_fraction = jax.vmap(lambda s: epsilon_at(s, 1.0, 0.1, 0.3, 3000))(steps)
    np.testing.assert_array_equal(
        jax.vmap(lambda s: epsilon_at(s, 1.0, 0.1, 0.3, 3000, 0))(steps), by_fraction)
    mixed = jax.jit(jax.vmap(epsilon_at, in_axes=(None, None, None, 0, None, 0)))(
        500, 1.0, 0.0, jnp.array([0.5, 0.0]), 10_000, jnp.array([0, 1000]))
    np.testing.assert_allclose(mixed, [0.9, 0.5], atol=1e-6)
    assert float(epsilon_at(500, 1.0, 0.0, None, 10_000, 1000)) == pytest.approx(0.5)
