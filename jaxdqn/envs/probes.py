"""The seed's five probe environments as gymnax environments.

Each isolates one capability of a DQN implementation; with observation shape ``(1,)`` the learned
Q-values can be compared with exact expected values (``expected_q``):

========  =========================================  ==========================================
probe     dynamics                                   expected Q
========  =========================================  ==========================================
Probe1    obs [0], 1 action, reward +1, ends         Q([0]) = [1]
Probe2    obs [-1] or [+1], 1 action, reward = obs   Q([-1]) = [-1], Q([+1]) = [+1]
Probe3    obs [0] -> [1] (reward 0) -> end (+1)      Q([0]) = [gamma], Q([1]) = [1]
Probe4    obs [0], 2 actions, reward -1 / +1         Q([0]) = [-1, +1]
Probe5    obs [0] or [1], reward +1 iff action==obs  Q([0]) = [1, -1], Q([1]) = [-1, 1]
Probe6    obs [0]: action 0 -> [1] (reward 0),       Q([0]) = [-gamma, 1], Q([1]) = [-1, -]
          action 1 ends (+1); in [1] only action 0
          is legal, and it ends (-1)
========  =========================================  ==========================================

A failing probe points at a bug: Probe1 the value fit, Probe2 conditioning on the observation,
Probe3 bootstrapping and discounting, Probe4 the policy's action choice, Probe5 both together,
Probe6 the legal-action mask of the target (jaxdqn's sixth: the seed has five). Probe6's action 1
is illegal in [1] and never taken there, so nothing trains ``Q([1], 1)``, and a network that has
learnt ``Q([0], 1) = 1`` tends to carry it over: a target that maxes over every action of
``s' = [1]`` instead of its legal ones bootstraps from it and learns ``Q([0], 0)`` near ``+gamma``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class ProbeState(environment.EnvState):
    obs: jax.Array  # f32[1]
    time: int


@struct.dataclass
class ProbeParams(environment.EnvParams):
    # Probes end on their own within two steps; the limit only bounds evaluation loops.
    max_steps_in_episode: int = 8


class _Probe(environment.Environment[ProbeState, ProbeParams]):
    """Shared plumbing: spaces, params and the step/reset contract of gymnax."""

    n_actions: int = 1
    obs_values: tuple[float, ...] = (0.0,)

    def __init__(self):
        super().__init__()
        self.obs_shape = (1,)

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams()

    @property
    def num_actions(self) -> int:
        return self.n_actions

    def action_space(self, params: ProbeParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.n_actions)

    def observation_space(self, params: ProbeParams) -> spaces.Box:
        return spaces.Box(min(self.obs_values), max(self.obs_values), (1,), jnp.float32)

    def state_space(self, params: ProbeParams) -> spaces.Dict:
        return spaces.Dict(
            {
                "obs": self.observation_space(params),
                "time": spaces.Discrete(params.max_steps_in_episode),
            }
        )

    def get_obs(self, state: ProbeState, params=None, key=None) -> jax.Array:
        return state.obs

    def is_terminated(self, state: ProbeState, params: ProbeParams) -> jax.Array:
        return jnp.asarray(state.time >= 1)

    def _reset_obs(self, key: jax.Array) -> jax.Array:
        return jnp.zeros((1,), jnp.float32)

    def _reward(self, state: ProbeState, action: jax.Array) -> jax.Array:
        raise NotImplementedError

    def reset_env(self, key: jax.Array, params: ProbeParams) -> tuple[jax.Array, ProbeState]:
        state = ProbeState(obs=self._reset_obs(key), time=0)
        return state.obs, state

    def step_env(
        self, key: jax.Array, state: ProbeState, action: Any, params: ProbeParams
    ) -> tuple[jax.Array, ProbeState, jax.Array, jax.Array, dict]:
        reward = self._reward(state, jnp.asarray(action)).astype(jnp.float32)
        new_state = ProbeState(obs=state.obs, time=state.time + 1)
        terminated = self.is_terminated(new_state, params)
        return new_state.obs, new_state, reward, terminated, {}


def _random_sign_obs(key: jax.Array) -> jax.Array:
    return jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)[None]


class Probe1(_Probe):
    """Constant observation [0], one action, reward +1, one step. Tests the value fit."""

    def _reward(self, state, action):
        return jnp.float32(1.0)


class Probe2(_Probe):
    """Observation [-1] or [+1], one action, reward = observation, one step."""

    obs_values = (-1.0, 1.0)

    def _reset_obs(self, key):
        return _random_sign_obs(key)

    def _reward(self, state, action):
        return state.obs[0]


class Probe3(_Probe):
    """Two steps: obs [0] (reward 0) then obs [1], after which the episode ends with +1."""

    obs_values = (0.0, 1.0)

    def is_terminated(self, state, params):
        return jnp.asarray(state.time >= 2)

    def _reward(self, state, action):
        return jnp.where(state.time >= 1, 1.0, 0.0)

    def step_env(self, key, state, action, params):
        reward = self._reward(state, action).astype(jnp.float32)
        new_state = ProbeState(obs=jnp.ones((1,), jnp.float32), time=state.time + 1)
        return new_state.obs, new_state, reward, self.is_terminated(new_state, params), {}


class Probe4(_Probe):
    """Constant observation [0], two actions: action 0 gives -1, action 1 gives +1."""

    n_actions = 2

    def _reward(self, state, action):
        return jnp.where(action == 1, 1.0, -1.0)


class Probe5(_Probe):
    """Observation [0] or [1] at random; reward +1 if the action equals the observation, else -1."""

    n_actions = 2
    obs_values = (0.0, 1.0)

    def _reset_obs(self, key):
        return jax.random.bernoulli(key).astype(jnp.float32)[None]

    def _reward(self, state, action):
        return jnp.where(action == state.obs[0].astype(jnp.int32), 1.0, -1.0)


class Probe6(_Probe):
    """Legal actions in the target: obs [0]; action 0 moves to [1] (reward 0), action 1 ends the
    episode with +1; in [1] only action 0 is legal, and it ends the episode with -1."""

    n_actions = 2
    obs_values = (0.0, 1.0)

    def is_terminated(self, state, params):
        return jnp.logical_or(state.time >= 2, state.obs[0] < 0)

    def legal_actions(self, obs: jax.Array, params=None) -> jax.Array:
        """``bool[..., 2]``: both actions in [0], action 0 alone in [1]."""
        first = obs[..., 0] < 0.5
        return jnp.stack([jnp.ones_like(first), first], axis=-1)

    def step_env(self, key, state, action, params):
        at_start = state.obs[0] < 0.5
        ends_now = jnp.logical_and(at_start, jnp.asarray(action) == 1)
        reward = jnp.where(at_start, jnp.where(ends_now, 1.0, 0.0), -1.0).astype(jnp.float32)
        # An episode ended by action 1 is marked by obs -1 for is_terminated; it is never
        # observed (gymnax resets on termination; final_observation holds it, unused at the end).
        obs = jnp.where(ends_now, -1.0, 1.0).astype(jnp.float32)[None]
        new_state = ProbeState(obs=obs, time=state.time + 1)
        return new_state.obs, new_state, reward, self.is_terminated(new_state, params), {}


ILLEGAL = math.nan
"""``expected_q``'s entry for an action that is illegal in that state (it has no value)."""


