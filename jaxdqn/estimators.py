"""Where a target is computed: the TD-target estimators, one record of facts each.

The estimators (``DQNConfig.estimator``) differ only in the target ``y`` and in which networks
learn from it and act. Each target is a pure function of Q-value arrays, so it can be checked by
hand:

==================  ==============================================  ============================
estimator           target ``y = r + gamma * (1 - terminated) * v``  networks trained per step
==================  ==============================================  ============================
``dqn``             ``v = max_a Q'(s', a)``                          the online network
``double_dqn``      ``v = Q'(s', argmax_a Q(s', a))``                the online network
``double_q``        member i: ``v = Q'_j(s', argmax_a Q_i(s', a))``  one of 2 members, at random
``clipped_double``  ``v = min_j Q'_j(s', argmax_a Q_1(s', a))``      both members, same ``y``
``maxmin``          ``v = max_a min_i Q'_i(s', a)``                  one of N members at random
                                                                     (all: update_all_members)
``averaged``        ``v = max_a mean_k Q(s', a; theta_k)``           the online network
``munchausen``      ``v = sum_a' pi'(a'|s') (Q'(s', a')``            the online network
                    ``- tau log pi'(a'|s'))``, ``r`` plus
                    ``alpha tau clip(log pi'(a|s), l0, 0)``
==================  ==============================================  ============================

``Q`` is online, ``Q'`` target; members (``config.num_members > 1``) are one pytree with a leading
member axis, applied with ``jax.vmap`` (one batched matmul); ``averaged`` keeps the ``N`` newest
target snapshots ``theta_1..theta_N`` as a leading axis of ``target_params``, newest first;
``munchausen``'s ``pi' = softmax(Q'/tau)`` is the target network's policy, read at ``s'`` and, for
the bonus of the taken action ``a``, at ``s`` (``Estimator.reads_current``).
With a legal-action mask for ``s'`` every max and argmax ranges over legal actions only. An
argmax takes the lowest index among tied actions, or, given a ``tie_key`` (``random_tie_break``),
one of them uniformly at random, as acting does.

Every fact about an estimator is one ``Estimator`` record in ``ESTIMATORS``: its network count
rule, which online networks its target reads at ``s'``, whether it reads the target network at
``s``, which members a gradient step trains, how the agent acts on its members, its target (and
its distributional form's next action) and its name. The rest of the library asks the record
(``update.make_td_update``, ``policy.make_acting_q_fn``, ``memory.network_passes``, ``config``'s
validation, the CLI's titles), so adding an estimator is one entry here plus its target function
and its tests. The components to come take the same shape: a frozen record of what the generic
code asks, read where the question is asked (a return's record: how the target bootstraps; a
head's: how Q-values come from its output and what the loss compares; a sampler's: how a minibatch
is drawn and weighted).

``config.py`` imports this module for the names and count rules, so it imports JAX lazily
(``jaxdqn.lazy``): validating a config, ``jaxdqn config`` and ``--help`` never load it, and the
targets load it when they first run. One module keeps every fact of an estimator in one record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from jaxdqn.choice import kth_true
from jaxdqn.lazy import LazyModule

# JAX is imported when a target first runs, not with this module: config.py reads the records.
jax = LazyModule("jax")
jnp = LazyModule("jax.numpy")

# Shapes: reward f32[B], terminated bool[B], next_q* f32[B, A] (one network) or f32[M, B, A]
# (members or snapshots), next_legal bool[B, A] or None (every action legal). Targets are f32[B]
# (f32[M, B] for double_q: one per member) and carry no gradient.
TargetFn = Callable[..., "jax.Array"]
"""``target(reward, terminated, gamma, next_q_target, next_q_online, next_legal, tie_key=None)
-> y``; with ``Estimator.reads_current`` also ``current=Current(...)`` and ``hparams`` (anything
with the config's fields of that estimator: a ``DQNConfig`` or the loop's traced ``HParams``)."""
ActFn = Callable[[Callable, dict, "jax.Array"], "jax.Array"]
"""``act(q_fn, params, obs) -> f32[..., A]``: the Q-values the agent acts on."""
ActionFn = Callable[..., "jax.Array"]
"""``action(next_q_target, next_q_online, next_legal, tie_key=None) -> i32[B]``: the next action a
distributional target bootstraps from, chosen by the distributions' means ``f32[B, A]``."""


