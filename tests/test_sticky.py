"""Sticky actions (``jaxdqn.envs.sticky``): the repeat frequency of the executed action against
the original MinAtar, the unwrapped env's trajectory at p = 0, and the buffer storing the agent's
actions.

With uniformly random agent actions over ``|A|`` actions, the executed action equals the previous
executed one with probability ``p + (1 - p) / |A|`` at every step, whatever came before (the coin
and the agent's action are fresh draws), so the repeat count over ``N`` steps is binomial and the
tolerances below are 4 of its standard deviations ``sqrt(q (1 - q) / N)``.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from jaxdqn.checkpoint import load_resume_state, save_resume_state
from jaxdqn.config import DQNConfig, preset
from jaxdqn.envs import env_spec, known_env_ids, legal_actions_fn, make_env
from jaxdqn.envs.ids import LEGAL_MASK_ENV_IDS
from jaxdqn.envs.sticky import StickyActions
from jaxdqn.train import make_trainer


def rollout(env, params, key, actions):
    """Steps ``n`` copies of ``env`` (auto-resetting) with ``actions: i32[T, n]``; step ``t`` of
    copy ``i`` gets key ``split(split(key, T)[t], n)[i]``. Returns ``(obs, reward, terminated,
    state)`` stacked over steps (``state`` the env's state after each step)."""
    num_steps, n = actions.shape
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n), params)

    def step(state, xs):
        k, action = xs
        obs, state, reward, terminated, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k, n), state, action, params)
        return state, (obs, reward, terminated, state)

    return jax.lax.scan(step, state, (jax.random.split(key, num_steps), actions))[1]


def repeat_fraction(executed: np.ndarray) -> float:
    """The fraction of steps whose executed action equals the copy's previous one (``i32[T, n]``,
    the first step against the initial last action, 0)."""
    previous = np.concatenate([np.zeros_like(executed[:1]), executed[:-1]])
    return float(np.mean(executed == previous))


def tolerance(q: float, n: int) -> float:
    return 4 * math.sqrt(q * (1 - q) / n)


BREAKOUT = "Breakout-MinAtar"  # 3 actions in gymnax (the original's minimal action set)


@pytest.fixture(scope="module")
def executed_breakout():
    """``i32[2000, 64]``: the actions the sticky (p = 0.1) Breakout executed under uniformly random
    agent actions, from a jitted scan with a fixed key."""
    env, params = make_env(BREAKOUT, sticky_action_prob=0.1)
    actions = jax.random.randint(jax.random.key(7), (2000, 64), 0, env.num_actions)
    run = jax.jit(lambda key, a: rollout(env, params, key, a)[3].last_action)
    return np.asarray(run(jax.random.key(3), actions))


def test_repeat_frequency_of_ours_is_p_plus_the_chance_of_the_same_draw(executed_breakout):
    q = 0.1 + 0.9 / 3  # = 0.4
    n = executed_breakout.size  # 128,000 steps: tolerance 0.0055
    assert abs(repeat_fraction(executed_breakout) - q) < tolerance(q, n)
    assert abs(1 / 3 - q) > 10 * tolerance(q, n)  # the test tells sticky from not sticky


def test_repeat_frequency_of_the_original_minatar_is_the_same():
    minatar = pytest.importorskip("minatar")  # the minatar extra: the original games
    env = minatar.Environment("breakout", sticky_action_prob=0.1)
    env.seed(0)
    env.reset()
    actions_of = env.minimal_action_set()  # gymnax's action i is the original's actions_of[i]
    rng = np.random.default_rng(0)
    n, repeats = 5000, 0
    for _ in range(n):
        previous = env.last_action  # 0 when built, never reset (carried over episode ends)
        _, terminal = env.act(actions_of[rng.integers(len(actions_of))])
        repeats += env.last_action == previous
        if terminal:
            env.reset()
    q = 0.1 + 0.9 / 3
    assert abs(repeats / n - q) < tolerance(q, n)  # tolerance 0.028


def test_the_last_action_carries_over_an_episode_end():
    # Probe5's episodes last one step, so every step follows a reset: carried over, the repeat
    # frequency is p + (1 - p) / 2 = 0.75; started again at 0 after each reset it would be 1/2.
    env, params = make_env("Probe5", sticky_action_prob=0.5)
    actions = jax.random.randint(jax.random.key(1), (500, 16), 0, 2)
    _, _, terminated, state = jax.jit(lambda k, a: rollout(env, params, k, a))(
        jax.random.key(2), actions)
    assert bool(terminated.all())
    assert abs(repeat_fraction(np.asarray(state.last_action)) - 0.75) < tolerance(0.75, 8000)


