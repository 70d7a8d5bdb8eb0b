"""Learning: the TD target of each estimator, the loss, one optimizer step, and target updates.

The estimators (``DQNConfig.estimator``) differ only in the target ``y`` and in which networks
learn from it. Each target is a pure function of Q-value arrays, so it can be checked by hand:

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
==================  ==============================================  ============================

``Q`` is online, ``Q'`` target; members (``config.num_members > 1``) are one pytree with a leading
member axis, applied with ``jax.vmap`` (one batched matmul); ``averaged`` keeps the ``N`` newest
target snapshots ``theta_1..theta_N`` as a leading axis of ``target_params``, newest first.
With a legal-action mask for ``s'`` every max and argmax ranges over legal actions only.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdqn.buffer import Transition, uniform_index
from jaxdqn.config import DQNConfig
from jaxdqn.networks import QFn

LegalFn = Callable[[jax.Array], jax.Array]  # obs [..., *obs_shape] -> bool[..., num_actions]


class TrainState(NamedTuple):
    params: dict  # online network(s); leaves [num_members, ...] when num_members > 1
    target_params: dict  # frozen copy theta^- (same layout); averaged: [N, ...], newest first
    opt_state: optax.OptState  # one per member (leading member axis) when num_members > 1


class UpdateInfo(NamedTuple):
    """Diagnostics of one gradient step, means over the minibatch (and over members)."""

    loss: jax.Array  # of the member(s) updated
    q_taken: jax.Array  # Q(s, a; theta) of the stored action
    q_max: jax.Array  # max_a Q(s, a; theta) over legal actions
    target: jax.Array  # TD target y (of the member(s) updated)
    grad_norm: jax.Array  # global norm before any clipping (of the member(s) updated)


def make_optimizer(config: DQNConfig, learning_rate=None) -> optax.GradientTransformation:
    """Adam or plain SGD, optionally after global-norm gradient clipping; ``learning_rate`` may be
    traced. With ``anneal_lr`` the rate decays linearly to 0 over the run's gradient steps.

    A member estimator keeps one optimizer state per member (``init_train_state``).
    """
    lr = config.learning_rate if learning_rate is None else learning_rate
    if config.anneal_lr:
        lr = optax.linear_schedule(lr, 0.0, transition_steps=max(config.num_updates, 1))
    opt = optax.sgd(lr) if config.optimizer == "sgd" else optax.adam(lr)
    if config.max_grad_norm is None:
        return opt
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), opt)


def init_train_state(config: DQNConfig, params, optimizer: optax.GradientTransformation
                     ) -> TrainState:
    """The state before the first step: the target is a copy of the online network (for
    ``averaged``, all ``num_estimators`` snapshots are); members get their own optimizer state."""
    if config.num_members > 1:
        opt_state = jax.vmap(optimizer.init)(params)
    else:
        opt_state = optimizer.init(params)
    target = params
    if config.estimator == "averaged":
        k = config.num_estimators
        target = jax.tree.map(lambda x: jnp.broadcast_to(x, (k, *x.shape)), params)
    return TrainState(params=params, target_params=target, opt_state=opt_state)


# ---- targets: pure functions of Q-values -------------------------------------------------------
# Shapes: reward f32[B], terminated bool[B], next_q* f32[B, A] (one network) or f32[M, B, A]
# (members or snapshots), next_legal bool[B, A] or None (every action legal). Targets are f32[B]
# (f32[M, B] for double_q: one per member) and carry no gradient.


def _masked(q, legal):
    """``q`` with illegal actions at ``-inf``, so max and argmax range over legal ones."""
    return q if legal is None else jnp.where(legal, q, -jnp.inf)


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


def dqn_target(reward, terminated, gamma, next_q_target, next_legal=None):
    """DQN (Mnih et al. 2015): ``v = max_a Q'(s', a)``, with ``next_q_target: f32[B, A]``."""
    v = jnp.max(_masked(next_q_target, next_legal), axis=-1)
    return _bootstrap(reward, terminated, gamma, v, next_legal)


def double_dqn_target(reward, terminated, gamma, next_q_target, next_q_online, next_legal=None):
    """Double DQN (van Hasselt, Guez and Silver 2016): the online network picks
    ``a* = argmax_a Q(s', a)`` (lowest index among ties), the target network values it:
    ``v = Q'(s', a*)``. Both arguments ``f32[B, A]``."""
    best = jnp.argmax(_masked(next_q_online, next_legal), axis=-1)
    return _bootstrap(reward, terminated, gamma, _value_at(next_q_target, best), next_legal)


def double_q_target(reward, terminated, gamma, next_q_target, next_q_online, next_legal=None):
    """Double Q-learning (van Hasselt 2010), one target per member: member ``i``'s own online
    values pick ``a*_i = argmax_a Q_i(s', a)`` and its partner ``j = (i + 1) mod M`` (the other of
    two) values it with its target network, ``v_i = Q'_j(s', a*_i)``. Arguments ``f32[M, B, A]``;
    returns ``f32[M, B]``. With the target synced every step this is the tabular
    ``Q_A(s, a) += alpha * (r + gamma * Q_B(s', argmax_a Q_A(s', a)) - Q_A(s, a))``."""
    best = jnp.argmax(_masked(next_q_online, next_legal), axis=-1)  # [M, B]
    partner_q = jnp.roll(next_q_target, -1, axis=0)  # row i holds member (i + 1) mod M
    return _bootstrap(reward, terminated, gamma, _value_at(partner_q, best), next_legal)


def clipped_double_target(reward, terminated, gamma, next_q_target, next_q_online_first,
                          next_legal=None):
    """Clipped double Q (Fujimoto, van Hoof and Meger 2018, TD3's target in discrete form): the
    first member's online values pick ``a* = argmax_a Q_1(s', a)``, and the smallest target
    value of it is taken, ``v = min_j Q'_j(s', a*)``. ``next_q_target: f32[M, B, A]``,
    ``next_q_online_first: f32[B, A]``; every member regresses to this one ``y``."""
    best = jnp.argmax(_masked(next_q_online_first, next_legal), axis=-1)  # [B]
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


def td_targets(reward, terminated, gamma, next_q_target, next_q_online=None, next_legal=None):
    """DQN's target, or Double DQN's when ``next_q_online`` is given (kept for callers of the
    two-estimator API)."""
    if next_q_online is None:
        return dqn_target(reward, terminated, gamma, next_q_target, next_legal)
    return double_dqn_target(reward, terminated, gamma, next_q_target, next_q_online, next_legal)


def td_loss(predicted_q, target, loss: str = "mse", huber_delta: float = 1.0, half: bool = False):
    """Mean over the batch of the squared TD error (the seed's loss) or the Huber loss.

    ``half`` halves the squared error, so that an SGD step of size ``alpha`` on a table is the
    tabular ``Q += alpha * (y - Q)``; Adam is insensitive to the factor (up to its epsilon), and
    the Huber loss is already halved in its quadratic part.
    """
    if loss == "mse":
        if half:
            return jnp.mean(optax.l2_loss(predicted_q, target))
        return jnp.mean(optax.squared_error(predicted_q, target))
    return jnp.mean(optax.huber_loss(predicted_q, target, delta=huber_delta))


def member_choice_needed(config: DQNConfig) -> bool:
    """Whether a gradient step updates one member chosen at random (and so needs a key)."""
    return config.estimator == "double_q" or (config.estimator == "maxmin"
                                              and not config.update_all_members)


def make_td_update(
    config: DQNConfig, q_fn: QFn, optimizer: optax.GradientTransformation,
    legal_fn: LegalFn | None = None,
) -> Callable[..., tuple[TrainState, UpdateInfo]]:
    """A jitted ``td_update(state, batch, gamma, key=None) -> (state, info)``: one gradient step.

    ``key`` picks the member to update (``member_choice_needed``); other estimators ignore it.
    ``legal_fn(obs)`` gives the legal actions of ``s'`` (recomputed from the stored observation)
    and of ``s``; None: all actions are legal, and the program is the one without masks.
    """
    half = config.optimizer == "sgd"
    estimator = config.estimator
    members = jax.vmap(q_fn, in_axes=(0, None))  # params [M, ...] -> f32[M, ..., A]

    def legal_of(obs):
        return None if legal_fn is None else legal_fn(obs)

    def single_loss(params, batch: Transition, target):
        """The loss of one network against a fixed target; aux: (q_taken, q_max, target) means."""
        q = q_fn(params, batch.obs)
        q_taken = jnp.take_along_axis(q, batch.action[:, None].astype(jnp.int32), axis=-1)[:, 0]
        loss = td_loss(q_taken, target, config.loss, config.huber_delta, half)
        q_max = _masked(q, legal_of(batch.obs)).max(axis=-1)
        return loss, (q_taken.mean(), q_max.mean(), target.mean())

    if config.num_members == 1:
        def loss_fn(params, target_params, batch: Transition, gamma):
            # The order of operations of the original DQN/Double DQN update (bit-identical runs).
            q = q_fn(params, batch.obs)
            q_taken = jnp.take_along_axis(q, batch.action[:, None].astype(jnp.int32),
                                          axis=-1)[:, 0]
            legal = legal_of(batch.next_obs)
            if estimator == "averaged":
                target = averaged_target(batch.reward, batch.terminated, gamma,
                                         members(target_params, batch.next_obs), legal)
            elif estimator == "double_dqn":
                target = double_dqn_target(batch.reward, batch.terminated, gamma,
                                           q_fn(target_params, batch.next_obs),
                                           q_fn(params, batch.next_obs), legal)
            else:
                target = dqn_target(batch.reward, batch.terminated, gamma,
                                    q_fn(target_params, batch.next_obs), legal)
            loss = td_loss(q_taken, target, config.loss, config.huber_delta, half)
            q_max = _masked(q, legal_of(batch.obs)).max(axis=-1)
            return loss, (q_taken.mean(), q_max.mean(), target.mean())

        @jax.jit
        def td_update(state: TrainState, batch: Transition, gamma, key=None):
            (loss, (q_taken, q_max, target)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state.params, state.target_params, batch, gamma)
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            info = UpdateInfo(loss, q_taken, q_max, target, optax.tree.norm(grads))
            return state._replace(params=params, opt_state=opt_state), info

        return td_update

    num = config.num_members
    choose = member_choice_needed(config)

    def member_targets(state: TrainState, batch: Transition, gamma):
        """``f32[M, B]``: the target each member would regress to."""
        legal = legal_of(batch.next_obs)
        r, term = batch.reward, batch.terminated
        next_target = members(state.target_params, batch.next_obs)  # [M, B, A]
        if estimator == "double_q":
            return double_q_target(r, term, gamma, next_target,
                                   members(state.params, batch.next_obs), legal)
        if estimator == "clipped_double":
            first = jax.tree.map(lambda x: x[0], state.params)
            y = clipped_double_target(r, term, gamma, next_target, q_fn(first, batch.next_obs),
                                      legal)
        else:  # maxmin
            y = maxmin_target(r, term, gamma, next_target, legal)
        return jnp.broadcast_to(y, (num, *y.shape))

    grad_fn = jax.value_and_grad(single_loss, has_aux=True)

    def step_one(params, opt_state, batch, target):
        (loss, aux), grads = grad_fn(params, batch, target)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, aux, optax.tree.norm(grads)

    @jax.jit
    def td_update_members(state: TrainState, batch: Transition, gamma, key=None):
        y = member_targets(state, batch, gamma)
        if choose:
            if key is None:
                raise ValueError(f"estimator={estimator!r} updates one member chosen at random: "
                                 "td_update needs a key")
            i = uniform_index(key, (), num)
            pick = lambda tree: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
            params, opt_state, loss, (q_taken, q_max, target), norm = step_one(
                pick(state.params), pick(state.opt_state), batch, y[i])
            put = lambda tree, new: jax.tree.map(lambda x, v: x.at[i].set(v), tree, new)  # noqa
            params, opt_state = put(state.params, params), put(state.opt_state, opt_state)
        else:
            params, opt_state, loss, (q_taken, q_max, target), norm = jax.vmap(
                step_one, in_axes=(0, 0, None, 0))(state.params, state.opt_state, batch, y)
            loss, q_taken, q_max, target = (x.mean() for x in (loss, q_taken, q_max, target))
            norm = jnp.sqrt(jnp.sum(norm ** 2))
        info = UpdateInfo(loss, q_taken, q_max, target, norm)
        return state._replace(params=params, opt_state=opt_state), info

    return td_update_members


def sync_target(state: TrainState, do_sync, tau, snapshots: bool = False) -> TrainState:
    """``theta^- <- tau * theta + (1 - tau) * theta^-`` where ``do_sync``; ``tau=1`` copies.

    Members are synced each to its own online network. With ``snapshots`` (Averaged-DQN)
    ``target_params`` is a ring ``[N, ...]``, newest first: a sync drops the oldest snapshot and
    puts ``tau * theta + (1 - tau) * newest`` in front.
    """
    def synced():
        if not snapshots:
            return optax.incremental_update(state.params, state.target_params, tau)
        newest = jax.tree.map(lambda t: t[0], state.target_params)
        new = optax.incremental_update(state.params, newest, tau)
        return jax.tree.map(lambda n, t: jnp.concatenate([n[None], t[:-1]]), new,
                            state.target_params)

    # A real branch when do_sync is unbatched; under a batched predicate vmap turns it into a select.
    target = jax.lax.cond(do_sync, synced, lambda: state.target_params)
    return state._replace(target_params=target)