def _masked(q, legal):
    """``q`` with illegal actions at ``-inf``, so max and argmax range over legal ones."""
    return q if legal is None else jnp.where(legal, q, -jnp.inf)


def masked_max(q, legal):
    """``max_a q[..., a]`` over the legal actions (``legal=None``: all)."""
    return _masked(q, legal).max(axis=-1)


def _argmax(q, legal, tie_key=None):
    """``i32[...]``: the legal action of largest ``q[..., a]``; the lowest index among ties, or
    with ``tie_key`` one of the tied actions uniformly at random (one draw per row)."""
    masked = _masked(q, legal)
    if tie_key is None:
        return jnp.argmax(masked, axis=-1)
    ties = masked == masked.max(axis=-1, keepdims=True)
    return kth_true(ties, jax.random.uniform(tie_key, masked.shape[:-1]))


def _bootstrap(reward, terminated, gamma, next_value, legal):
    """``r + gamma * v * (1 - terminated)``; only ``terminated`` cuts the bootstrap (a time-limit
    truncation is not a terminal state). A state without legal actions is worth 0."""
    if legal is not None:
        next_value = jnp.where(legal.any(-1), next_value, 0.0)
    not_done = 1.0 - terminated.astype(jnp.float32)
    return jax.lax.stop_gradient(reward + gamma * next_value * not_done)


def _value_at(q, action):
    """``q[..., b, action[..., b]]``."""
    return jnp.take_along_axis(q, action[..., None], axis=-1)[..., 0]


class Current(NamedTuple):
    """What a target of ``Estimator.reads_current`` reads at ``s``: the target network's values
    ``q_target: f32[B, A]``, the stored action ``action: i32[B]`` and the legal actions
    ``legal: bool[B, A]`` (None: every action legal)."""

    q_target: Any
    action: Any
    legal: Any


# ---- targets: pure functions of Q-values -------------------------------------------------------

def dqn_target(reward, terminated, gamma, next_q_target, next_legal=None):
    """DQN (Mnih et al. 2015): ``v = max_a Q'(s', a)``, with ``next_q_target: f32[B, A]``."""
    v = jnp.max(_masked(next_q_target, next_legal), axis=-1)
    return _bootstrap(reward, terminated, gamma, v, next_legal)


def double_dqn_target(reward, terminated, gamma, next_q_target, next_q_online, next_legal=None,
                      tie_key=None):
    """Double DQN (van Hasselt, Guez and Silver 2016): the online network picks
    ``a* = argmax_a Q(s', a)`` (lowest index among ties; at random with ``tie_key``), the target
    network values it: ``v = Q'(s', a*)``. Both arguments ``f32[B, A]``."""
    best = _argmax(next_q_online, next_legal, tie_key)
    return _bootstrap(reward, terminated, gamma, _value_at(next_q_target, best), next_legal)


def double_q_target(reward, terminated, gamma, next_q_target, next_q_online, next_legal=None,
                    tie_key=None):
    """Double Q-learning (van Hasselt 2010), one target per member: member ``i``'s own online
    values pick ``a*_i = argmax_a Q_i(s', a)`` and its partner ``j = (i + 1) mod M`` (the other of
    two) values it with its target network, ``v_i = Q'_j(s', a*_i)``. Arguments ``f32[M, B, A]``;
    returns ``f32[M, B]``. With the target synced every step this is the tabular
    ``Q_A(s, a) += alpha * (r + gamma * Q_B(s', argmax_a Q_A(s', a)) - Q_A(s, a))``; ties at
    random with ``tie_key``."""
    best = _argmax(next_q_online, next_legal, tie_key)  # [M, B]
    partner_q = jnp.roll(next_q_target, -1, axis=0)  # row i holds member (i + 1) mod M
    return _bootstrap(reward, terminated, gamma, _value_at(partner_q, best), next_legal)


