"""The training loop: acting, storing, learning, target updates and epsilon decay in one `lax.scan`.

``make_train(config)`` returns a pure ``train(key) -> TrainOutput``; ``jax.jit(jax.vmap(train))``
trains one independent agent per key. The loop is a nested scan of small pure pieces, each a
module-level function of the ``Loop`` (what the config fixes) and the ``HParams``::

    run: scan over metric rows                        (num_log_rows)
      row: scan over iterations                       (iterations_per_log_row)
        iteration: scan over vector steps             (vector_steps_per_iteration)
          act_and_store: epsilon-greedy act (legal actions only; noisy nets: on a fresh draw of
                         the noise per env copy) -> env.step on num_envs copies -> buffer_add
                         -> sums of the episodes that end
        learn: updates_per_iteration x (replay_sample -> td_update)   once learning has started
               (buffer_age_metrics: + sampled_replay_age of each minibatch)
        sync: target sync when the env-step count crosses a multiple of target_update_freq
      maybe_evaluate: every eval_interval env steps (if set) eval_episodes greedy episodes; keep
                      the best params
      row_metrics: the row's counts and means (one TrainMetrics row), and whether the params or
                   the row's TD loss are non-finite (one reduction per row: a diverged run is
                   reported, not crashed on)

Evaluation during training draws from a key of its own (``fold_in(key, EVAL_STREAM)`` of the run's
key, then ``fold_in(., row)``), never from the training key, so turning it on leaves the training
trajectory bit for bit unchanged. Its metric columns are NaN on rows without an evaluation
(``eval_interval`` is a multiple of ``log_interval``: an evaluation ends a metric row).

Iteration indices come from the scan's ``xs``, which ``vmap`` leaves unbatched, so "has learning
started?" stays a real branch under ``vmap`` instead of becoming a select that runs both sides.
``make_trainer`` binds the pieces to one config's ``Loop``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxdqn.buffer import BufferState, Transition, buffer_add, buffer_init
from jaxdqn.config import DQNConfig
from jaxdqn.envs import EnvSpec, env_spec
from jaxdqn.estimators import ESTIMATORS
from jaxdqn.evaluation import make_greedy_episodes
from jaxdqn.networks import QFn, init_q_params, make_q_fn
from jaxdqn.policy import (
    epsilon_at,
    epsilon_greedy,
    epsilon_greedy_probability,
    make_acting_q_fn,
    make_noisy_acting_q_fn,
)
from jaxdqn.replay import (
    importance_exponent_at,
    insert_priorities,
    replay_sample,
    update_priorities,
)
from jaxdqn.replay_age import ReplayAge, replay_age
from jaxdqn.update import (
    TrainState,
    init_train_state,
    make_optimizer,
    make_td_update,
    step_takes_key,
    sync_target,
)

EVAL_STREAM = 0x6576616C
"""Evaluation during training draws from ``fold_in(run_key, EVAL_STREAM)``, apart from training."""
NONFINITE_LOSS = 1
"""Bit of ``TrainMetrics.nonfinite``: a TD loss of the row was inf or NaN."""
NONFINITE_PARAMS = 2
"""Bit of ``TrainMetrics.nonfinite``: some online parameter was inf or NaN at the row's end."""


class HParams(NamedTuple):
    """Hyperparameters that do not change array shapes: traced, so a sweep can vmap over them."""

    learning_rate: Any
    gamma: Any
    start_epsilon: Any
    end_epsilon: Any
    exploration_fraction: Any  # 0 where the config gives exploration_steps
    exploration_steps: Any  # 0 where the config gives exploration_fraction
    target_update_freq: Any
    tau: Any
    munchausen_tau: Any
    munchausen_alpha: Any
    munchausen_clip: Any
    priority_exponent: Any  # prioritized replay's alpha
    importance_exponent: Any  # its beta at step 0
    priority_epsilon: Any
    noisy_sigma0: Any  # noisy nets' sigma_0 (read by the initialisation only)
    kappa: Any  # qr: the quantile Huber loss's threshold

    @classmethod
    def from_config(cls, config: DQNConfig) -> HParams:
        """The config's values; of ``exploration_fraction``/``exploration_steps`` the one it does
        not give (None) is 0, so every config's are numbers and a grid can mix the two."""
        values = (getattr(config, name) for name in cls._fields)
        return cls(*(0 if v is None else v for v in values))


