"""The replay buffer's age, measured on each sampled minibatch: how old the sampled transitions
are, and how far the policy that collected them is from the policy being learned.

With ``DQNConfig.buffer_age_metrics`` every stored transition keeps the global env step at which
it was stored and the probability ``mu(a|s)`` that the behaviour policy (epsilon-greedy with that
step's network and epsilon) took its action (``buffer.Transition.step``/``behaviour_prob``). At
each gradient step ``replay_age`` compares the minibatch with the current policy ``pi``:
epsilon-greedy on the current online network's acting Q-values with the current epsilon (that of
the next env step). Every statistic is one number per minibatch; the training loop averages them
over a metric row's gradient steps (``train.TrainMetrics``).

One-step Q-learning needs no correction for the action of ``(s, a, r, s')``, but an n-step return
or a trace-corrected target weighs each later action by ``pi/mu``. The mean ratio is 1 in
expectation whatever the age (``sum_a mu(a|s) pi(a|s) / mu(a|s) = 1`` where ``mu > 0``, as it is
for epsilon > 0): only its noise grows with the policy's drift. What a trace-corrected return
keeps is ``c = min(1, pi/mu)`` per step (Retrace with lambda = 1; its per-decision effective
discount is ``gamma * c``), whose mean falls below 1 as the buffer goes off-policy.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdqn.buffer import Transition
from jaxdqn.policy import epsilon_greedy_probability, greedy_probability

AGE_PERCENTILE = 90.0
"""``sample_age_p90``'s percentile of a minibatch's ages."""


class ReplayAge(NamedTuple):
    """One minibatch's statistics (each ``f32[]``); the names are ``train.TrainMetrics``'
    columns, which hold their means over a row's gradient steps."""

    sample_age: jax.Array  # mean age: env steps stored after the sampled transition (newest: 0)
    sample_age_p90: jax.Array  # the minibatch's 90th percentile of ages (linear interpolation)
    off_policy_fraction: jax.Array  # fraction of sampled actions the greedy policy would not take
    importance_ratio: jax.Array  # mean pi(a|s) / mu(a|s) over the minibatch
    trace_coefficient: jax.Array  # mean min(1, pi(a|s) / mu(a|s)): Retrace's c (lambda = 1)


def replay_age(batch: Transition, newest_step, q_values: jax.Array, epsilon,
               legal: jax.Array | None = None, random_tie_break: bool = False) -> ReplayAge:
    """The statistics of a sampled ``batch`` (``B`` transitions with ``step`` and
    ``behaviour_prob``) under the current policy.

    ``newest_step``: the step of the newest stored transition (ages count from it);
    ``q_values: f32[B, A]``: the current acting Q-values at ``batch.obs``; ``epsilon``: the current
    exploration rate; ``legal: bool[B, A]`` at ``batch.obs`` (None: every action legal);
    ``random_tie_break`` as the policy acts. An action is "not greedy" where the current greedy
    policy takes it with probability 0 (with ``random_tie_break``: it is not among the tied
    maxima).
    """
    age = (newest_step - batch.step).astype(jnp.float32)
    greedy = greedy_probability(q_values, batch.action, legal, random_tie_break)
    pi = epsilon_greedy_probability(q_values, batch.action, epsilon, legal, random_tie_break)
    ratio = pi / batch.behaviour_prob
    return ReplayAge(
        sample_age=age.mean(),
        sample_age_p90=jnp.percentile(age, AGE_PERCENTILE),
        off_policy_fraction=(greedy == 0.0).mean(dtype=jnp.float32),
        importance_ratio=ratio.mean(),
        trace_coefficient=jnp.minimum(ratio, 1.0).mean(),
    )