def clipped_double_target(reward, terminated, gamma, next_q_target, next_q_online_first,
                          next_legal=None, tie_key=None):
    """Clipped double Q (Fujimoto, van Hoof and Meger 2018, TD3's target in discrete form): the
    first member's online values pick ``a* = argmax_a Q_1(s', a)``, and the smallest target
    value of it is taken, ``v = min_j Q'_j(s', a*)``. ``next_q_target: f32[M, B, A]``,
    ``next_q_online_first: f32[B, A]``; every member regresses to this one ``y``. Ties at random
    with ``tie_key``."""
    best = _argmax(next_q_online_first, next_legal, tie_key)  # [B]
    v = jnp.min(_value_at(next_q_target, jnp.broadcast_to(best, next_q_target.shape[:-1])), 0)
    return _bootstrap(reward, terminated, gamma, v, next_legal)


def maxmin_target(reward, terminated, gamma, next_q_target, next_legal=None):
    """Maxmin Q-learning (Lan, Pan, Fyshe and White 2020): ``v = max_a min_i Q'_i(s', a)`` over
    ``M`` members, ``next_q_target: f32[M, B, A]``. ``M = 1`` is DQN; larger ``M`` lowers the
    target (from overestimation towards underestimation)."""
    v = jnp.max(_masked(jnp.min(next_q_target, axis=0), next_legal), axis=-1)
    return _bootstrap(reward, terminated, gamma, v, next_legal)


def averaged_target(reward, terminated, gamma, next_q_snapshots, next_legal=None):
    """Averaged-DQN (Anschel, Baram and Shimkin 2017): ``v = max_a mean_k Q(s', a; theta_k)`` over
    the ``K`` newest target snapshots, ``next_q_snapshots: f32[K, B, A]``. Averaging cuts the
    variance of the target's noise, and with it the max's upward bias."""
    v = jnp.max(_masked(jnp.mean(next_q_snapshots, axis=0), next_legal), axis=-1)
    return _bootstrap(reward, terminated, gamma, v, next_legal)


def _log_policy(q, tau, legal):
    """``log softmax(q / tau)`` over the legal actions (``-inf`` at illegal ones: probability 0),
    computed stably (``jax.nn.log_softmax`` subtracts the max first)."""
    return jax.nn.log_softmax(_masked(q, legal) / tau, axis=-1)


def munchausen_target(reward, terminated, gamma, next_q_target, q_target, action, tau, alpha,
                      clip, next_legal=None, legal=None):
    """Munchausen DQN (Vieillard, Pietquin and Geist 2020)::

        y = r + alpha * tau * clip(log pi'(a|s), clip, 0)
              + gamma * (1 - terminated) * sum_a' pi'(a'|s') (Q'(s', a') - tau * log pi'(a'|s'))

    with ``pi' = softmax(Q'/tau)`` the target network's policy over the legal actions (``legal``
    at ``s``, ``next_legal`` at ``s'``; an illegal action has probability 0). The soft value is
    computed in its closed form ``tau * logsumexp(Q'(s', .)/tau)`` (the sum above, exactly: each
    ``Q' - tau log pi'`` equals it), which tends to ``max_a' Q'(s', a')`` as ``tau -> 0``; with
    ``alpha = 0`` the target is soft DQN's. ``next_q_target``, ``q_target``: ``f32[B, A]`` (the
    target network at ``s'`` and at ``s``); ``action: i32[B]``, the stored action; ``tau``,
    ``alpha``, ``clip`` (``l0 <= 0``) may be traced. ``gamma`` may be ``f32[B]``: with an
    n-step return (``reward`` the discounted sum of ``m`` rewards, ``gamma^m`` per sample) the
    bonus is that of the window's first action and the soft value is taken at ``s_{t+m}``.
    Returns ``f32[B]``.
    """
    log_pi = _value_at(_log_policy(q_target, tau, legal), action.astype(jnp.int32))
    bonus = alpha * tau * jnp.clip(log_pi, clip, 0.0)
    soft_value = tau * jax.nn.logsumexp(_masked(next_q_target, next_legal) / tau, axis=-1)
    return _bootstrap(reward + bonus, terminated, gamma, soft_value, next_legal)