class EvalState(NamedTuple):
    """Evaluation during training: its own key, and the best evaluation so far with its params."""

    key: jax.Array  # fold_in(run key, EVAL_STREAM); each evaluation folds in its row index
    best_params: dict  # online params at the best evaluation (the latest among equal means)
    best_return: jax.Array  # f32[]: mean greedy return of that evaluation (-inf before any)
    best_env_steps: jax.Array  # i32[]: env steps done when it ran (-1 before any)


class RunnerState(NamedTuple):
    """Everything the loop carries between iterations (``eval`` is None without evaluation)."""

    train: TrainState
    buffer: BufferState
    env_state: Any
    obs: jax.Array  # f32[num_envs, obs_dim]
    episode_return: jax.Array  # f32[num_envs]: return so far of each env's running episode
    episode_length: jax.Array  # i32[num_envs]
    key: jax.Array
    eval: EvalState | None = None


# vmap axes for a group of runs held outside one fused program (runs in segments, sweeps): the
# buffer's write position and fill level are the same in every run, and keeping them unbatched keeps
# buffer_add a dynamic-update-slice instead of a per-run scatter (~8% of a small run). Priorities
# are per run.
RUNNER_STATE_AXES = RunnerState(train=0, buffer=BufferState(data=0, pos=None, size=None,
                                                            priorities=0, max_priority=0),
                                env_state=0, obs=0, episode_return=0, episode_length=0, key=0,
                                eval=0)


class TrainMetrics(NamedTuple):
    """Metrics, one row per ``log_interval`` env steps (arrays of shape ``[num_log_rows]``).

    Means are over the episodes completed, or the gradient steps taken, within the row; NaN where
    there were none. The optional columns are None when their option is off (``columns`` lists
    the ones a run has).
    """

    env_steps: jax.Array  # env steps done at the end of the row
    updates: jax.Array  # gradient steps done at the end of the row
    episodes: jax.Array  # episodes completed in the row
    episode_return: jax.Array
    episode_length: jax.Array
    td_loss: jax.Array
    q_taken: jax.Array  # mean Q(s, a) of the sampled action
    q_max: jax.Array  # mean max_a Q(s, a)
    epsilon: jax.Array  # epsilon at the end of the row
    eval_return: jax.Array  # mean greedy return of the evaluation ending the row (NaN: none)
    eval_truncated: jax.Array  # fraction of those episodes cut by the time limit (NaN: none)
    nonfinite: jax.Array  # i32: NONFINITE_LOSS | NONFINITE_PARAMS bits of the row; 0: all finite
    # buffer_age_metrics (jaxdqn.replay_age): means over the row's gradient steps of each
    # minibatch's statistic
    sample_age: jax.Array | None = None  # mean age of sampled transitions, in env steps
    sample_age_p90: jax.Array | None = None  # the minibatch's 90th percentile of ages
    off_policy_fraction: jax.Array | None = None  # sampled actions the greedy policy would not take
    importance_ratio: jax.Array | None = None  # mean pi(a|s) / mu(a|s), pi at the current epsilon
    trace_coefficient: jax.Array | None = None  # mean min(1, pi(a|s) / mu(a|s)) (Retrace's c)

    def columns(self) -> dict[str, Any]:
        """The columns this run has, by name in field order: every field that is not None."""
        return {name: value for name, value in self._asdict().items() if value is not None}


class BestParams(NamedTuple):
    """The params of a run's best evaluation during training."""

    params: dict
    eval_return: jax.Array  # f32[]: their mean greedy return in that evaluation (biased upwards:
    # chosen as the maximum over evaluations; score them again on fresh keys)
    env_steps: jax.Array  # i32[]: env steps done when they were evaluated


class TrainOutput(NamedTuple):
    params: dict  # online Q-network params at the end
    metrics: TrainMetrics
    best: BestParams | None = None  # with eval_interval set


