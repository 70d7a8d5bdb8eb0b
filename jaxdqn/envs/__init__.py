"""Environment registry: gymnax ids (classic control, MinAtar) plus jaxdqn's own environments
(probes, the maximization-bias MDP, the deadly triad's counterexample).

Importing it imports neither gymnax nor JAX (``jaxdqn --help`` and config validation need only
the ids, ``jaxdqn.envs.ids``): each environment's module is imported when one is built.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from jaxdqn.envs.ids import (
    GYMNASIUM_ENV_IDS,
    GYMNAX_ENV_IDS,
    MAX_BIAS_ENV_IDS,
    MINATAR_ENV_IDS,
    PROBE_IDS,
    TRIAD_ENV_IDS,
)


def _factory(module: str, name: str, **kwargs) -> Callable[[], Any]:
    """``factory()`` building ``module.name(**kwargs)``, importing ``module`` on the first call."""
    return lambda: getattr(importlib.import_module(module), name)(**kwargs)


_OWN_ENVS: dict[str, Callable[[], Any]] = {
    **{probe: _factory("jaxdqn.envs.probes", probe) for probe in PROBE_IDS},
    "MaxBiasMDP": _factory("jaxdqn.envs.max_bias", "MaxBiasMDP"),
    "MaxBiasMDP-book": _factory("jaxdqn.envs.max_bias", "MaxBiasMDP", layout="book"),
    "TriadMDP": _factory("jaxdqn.envs.deadly_triad", "TriadMDP"),
    "TriadMDP-tabular": _factory("jaxdqn.envs.deadly_triad", "TriadMDP", variant="tabular"),
    "TriadMDP-mc": _factory("jaxdqn.envs.deadly_triad", "TriadMDP", variant="mc"),
}
_LAZY = {"MaxBiasMDP": "jaxdqn.envs.max_bias", "PROBES": "jaxdqn.envs.probes",
         "expected_q": "jaxdqn.envs.probes"}


def __getattr__(name: str):
    """``MaxBiasMDP``, ``PROBES`` and ``expected_q``, imported on first use (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(env_id: str, factory) -> None:
    """Adds an environment factory (``factory() -> gymnax Environment``) under ``env_id``."""
    _OWN_ENVS[env_id] = factory
    _built_env_spec.cache_clear()  # a spec built before may hold the env this id named then


def known_env_ids() -> tuple[str, ...]:
    return GYMNAX_ENV_IDS + MINATAR_ENV_IDS + tuple(_OWN_ENVS)


def make_env(env_id: str, max_episode_steps: int | None = None,
             sticky_action_prob: float = 0.0):
    """Returns ``(env, env_params)`` for ``env_id``; ``max_episode_steps`` overrides the time
    limit; ``sticky_action_prob > 0`` wraps the env in ``envs.sticky.StickyActions`` (0: the env
    itself, unwrapped)."""
    if env_id in _OWN_ENVS:
        env = _OWN_ENVS[env_id]()
        params = env.default_params
    elif env_id in MINATAR_ENV_IDS:
        from jaxdqn.envs.minatar import make_minatar

        env, params = make_minatar(env_id)
    elif env_id in GYMNAX_ENV_IDS:
        import gymnax

        env, params = gymnax.make(env_id)
    else:
        raise ValueError(f"env_id={env_id!r} is unknown; known ids: {', '.join(known_env_ids())}")
    if max_episode_steps is not None:
        params = params.replace(max_steps_in_episode=int(max_episode_steps))
    if sticky_action_prob != 0.0:
        from jaxdqn.envs.sticky import StickyActions

        env = StickyActions(env, float(sticky_action_prob))
    return env, params


def legal_actions_fn(env, env_params):
    """``legal(obs: [..., *obs_shape]) -> bool[..., num_actions]`` for ``env``, or None.

    The interface: an env whose legal actions depend on the state defines a method
    ``legal_actions(obs, params) -> bool[..., num_actions]`` (any leading axes). It is a function
    of the observation so that the replay buffer, which stores observations, can recompute the
    mask of ``s'`` for the targets without storing it (and without the state, which gymnax has
    already reset at an episode's end). An env without the method, or with ``legal_actions =
    None``, allows every action everywhere, and jaxdqn then builds the program without masks.
    """
    fn = getattr(env, "legal_actions", None)
    if fn is None:
        return None
    return lambda obs: fn(obs, env_params)


class EnvSpec(NamedTuple):
    """A config's environment and what the library derives from it, built once per
    ``(env_id, max_episode_steps, sticky_action_prob)`` (``env_spec_of``).

    ``obs_shape``/``obs_dtype`` are those of ``env.reset``'s observation: what the replay buffer
    stores and the Q-network reads (``bool`` for MinAtar, see ``envs.minatar``).
    """

    env: Any  # the gymnax environment (stateless: one object serves every caller)
    params: Any  # its env params, with the time limit applied
    obs_shape: tuple[int, ...]
    obs_dtype: Any  # a numpy dtype
    num_actions: int
    legal_fn: Callable[[Any], Any] | None  # legal_actions_fn(env, params)
    max_steps: int  # params.max_steps_in_episode: the time limit


def env_spec_of(env_id: str, max_episode_steps: int | None = None,
                sticky_action_prob: float = 0.0) -> EnvSpec:
    """The ``EnvSpec`` of ``make_env(env_id, max_episode_steps, sticky_action_prob)``, built on
    the first call for those arguments and returned from a cache after (gymnax envs hold no
    state)."""
    return _built_env_spec(env_id, None if max_episode_steps is None else int(max_episode_steps),
                           float(sticky_action_prob))


@functools.cache
def _built_env_spec(env_id: str, max_episode_steps: int | None,
                    sticky_action_prob: float) -> EnvSpec:
    """``env_spec_of``'s cache, keyed by its arguments normalised (``lru_cache`` would key
    ``f(x)`` and ``f(x, None)`` apart)."""
    import jax
    import jax.numpy as jnp

    env, params = make_env(env_id, max_episode_steps, sticky_action_prob)
    obs, _ = jax.eval_shape(env.reset, jax.ShapeDtypeStruct((2,), jnp.uint32), params)
    return EnvSpec(env=env, params=params, obs_shape=tuple(obs.shape),
                   obs_dtype=jnp.dtype(obs.dtype), num_actions=int(env.num_actions),
                   legal_fn=legal_actions_fn(env, params),
                   max_steps=int(params.max_steps_in_episode))


def env_spec(config) -> EnvSpec:
    """The ``EnvSpec`` of a ``DQNConfig``'s environment (``env_id`` at ``max_episode_steps``,
    with ``sticky_action_prob``): the one env that training, evaluation in the scan and after it,
    and the bias study step."""
    return env_spec_of(config.env_id, config.max_episode_steps, config.sticky_action_prob)


def gymnasium_limit_mismatch(config) -> int | None:
    """Gymnasium's standard time limit for ``config.env_id`` when ``config.max_episode_steps``
    sets another one (a replay in Gymnasium would not be the same task); None when they agree."""
    import gymnasium

    limit = gymnasium.spec(config.env_id).max_episode_steps
    return None if config.max_episode_steps in (None, limit) else limit


def gymnasium_env(config, **make_kwargs):
    """``gymnasium.make(config.env_id, **make_kwargs)``, the Gymnasium twin of a config's env for
    replays and videos, with Gymnasium's ``StickyAction`` wrapper when ``config.sticky_action_prob
    > 0`` (its coin comes from the env's ``np_random``, seeded by ``reset(seed=...)``; unlike
    ``envs.sticky``, it never repeats at an episode's first step)."""
    import gymnasium

    env = gymnasium.make(config.env_id, **make_kwargs)
    if config.sticky_action_prob > 0:
        env = gymnasium.wrappers.StickyAction(env, config.sticky_action_prob)
    return env


def solve_threshold(config) -> float | None:
    """The return above which an env counts as solved: Gymnasium's ``reward_threshold`` (475 for
    CartPole-v1), at the env's standard time limit only; None for envs without one (probes).
    ``config``: a ``DQNConfig``, or an env id (at its standard time limit)."""
    env_id = config if isinstance(config, str) else config.env_id
    max_steps = None if isinstance(config, str) else config.max_episode_steps
    try:
        import gymnasium

        spec = gymnasium.spec(env_id)
    except Exception:  # noqa: BLE001 - not a Gymnasium env (probes, registered extras)
        return None
    if max_steps not in (None, spec.max_episode_steps):
        return None
    return None if spec.reward_threshold is None else float(spec.reward_threshold)


__all__ = [
    "GYMNASIUM_ENV_IDS",
    "GYMNAX_ENV_IDS",
    "MAX_BIAS_ENV_IDS",
    "MINATAR_ENV_IDS",
    "PROBES",
    "PROBE_IDS",
    "TRIAD_ENV_IDS",
    "EnvSpec",
    "MaxBiasMDP",
    "env_spec",
    "env_spec_of",
    "expected_q",
    "gymnasium_env",
    "known_env_ids",
    "legal_actions_fn",
    "make_env",
    "register",
    "solve_threshold",
]