def test_p_zero_is_the_unwrapped_env_and_its_trajectory():
    env, params = make_env(BREAKOUT)
    assert make_env(BREAKOUT, sticky_action_prob=0.0)[0].__class__ is env.__class__
    assert not isinstance(env_spec(DQNConfig(env_id=BREAKOUT)).env, StickyActions)
    assert isinstance(env_spec(preset("minatar")).env, StickyActions)
    actions = jax.random.randint(jax.random.key(5), (300, 8), 0, env.num_actions)
    plain = jax.jit(lambda k, a: rollout(env, params, k, a)[:3])(jax.random.key(4), actions)
    wrapped = jax.jit(lambda k, a: rollout(StickyActions(env, 0.0), params, k, a)[:3])(
        jax.random.key(4), actions)
    assert bool(plain[2].any())  # episodes ended (and reset) inside the window
    for a, b in zip(plain, wrapped, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_env_executes_the_sticky_action_with_its_own_keys_unchanged():
    # The wrapped env driven by the agent's actions is the unwrapped env driven by the executed
    # ones, with the same keys: the coin's key is folded off, the env's draws are its own.
    env, params = make_env(BREAKOUT)
    sticky = StickyActions(env, 0.5)
    actions = jax.random.randint(jax.random.key(5), (300, 8), 0, env.num_actions)
    *wrapped, state = jax.jit(lambda k, a: rollout(sticky, params, k, a))(jax.random.key(4),
                                                                           actions)
    executed = state.last_action
    assert not bool((executed == actions).all())
    plain = jax.jit(lambda k, a: rollout(env, params, k, a)[:3])(jax.random.key(4), executed)
    for a, b in zip(plain, wrapped, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_buffer_stores_the_agents_actions_and_evaluation_runs_sticky(tmp_path):
    # epsilon 1: the agent's actions are uniform and independent, so a copy's consecutive stored
    # actions agree half the time (2 actions); the executed ones would agree 0.95 + 0.05 / 2.
    num_envs, steps = 4, 2000
    cfg = DQNConfig(env_id="Probe5", total_timesteps=steps, buffer_size=steps, batch_size=8,
                    learning_starts=steps, num_envs=num_envs, train_frequency=num_envs,
                    start_epsilon=1.0, end_epsilon=1.0, sticky_action_prob=0.95,
                    hidden_sizes=(4,), log_interval=1000, eval_interval=1000, eval_episodes=2)
    trainer = make_trainer(cfg)
    runner, metrics = jax.jit(lambda k: trainer.run(trainer.init(k), None, 0, cfg.num_log_rows))(
        jax.random.PRNGKey(0))  # raw key data, as a resume file holds the keys
    stored = np.asarray(runner.buffer.data.action).reshape(-1, num_envs)  # [step, copy]
    n = stored.size - num_envs
    assert abs(float(np.mean(stored[1:] == stored[:-1])) - 0.5) < tolerance(0.5, n)
    assert np.isfinite(np.asarray(metrics.eval_return)).all()
    # The sticky state (last actions) goes through a resume file and back.
    batched = jax.tree.map(lambda x: x[None], runner)
    save_resume_state(tmp_path / "resume", batched, cfg)
    restored, _ = load_resume_state(tmp_path / "resume", jax.eval_shape(lambda: batched), cfg)
    np.testing.assert_array_equal(np.asarray(restored.env_state.last_action),
                                  np.asarray(batched.env_state.last_action))


def test_sticky_action_prob_is_validated():
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"sticky_action_prob=.* is invalid: must be in \[0, "
                                             r"1\)"):
            DQNConfig(sticky_action_prob=bad)
    with pytest.raises(ValueError, match=r"sticky_action_prob=0\.1 is invalid: must be 0 with "
                                         r"env_id='MaxBiasMDP-book'"):
        DQNConfig(env_id="MaxBiasMDP-book", sticky_action_prob=0.1)
    with pytest.raises(ValueError, match="must be a finite number"):
        DQNConfig(sticky_action_prob=math.nan)
    assert preset("minatar").sticky_action_prob == preset("minatar-fast").sticky_action_prob == 0.1
    assert DQNConfig().sticky_action_prob == 0.0


def test_the_legal_mask_ids_are_the_envs_with_state_dependent_legal_actions():
    masked = {i for i in known_env_ids() if legal_actions_fn(*make_env(i)) is not None}
    assert masked == set(LEGAL_MASK_ENV_IDS) == {"MaxBiasMDP-book", "Probe6"}
    with pytest.raises(ValueError, match="its legal actions depend on the state"):
        make_env("Probe6", sticky_action_prob=0.1)