def expected_q(env_id: str, gamma: float) -> dict[tuple[float, ...], tuple[float, ...]]:
    """Exact Q-values of a probe: ``{observation: Q-values per action}``; ``ILLEGAL`` (NaN) for
    an action that is illegal in that state."""
    table = {
        "Probe1": {(0.0,): (1.0,)},
        "Probe2": {(-1.0,): (-1.0,), (1.0,): (1.0,)},
        "Probe3": {(0.0,): (gamma,), (1.0,): (1.0,)},
        "Probe4": {(0.0,): (-1.0, 1.0)},
        "Probe5": {(0.0,): (1.0, -1.0), (1.0,): (-1.0, 1.0)},
        "Probe6": {(0.0,): (-gamma, 1.0), (1.0,): (-1.0, ILLEGAL)},
    }
    if env_id not in table:
        raise ValueError(f"env_id={env_id!r} is not a probe; probes are {sorted(table)}")
    return table[env_id]


PROBES = {cls.__name__: cls for cls in (Probe1, Probe2, Probe3, Probe4, Probe5, Probe6)}
# How close trained Q-values must come to ``expected_q`` (the course's tolerances): the probe
# ladder's pass mark in tests/test_train.py and scripts/probe_check.py.
PROBE_TOLERANCES = {"Probe1": 5e-4, "Probe2": 5e-4, "Probe3": 5e-4, "Probe4": 5e-4, "Probe5": 1e-3,
                    "Probe6": 1e-3}
