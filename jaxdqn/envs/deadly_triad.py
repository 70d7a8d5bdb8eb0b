"""``TriadMDP``: Sutton and Barto's "w, 2w" counterexample (section 11.2) as a control problem:
linear Q-learning diverges off-policy, and converges on-policy, tabular or without bootstrapping.

Two non-terminal states, A (the start) and B, and ``num_actions`` actions (default 8)::

    A --action 0 ("go"), reward 0--> B --any action, reward 1--> end
    A --actions 1.. ("wait"), reward 0--> A

Observations, by variant (env id):

- ``"features"`` (``"TriadMDP"``): one feature, ``phi(A) = [1]``, ``phi(B) = [2]``. jaxdqn's linear
  Q (``hidden_sizes=()``, no bias) is ``Q(s, a) = W[a] phi(s)``: ``Q(A, a) = W[a]`` and
  ``Q(B, a) = 2 W[a]``, the book's "w" and "2w" for every action.
- ``"tabular"`` (``"TriadMDP-tabular"``): one-hot ``[1, 0]`` in A, ``[0, 1]`` in B, so the linear Q
  is a table. Q-learning converges to ``Q*(B, .) = 1``, ``Q*(A, go) = gamma`` and
  ``Q*(A, wait) = gamma**2`` (``optimal_q``).
- ``"mc"`` (``"TriadMDP-mc"``): the features, and every transition pays the episode's return to go
  (1: every episode that ends pays exactly 1, at its end). Trained with ``gamma=0`` the target is
  ``r = G``, a Monte Carlo return with no bootstrapping, and the loop needs no change.

Why it diverges. Under a behaviour that goes from A with probability ``g`` (epsilon-greedy with
the greedy action 0: ``g = epsilon / num_actions + 1 - epsilon``), an episode visits A ``1 / g``
times and B once, so replay holds A and B in the ratio ``1 : g``. The expected semi-gradient
Q-learning step on the greedy row (``W[0] = max_a W[a] = w``), per unit step size, is::

    g / (1 + g) * [(2 gamma - 1 - 4 g) w + 2 g]

(A's samples push w towards ``2 gamma w``, B's pull ``2w`` towards 1 with gradient 2). Its
coefficient of w is positive, so w grows geometrically without bound, when
``g < (2 gamma - 1) / 4`` (0.245 at gamma 0.99): with epsilon = 1 and 8 actions, ``g = 1/8``.
The greedy policy itself (epsilon = 0) goes at once, ``g = 1``, and w converges to
``2 / (5 - 2 gamma)``. A target network only freezes the target ``w^-``: a period's regression, run
to its end, lands on ``W[0] = (2 gamma w^- + 2 g) / (1 + 4 g)``, an expansion (by the factor
``2 gamma / (1 + 4 g)``) under exactly the same condition.

Episodes end within a few steps (``1 / g`` on average); the time limit (``max_steps_in_episode``,
100) truncates the rare long one, and the loop bootstraps through it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

STATE_A, STATE_B, STATE_END = 0, 1, 2
GO = 0
"""The action that moves A to B; every other action waits in A."""
DEFAULT_NUM_ACTIONS = 8
VARIANTS = ("features", "tabular", "mc")
FEATURES = (1.0, 2.0, 0.0)
"""``phi`` of A, B and the end in the ``"features"`` and ``"mc"`` variants."""


@struct.dataclass
class TriadState(environment.EnvState):
    position: jax.Array  # i32: STATE_A, STATE_B or STATE_END
    time: int


@struct.dataclass
class TriadParams(environment.EnvParams):
    max_steps_in_episode: int = 100


class TriadMDP(environment.Environment[TriadState, TriadParams]):
    """The "w, 2w" MDP with ``num_actions`` actions, observed through ``variant``'s features."""

    def __init__(self, variant: str = "features", num_actions: int = DEFAULT_NUM_ACTIONS):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"TriadMDP variant={variant!r} is invalid: must be one of {VARIANTS}")
        if not isinstance(num_actions, int) or isinstance(num_actions, bool) or num_actions < 2:
            raise ValueError(f"TriadMDP num_actions={num_actions!r} is invalid: must be an int "
                             ">= 2 (a go action and at least one wait action)")
        self.variant = variant
        self.n_actions = num_actions
        self.obs_shape = (2,) if variant == "tabular" else (1,)

    @property
    def name(self) -> str:
        return "TriadMDP" if self.variant == "features" else f"TriadMDP-{self.variant}"

    @property
    def default_params(self) -> TriadParams:
        return TriadParams()

    @property
    def num_actions(self) -> int:
        return self.n_actions

    def action_space(self, params: TriadParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.n_actions)

    def observation_space(self, params: TriadParams) -> spaces.Box:
        return spaces.Box(0.0, 2.0, self.obs_shape, jnp.float32)

    def state_space(self, params: TriadParams) -> spaces.Dict:
        return spaces.Dict({"position": spaces.Discrete(3),
                            "time": spaces.Discrete(params.max_steps_in_episode)})

    def get_obs(self, state: TriadState, params=None, key=None) -> jax.Array:
        if self.variant == "tabular":
            return jnp.stack([state.position == STATE_A,
                              state.position == STATE_B]).astype(jnp.float32)
        return jnp.asarray(FEATURES, jnp.float32)[state.position][None]

    def is_terminated(self, state: TriadState, params: TriadParams) -> jax.Array:
        return jnp.asarray(state.position == STATE_END)

    def reset_env(self, key: jax.Array, params: TriadParams) -> tuple[jax.Array, TriadState]:
        state = TriadState(position=jnp.int32(STATE_A), time=0)
        return self.get_obs(state), state

    def step_env(
        self, key: jax.Array, state: TriadState, action: Any, params: TriadParams
    ) -> tuple[jax.Array, TriadState, jax.Array, jax.Array, dict]:
        in_a = state.position == STATE_A
        go = jnp.asarray(action) == GO
        position = jnp.where(in_a, jnp.where(go, STATE_B, STATE_A), STATE_END)
        reward = 1.0 if self.variant == "mc" else jnp.where(in_a, 0.0, 1.0)
        new_state = TriadState(position=position.astype(jnp.int32), time=state.time + 1)
        return (jax.lax.stop_gradient(self.get_obs(new_state)), new_state,
                jnp.asarray(reward, jnp.float32), self.is_terminated(new_state, params),
                {"discount": self.discount(new_state, params)})


