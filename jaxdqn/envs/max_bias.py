"""``MaxBiasMDP``: Sutton and Barto's maximization-bias example (Example 6.7) as a gymnax env.

Two non-terminal states, A (the start) and B::

    end <--right-- A --left--> B --any of num_actions actions--> end, reward ~ N(-0.1, 1)
            reward 0     reward 0

Every action's true value is known: ``Q(A, left) = gamma * reward_mean``, ``Q(A, right) = 0`` and
``Q(B, b) = reward_mean`` for every ``b``, whatever the policy. Going left is therefore a mistake
(its expected return is -0.1), yet an agent that bootstraps from ``max_b Q(B, b)`` over noisy
estimates sees ``max`` of ``num_actions`` noisy values, which is positive, and prefers left.

A gymnax env has one action count for all states. Two layouts of A's actions:

- ``layout="parity"`` (the default, env id ``"MaxBiasMDP"``): all ``num_actions`` actions (default
  10) are legal in A, split by parity: **even actions go left, odd actions go right**. A
  uniformly random action goes left with probability 1/2 (for even ``num_actions``), so an
  epsilon-greedy agent that has learnt "right" still goes left ``epsilon / 2`` of the time (5% at
  the book's epsilon = 0.1). It needs no legal-action mask, so any agent runs on it unchanged;
  it is the default because the measured studies in docs/max_bias.md were made on it.
- ``layout="book"`` (env id ``"MaxBiasMDP-book"``): the book's, with two legal actions in A,
  0 = left and 1 = right (the parity rule again), and all ``num_actions`` legal in B; the env
  exposes ``legal_actions`` (see ``jaxdqn.envs.legal_actions_fn``) and an agent must act and
  bootstrap over legal actions only. An illegal action in A would still move by its parity.

Observations are one-hot ``f32[2]``: ``[1, 0]`` in A, ``[0, 1]`` in B, ``[0, 0]`` after the end
(only ever seen as ``info["final_observation"]``, since gymnax resets on termination).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

STATE_A, STATE_B, STATE_END = 0, 1, 2
DEFAULT_NUM_ACTIONS = 10
LAYOUTS = ("parity", "book")


@struct.dataclass
class MaxBiasState(environment.EnvState):
    position: jax.Array  # i32: STATE_A, STATE_B or STATE_END
    time: int


@struct.dataclass
class MaxBiasParams(environment.EnvParams):
    reward_mean: float = -0.1  # mean of the reward on leaving B
    reward_std: float = 1.0  # its standard deviation
    # Episodes end within two steps; the limit only bounds evaluation loops.
    max_steps_in_episode: int = 8


def is_left(action: jax.Array) -> jax.Array:
    """Whether ``action`` taken in A goes left (to B): the even actions."""
    return jnp.asarray(action) % 2 == 0


def left_action_fraction(num_actions: int, layout: str = "parity") -> float:
    """The fraction of A's legal actions that go left: ``ceil(n / 2) / n`` of the ``n =
    num_actions`` in the parity layout, 1/2 in the book's."""
    return 0.5 if layout == "book" else (num_actions + 1) // 2 / num_actions


class MaxBiasMDP(environment.Environment[MaxBiasState, MaxBiasParams]):
    """Sutton and Barto's Example 6.7 with ``num_actions`` actions in B (and in A, by parity)."""

    def __init__(self, num_actions: int = DEFAULT_NUM_ACTIONS, layout: str = "parity"):
        super().__init__()
        if not isinstance(num_actions, int) or isinstance(num_actions, bool) or num_actions < 2:
            raise ValueError(f"MaxBiasMDP num_actions={num_actions!r} is invalid: must be an int "
                             ">= 2 (at least one left and one right action in A)")
        if layout not in LAYOUTS:
            raise ValueError(f"MaxBiasMDP layout={layout!r} is invalid: must be one of {LAYOUTS}")
        self.n_actions = num_actions
        self.layout = layout
        self.obs_shape = (2,)
        if layout == "parity":
            self.legal_actions = None  # every action is legal everywhere: no mask

    def legal_actions(self, obs: jax.Array, params: MaxBiasParams | None = None) -> jax.Array:
        """``bool[..., num_actions]`` for ``obs: f32[..., 2]`` (book layout): actions 0 (left)
        and 1 (right) in A, every action in B (and after the end)."""
        in_a = obs[..., STATE_A] > 0.5
        return jnp.where(in_a[..., None], jnp.arange(self.n_actions) < 2, True)

    @property
    def name(self) -> str:
        return "MaxBiasMDP" if self.layout == "parity" else "MaxBiasMDP-book"

    @property
    def default_params(self) -> MaxBiasParams:
        return MaxBiasParams()

    @property
    def num_actions(self) -> int:
        return self.n_actions

    def action_space(self, params: MaxBiasParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.n_actions)

    def observation_space(self, params: MaxBiasParams) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (2,), jnp.float32)

    def state_space(self, params: MaxBiasParams) -> spaces.Dict:
        return spaces.Dict({"position": spaces.Discrete(3),
                            "time": spaces.Discrete(params.max_steps_in_episode)})

    def get_obs(self, state: MaxBiasState, params=None, key=None) -> jax.Array:
        return jnp.stack([state.position == STATE_A, state.position == STATE_B]).astype(
            jnp.float32)

    def is_terminated(self, state: MaxBiasState, params: MaxBiasParams) -> jax.Array:
        return jnp.asarray(state.position == STATE_END)

    def reset_env(self, key: jax.Array, params: MaxBiasParams) -> tuple[jax.Array, MaxBiasState]:
        state = MaxBiasState(position=jnp.int32(STATE_A), time=0)
        return self.get_obs(state), state

    def step_env(
        self, key: jax.Array, state: MaxBiasState, action: Any, params: MaxBiasParams
    ) -> tuple[jax.Array, MaxBiasState, jax.Array, jax.Array, dict]:
        in_a = state.position == STATE_A
        in_b = state.position == STATE_B
        b_reward = params.reward_mean + params.reward_std * jax.random.normal(key)
        reward = jnp.where(in_b, b_reward, 0.0).astype(jnp.float32)
        position = jnp.where(jnp.logical_and(in_a, is_left(action)), STATE_B, STATE_END)
        new_state = MaxBiasState(position=position.astype(jnp.int32), time=state.time + 1)
        terminated = self.is_terminated(new_state, params)
        return (jax.lax.stop_gradient(self.get_obs(new_state)), new_state, reward, terminated,
                {"discount": self.discount(new_state, params)})


def true_q_values(gamma: float, params: MaxBiasParams | None = None) -> dict[str, float]:
    """Exact action values, the same under every policy: ``{"A_left", "A_right", "B"}``."""
    p = MaxBiasParams() if params is None else params
    return {"A_left": gamma * p.reward_mean, "A_right": 0.0, "B": p.reward_mean}