def _munchausen(reward, terminated, gamma, next_q_target, next_q_online, next_legal,
                tie_key=None, *, current: Current, hparams):
    """``munchausen_target`` in the record's signature; its coefficients are ``hparams``'s
    ``munchausen_tau``, ``munchausen_alpha`` and ``munchausen_clip``."""
    return munchausen_target(reward, terminated, gamma, next_q_target, current.q_target,
                             current.action, hparams.munchausen_tau, hparams.munchausen_alpha,
                             hparams.munchausen_clip, next_legal, current.legal)


def target_greedy_action(next_q_target, next_q_online, next_legal=None, tie_key=None):
    """Distributional DQN's next action: ``argmax_a Q'(s', a)`` of the target network's means
    (C51 and QR-DQN as published)."""
    return _argmax(next_q_target, next_legal, tie_key)


def online_greedy_action(next_q_target, next_q_online, next_legal=None, tie_key=None):
    """Distributional Double DQN's next action: ``argmax_a Q(s', a)`` of the online network's
    means (Rainbow's, Hessel et al. 2018), valued by the target network's distribution."""
    return _argmax(next_q_online, next_legal, tie_key)


def target_only(fn: Callable[..., jax.Array]) -> TargetFn:
    """A target of ``(reward, terminated, gamma, next_q_target, next_legal)`` in the record's
    signature, for estimators whose target reads no online network at ``s'`` (and so takes no
    argmax: ``tie_key`` is unused)."""
    def target(reward, terminated, gamma, next_q_target, next_q_online, next_legal,
               tie_key=None):
        return fn(reward, terminated, gamma, next_q_target, next_legal)

    target.__doc__ = fn.__doc__
    return target


# ---- acting rules: the Q-values the agent acts on ----------------------------------------------

def first_member(params):
    """Member 0 of params with a leading member axis."""
    return jax.tree.map(lambda x: x[0], params)


def act_own(q_fn, params, obs):
    """The one network's Q-values."""
    return q_fn(params, obs)


def act_first(q_fn, params, obs):
    """The first member's Q-values (the others are not evaluated)."""
    return q_fn(first_member(params), obs)


def act_mean(q_fn, params, obs):
    """The mean over members of their Q-values."""
    return jnp.mean(jax.vmap(q_fn, in_axes=(0, None))(params, obs), axis=0)


def act_min(q_fn, params, obs):
    """The minimum over members of their Q-values."""
    return jnp.min(jax.vmap(q_fn, in_axes=(0, None))(params, obs), axis=0)


# ---- the records --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EnsembleSize:
    """The rule for ``DQNConfig.ensemble_size``: its default, the sizes allowed and what it counts.

    ``counts="members"``: online networks trained side by side, each with its target network
    (a leading member axis on both when more than one). ``counts="snapshots"``: target snapshots of
    one online network (a leading axis on ``target_params`` only).
    """

    default: int
    minimum: int
    fixed: bool  # only ``default`` is allowed
    counts: Literal["members", "snapshots"] = "members"

    def allows(self, size: int) -> bool:
        return size == self.default if self.fixed else size >= self.minimum

    @property
    def allowed(self) -> str:
        """The sizes allowed as text: ``"2"``, ``">= 1"``."""
        return str(self.default) if self.fixed else f">= {self.minimum}"


def fixed_size(n: int) -> EnsembleSize:
    """Exactly ``n`` online members."""
    return EnsembleSize(default=n, minimum=n, fixed=True)


def configurable_size(default: int, minimum: int = 1,
                      counts: Literal["members", "snapshots"] = "members") -> EnsembleSize:
    """Any size ``>= minimum`` of ``counts``, ``default`` when unset."""
    return EnsembleSize(default=default, minimum=minimum, fixed=False, counts=counts)