class _RowSums(NamedTuple):
    episodes: jax.Array
    return_sum: jax.Array
    length_sum: jax.Array
    updates: jax.Array
    loss_sum: jax.Array
    q_taken_sum: jax.Array
    q_max_sum: jax.Array
    replay_age: ReplayAge | None = None  # sums over the row's gradient steps (buffer_age_metrics)

    @classmethod
    def zeros(cls, config: DQNConfig) -> _RowSums:
        """The sums of a row before its first step, with the sums ``config``'s options keep."""
        replay = (ReplayAge(*(jnp.float32(0.0),) * len(ReplayAge._fields))
                  if config.buffer_age_metrics else None)
        return cls(jnp.int32(0), *(jnp.float32(0.0),) * 2, jnp.int32(0), *(jnp.float32(0.0),) * 3,
                   replay)


class Trainer(NamedTuple):
    """The loop in pieces, for callers that run it in segments of metric rows (progress bars,
    checkpoints).

    ``init(key, hparams) -> RunnerState``; ``run(state, hparams, first_row, num_rows)`` advances by
    ``num_rows`` metric rows (``num_rows`` static, ``first_row`` an unbatched int);
    ``train(key, hparams=None) -> TrainOutput`` is the whole run. To vmap ``init`` and ``run``
    separately over seeds, use ``out_axes``/``in_axes`` ``RUNNER_STATE_AXES`` for the state.
    """

    init: Callable[..., RunnerState]
    run: Callable[..., tuple[RunnerState, TrainMetrics]]
    train: Callable[..., TrainOutput]


@dataclasses.dataclass(frozen=True)
class Loop:
    """What one config's loop closes over, built once by ``make_trainer``: static, never traced."""

    config: DQNConfig
    spec: EnvSpec  # the env, its params and legal actions (``legal_fn`` None: all legal)
    q_fn: QFn
    acting_q_fn: Callable  # the Q-values the agent acts on (``policy.make_acting_q_fn``)
    greedy_episodes: Callable | None  # evaluation during training; None without it
    noisy_acting_q_fn: Callable | None = None  # noisy: (params, obs, key) -> the Q-values the
    # agent explores with (``policy.make_noisy_acting_q_fn``); None without noisy

    @classmethod
    def of(cls, config: DQNConfig) -> Loop:
        evaluating = config.eval_interval is not None
        return cls(config=config, spec=env_spec(config), q_fn=make_q_fn(config),
                   acting_q_fn=make_acting_q_fn(config),
                   greedy_episodes=(make_greedy_episodes(config, config.eval_episodes)
                                    if evaluating else None),
                   noisy_acting_q_fn=make_noisy_acting_q_fn(config) if config.noisy else None)

    def hparams(self, hparams: HParams | None) -> HParams:
        """``hparams``, or the config's own when None."""
        return HParams.from_config(self.config) if hparams is None else hparams


def make_trainer(config: DQNConfig) -> Trainer:
    """The loop of ``config`` as ``init``, ``run`` and ``train`` (see ``Trainer``)."""
    loop = Loop.of(config)
    return Trainer(init=functools.partial(init, loop), run=functools.partial(run, loop),
                   train=functools.partial(train, loop))


def train(loop: Loop, key: jax.Array, hparams: HParams | None = None) -> TrainOutput:
    """The whole run: ``init``, then every metric row."""
    runner, metrics = run(loop, init(loop, key, hparams), hparams, 0, loop.config.num_log_rows)
    return TrainOutput(params=runner.train.params, metrics=metrics, best=best_params(runner))


