"""Maximization bias, measured: the Q-network's estimate ``Q(s, a)`` against the discounted return
``G`` that actually followed, over the states a greedy policy visits.

``value_rollout`` plays evaluation episodes with the online network and records ``Q(s_t, a_t)``,
rewards and done flags; ``returns_to_go`` turns rewards into ``G_t = sum_k gamma^k r_{t+k}`` with a
backwards ``lax.scan``; ``measure_bias`` averages ``Q - G`` over the measured states.
``make_value_study`` trains with the library's own loop (``Trainer.init``/``Trainer.run``) in
segments of metric rows and measures after each segment, all in one pure function:
``jax.jit(jax.vmap(study))`` runs a whole seed set in one program.

The agent bootstraps through time-limit truncation, so ``Q`` estimates an untruncated return and
``G`` must not be cut by the training time limit. Evaluation episodes therefore run with a longer
limit (``ValueEvalSpec.horizon``) and only states in the first ``measure_steps`` steps are
measured: ``G`` of a measured state then misses at most ``gamma^(horizon - measure_steps) *
reward_bound / (1 - gamma)`` (``tail_bound``), and nothing at all where the episode terminated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.config import DQNConfig
from jaxdqn.envs import env_spec, env_spec_of
from jaxdqn.envs.ids import MAX_BIAS_ENV_IDS
from jaxdqn.envs.max_bias import STATE_A, is_left, left_action_fraction
from jaxdqn.policy import epsilon_greedy, make_acting_q_fn
from jaxdqn.train import HParams, TrainMetrics, make_trainer


class ValueEvalSpec(NamedTuple):
    """How value estimates are measured (static: these sizes shape the program).

    ``num_episodes`` evaluation episodes run in parallel from reset with an ``epsilon``-greedy
    policy for at most ``horizon`` steps; states reached in the first ``measure_steps`` steps are
    measured.
    """

    num_episodes: int
    measure_steps: int
    horizon: int
    epsilon: float = 0.0


def tail_steps(gamma: float, tolerance: float, reward_bound: float = 1.0) -> int:
    """The fewest extra steps ``n`` with ``gamma^n * reward_bound / (1 - gamma) <= tolerance``."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma={gamma!r} is invalid: a discounted tail is bounded only for "
                         "gamma in [0, 1)")
    if tolerance <= 0 or reward_bound < 0:
        raise ValueError(f"tolerance={tolerance!r}, reward_bound={reward_bound!r} are invalid: "
                         "need tolerance > 0 and reward_bound >= 0")
    if gamma == 0.0 or reward_bound * 1.0 <= tolerance * (1 - gamma):
        return 0
    return math.ceil(math.log(tolerance * (1 - gamma) / reward_bound) / math.log(gamma))


def tail_bound(gamma: float, spec: ValueEvalSpec, reward_bound: float = 1.0) -> float:
    """Largest error of a measured ``G`` whose episode was cut at ``spec.horizon``:
    ``gamma^(horizon - measure_steps) * reward_bound / (1 - gamma)`` (``inf`` for ``gamma = 1``)."""
    if gamma >= 1.0:
        return math.inf
    return gamma ** (spec.horizon - spec.measure_steps) * reward_bound / (1.0 - gamma)


def value_eval_spec(
    config: DQNConfig,
    num_episodes: int = 32,
    epsilon: float = 0.0,
    measure_steps: int | None = None,
    horizon: int | None = None,
    tail_tolerance: float = 1e-4,
    reward_bound: float = 1.0,
) -> ValueEvalSpec:
    """A ``ValueEvalSpec`` for ``config``, validated.

    ``measure_steps`` defaults to the training time limit, ``horizon`` to ``measure_steps`` plus
    ``tail_steps(gamma, tail_tolerance, reward_bound)`` (for ``gamma = 1``: ``measure_steps``, which
    suits episodes that terminate on their own; ``cut_fraction`` reports any that did not).
    """
    if measure_steps is None:
        measure_steps = env_spec(config).max_steps
    if horizon is None:
        extra = 0 if config.gamma >= 1.0 else tail_steps(config.gamma, tail_tolerance,
                                                         reward_bound)
        horizon = measure_steps + extra
    spec = ValueEvalSpec(num_episodes, measure_steps, horizon, epsilon)
    check_spec(spec)
    return spec