@dataclasses.dataclass(frozen=True)
class Estimator:
    """Every fact about one TD-target estimator; the code that trains, acts, estimates memory and
    names a run reads these fields instead of testing the estimator's name.

    ``online_next``: the online networks the target reads at ``s'`` (each one forward pass per
    network over the minibatch): ``"none"``, ``"first"`` (member 0, or the only network: an
    ``f32[B, A]``) or ``"every"`` member (``f32[M, B, A]``). ``trains``: the members one gradient
    step trains: ``"only"`` network, one chosen at ``"random"`` (the step takes a key), or
    ``"all"`` of them. ``train_all_option``: ``DQNConfig.update_all_members`` may turn
    ``"random"`` into ``"all"``. ``target`` reads ``next_q_target: f32[B, A]`` for an estimator of
    exactly one network and ``f32[M, B, A]`` otherwise (``M`` may be 1); it returns one target
    ``f32[B]`` shared by every member, or ``f32[M, B]``, one per member. ``reads_current``: the
    target also reads the target network at ``s`` (one more forward pass over the minibatch per
    target network) and the stored action, given to ``target`` as ``current=Current(...)`` with
    the step's ``hparams``. ``distributional_action``: the next action of the estimator's
    distributional target (C51, QR-DQN: ``DQNConfig.distributional``), from the means of the
    networks it reads at ``s'``; None: the estimator has no distributional form.
    """

    name: str
    display_name: str  # for titles and labels; "{n}" is replaced by the ensemble size
    description: str  # one line for the ``estimator`` field's help
    size: EnsembleSize
    online_next: Literal["none", "first", "every"]
    trains: Literal["only", "random", "all"]
    act: ActFn
    target: TargetFn
    train_all_option: bool = False
    reads_current: bool = False
    distributional_action: ActionFn | None = None

    @property
    def snapshots(self) -> bool:
        """Whether the ensemble is of target snapshots (one online network)."""
        return self.size.counts == "snapshots"

    @property
    def argmax_target(self) -> bool:
        """Whether the target takes an argmax (of online values at ``s'``), whose ties
        ``random_tie_break`` breaks at random."""
        return self.online_next != "none"

    @property
    def stacked(self) -> bool:
        """Whether the target reads target networks on a leading axis (every estimator but those
        of exactly one network)."""
        return not (self.size.fixed and self.size.default == 1)

    def num_members(self, ensemble_size: int) -> int:
        """Online networks trained side by side."""
        return 1 if self.snapshots else ensemble_size

    def trained(self, update_all_members: bool) -> str:
        """``trains``, with ``update_all_members`` where the estimator offers it."""
        return "all" if update_all_members and self.train_all_option else self.trains

    def label(self, ensemble_size: int) -> str:
        """``display_name`` for this ensemble size, e.g. ``"Maxmin N=4"``."""
        return self.display_name.format(n=ensemble_size)


ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (
    Estimator("dqn", "DQN", "max of the target network", fixed_size(1),
              online_next="none", trains="only", act=act_own, target=target_only(dqn_target),
              distributional_action=target_greedy_action),
    Estimator("double_dqn", "Double DQN", "the target network at the online argmax",
              fixed_size(1), online_next="first", trains="only", act=act_own,
              target=double_dqn_target, distributional_action=online_greedy_action),
    Estimator("double_q", "Double Q", "2 members, each valued by the other's target",
              fixed_size(2), online_next="every", trains="random", act=act_mean,
              target=double_q_target),
    Estimator("clipped_double", "Clipped double Q", "min of 2 targets at member 1's argmax",
              fixed_size(2), online_next="first", trains="all", act=act_first,
              target=clipped_double_target),
    Estimator("maxmin", "Maxmin N={n}", "max of the min of N members", configurable_size(2),
              online_next="none", trains="random", act=act_min,
              target=target_only(maxmin_target), train_all_option=True),
    Estimator("averaged", "Averaged N={n}", "max of the mean of N target snapshots",
              configurable_size(2, counts="snapshots"), online_next="none", trains="only",
              act=act_own, target=target_only(averaged_target)),
    Estimator("munchausen", "Munchausen DQN",
              "soft target of pi = softmax(Q'/tau) plus a scaled log-policy bonus",
              fixed_size(1), online_next="none", trains="only", act=act_own, target=_munchausen,
              reads_current=True),
)}