def init(loop: Loop, key: jax.Array, hparams: HParams | None = None) -> RunnerState:
    """The state before the first step: fresh params (target = online), an empty buffer, reset
    envs; with evaluation, its key and no best evaluation yet."""
    config, spec = loop.config, loop.spec
    hp = loop.hparams(hparams)
    run_key = key
    key, init_key, reset_key = jax.random.split(key, 3)
    params = init_q_params(config, init_key, noisy_sigma0=hp.noisy_sigma0)
    train_state = init_train_state(config, params, make_optimizer(config, hp.learning_rate))
    obs, env_state = jax.vmap(spec.env.reset, in_axes=(0, None))(
        jax.random.split(reset_key, config.num_envs), spec.params)
    eval_state = None
    if loop.greedy_episodes is not None:
        eval_state = EvalState(key=jax.random.fold_in(run_key, EVAL_STREAM), best_params=params,
                               best_return=jnp.float32(-jnp.inf), best_env_steps=jnp.int32(-1))
    return RunnerState(
        train=train_state,
        buffer=buffer_init(config.buffer_size, obs.shape[1:], obs.dtype,
                           truncated=config.n_step > 1, prioritized=config.prioritized,
                           behaviour=config.buffer_age_metrics),
        env_state=env_state,
        obs=obs,
        episode_return=jnp.zeros((config.num_envs,), jnp.float32),
        episode_length=jnp.zeros((config.num_envs,), jnp.int32),
        key=key,
        eval=eval_state,
    )


def run(loop: Loop, runner: RunnerState, hparams: HParams | None, first_row, num_rows: int
        ) -> tuple[RunnerState, TrainMetrics]:
    """``num_rows`` metric rows from row ``first_row`` on: the outer scan."""
    row_of = functools.partial(row, loop, loop.hparams(hparams))
    return jax.lax.scan(row_of, runner, first_row + jnp.arange(num_rows))