def go_probability(epsilon: float, num_actions: int = DEFAULT_NUM_ACTIONS) -> float:
    """``g``: the probability that epsilon-greedy with greedy action GO goes from A."""
    return epsilon / num_actions + 1.0 - epsilon


def expected_growth(gamma: float, g: float) -> float:
    """The coefficient of ``w`` in the expected step (per unit step size) of the greedy row of the
    ``"features"`` variant: ``g / (1 + g) * (2 gamma - 1 - 4 g)``; positive: divergence."""
    return g / (1.0 + g) * (2.0 * gamma - 1.0 - 4.0 * g)


def on_policy_fixed_point(gamma: float) -> float:
    """Where the greedy row of the ``"features"`` variant settles under the greedy policy
    (``g = 1``): ``w = 2 / (5 - 2 gamma)``."""
    return 2.0 / (5.0 - 2.0 * gamma)


def optimal_q(gamma: float, num_actions: int = DEFAULT_NUM_ACTIONS) -> dict[str, list[float]]:
    """``Q*`` by state: ``{"A": [gamma, gamma**2, ...], "B": [1, ..., 1]}`` (the tabular fixed
    point of Q-learning under any behaviour that tries every action)."""
    return {"A": [gamma] + [gamma * gamma] * (num_actions - 1), "B": [1.0] * num_actions}
