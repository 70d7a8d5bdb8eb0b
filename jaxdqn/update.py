"""Learning: where TD targets are computed (DQN and Double DQN), the loss, one optimizer step, and
the target-network update."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdqn.buffer import Transition
from jaxdqn.config import DQNConfig
from jaxdqn.networks import QFn


class TrainState(NamedTuple):
    params: dict  # online network
    target_params: dict  # frozen copy theta^-
    opt_state: optax.OptState


class UpdateInfo(NamedTuple):
    """Diagnostics of one gradient step, means over the minibatch."""

    loss: jax.Array
    q_taken: jax.Array  # Q(s, a; theta) of the stored action
    q_max: jax.Array  # max_a Q(s, a; theta)
    target: jax.Array  # TD target y
    grad_norm: jax.Array  # global norm before any clipping


def make_optimizer(config: DQNConfig, learning_rate=None) -> optax.GradientTransformation:
    """Adam, optionally after global-norm gradient clipping. ``learning_rate`` may be traced.

    With ``anneal_lr`` the rate decays linearly to 0 over the run's gradient steps.
    """
    lr = config.learning_rate if learning_rate is None else learning_rate
    if config.anneal_lr:
        lr = optax.linear_schedule(lr, 0.0, transition_steps=max(config.num_updates, 1))
    adam = optax.adam(lr)
    if config.max_grad_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)


def td_targets(reward, terminated, gamma, next_q_target, next_q_online=None):
    """``y = r + gamma * Q_target(s', a') * (1 - terminated)``, stopped from gradients.

    DQN takes ``a' = argmax_a Q_target(s', a)``; with ``next_q_online`` (Double DQN) the online
    network picks ``a' = argmax_a Q_online(s', a)`` and the target network values it.
    Only ``terminated`` cuts the bootstrap: a time-limit truncation is not a terminal state.
    """
    if next_q_online is None:
        next_value = jnp.max(next_q_target, axis=-1)
    else:
        best = jnp.argmax(next_q_online, axis=-1)
        next_value = jnp.take_along_axis(next_q_target, best[..., None], axis=-1)[..., 0]
    not_done = 1.0 - terminated.astype(jnp.float32)
    return jax.lax.stop_gradient(reward + gamma * next_value * not_done)


def td_loss(predicted_q, target, loss: str = "mse", huber_delta: float = 1.0):
    """Mean over the batch of the squared TD error (the seed's loss) or the Huber loss."""
    if loss == "mse":
        return jnp.mean(optax.squared_error(predicted_q, target))
    return jnp.mean(optax.huber_loss(predicted_q, target, delta=huber_delta))


def make_td_update(
    config: DQNConfig, q_fn: QFn, optimizer: optax.GradientTransformation
) -> Callable[[TrainState, Transition, jax.Array], tuple[TrainState, UpdateInfo]]:
    """A jitted ``td_update(state, batch, gamma) -> (state, info)``: one gradient step on a batch."""

    def loss_fn(params, target_params, batch: Transition, gamma):
        q = q_fn(params, batch.obs)
        q_taken = jnp.take_along_axis(q, batch.action[:, None].astype(jnp.int32), axis=-1)[:, 0]
        next_q_target = q_fn(target_params, batch.next_obs)
        next_q_online = q_fn(params, batch.next_obs) if config.estimator == "double_dqn" else None
        target = td_targets(batch.reward, batch.terminated, gamma, next_q_target, next_q_online)
        loss = td_loss(q_taken, target, config.loss, config.huber_delta)
        return loss, (q_taken.mean(), q.max(axis=-1).mean(), target.mean())

    @jax.jit
    def td_update(state: TrainState, batch: Transition, gamma) -> tuple[TrainState, UpdateInfo]:
        (loss, (q_taken, q_max, target)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.target_params, batch, gamma
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        info = UpdateInfo(loss, q_taken, q_max, target, optax.tree.norm(grads))
        return state._replace(params=params, opt_state=opt_state), info

    return td_update


def sync_target(state: TrainState, do_sync, tau) -> TrainState:
    """``theta^- <- tau * theta + (1 - tau) * theta^-`` where ``do_sync``; ``tau=1`` copies."""
    # A real branch when do_sync is unbatched; under a batched predicate vmap turns it into a select.
    target = jax.lax.cond(
        do_sync,
        lambda: optax.incremental_update(state.params, state.target_params, tau),
        lambda: state.target_params,
    )
    return state._replace(target_params=target)