def check_spec(spec: ValueEvalSpec) -> None:
    """Raises ``ValueError`` naming the first invalid field of ``spec``."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    rules = (
        ("num_episodes", is_int(spec.num_episodes) and spec.num_episodes > 0, "an int > 0"),
        ("measure_steps", is_int(spec.measure_steps) and spec.measure_steps > 0, "an int > 0"),
        ("horizon", is_int(spec.horizon) and spec.horizon >= spec.measure_steps,
         f"an int >= measure_steps={spec.measure_steps!r}"),
        ("epsilon", isinstance(spec.epsilon, (int, float)) and 0.0 <= spec.epsilon <= 1.0,
         "a number in [0, 1]"),
    )
    for name, ok, allowed in rules:
        if not ok:
            raise ValueError(f"ValueEvalSpec.{name}={getattr(spec, name)!r} is invalid: "
                             f"must be {allowed}")


class Trajectory(NamedTuple):
    """Steps of evaluation episodes, time-major: every field ``[T, ...]``."""

    q_taken: jax.Array  # f32: Q(s_t, a_t) of the action taken
    reward: jax.Array  # f32: r_t
    terminated: jax.Array  # bool: s_{t+1} is terminal
    truncated: jax.Array  # bool: the episode was cut after step t (time limit)


class BiasStats(NamedTuple):
    """``Q`` against ``G`` over the measured states (means over states, not episodes)."""

    q_mean: jax.Array  # mean Q(s_t, a_t): the estimated value
    g_mean: jax.Array  # mean G_t: the true value, as realised
    bias: jax.Array  # mean (Q - G) = q_mean - g_mean
    num_states: jax.Array  # i32: states measured
    cut_fraction: jax.Array  # fraction of measured states whose G was cut short (see below)


def returns_to_go(reward: jax.Array, done: jax.Array, gamma) -> jax.Array:
    """``G_t = r_t + gamma * (1 - done_t) * G_{t+1}`` over axis 0, with ``G = 0`` past the end.

    ``done`` marks the last step of each episode (terminated or truncated), so a trajectory may
    hold several consecutive episodes (gymnax auto-resets). A truncated episode's ``G`` stops at
    the truncation: that is the recorded return, not the value the agent bootstraps towards.
    """
    def back(g_next, step):
        r, d = step
        g = r + gamma * jnp.where(d, 0.0, g_next)
        return g, g

    _, g = jax.lax.scan(back, jnp.zeros_like(reward[0]), (reward, done), reverse=True)
    return g


def return_was_cut(terminated: jax.Array, truncated: jax.Array) -> jax.Array:
    """``bool[T, ...]``: whether the return from step t ends in a truncation or runs off the end
    of the trajectory instead of in a termination (so ``G_t`` misses a tail)."""
    def back(cut_next, step):
        term, trunc = step
        cut = jnp.where(term, False, jnp.where(trunc, True, cut_next))
        return cut, cut

    _, cut = jax.lax.scan(back, jnp.ones_like(terminated[0]), (terminated, truncated),
                          reverse=True)
    return cut


def measure_bias(traj: Trajectory, gamma, mask: jax.Array) -> BiasStats:
    """Mean ``Q - G`` over the steps where ``mask`` (``bool[T, ...]``) holds."""
    done = jnp.logical_or(traj.terminated, traj.truncated)
    g = returns_to_go(traj.reward, done, gamma)
    cut = return_was_cut(traj.terminated, traj.truncated)
    weight = mask.astype(jnp.float32)
    n = weight.sum()

    def mean(x):
        return jnp.where(n > 0, (x * weight).sum() / jnp.maximum(n, 1.0), jnp.nan)

    q_mean, g_mean = mean(traj.q_taken), mean(g)
    return BiasStats(q_mean=q_mean, g_mean=g_mean, bias=mean(traj.q_taken - g),
                     num_states=n.astype(jnp.int32), cut_fraction=mean(cut.astype(jnp.float32)))


class ValueEstimate(NamedTuple):
    """One measurement: ``BiasStats`` plus the mean undiscounted return of its episodes."""

    stats: BiasStats
    eval_return: jax.Array


def make_value_estimator(
    config: DQNConfig, spec: ValueEvalSpec
) -> Callable[[Any, jax.Array, Any], ValueEstimate]:
    """A pure ``estimate(params, key, gamma) -> ValueEstimate`` for the config's env and network.

    ``Q`` is the estimator's acting value (``make_acting_q_fn``: e.g. the mean of Double
    Q-learning's two members, the minimum of Maxmin's), the value its policy is built on.

    Each of ``spec.num_episodes`` env copies plays one episode from reset under a time limit of
    ``spec.horizon`` steps; steps after its end are masked out, and states at ``t >=
    spec.measure_steps`` are not measured (their ``G`` would miss more of the tail).
    """
    check_spec(spec)
    horizon_env = env_spec_of(config.env_id, spec.horizon, config.sticky_action_prob)
    env, env_params, legal_fn = horizon_env.env, horizon_env.params, horizon_env.legal_fn
    q_fn = make_acting_q_fn(config)
    n = spec.num_episodes
    vmap_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def estimate(params, key: jax.Array, gamma) -> ValueEstimate:
        reset_key, key = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, n),
                                                            env_params)

        def step(carry, key):
            obs, state, alive = carry
            act_key, env_key = jax.random.split(key)
            q = q_fn(params, obs)
            legal = None if legal_fn is None else legal_fn(obs)
            action = epsilon_greedy(act_key, q, spec.epsilon, legal)
            q_taken = jnp.take_along_axis(q, action[:, None], axis=-1)[:, 0]
            obs, state, reward, terminated, truncated, _ = vmap_step(
                jax.random.split(env_key, n), state, action, env_params)
            record = (q_taken, jnp.where(alive, reward, 0.0).astype(jnp.float32),
                      jnp.logical_and(alive, terminated), jnp.logical_and(alive, truncated),
                      alive)
            alive = jnp.logical_and(alive, jnp.logical_not(jnp.logical_or(terminated, truncated)))
            return (obs, state, alive), record

        _, (q_taken, reward, terminated, truncated, alive) = jax.lax.scan(
            step, (obs, state, jnp.ones((n,), bool)), jax.random.split(key, spec.horizon))
        measured = jnp.logical_and(alive, (jnp.arange(spec.horizon) < spec.measure_steps)[:, None])
        traj = Trajectory(q_taken, reward, terminated, truncated)
        return ValueEstimate(stats=measure_bias(traj, gamma, measured),
                             eval_return=reward.sum(axis=0).mean())

    return estimate


class MaxBiasProbe(NamedTuple):
    """What the Q-network thinks of ``MaxBiasMDP``'s two states (true values: ``true_q_values``)."""

    left_prob: jax.Array  # P(the epsilon-greedy behaviour policy goes left in A)
    q_a_left: jax.Array  # max over left actions of Q(A, a)
    q_a_right: jax.Array  # max over right actions of Q(A, a)
    q_b_max: jax.Array  # max_b Q(B, b): what DQN's target bootstraps from


