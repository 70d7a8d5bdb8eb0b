"""Replays a trained policy in the original MinAtar (the ``minatar`` package, Young and Tian 2019),
the cross-check behind ``jaxdqn evaluate RUN --minatar``.

gymnax's MinAtar games are JAX ports; playing the same Q-network in the original numpy games
checks that what was learnt is the game and not a quirk of the port. Observations have the same
``bool[10, 10, C]`` layout and channel order in both (tests/test_minatar.py compares Breakout and
Space Invaders frame by frame). The original's defaults are the MinAtar paper's protocol: sticky
actions (the previous action repeats with probability 0.1) and difficulty ramping; it has no time
limit, so ``max_steps`` caps episodes (default: the gymnax env's limit, so both sides agree).
"""

from __future__ import annotations

import numpy as np

from jaxdqn.config import DQNConfig
from jaxdqn.envs import MINATAR_ENV_IDS, env_spec

# gymnax id -> the original's game name.
ORIGINAL_GAMES = {env_id: env_id.removesuffix("-MinAtar").lower() for env_id in MINATAR_ENV_IDS}
ORIGINAL_GAMES["SpaceInvaders-MinAtar"] = "space_invaders"
STICKY_ACTION_PROB = 0.1  # the original's default and the paper's setting


def require_minatar():
    """The ``minatar`` module, or a ``ValueError`` naming the extra that installs it."""
    try:
        import minatar
    except ImportError:
        raise ValueError('the original MinAtar is not installed: pip install "jaxdqn[minatar]"') \
            from None
    return minatar


def original_env(env_id: str, seed: int, sticky_action_prob: float = STICKY_ACTION_PROB):
    """The original game of a gymnax MinAtar id, seeded (game and sticky actions share the seed's
    numpy ``RandomState``, as ``minatar.Environment.seed`` does)."""
    if env_id not in ORIGINAL_GAMES:
        raise ValueError(f"env_id={env_id!r} has no original MinAtar game; MinAtar ids: "
                         f"{', '.join(MINATAR_ENV_IDS)}")
    minatar = require_minatar()
    env = minatar.Environment(ORIGINAL_GAMES[env_id], sticky_action_prob=sticky_action_prob)
    env.seed(seed)
    env.reset()
    return env


def original_returns(config: DQNConfig, q_fn, params, num_episodes: int, seed: int,
                     seed_index: int = 0, epsilon: float = 0.0,
                     sticky_action_prob: float = STICKY_ACTION_PROB,
                     max_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(returns f64[num_episodes], truncated bool[num_episodes])`` of ``params`` in the original.

    ``q_fn(params, obs: bool[n, 10, 10, C]) -> [n, num_actions]`` (e.g. ``jax.jit(make_q_fn(
    config))``); action ``i`` is the original's ``minimal_action_set()[i]``, the index gymnax uses.
    The policy is epsilon-greedy with ``epsilon`` (0: greedy; 0.05 is the usual Atari/MinAtar
    protocol). All episodes step in lockstep, one batched Q-call per step. Episode ``e`` is
    seeded with ``SeedSequence([seed, seed_index, e])``, and so is its epsilon coin. An episode
    still running after ``max_steps`` (default: the gymnax env's time limit) is cut there.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon={epsilon!r} is invalid: must be in [0, 1]")
    if max_steps is None:
        max_steps = env_spec(config).max_steps
    seeds = [int(np.random.SeedSequence([seed, seed_index, e]).generate_state(1)[0])
             for e in range(num_episodes)]
    envs = [original_env(config.env_id, s, sticky_action_prob) for s in seeds]
    coins = [np.random.default_rng(s) for s in seeds]
    actions_of = np.asarray(envs[0].minimal_action_set())
    returns = np.zeros(num_episodes)
    alive = np.ones(num_episodes, bool)
    for _ in range(max_steps):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        obs = np.stack([envs[i].state() for i in idx])
        greedy = np.asarray(np.argmax(q_fn(params, obs), axis=-1))
        for i, a in zip(idx, greedy):
            if epsilon > 0 and coins[i].random() < epsilon:
                a = coins[i].integers(len(actions_of))
            reward, terminal = envs[i].act(int(actions_of[a]))
            returns[i] += reward
            alive[i] = not terminal
    return returns, alive
