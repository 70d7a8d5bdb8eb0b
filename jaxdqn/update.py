"""Learning: the loss, one optimizer step of an estimator's members, and target updates.

What the target is, which networks it reads and which members a step trains come from the
estimator's record (``jaxdqn.estimators``); with a distributional head, the target distribution and
its loss come from the head's record (``jaxdqn.distributional``). This module applies them to
networks and optimizers. With noisy networks (``DQNConfig.noisy``) every network of every pass of
a step has its own draw of noise (``StepNoise``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdqn.buffer import Transition, uniform_index
from jaxdqn.config import DQNConfig
from jaxdqn.distributional import HEADS
from jaxdqn.estimators import ESTIMATORS, Current, first_member, masked_max
from jaxdqn.networks import (
    HeadFn,
    QFn,
    make_head_fn,
    make_noise_head_fn,
    make_noise_q_fn,
)
from jaxdqn.noisy_nets import draw_noise

LegalFn = Callable[[jax.Array], jax.Array]  # obs [..., *obs_shape] -> bool[..., num_actions]


class TrainState(NamedTuple):
    params: dict  # online network(s); leaves [num_members, ...] when num_members > 1
    target_params: dict  # frozen copy theta^- (same layout); averaged: [N, ...], newest first
    opt_state: optax.OptState  # one per member (leading member axis) when num_members > 1


class StepNoise(NamedTuple):
    """Noisy networks: the noise of a gradient step's passes over its minibatch, ``{layer name:
    LayerNoise}`` for one network, with a leading axis where a pass is vmapped over members or
    snapshots, None where the estimator makes no such pass. Each network of each pass has its own
    draw, shared by the minibatch's rows (as Dopamine's full Rainbow and DQN Zoo's Rainbow draw
    it), independent of the others (as DQN Zoo's; Dopamine's target and online networks at s'
    share a key), all cut from one random call (``_TDStep.draw``)."""

    online: dict | None  # the online network(s) at s: the Q-values the loss trains
    target_next: dict | None  # the target network(s) at s'
    online_next: dict | None  # the online network(s) at s' (Double DQN's argmax, ...)
    target: dict | None  # the target network at s (Munchausen's bonus)


class UpdateInfo(NamedTuple):
    """Diagnostics of one gradient step, means over the minibatch (and over members)."""

    loss: jax.Array  # of the member(s) updated
    q_taken: jax.Array  # Q(s, a; theta) of the stored action (a distributional head's: its mean)
    q_max: jax.Array  # max_a Q(s, a; theta) over legal actions
    target: jax.Array  # TD target y (of the member(s) updated; distributional: of the means)
    grad_norm: jax.Array  # global norm before any clipping (of the member(s) updated)
    td_error: jax.Array  # f32[B]: prioritized replay's priority signal: |y - Q(s, a)| of the
    # member(s) updated (mean over members when all are); a distributional head's per-sample loss


def make_optimizer(config: DQNConfig, learning_rate=None) -> optax.GradientTransformation:
    """Adam (epsilon ``adam_eps``) or plain SGD, optionally after global-norm gradient clipping;
    ``learning_rate`` may be traced. With ``anneal_lr`` the rate decays linearly to 0 over the
    run's gradient steps: the step of count ``k`` (0 first) uses ``lr * (1 - k / num_updates)``,
    the last one ``lr / num_updates``.

    A member estimator keeps one optimizer state per member (``init_train_state``); the
    schedule's count follows the run's gradient steps in every member (``share_schedule_count``).
    """
    lr = config.learning_rate if learning_rate is None else learning_rate
    if config.anneal_lr:
        lr = optax.linear_schedule(lr, 0.0, transition_steps=max(config.num_updates, 1))
    opt = optax.sgd(lr) if config.optimizer == "sgd" else optax.adam(lr, eps=config.adam_eps)
    if config.max_grad_norm is None:
        return opt
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), opt)


def init_train_state(config: DQNConfig, params, optimizer: optax.GradientTransformation
                     ) -> TrainState:
    """The state before the first step: the target is a copy of the online network (for an
    estimator of snapshots, all ``ensemble_size`` snapshots are); members get their own optimizer
    state."""
    if config.num_members > 1:
        opt_state = jax.vmap(optimizer.init)(params)
    else:
        opt_state = optimizer.init(params)
    target = params
    if ESTIMATORS[config.estimator].snapshots:
        k = config.ensemble_size
        target = jax.tree.map(lambda x: jnp.broadcast_to(x, (k, *x.shape)), params)
    return TrainState(params=params, target_params=target, opt_state=opt_state)


def td_loss(predicted_q, target, loss: str = "mse", huber_delta: float = 1.0, half: bool = False,
            weight=None):
    """Mean over the batch of the squared TD error (the seed's loss) or the Huber loss; with
    ``weight: f32[B]`` (importance weights) the mean of the weighted per-sample losses.

    ``half`` halves the squared error, so that an SGD step of size ``alpha`` on a table is the
    tabular ``Q += alpha * (y - Q)``; Adam is insensitive to the factor (up to its epsilon), and
    the Huber loss is already halved in its quadratic part.
    """
    if loss == "mse":
        per_sample = (optax.l2_loss if half else optax.squared_error)(predicted_q, target)
    else:
        per_sample = optax.huber_loss(predicted_q, target, delta=huber_delta)
    return jnp.mean(per_sample if weight is None else weight * per_sample)


def make_td_update(
    config: DQNConfig, q_fn: QFn, optimizer: optax.GradientTransformation,
    legal_fn: LegalFn | None = None, hparams=None,
) -> Callable[..., tuple[TrainState, UpdateInfo]]:
    """A jitted ``td_update(state, batch, gamma, key=None, weight=None) -> (state, info)``: one
    gradient step. ``gamma``: ``f32[]``, or ``f32[B]`` per sample (n-step returns' ``gamma^m``);
    ``weight: f32[B]``: importance weights of the per-sample losses (prioritized replay).

    The estimator's record says which Q-values its target reads at s' and which members the step
    trains. ``key`` (needed where ``step_takes_key(config)``) picks the member to update when it
    trains one chosen at random (``config.trained_members == "random"``), breaks ties in the
    target's argmax at random with ``random_tie_break`` and draws a noisy network's noise for
    each pass (``StepNoise``); otherwise it is ignored. Noisy networks' ``info`` (``q_taken``,
    ``q_max``, ``td_error``) is of the online network under the step's noise.
    ``legal_fn(obs)`` gives the legal actions of ``s'`` (recomputed from the stored observation)
    and of ``s``; None: all actions are legal, and the program is the one without masks.
    ``hparams`` (``train.HParams``, possibly traced) gives the coefficients a target reads
    (Munchausen's, QR-DQN's ``kappa``); None: the config's.

    With a distributional head (``config.distributional``) the step reads the network's raw output
    (``networks.make_head_fn(config)``; ``q_fn`` is not used) and regresses the taken action's
    distribution onto the target distribution at the next action the estimator picks by the means
    (``_distributional_loss``).
    """
    distributional = HEADS[config.distributional].loss is not None
    step = _TDStep(config, q_fn, optimizer, legal_fn, config if hparams is None else hparams,
                   noise_q_fn=make_noise_q_fn(config) if config.noisy else None,
                   head_fn=make_head_fn(config) if distributional else None,
                   noise_head_fn=(make_noise_head_fn(config)
                                  if config.noisy and distributional else None))
    return _members_update(step) if config.num_members > 1 else _single_update(step)


def _breaks_target_ties(config: DQNConfig) -> bool:
    """Whether the target takes an argmax whose ties ``random_tie_break`` breaks: of the online
    values, or a distributional target's next action (whichever network picks it)."""
    return config.random_tie_break and (ESTIMATORS[config.estimator].argmax_target
                                        or config.distributional != "none")


def step_takes_key(config: DQNConfig) -> bool:
    """Whether ``td_update`` draws random numbers (a member chosen at random, ties of the
    target's argmax broken at random, or a noisy network's noise), so needs a key."""
    return config.trained_members == "random" or _breaks_target_ties(config) or config.noisy


def _step_keys(config: DQNConfig, key) -> tuple:
    """``(member_key, tie_key, noise_key)`` of a step's ``key``, None where unused: ``key`` itself
    where one is used, else ``key`` split into them (one random call)."""
    used = (config.trained_members == "random", _breaks_target_ties(config), config.noisy)
    if not any(used):
        return None, None, None
    if key is None:
        raise ValueError(f"estimator={config.estimator!r}"
                         + (" with random_tie_break" if used[1] else "")
                         + (" with noisy" if used[2] else "")
                         + " draws random numbers in a gradient step: td_update needs a key")
    keys = iter([key] if sum(used) == 1 else jax.random.split(key, sum(used)))
    return tuple(next(keys) if u else None for u in used)


@dataclasses.dataclass(frozen=True)
class _TDStep:
    """What both forms of a gradient step close over: the config, the network, the optimizer,
    the legal actions (``legal_fn`` None: all legal), the coefficients a target reads
    (``hparams``: the config or ``train.HParams``), a noisy network's forward pass under given
    noise (``noise_q_fn``, ``networks.make_noise_q_fn``; None without noise), and a
    distributional head's raw output (``head_fn``; ``noise_head_fn`` under given noise; None for
    the scalar head)."""

    config: DQNConfig
    q_fn: QFn
    optimizer: optax.GradientTransformation
    legal_fn: LegalFn | None
    hparams: object
    noise_q_fn: Callable | None = None
    head_fn: HeadFn | None = None
    noise_head_fn: Callable | None = None

    def legal(self, obs):
        return None if self.legal_fn is None else self.legal_fn(obs)

    def q(self, params, obs, noise=None):
        """``f32[B, A]`` of one network under ``noise``, or without noise ``q_fn`` (the mean
        weights of a noisy network)."""
        return self.q_fn(params, obs) if noise is None else self.noise_q_fn(params, obs, noise)

    def head(self, params, obs, noise=None):
        """A distributional head's ``f32[B, A, K]`` of one network under ``noise`` (None: the
        mean weights)."""
        return (self.head_fn(params, obs) if noise is None
                else self.noise_head_fn(params, obs, noise))

    def each(self, params, obs, noise=None):
        """``f32[N, B, A]`` of params with a leading axis of ``N`` networks (members or
        snapshots), each under its row of ``noise``."""
        if noise is None:
            return jax.vmap(self.q_fn, in_axes=(0, None))(params, obs)
        return jax.vmap(self.noise_q_fn, in_axes=(0, None, 0))(params, obs, noise)

    def stacked(self, params, obs, noise=None):
        """``f32[M, B, A]`` of params with a leading member axis, ``f32[1, B, A]`` of one
        network."""
        if self.config.num_members > 1:
            return self.each(params, obs, noise)
        return self.q(params, obs, noise)[None]

    def draw(self, key, params) -> StepNoise:
        """The step's ``StepNoise`` from ``key``: one draw of ``draw_noise`` for every network of
        every pass (one random call), cut into the passes'."""
        config, estimator = self.config, ESTIMATORS[self.config.estimator]
        members = config.num_members
        stacked = (members, True) if members > 1 else (1, False)
        passes = StepNoise(  # (networks, whether the pass is vmapped over them)
            online=(members, True) if config.trained_members == "all" else (1, False),
            target_next=(config.ensemble_size, True) if estimator.snapshots else stacked,
            online_next={"none": (0, False), "first": (1, False),
                         "every": stacked}[estimator.online_next],
            target=(1, False) if estimator.reads_current else (0, False))
        noise = draw_noise(key, params, (sum(n for n, _ in passes),))
        cut, offset = [], 0
        for n, vmapped in passes:
            rows = slice(offset, offset + n) if vmapped else offset
            cut.append(jax.tree.map(lambda x, rows=rows: x[rows], noise) if n else None)
            offset += n
        return StepNoise(*cut)

    def target(self, params, target_params, batch: Transition, gamma, legal, tie_key=None,
               noise: StepNoise | None = None):
        """The estimator's TD target of ``batch`` (``legal``: the legal actions of ``s'``;
        ``tie_key``: ties of its argmax at random; ``noise``: noisy networks' draws)."""
        estimator = ESTIMATORS[self.config.estimator]
        next_obs, q = batch.next_obs, self.q
        noise = StepNoise(None, None, None, None) if noise is None else noise
        if estimator.snapshots:
            next_q_target = self.each(target_params, next_obs, noise.target_next)
        elif estimator.stacked:
            next_q_target = self.stacked(target_params, next_obs, noise.target_next)
        else:
            next_q_target = q(target_params, next_obs, noise.target_next)
        if estimator.online_next == "first":
            first = first_member(params) if self.config.num_members > 1 else params
            next_q_online = q(first, next_obs, noise.online_next)
        elif estimator.online_next == "every":
            next_q_online = self.stacked(params, next_obs, noise.online_next)
        else:
            next_q_online = None
        if estimator.reads_current:
            current = Current(q(target_params, batch.obs, noise.target), batch.action,
                              self.legal(batch.obs))
            return estimator.target(batch.reward, batch.terminated, gamma, next_q_target,
                                    next_q_online, legal, current=current, hparams=self.hparams)
        if tie_key is None:  # the program without tie-breaking, as before the option
            return estimator.target(batch.reward, batch.terminated, gamma, next_q_target,
                                    next_q_online, legal)
        return estimator.target(batch.reward, batch.terminated, gamma, next_q_target,
                                next_q_online, legal, tie_key=tie_key)

    def loss(self, q_taken, target, weight=None):
        config = self.config
        return td_loss(q_taken, target, config.loss, config.huber_delta,
                       half=config.optimizer == "sgd", weight=weight)

    def fixed_target_loss(self, params, batch: Transition, target, weight=None, noise=None):
        """The loss of one network (under ``noise``) against a fixed target; aux: (q_taken,
        q_max, target) means and the absolute TD errors ``f32[B]``."""
        q = self.q(params, batch.obs, noise)
        q_taken = _q_taken(q, batch.action)
        loss = self.loss(q_taken, target, weight)
        q_max = masked_max(q, self.legal(batch.obs))
        return loss, (q_taken.mean(), q_max.mean(), target.mean(), jnp.abs(target - q_taken))


def _q_taken(q, action):
    """``q[b, action[b]]``: the Q-value of each stored action."""
    return jnp.take_along_axis(q, action[:, None].astype(jnp.int32), axis=-1)[:, 0]


def _at_action(output, action):
    """``output[b, action[b], :]``: ``f32[B, K]`` of ``output: f32[B, A, K]``."""
    index = action.astype(jnp.int32)[:, None, None]
    return jnp.take_along_axis(output, index, axis=1)[:, 0]


def _distributional_loss(step: _TDStep, params, target_params, batch: Transition, gamma, tie_key,
                         weight, noise=None):
    """The loss of a distributional head, with the scalar loss's aux: the head's per-sample loss
    of the taken action's distribution against ``r + gamma * (1 - terminated) * Z'(s', a*)``
    (``distributional.Head.loss``), its mean weighted by ``weight``; ``a*`` is the estimator's
    ``distributional_action`` of the means at ``s'`` (the target network's, and the online
    network's where the estimator reads it), over the legal actions; a next state without legal
    actions is worth 0, as in the scalar targets. ``q_taken``, ``q_max`` and ``target`` are of
    means; the priority signal is the per-sample loss."""
    config = step.config
    head, estimator = HEADS[config.distributional], ESTIMATORS[config.estimator]
    noise = StepNoise(None, None, None, None) if noise is None else noise
    output = step.head(params, batch.obs, noise.online)  # [B, A, K]
    next_output = step.head(target_params, batch.next_obs, noise.target_next)
    next_legal = step.legal(batch.next_obs)
    next_q_online = (head.mean(step.head(params, batch.next_obs, noise.online_next), config)
                     if estimator.online_next == "first" else None)
    next_action = estimator.distributional_action(head.mean(next_output, config), next_q_online,
                                                  next_legal, tie_key)
    next_dist = jax.lax.stop_gradient(_at_action(next_output, next_action))  # [B, K]
    bootstraps = 1.0 - batch.terminated.astype(jnp.float32)
    if next_legal is not None:
        bootstraps = bootstraps * next_legal.any(-1)
    discount = gamma * bootstraps  # f32[B]: gamma (or gamma^m) where the target bootstraps
    per_sample = head.loss(_at_action(output, batch.action), batch.reward, discount, next_dist,
                           config, step.hparams)
    loss = jnp.mean(per_sample if weight is None else weight * per_sample)
    q = head.mean(output, config)
    target = batch.reward + discount * head.mean(next_dist, config)
    return loss, (_q_taken(q, batch.action).mean(), masked_max(q, step.legal(batch.obs)).mean(),
                  target.mean(), per_sample)


def _single_update(step: _TDStep) -> Callable[..., tuple[TrainState, UpdateInfo]]:
    """``td_update`` of one online network: DQN and Double DQN (any head), Averaged-DQN."""
    def scalar_loss_fn(params, target_params, batch: Transition, gamma, tie_key, weight, noise):
        # The order of operations of the original DQN/Double DQN update (bit-identical runs).
        q = step.q(params, batch.obs, None if noise is None else noise.online)
        q_taken = _q_taken(q, batch.action)
        target = step.target(params, target_params, batch, gamma, step.legal(batch.next_obs),
                             tie_key, noise)
        loss = step.loss(q_taken, target, weight)
        q_max = masked_max(q, step.legal(batch.obs))
        return loss, (q_taken.mean(), q_max.mean(), target.mean(), jnp.abs(target - q_taken))

    loss_fn = (scalar_loss_fn if step.head_fn is None
               else functools.partial(_distributional_loss, step))

    @jax.jit
    def td_update(state: TrainState, batch: Transition, gamma, key=None, weight=None):
        _, tie_key, noise_key = _step_keys(step.config, key)
        noise = None if noise_key is None else step.draw(noise_key, state.params)
        (loss, (q_taken, q_max, target, td_error)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(state.params, state.target_params, batch, gamma, tie_key,
                                   weight, noise)
        updates, opt_state = step.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        info = UpdateInfo(loss, q_taken, q_max, target, optax.tree.norm(grads), td_error)
        return state._replace(params=params, opt_state=opt_state), info

    return td_update


def _members_update(step: _TDStep) -> Callable[..., tuple[TrainState, UpdateInfo]]:
    """``td_update`` of members (a leading member axis): each member regresses to its row of the
    targets; one member chosen at random, or all of them (vmapped), take a step."""
    config = step.config
    num = config.num_members

    def step_one(params, opt_state, batch, target, weight, noise=None):
        (loss, aux), grads = jax.value_and_grad(step.fixed_target_loss, has_aux=True)(
            params, batch, target, weight, noise)
        updates, opt_state = step.optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, aux, optax.tree.norm(grads)

    @jax.jit
    def td_update_members(state: TrainState, batch: Transition, gamma, key=None, weight=None):
        member_key, tie_key, noise_key = _step_keys(config, key)
        noise = None if noise_key is None else step.draw(noise_key, state.params)
        # f32[M, B]: the target of each member (a shared f32[B] target repeated)
        y = step.target(state.params, state.target_params, batch, gamma,
                        step.legal(batch.next_obs), tie_key, noise)
        y = jnp.broadcast_to(y, (num, *batch.reward.shape))
        if config.trained_members == "random":
            i = uniform_index(member_key, (), num)
            pick = lambda tree: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
            params, opt_state, loss, (q_taken, q_max, target, td_error), norm = step_one(
                pick(state.params), pick(state.opt_state), batch, y[i], weight,
                None if noise is None else noise.online)
            put = lambda tree, new: jax.tree.map(lambda x, v: x.at[i].set(v), tree, new)  # noqa
            params, opt_state = put(state.params, params), put(state.opt_state, opt_state)
            opt_state = share_schedule_count(opt_state, i)
        else:
            params, opt_state, loss, (q_taken, q_max, target, td_error), norm = jax.vmap(
                step_one, in_axes=(0, 0, None, 0, None, 0))(
                    state.params, state.opt_state, batch, y, weight,
                    None if noise is None else noise.online)
            loss, q_taken, q_max, target = (x.mean() for x in (loss, q_taken, q_max, target))
            td_error = td_error.mean(axis=0)
            norm = jnp.sqrt(jnp.sum(norm ** 2))
        info = UpdateInfo(loss, q_taken, q_max, target, norm, td_error)
        return state._replace(params=params, opt_state=opt_state), info

    return td_update_members


def _is_schedule_state(x) -> bool:
    return isinstance(x, optax.ScaleByScheduleState)


def share_schedule_count(opt_state, member) -> optax.OptState:
    """Members' optimizer states with every learning-rate schedule count set to ``member``'s.

    When one member chosen at random takes each step, only its states advance; copying its
    schedule count (the run's gradient steps, since every member's equals it before the step)
    keeps ``anneal_lr``'s rate the run's in every member, so each reaches 0 at the end. Adam's own
    count, of bias correction, stays per member: a member's moments move only when it trains.
    Without a schedule the states are returned as they are.
    """
    def shared(x):
        if not _is_schedule_state(x):
            return x
        return x._replace(count=jnp.broadcast_to(x.count[member], x.count.shape))

    return jax.tree.map(shared, opt_state, is_leaf=_is_schedule_state)


def schedule_counts(opt_state) -> list[jax.Array]:
    """The learning-rate schedule counts in ``opt_state`` (one ``i32[]``, or ``i32[M]`` for
    members, per schedule; none without ``anneal_lr``)."""
    return [x.count for x in jax.tree.leaves(opt_state, is_leaf=_is_schedule_state)
            if _is_schedule_state(x)]


def sync_target(state: TrainState, do_sync, tau, snapshots: bool = False) -> TrainState:
    """``theta^- <- tau * theta + (1 - tau) * theta^-`` where ``do_sync``; ``tau=1`` copies.

    Members are synced each to its own online network. With ``snapshots`` (an estimator whose
    record has ``snapshots``: Averaged-DQN) ``target_params`` is a ring ``[N, ...]``, newest
    first: a sync drops the oldest snapshot and puts ``tau * theta + (1 - tau) * newest`` in
    front.
    """
    def synced():
        if not snapshots:
            return optax.incremental_update(state.params, state.target_params, tau)
        newest = jax.tree.map(lambda t: t[0], state.target_params)
        new = optax.incremental_update(state.params, newest, tau)
        return jax.tree.map(lambda n, t: jnp.concatenate([n[None], t[:-1]]), new,
                            state.target_params)

    # A real branch when do_sync is unbatched; under a batched predicate vmap turns it into a
    # select.
    target = jax.lax.cond(do_sync, synced, lambda: state.target_params)
    return state._replace(target_params=target)