def make_max_bias_probe(config: DQNConfig) -> Callable[[Any, Any], MaxBiasProbe]:
    """A pure ``probe(params, epsilon) -> MaxBiasProbe`` for a ``MaxBiasMDP`` config.

    ``left_prob = (1 - epsilon) * [argmax_a Q(A, a) goes left] + epsilon * f_left``, with
    ``f_left`` the fraction of actions that go left in A (1/2): the probability that the agent's
    behaviour policy, with the epsilon it acts with at that moment, sends an episode left.
    """
    spec = env_spec(config)
    if config.env_id not in MAX_BIAS_ENV_IDS:
        raise ValueError(f"DQNConfig.env_id={config.env_id!r} is invalid here: the max-bias probe "
                         f"needs one of {MAX_BIAS_ENV_IDS}")
    q_fn = make_acting_q_fn(config)
    num_actions, legal_fn = spec.num_actions, spec.legal_fn
    obs_a = jnp.eye(2, dtype=jnp.float32)[STATE_A]
    obs_b = jnp.eye(2, dtype=jnp.float32)[1 - STATE_A]
    legal_a = jnp.ones(num_actions, bool) if legal_fn is None else legal_fn(obs_a)
    left = jnp.logical_and(is_left(jnp.arange(num_actions)), legal_a)
    right = jnp.logical_and(jnp.logical_not(left), legal_a)
    f_left = left_action_fraction(num_actions, spec.env.layout)

    def probe(params, epsilon) -> MaxBiasProbe:
        q_a, q_b = q_fn(params, obs_a), q_fn(params, obs_b)
        greedy_left = left[jnp.argmax(jnp.where(legal_a, q_a, -jnp.inf))].astype(jnp.float32)
        return MaxBiasProbe(
            left_prob=(1.0 - epsilon) * greedy_left + epsilon * f_left,
            q_a_left=jnp.max(jnp.where(left, q_a, -jnp.inf)),
            q_a_right=jnp.max(jnp.where(right, q_a, -jnp.inf)),
            q_b_max=jnp.max(q_b),
        )

    return probe