def loop_unrolls(config: DQNConfig) -> tuple[int, int]:
    """``(iterations, vector steps)``: the ``unroll`` of the iteration scan and of the env-step
    scan that put ``config.scan_unroll`` vector env steps in one loop trip (the env-step scan's
    first, up to its length; ``(1, 1)``: the plain loops)."""
    k, steps = config.scan_unroll, config.vector_steps_per_iteration
    return (1, k) if k <= steps else (k // steps, steps)


def row(loop: Loop, hp: HParams, runner: RunnerState, row_index
        ) -> tuple[RunnerState, TrainMetrics]:
    """One metric row: ``iterations_per_log_row`` iterations, then an evaluation if one is due."""
    config = loop.config
    its = row_index * config.iterations_per_log_row + jnp.arange(config.iterations_per_log_row)
    # The evaluation state skips the inner loops: carried through them untouched, it still cost
    # ~10% of a CartPole run on XLA:CPU (copies of the kept params).
    eval_state, runner = runner.eval, runner._replace(eval=None)
    (runner, sums), _ = jax.lax.scan(functools.partial(iteration, loop, hp),
                                     (runner, _RowSums.zeros(config)), its,
                                     unroll=loop_unrolls(config)[0])
    runner = runner._replace(eval=eval_state)
    iterations_done = (row_index + 1) * config.iterations_per_log_row
    env_steps = iterations_done * config.steps_per_iteration
    runner, eval_return, eval_truncated = maybe_evaluate(loop, runner, row_index, env_steps)
    metrics = row_metrics(config, hp, sums, iterations_done, env_steps, eval_return,
                          eval_truncated, runner.train.params)
    return runner, metrics


def iteration(loop: Loop, hp: HParams, carry: tuple[RunnerState, _RowSums], it
              ) -> tuple[tuple[RunnerState, _RowSums], None]:
    """Iteration ``it``: ``vector_steps_per_iteration`` x ``act_and_store``, then (prioritized
    replay) the new slots' priorities, then, once learning has started, ``learn`` and ``sync``.

    ``it`` comes from the scan's ``xs``, unbatched under ``vmap``, so the learning ``cond`` stays
    a real branch (a batched predicate would make it a select that runs both sides); with
    prioritized replay the branch is the trip count of ``learn``'s loop, 0 before learning."""
    config = loop.config
    runner, sums = carry
    step0 = it * config.steps_per_iteration
    first_slot = runner.buffer.pos

    def vector_step(carry, j):
        return act_and_store(loop, hp, *carry, step0 + j * config.num_envs), None

    (runner, sums), _ = jax.lax.scan(vector_step, (runner, sums),
                                     jnp.arange(config.vector_steps_per_iteration),
                                     unroll=loop_unrolls(config)[1])
    if config.prioritized:
        runner = runner._replace(buffer=insert_priorities(
            runner.buffer, first_slot, config.steps_per_iteration, hp.priority_exponent))
    learning = it >= config.first_learning_iteration
    env_steps = step0 + config.steps_per_iteration
    if config.prioritized:
        # Not a cond: XLA copies what a conditional's branch updates in place, here the whole sum
        # tree, in and out, at every iteration; a loop of 0 updates before learning starts
        # updates it in place.
        runner, sums = learn(loop, hp, runner, sums, env_steps,
                             num_updates=jnp.where(learning, config.updates_per_iteration, 0))
    else:
        runner, sums = jax.lax.cond(learning, functools.partial(learn, loop, hp,
                                                                env_steps=env_steps),
                                    lambda r, s: (r, s), runner, sums)
    return (sync(loop, hp, runner, it, step0), sums), None


def act_and_store(loop: Loop, hp: HParams, runner: RunnerState, sums: _RowSums, step
                  ) -> tuple[RunnerState, _RowSums]:
    """One step of every env copy at global env step ``step``: epsilon-greedy actions, env step,
    ``buffer_add``, and the sums of the episodes that end. With ``buffer_age_metrics`` each
    transition also stores its step (copy ``i``: ``step + i``) and the probability that the
    epsilon-greedy policy took its action. A noisy agent acts on its networks under a fresh draw
    of their noise per env copy (``loop.noisy_acting_q_fn``), from a key of the same split."""
    config, spec = loop.config, loop.spec
    noisy = loop.noisy_acting_q_fn is not None
    # One threefry call for all of them: the next key, the actions', the noise's (noisy), the envs'.
    keys = jax.random.split(runner.key, config.num_envs + 2 + noisy)
    key, act_key, env_keys = keys[0], keys[1], keys[2 + noisy:]
    epsilon = epsilon_at(step, hp.start_epsilon, hp.end_epsilon, hp.exploration_fraction,
                         config.total_timesteps, hp.exploration_steps)
    legal = None if spec.legal_fn is None else spec.legal_fn(runner.obs)
    if noisy:
        q_values = loop.noisy_acting_q_fn(runner.train.params, runner.obs, keys[2])
    else:
        q_values = loop.acting_q_fn(runner.train.params, runner.obs)
    action = epsilon_greedy(act_key, q_values, epsilon, legal, config.random_tie_break)
    next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
        spec.env.step, in_axes=(0, 0, 0, None))(env_keys, runner.env_state, action, spec.params)
    reward = reward.astype(jnp.float32)
    transition = Transition(runner.obs, action, reward, terminated, info["final_observation"],
                            truncated=truncated if config.n_step > 1 else None)
    if config.buffer_age_metrics:
        transition = transition._replace(
            step=step + jnp.arange(config.num_envs, dtype=jnp.int32),
            behaviour_prob=epsilon_greedy_probability(q_values, action, epsilon, legal,
                                                      config.random_tie_break))
    buffer = buffer_add(runner.buffer, transition)
    ep_return = runner.episode_return + reward
    ep_length = runner.episode_length + 1
    done = jnp.logical_or(terminated, truncated)
    sums = sums._replace(
        episodes=sums.episodes + done.sum(dtype=jnp.int32),
        return_sum=sums.return_sum + jnp.where(done, ep_return, 0.0).sum(),
        length_sum=sums.length_sum + jnp.where(done, ep_length, 0).sum().astype(jnp.float32),
    )
    runner = runner._replace(buffer=buffer, env_state=env_state, obs=next_obs,
                             episode_return=jnp.where(done, 0.0, ep_return),
                             episode_length=jnp.where(done, 0, ep_length), key=key)
    return runner, sums


