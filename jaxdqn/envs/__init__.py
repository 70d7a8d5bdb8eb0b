"""Environment registry: gymnax ids plus jaxdqn's own probe environments."""

from __future__ import annotations

import gymnax

from jaxdqn.envs.max_bias import MaxBiasMDP
from jaxdqn.envs.probes import PROBES, expected_q

# Discrete-action gymnax environments with flat vector observations: what an MLP Q-network fits.
GYMNAX_ENV_IDS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")
_OWN_ENVS = dict(PROBES, MaxBiasMDP=MaxBiasMDP)


def register(env_id: str, factory) -> None:
    """Adds an environment factory (``factory() -> gymnax Environment``) under ``env_id``."""
    _OWN_ENVS[env_id] = factory


def known_env_ids() -> tuple[str, ...]:
    return GYMNAX_ENV_IDS + tuple(_OWN_ENVS)


def make_env(env_id: str, max_episode_steps: int | None = None):
    """Returns ``(env, env_params)`` for ``env_id``; ``max_episode_steps`` overrides the time limit."""
    if env_id in _OWN_ENVS:
        env = _OWN_ENVS[env_id]()
        params = env.default_params
    elif env_id in GYMNAX_ENV_IDS:
        env, params = gymnax.make(env_id)
    else:
        raise ValueError(f"env_id={env_id!r} is unknown; known ids: {', '.join(known_env_ids())}")
    if max_episode_steps is not None:
        params = params.replace(max_steps_in_episode=int(max_episode_steps))
    return env, params


__all__ = ["GYMNAX_ENV_IDS", "MaxBiasMDP", "PROBES", "expected_q", "known_env_ids", "make_env", "register"]