def realised_left_fraction(metrics: TrainMetrics, num_segments: int) -> jax.Array:
    """Per segment, the fraction of ``MaxBiasMDP`` training episodes that went left from A.

    ``metrics`` fields are ``[..., num_log_rows]`` (e.g. ``StudyOutput.metrics``, vmapped over
    seeds); returns ``[..., num_segments]``, NaN for a segment without episodes. A left episode
    lasts two steps (A -> B -> end) and a right one a single step, so a row's left episodes number
    ``(mean episode length - 1) * episodes``: the behaviour actually taken, not a model of it.
    """
    episodes = jnp.asarray(metrics.episodes)
    rows = episodes.shape[-1]
    if not isinstance(num_segments, int) or num_segments <= 0 or rows % num_segments:
        raise ValueError(f"num_segments={num_segments!r} is invalid: must be a positive divisor "
                         f"of the {rows} metric rows")
    left = jnp.where(episodes > 0,
                     jnp.round((jnp.asarray(metrics.episode_length) - 1.0) * episodes), 0.0)
    shape = (*episodes.shape[:-1], num_segments, rows // num_segments)
    left, total = left.reshape(shape).sum(-1), episodes.reshape(shape).sum(-1)
    return jnp.where(total > 0, left / jnp.maximum(total, 1), jnp.nan)


class StudyPoint(NamedTuple):
    """One measurement after a training segment (``[num_segments]`` per field in a
    ``StudyOutput``)."""

    env_steps: jax.Array  # training env steps done
    episodes: jax.Array  # training episodes completed so far
    epsilon: jax.Array  # the behaviour policy's epsilon at that step
    train_return: jax.Array  # mean return of training episodes that ended within the segment
    value: ValueEstimate
    probe: Any  # the probe's output, or None


class StudyOutput(NamedTuple):
    params: dict  # online params at the end
    points: StudyPoint
    metrics: TrainMetrics  # the usual per-row training metrics, [num_log_rows]


def make_value_study(
    config: DQNConfig,
    spec: ValueEvalSpec,
    num_segments: int,
    probe: Callable[[Any, Any], Any] | None = None,
) -> Callable[..., StudyOutput]:
    """A pure ``study(key, hparams=None) -> StudyOutput``: trains ``config`` with
    ``make_trainer(config)`` in ``num_segments`` equal segments of metric rows and measures value
    estimates (and ``probe(params, epsilon)``, if given) after each.

    ``key`` splits into ``train_key, measure_key``: measuring draws nothing from the training
    stream, so the agent trained is the one ``make_trainer(config).train(train_key)`` trains.
    """
    rows = config.num_log_rows
    if not isinstance(num_segments, int) or num_segments <= 0 or rows % num_segments:
        raise ValueError(f"num_segments={num_segments!r} is invalid: must be a positive divisor of "
                         f"the run's {rows} metric rows (total_timesteps / log_interval)")
    rows_per_segment = rows // num_segments
    trainer = make_trainer(config)
    estimate = make_value_estimator(config, spec)

    def study(key: jax.Array, hparams: HParams | None = None) -> StudyOutput:
        hp = HParams.from_config(config) if hparams is None else hparams
        train_key, measure_key = jax.random.split(key)
        runner = trainer.init(train_key, hparams)

        def segment(runner, xs):
            index, key = xs
            runner, metrics = trainer.run(runner, hparams, index * rows_per_segment,
                                          rows_per_segment)
            params = runner.train.params
            epsilon = metrics.epsilon[-1]
            episodes = metrics.episodes.sum()
            total = jnp.nansum(jnp.where(metrics.episodes > 0,
                                         metrics.episode_return * metrics.episodes, 0.0))
            point = StudyPoint(
                env_steps=metrics.env_steps[-1],
                episodes=episodes,
                epsilon=epsilon,
                train_return=jnp.where(episodes > 0, total / jnp.maximum(episodes, 1), jnp.nan),
                value=estimate(params, key, hp.gamma),
                probe=None if probe is None else probe(params, epsilon),
            )
            return runner, (point, metrics)

        runner, (points, metrics) = jax.lax.scan(
            segment, runner,
            (jnp.arange(num_segments), jax.random.split(measure_key, num_segments)))
        points = points._replace(episodes=jnp.cumsum(points.episodes))
        metrics = jax.tree.map(lambda x: x.reshape((rows, *x.shape[2:])), metrics)
        return StudyOutput(params=runner.train.params, points=points, metrics=metrics)

    return study


def bootstrap_ci(values, level: float = 0.95, num_resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` (one per seed) and its percentile-bootstrap
    ``level`` confidence interval from ``num_resamples`` resamples of the seeds, drawn with
    ``numpy.random.default_rng(seed)`` so the interval is reproducible."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"values={x!r} are invalid: need at least one value, all finite")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} is invalid: must be in (0, 1)")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(num_resamples, x.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(x.mean()), float(low), float(high)