def learn(loop: Loop, hp: HParams, runner: RunnerState, sums: _RowSums, env_steps,
          num_updates=None) -> tuple[RunnerState, _RowSums]:
    """``num_updates`` (default ``updates_per_iteration``; may be traced) x (``replay_sample``
    -> ``td_update``, then with prioritized replay the drawn slots' priorities), summing their
    metrics. ``env_steps``: env steps done, for the importance exponent's annealing."""
    config = loop.config
    td_update = make_td_update(config, loop.q_fn, make_optimizer(config, hp.learning_rate),
                               loop.spec.legal_fn, hp)
    takes_key = step_takes_key(config)
    beta = None
    if config.prioritized:
        beta = importance_exponent_at(env_steps, hp.importance_exponent, config.total_timesteps)

    def one_update(_, carry):
        # Only the priorities change in the buffer: the loop carries them, not the data.
        train_state, key, sums, priorities = carry
        buffer = runner.buffer._replace(priorities=priorities[0], max_priority=priorities[1])
        if takes_key:
            key, sample_key, step_key = jax.random.split(key, 3)
        else:
            (key, sample_key), step_key = jax.random.split(key), None
        sample = replay_sample(buffer, sample_key, config.batch_size, hp.gamma,
                               n_step=config.n_step, stride=config.num_envs,
                               importance_exponent=beta)
        if config.buffer_age_metrics:  # of the policy before this step
            age = sampled_replay_age(loop, hp, buffer, sample.batch, train_state.params)
            sums = sums._replace(replay_age=jax.tree.map(jnp.add, sums.replay_age, age))
        gamma = hp.gamma if sample.discount is None else sample.discount
        train_state, info = td_update(train_state, sample.batch, gamma, step_key, sample.weight)
        if sample.index is not None:
            buffer = update_priorities(buffer, sample.index, info.td_error,
                                       hp.priority_exponent, hp.priority_epsilon)
        sums = sums._replace(updates=sums.updates + 1, loss_sum=sums.loss_sum + info.loss,
                             q_taken_sum=sums.q_taken_sum + info.q_taken,
                             q_max_sum=sums.q_max_sum + info.q_max)
        return train_state, key, sums, (buffer.priorities, buffer.max_priority)

    train_state, key, sums, (priorities, max_priority) = jax.lax.fori_loop(
        0, config.updates_per_iteration if num_updates is None else num_updates, one_update,
        (runner.train, runner.key, sums, (runner.buffer.priorities, runner.buffer.max_priority)))
    buffer = runner.buffer._replace(priorities=priorities, max_priority=max_priority)
    return runner._replace(train=train_state, key=key, buffer=buffer), sums


def sampled_replay_age(loop: Loop, hp: HParams, buffer: BufferState, batch: Transition,
                       params) -> ReplayAge:
    """``replay_age`` of a sampled ``batch`` against the current policy: epsilon-greedy on
    ``params``' acting Q-values with the epsilon of the next env step (the newest stored
    transition's step + 1), ages counted from that newest transition."""
    config = loop.config
    newest_step = buffer.data.step[(buffer.pos - 1) % buffer.capacity]
    epsilon = epsilon_at(newest_step + 1, hp.start_epsilon, hp.end_epsilon,
                         hp.exploration_fraction, config.total_timesteps, hp.exploration_steps)
    legal = None if loop.spec.legal_fn is None else loop.spec.legal_fn(batch.obs)
    return replay_age(batch, newest_step, loop.acting_q_fn(params, batch.obs), epsilon, legal,
                      config.random_tie_break)


def sync(loop: Loop, hp: HParams, runner: RunnerState, it, step0) -> RunnerState:
    """The target schedule: sync at the end of iteration ``it`` (its first env step ``step0``)
    when learning has started and its env steps cross a multiple of ``target_update_freq``."""
    config = loop.config
    crossed = ((step0 + config.steps_per_iteration) // hp.target_update_freq
               > step0 // hp.target_update_freq)
    do_sync = jnp.logical_and(it >= config.first_learning_iteration, crossed)
    return runner._replace(train=sync_target(runner.train, do_sync, hp.tau,
                                             snapshots=ESTIMATORS[config.estimator].snapshots))


def maybe_evaluate(loop: Loop, runner: RunnerState, row_index, env_steps
                   ) -> tuple[RunnerState, jax.Array, jax.Array]:
    """Evaluates at the end of every ``eval_interval // log_interval``-th row: ``(runner, mean
    return, fraction cut by the time limit)``, NaN on other rows and without evaluation.

    No ``lax.cond``: the episodes' ``while_loop`` simply runs no step on other rows (a reset of
    ``eval_episodes`` env copies is all they cost), and the best params are selected with
    ``where``. A ``cond`` here, even one with a trivial branch, made a CartPole run ~13% slower on
    XLA:CPU; the loop's trip count is as real a branch (``row_index`` is unbatched)."""
    nan = jnp.float32(jnp.nan)
    if loop.greedy_episodes is None:
        return runner, nan, nan
    ev, params = runner.eval, runner.train.params
    now = (row_index + 1) % (loop.config.eval_interval // loop.config.log_interval) == 0
    stats = loop.greedy_episodes(params, jax.random.fold_in(ev.key, row_index), active=now)
    mean = jnp.where(now, stats.returns.mean(), nan)
    better = jnp.logical_and(now, mean >= ev.best_return)
    ev = ev._replace(
        best_params=jax.tree.map(lambda new, old: jnp.where(better, new, old), params,
                                 ev.best_params),
        best_return=jnp.where(better, mean, ev.best_return),
        best_env_steps=jnp.where(better, jnp.asarray(env_steps, jnp.int32), ev.best_env_steps),
    )
    truncated = jnp.where(now, stats.truncated.mean(dtype=jnp.float32), nan)
    return runner._replace(eval=ev), mean, truncated


def row_metrics(config: DQNConfig, hp: HParams, sums: _RowSums, iterations_done, env_steps,
                eval_return, eval_truncated, params) -> TrainMetrics:
    """The metric row of a row's sums: counts at its end, means over its episodes and updates,
    and ``nonfinite`` of the row's loss sum and the online ``params`` at its end."""
    replay = {} if sums.replay_age is None else {
        name: _mean(total, sums.updates) for name, total in sums.replay_age._asdict().items()}
    return TrainMetrics(
        env_steps=env_steps,
        updates=jnp.maximum(iterations_done - config.first_learning_iteration, 0)
        * config.updates_per_iteration,
        episodes=sums.episodes,
        episode_return=_mean(sums.return_sum, sums.episodes),
        episode_length=_mean(sums.length_sum, sums.episodes),
        td_loss=_mean(sums.loss_sum, sums.updates),
        q_taken=_mean(sums.q_taken_sum, sums.updates),
        q_max=_mean(sums.q_max_sum, sums.updates),
        epsilon=jnp.asarray(epsilon_at(env_steps, hp.start_epsilon, hp.end_epsilon,
                                       hp.exploration_fraction, config.total_timesteps,
                                       hp.exploration_steps),
                            jnp.float32),
        eval_return=eval_return,
        eval_truncated=eval_truncated,
        nonfinite=nonfinite_bits(sums.loss_sum, params),
        **replay,
    )


def nonfinite_bits(loss_sum, params) -> jax.Array:
    """``i32[]``: ``NONFINITE_LOSS`` where ``loss_sum`` is inf or NaN, plus ``NONFINITE_PARAMS``
    where any leaf of ``params`` has an inf or NaN (one reduction over the params)."""
    params_finite = jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(params)]))
    return (jnp.where(jnp.isfinite(loss_sum), 0, NONFINITE_LOSS)
            + jnp.where(params_finite, 0, NONFINITE_PARAMS)).astype(jnp.int32)


def _mean(total, n):
    """``total / n``, NaN where ``n`` is 0."""
    return jnp.where(n > 0, total / jnp.maximum(n, 1), jnp.float32(jnp.nan))


def best_params(runner: RunnerState) -> BestParams | None:
    """The best evaluation's params kept in ``runner`` (None without evaluation during training)."""
    if runner.eval is None:
        return None
    return BestParams(params=runner.eval.best_params, eval_return=runner.eval.best_return,
                      env_steps=runner.eval.best_env_steps)


def make_train(config: DQNConfig) -> Callable[..., TrainOutput]:
    """A pure ``train(key, hparams=None) -> TrainOutput`` for ``config``; jit and vmap it freely."""
    return make_trainer(config).train
