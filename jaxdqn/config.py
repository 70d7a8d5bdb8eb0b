"""`DQNConfig`: every hyperparameter of a run, validated when it is built; and named presets."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxdqn.distributional import HEADS
from jaxdqn.envs import known_env_ids
from jaxdqn.envs.ids import LEGAL_MASK_ENV_IDS
from jaxdqn.estimators import ESTIMATORS

LOSSES = ("mse", "huber")
OPTIMIZERS = ("adam", "sgd")
NETWORKS = ("auto", "mlp", "cnn")
TRACED_FIELDS = ("learning_rate", "gamma", "start_epsilon", "end_epsilon", "exploration_fraction",
                 "exploration_steps", "target_update_freq", "tau", "munchausen_tau",
                 "munchausen_alpha", "munchausen_clip", "priority_exponent", "importance_exponent",
                 "priority_epsilon", "noisy_sigma0", "kappa")
"""The fields that change no array shape: traced (``train.HParams``), so a sweep batches their
values into one compiled program."""
DEFAULT_EXPLORATION_FRACTION = 0.2
"""``exploration_fraction`` when neither it nor ``exploration_steps`` is given (the seed's)."""
DEFAULT_EPSILONS = (1.0, 0.1)
"""``(start_epsilon, end_epsilon)`` where not given (the seed's); with ``noisy`` and neither given,
both are 0: the agent explores by its noise alone."""
EITHER_OR = {"exploration_fraction": "exploration_steps",
             "exploration_steps": "exploration_fraction"}
"""Fields of which a config gives one: giving one (not None) to ``replace`` unsets the other."""


def _names(which) -> str:
    """Names of the estimators whose record satisfies ``which``, joined by ``/``."""
    return "/".join(e.name for e in ESTIMATORS.values() if which(e))


def _ensemble_size_allowed() -> str:
    """``">= 1 (1 for dqn/double_dqn, 2 for double_q/clipped_double), or None"``, from the
    estimators' count rules."""
    fixed: dict[int, list[str]] = {}
    minima = set()
    for e in ESTIMATORS.values():
        if e.size.fixed:
            fixed.setdefault(e.size.default, []).append(e.name)
        else:
            minima.add(e.size.minimum)
    exceptions = ", ".join(f"{n} for {'/'.join(names)}" for n, names in fixed.items())
    return f">= {min(minima)} ({exceptions}), or None"


def _field(default: Any, description: str, allowed: str = "") -> Any:
    """A config field with its one-line description and the values it allows (read by
    ``field_descriptions``/``field_allowed``, validation messages, ``jaxdqn config`` and the field
    table in docs/cli.md)."""
    return dataclasses.field(default=default,
                             metadata={"description": description, "allowed": allowed})


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """A DQN run. Names and defaults of the first ten fields are the seed's ``train_dqn`` signature
    (``exploration_fraction=None`` resolves to the seed's 0.2 unless ``exploration_steps`` is
    given; ``start_epsilon``/``end_epsilon=None`` to the seed's 1.0 and 0.1, or both to 0 with
    ``noisy`` when neither is given).

    Step counts are in environment steps summed over the ``num_envs`` vectorised copies.
    ``learning_starts=None`` resolves to ``buffer_size`` (the seed fills the buffer first),
    ``log_interval=None`` to about 100 metric rows per run and ``ensemble_size=None`` to the
    estimator's usual count of members or snapshots.
    """

    env_id: str = _field("CartPole-v1", "environment id: a gymnax id or one of jaxdqn's own envs",
        "a known env id (jaxdqn.known_env_ids())")
    total_timesteps: int = _field(500_000, "env steps of the whole run, summed over num_envs",
        "> 0, a multiple of max(train_frequency, num_envs)")
    buffer_size: int = _field(10_000, "replay capacity in transitions (oldest overwritten)",
                                  "> 0")
    batch_size: int = _field(128, "transitions per gradient step, sampled uniformly (by priority "
                             "with prioritized)",
                                "> 0, <= buffer_size")
    gamma: float = _field(0.99, "discount factor of the TD target", "in [0, 1]")
    learning_rate: float = _field(2.5e-4, "optimizer step size (initial one with anneal_lr)",
                                    "> 0")
    target_update_freq: int = _field(1000, "env steps between target-network updates",
                                     "> 0, >= max(train_frequency, num_envs)")
    start_epsilon: float | None = _field(
        None, f"exploration rate at step 0 (None: {DEFAULT_EPSILONS[0]}, or 0 with noisy when "
        "end_epsilon is None too)", "in [0, 1], or None")
    end_epsilon: float | None = _field(
        None, f"exploration rate after the linear decay (None: {DEFAULT_EPSILONS[1]}, or 0 with "
        "noisy when start_epsilon is None too)", "in [0, 1], or None")
    exploration_fraction: float | None = _field(
        None, "fraction of total_timesteps over which epsilon decays linearly (None: "
        f"{DEFAULT_EXPLORATION_FRACTION} unless exploration_steps is given)",
        "in (0, 1], or None")
    exploration_steps: int | None = _field(
        None, "env steps over which epsilon decays linearly, whatever total_timesteps is "
        "(instead of exploration_fraction)", "> 0, or None; not with exploration_fraction")
    learning_starts: int | None = _field(
        None, "env steps stored before the first gradient step (None: buffer_size)",
        ">= batch_size, or None")
    train_frequency: int = _field(10, "env steps per gradient step",
                                 "> 0, a multiple or a divisor of num_envs")
    num_envs: int = _field(1, "vectorised env copies stepped together",
                          "> 0, <= buffer_size")
    hidden_sizes: tuple[int, ...] = _field(
        (120, 84), "dense hidden layers (after the convolutions for a CNN); () is a linear Q",
        "positive ints, or () for a linear Q")
    estimator: str = _field("dqn", "TD target estimator: " + ", ".join(
        f"{e.name} ({e.description})" for e in ESTIMATORS.values()),
        f"one of {tuple(ESTIMATORS)}")
    ensemble_size: int | None = _field(
        None, f"members ({_names(lambda e: not e.size.fixed and not e.snapshots)}) or target "
        f"snapshots ({_names(lambda e: e.snapshots)}); None: the estimator's usual count",
        _ensemble_size_allowed())
    update_all_members: bool = _field(
        False, f"{_names(lambda e: e.train_all_option)}: every gradient step updates all members "
        "instead of one chosen at random",
        f"true or false (true with estimator {_names(lambda e: e.train_all_option)} only)")
    optimizer: str = _field("adam", "adam, or sgd (plain gradient steps: exact tabular updates)",
                            f"one of {OPTIMIZERS}")
    adam_eps: float = _field(
        1e-8, "adam: the epsilon added to the root of the second moment (1e-8: optax's and "
        "Kingma and Ba's default; Dopamine's DQN and Rainbow agents use 3.125e-4 = 0.01/32)",
        "> 0 (optimizer='adam')")
    network: str = _field("auto", "mlp, cnn, or auto (cnn for image observations, else mlp)",
                          f"one of {NETWORKS}")
    conv_channels: tuple[int, ...] = _field(
        (16,), "cnn: output channels of each convolution (stride 1, no padding)",
        "one or more positive ints")
    conv_kernel_size: int = _field(3, "cnn: height and width of each convolution kernel",
                                   "> 0")
    dueling: bool = _field(
        False, "dueling head (Wang et al. 2016): Q = V + A - mean of A over the legal actions, "
        "a value and an advantage layer on the last hidden layer", "true or false")
    noisy: bool = _field(
        False, "noisy nets (Fortunato et al. 2018): every dense layer (not the convolutions) has "
        "learned factorised Gaussian noise on its weights, drawn afresh for every env step (one "
        "draw per env copy) and every network pass of a gradient step; evaluation and saved "
        "agents use the mean weights. Acts without epsilon unless one is set: with neither "
        "start_epsilon nor end_epsilon given both are 0", "true or false; not with "
        "buffer_age_metrics")
    noisy_sigma0: float = _field(
        0.5, "noisy: sigma_0 of the factorised initialisation, every sigma starts at "
        "sigma_0 / sqrt(fan_in) (0.5: the paper's factorised value)", ">= 0 (noisy=True only)")
    distributional: str = _field(
        "none", "head: " + ", ".join(f"{h.name} ({h.description})" for h in HEADS.values())
        + "; a distributional head has its own loss in place of loss, and acts on its means",
        f"one of {tuple(HEADS)}; c51/qr with estimator "
        f"{_names(lambda e: e.distributional_action is not None)} only")
    num_atoms: int = _field(51, "c51: atoms of the support, evenly spaced from v_min to v_max",
                            ">= 2 (distributional='c51' only)")
    v_min: float = _field(-10.0, "c51: the lowest atom (returns below it count as v_min)",
                          "< v_max (distributional='c51' only)")
    v_max: float = _field(10.0, "c51: the highest atom (returns above it count as v_max)",
                          "> v_min (distributional='c51' only)")
    num_quantiles: int = _field(
        51, "qr: quantiles per action, at levels (2i + 1) / 2N (51, C51's atoms: the paper's 200 "
        "makes a CPU gradient step ~12x dearer, its loss being [batch, N, N])",
        ">= 1 (distributional='qr' only)")
    kappa: float = _field(
        1.0, "qr: where the quantile Huber loss turns from quadratic to linear",
        "> 0 (distributional='qr' only)")
    random_tie_break: bool = _field(
        False, "greedy actions and the targets' argmax break ties among maximal Q-values at "
        "random (else lowest index)",
        "true or false")
    loss: str = _field("mse", "mse (the seed's squared TD error) or huber",
                       f"one of {LOSSES}")
    huber_delta: float = _field(1.0, "huber: where the loss turns from quadratic to linear",
                                "> 0")
    max_grad_norm: float | None = _field(None, "clip gradients to this global norm (None: off)",
                                             "> 0 or None")
    tau: float = _field(1.0, "target update rate: 1 copies, < 1 is a soft (Polyak) update",
                       "in (0, 1]")
    anneal_lr: bool = _field(False, "decay the learning rate linearly to 0 over the run",
                             "true or false")
    max_episode_steps: int | None = _field(
        None, "override the env's time limit (None: the env's own)", "> 0 or None")
    sticky_action_prob: float = _field(
        0.0, "probability that the env executes its previous action instead of the agent's "
        "(sticky actions, Machado et al. 2018; the MinAtar paper's protocol is 0.1); 0: off",
        f"in [0, 1); 0 with env {' or '.join(LEGAL_MASK_ENV_IDS)} (state-dependent legal actions)")
    log_interval: int | None = _field(
        None, "env steps per metric row (None: about 100 rows per run)",
        "a multiple of the env steps per iteration dividing total_timesteps, or None")
    eval_interval: int | None = _field(
        None, "env steps between greedy evaluations during training (None: off)",
        "a multiple of log_interval, <= total_timesteps, or None")
    eval_episodes: int = _field(8, "greedy episodes per evaluation during training",
                                "> 0")
    munchausen_tau: float = _field(
        0.03, "munchausen: temperature of the target network's policy softmax(Q'/tau)",
        "> 0 (estimator='munchausen' only)")
    munchausen_alpha: float = _field(
        0.9, "munchausen: scale of the log-policy bonus (0: soft DQN)",
        "in [0, 1] (estimator='munchausen' only)")
    munchausen_clip: float = _field(
        -1.0, "munchausen: lower clip l0 of the log-policy in the bonus",
        "<= 0 (estimator='munchausen' only)")
    n_step: int = _field(
        1, "n-step returns: the target sums up to n discounted rewards, then bootstraps with "
        "gamma^m from the m-th next observation (m <= n: cut at an episode's end and at the "
        "buffer's write head)",
        "> 0; > 1 needs buffer_size a multiple of num_envs and n_step * num_envs <= buffer_size")
    prioritized: bool = _field(
        False, "proportional prioritized replay (Schaul et al. 2016): transition i is drawn with "
        "probability p_i^alpha / sum_j p_j^alpha, p = |TD error| + priority_epsilon after each "
        "gradient step, new transitions at the largest p so far; losses weighted by importance "
        "weights (N P(i))^-beta over their batch max", "true or false")
    priority_exponent: float = _field(
        0.5, "prioritized: alpha, how strongly priorities skew sampling (0: uniform); 0.5 as "
        "Rainbow (Hessel et al. 2018) and Dopamine (Schaul et al.'s proportional variant: 0.6)",
        ">= 0")
    importance_exponent: float = _field(
        0.4, "prioritized: beta of the importance weights at step 0, annealed linearly to 1 at "
        "total_timesteps (0.4: Schaul et al.'s proportional variant and Rainbow)", "in [0, 1]")
    priority_epsilon: float = _field(
        1e-6, "prioritized: added to |TD error|, so that no transition's priority is 0",
        "> 0")
    buffer_age_metrics: bool = _field(
        False, "store each transition's env step and behaviour probability, and log the age of "
        "sampled transitions, the off-policy fraction and importance ratios per metric row",
        "true or false")
    scan_unroll: int = _field(
        1, "vector env steps compiled into one trip of the training loop (lax.scan's unroll of "
        "the env-step loop, then of the iteration loop): the same results bit for bit; more "
        "can help where each trip costs a kernel launch and a sync (one run on a GPU), 1 is "
        "fastest on XLA:CPU; two or more iterations a trip hold part of a copy of the replay "
        "buffer", ">= 1")

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        for name in ("hidden_sizes", "conv_channels"):
            if isinstance(getattr(self, name), list):
                set_(name, tuple(getattr(self, name)))
        _check_types(self)
        if self.env_id not in known_env_ids():
            raise ValueError(f"DQNConfig.env_id={self.env_id!r} is invalid: unknown env; "
                             f"known ids: {', '.join(known_env_ids())}")
        for name in ("total_timesteps", "buffer_size", "batch_size", "target_update_freq",
                     "train_frequency", "num_envs", "scan_unroll"):
            _require(name, getattr(self, name), getattr(self, name) > 0, "must be > 0")
        _require("hidden_sizes", self.hidden_sizes, all(h > 0 for h in self.hidden_sizes),
                 "must be a sequence of positive ints (empty: a linear Q)")
        _require("conv_channels", self.conv_channels,
                 len(self.conv_channels) > 0 and all(c > 0 for c in self.conv_channels),
                 "must be a non-empty sequence of positive ints")
        _check("conv_kernel_size", self.conv_kernel_size, self.conv_kernel_size > 0)
        _check("estimator", self.estimator, self.estimator in ESTIMATORS)
        _check("optimizer", self.optimizer, self.optimizer in OPTIMIZERS)
        _check("network", self.network, self.network in NETWORKS)
        size = ESTIMATORS[self.estimator].size
        if self.ensemble_size is None:
            set_("ensemble_size", size.default)
        _require("ensemble_size", self.ensemble_size, size.allows(self.ensemble_size),
                 f"must be {size.allowed}{' (or None)' if size.fixed else ''} "
                 f"with estimator={self.estimator!r}")
        _require("update_all_members", self.update_all_members,
                 not self.update_all_members
                 or ESTIMATORS[self.estimator].train_all_option,
                 "applies to estimator=" + " or ".join(
                     repr(e.name) for e in ESTIMATORS.values() if e.train_all_option)
                 + f" only, not {self.estimator!r}")
        _check("eval_episodes", self.eval_episodes, self.eval_episodes > 0)
        _check_estimator_fields(self)
        _check_head_fields(self)
        _check_n_step(self)
        _check("priority_exponent", self.priority_exponent, self.priority_exponent >= 0)
        _check("importance_exponent", self.importance_exponent,
               0.0 <= self.importance_exponent <= 1.0)
        _check("priority_epsilon", self.priority_epsilon, self.priority_epsilon > 0)
        if self.eval_interval is not None:
            _require("eval_interval", self.eval_interval,
                     self.eval_interval > 0 and self.eval_interval <= self.total_timesteps,
                     f"must be in [1, total_timesteps={self.total_timesteps}] or None")
        _require("batch_size", self.batch_size, self.batch_size <= self.buffer_size,
                 f"must be <= buffer_size={self.buffer_size}")
        _require("num_envs", self.num_envs, self.num_envs <= self.buffer_size,
                 f"must be <= buffer_size={self.buffer_size}")
        _check("gamma", self.gamma, 0.0 <= self.gamma <= 1.0)
        _check("learning_rate", self.learning_rate, self.learning_rate > 0)
        _check("adam_eps", self.adam_eps, self.adam_eps > 0)
        _require("adam_eps", self.adam_eps, self.optimizer == "adam" or self.adam_eps == 1e-8,
                 f"applies to optimizer='adam' only, not {self.optimizer!r} (leave it at 1e-8)")
        _check_noisy(self)
        given = self.start_epsilon is not None or self.end_epsilon is not None
        defaults = DEFAULT_EPSILONS if given else _default_epsilons(self.noisy)
        for name, default in zip(("start_epsilon", "end_epsilon"), defaults):
            if getattr(self, name) is None:
                set_(name, default)
            _check(name, getattr(self, name), 0.0 <= getattr(self, name) <= 1.0)
        if self.exploration_steps is not None and self.exploration_fraction is not None:
            raise ValueError(
                f"DQNConfig.exploration_steps={self.exploration_steps!r} is invalid beside "
                f"exploration_fraction={self.exploration_fraction!r}: epsilon decays over one of "
                "the two; set the other to None")
        if self.exploration_steps is None and self.exploration_fraction is None:
            set_("exploration_fraction", DEFAULT_EXPLORATION_FRACTION)
        _check("exploration_fraction", self.exploration_fraction,
               self.exploration_fraction is None or 0.0 < self.exploration_fraction <= 1.0)
        _check("exploration_steps", self.exploration_steps,
               self.exploration_steps is None or self.exploration_steps > 0)
        _check("loss", self.loss, self.loss in LOSSES)
        _check("huber_delta", self.huber_delta, self.huber_delta > 0)
        _check("max_grad_norm", self.max_grad_norm,
               self.max_grad_norm is None or self.max_grad_norm > 0)
        _check("tau", self.tau, 0.0 < self.tau <= 1.0)
        _check("max_episode_steps", self.max_episode_steps,
               self.max_episode_steps is None or self.max_episode_steps > 0)
        _require("sticky_action_prob", self.sticky_action_prob,
                 0.0 <= self.sticky_action_prob < 1.0, "must be in [0, 1)")
        _require("sticky_action_prob", self.sticky_action_prob,
                 self.sticky_action_prob == 0.0 or self.env_id not in LEGAL_MASK_ENV_IDS,
                 f"must be 0 with env_id={self.env_id!r}: its legal actions depend on the state, "
                 "and a repeated action may be illegal where it repeats")
        f, e = self.train_frequency, self.num_envs
        _require("train_frequency", f, f % e == 0 or e % f == 0,
                 f"must be a multiple or a divisor of num_envs={e}")

        if self.learning_starts is None:
            set_("learning_starts", self.buffer_size)
        _require("learning_starts", self.learning_starts, self.learning_starts >= self.batch_size,
                 f"must be >= batch_size={self.batch_size}")
        per_iteration = self.steps_per_iteration
        _require("total_timesteps", self.total_timesteps, self.total_timesteps % per_iteration == 0,
                 f"must be a multiple of {per_iteration} (the env steps between gradient steps, "
                 f"max(train_frequency, num_envs))")
        # The online network changes once per iteration, and the loop updates the target at most
        # once per iteration: a shorter period would lose target updates.
        _require("target_update_freq", self.target_update_freq,
                 self.target_update_freq >= per_iteration,
                 f"must be >= {per_iteration}, the env steps of one iteration "
                 "(max(train_frequency, num_envs)): the online network changes once per iteration "
                 "and the target is updated at most once per iteration (for faster soft updates "
                 "raise tau)")
        if self.log_interval is None:
            set_("log_interval", _default_log_interval(self))
        _require("log_interval", self.log_interval,
                 self.log_interval > 0 and self.log_interval % per_iteration == 0
                 and self.total_timesteps % self.log_interval == 0,
                 f"must be a multiple of {per_iteration} that divides "
                 f"total_timesteps={self.total_timesteps}")
        if self.eval_interval is not None:
            _require("eval_interval", self.eval_interval,
                     self.eval_interval % self.log_interval == 0,
                     f"must be a multiple of log_interval={self.log_interval} (an evaluation ends "
                     "a metric row), or None")

    # Derived loop sizes: one iteration = `env_steps_per_update` vector steps of all envs, then
    # `updates_per_iteration` gradient steps.
    @property
    def vector_steps_per_iteration(self) -> int:
        return max(self.train_frequency // self.num_envs, 1)

    @property
    def updates_per_iteration(self) -> int:
        return max(self.num_envs // self.train_frequency, 1)

    @property
    def steps_per_iteration(self) -> int:
        return self.vector_steps_per_iteration * self.num_envs

    @property
    def num_iterations(self) -> int:
        return self.total_timesteps // self.steps_per_iteration

    @property
    def first_learning_iteration(self) -> int:
        """The first iteration at whose end the buffer holds ``learning_starts`` transitions."""
        return -(-self.learning_starts // self.steps_per_iteration) - 1

    @property
    def num_updates(self) -> int:
        """Gradient steps in the whole run."""
        learning = max(self.num_iterations - self.first_learning_iteration, 0)
        return learning * self.updates_per_iteration

    @property
    def num_log_rows(self) -> int:
        return self.total_timesteps // self.log_interval

    @property
    def iterations_per_log_row(self) -> int:
        return self.log_interval // self.steps_per_iteration

    @property
    def num_members(self) -> int:
        """Online Q-networks trained side by side (a leading member axis on the params when > 1);
        an estimator of snapshots (Averaged-DQN) has one online network and ``ensemble_size``
        target snapshots."""
        return ESTIMATORS[self.estimator].num_members(self.ensemble_size)

    @property
    def trained_members(self) -> str:
        """The members one gradient step trains: ``"only"`` network, one chosen at ``"random"``
        (the step takes a key) or ``"all"``."""
        return ESTIMATORS[self.estimator].trained(self.update_all_members)

    def replace(self, **changes: Any) -> DQNConfig:
        """A copy with ``changes``; a derived default (``learning_starts``, ``log_interval``) is
        re-derived unless given, so ``replace(buffer_size=...)`` behaves like a fresh config, and
        giving one of ``EITHER_OR``'s fields unsets the other (``replace(exploration_steps=n)``
        decays epsilon over ``n`` steps whatever the fraction was), and a change of estimator
        resets the fields of the one left (``munchausen_*``) to their defaults, as turning
        ``noisy`` off resets ``noisy_sigma0`` and a change of ``distributional`` the fields of the
        head left (``num_atoms``, ``v_min``, ...). A config holding both default epsilons
        (``_default_epsilons``) has them re-derived unless given: ``replace(noisy=True)`` of the
        seed's 1.0 and 0.1 acts without epsilon, of a schedule that was set keeps it."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in changes:
            if name not in fields:
                raise ValueError(f"unknown DQNConfig field {name!r}")
        if "estimator" in changes and "ensemble_size" not in changes:
            fields["ensemble_size"] = None
        for option, table in (("estimator", _ESTIMATOR_FIELDS), ("distributional", _HEAD_FIELDS)):
            for value, checks in table.items():
                if changes.get(option, getattr(self, option)) != value:
                    for name in set(checks) - set(changes):
                        fields[name] = DQNConfig.__dataclass_fields__[name].default
        for name, other in EITHER_OR.items():
            if changes.get(name) is not None and other not in changes:
                fields[other] = None
        if not changes.get("noisy", self.noisy) and "noisy_sigma0" not in changes:
            fields["noisy_sigma0"] = DQNConfig.__dataclass_fields__["noisy_sigma0"].default
        if (self.start_epsilon, self.end_epsilon) == _default_epsilons(self.noisy):
            for name in set(("start_epsilon", "end_epsilon")) - set(changes):
                fields[name] = None
        for derived in ("learning_starts", "log_interval"):
            if derived not in changes and _was_derived(self, derived):
                fields[derived] = None
        fields.update(changes)
        return DQNConfig(**fields)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        d["conv_channels"] = list(self.conv_channels)
        return d

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> DQNConfig:
        """A config from ``to_dict``'s output, including files written before a field was renamed
        (``upgrade_legacy_fields``)."""
        fields = upgrade_legacy_fields(fields)
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown DQNConfig field {unknown[0]!r}")
        return cls(**fields)


def upgrade_legacy_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``fields`` with renamed fields in today's names: ``double_q`` (before
    ``estimator``) becomes ``estimator="double_dqn"`` when true, ``"dqn"`` when false;
    ``num_estimators`` (before ``ensemble_size``) becomes ``ensemble_size``."""
    fields = dict(fields)
    if "num_estimators" in fields:
        if "ensemble_size" in fields:
            raise ValueError("DQNConfig.num_estimators is invalid beside ensemble_size: it is the "
                             "legacy name of ensemble_size; give one of the two")
        fields["ensemble_size"] = fields.pop("num_estimators")
    if "double_q" in fields:
        legacy = fields.pop("double_q")
        if not isinstance(legacy, bool):
            raise ValueError(f"DQNConfig.double_q={legacy!r} is invalid: must be True or False "
                             "(a legacy field, now estimator='double_dqn' or 'dqn')")
        fields.setdefault("estimator", "double_dqn" if legacy else "dqn")
    return fields


def field_descriptions() -> dict[str, str]:
    """Each ``DQNConfig`` field's one-line description, in field order."""
    return {f.name: f.metadata["description"] for f in dataclasses.fields(DQNConfig)}


def field_allowed() -> dict[str, str]:
    """Each ``DQNConfig`` field's allowed values as text (``"> 0"``, ``"in [0, 1]"``, ...)."""
    return {f.name: f.metadata["allowed"] for f in dataclasses.fields(DQNConfig)}


def field_types() -> dict[str, str]:
    """Each ``DQNConfig`` field's type as text (``"int"``, ``"float | None"``, ...)."""
    import typing

    hints = typing.get_type_hints(DQNConfig)
    out = {}
    for f in dataclasses.fields(DQNConfig):
        text = str(hints[f.name]) if not isinstance(hints[f.name], type) else hints[f.name].__name__
        out[f.name] = text.replace("typing.", "").replace("NoneType", "None")
    return out


def _check_n_step(cfg: DQNConfig) -> None:
    """An n-step window follows one env copy ``num_envs`` slots at a time around the buffer."""
    _require("n_step", cfg.n_step, cfg.n_step > 0, "must be > 0")
    if cfg.n_step == 1:
        return
    _require("buffer_size", cfg.buffer_size, cfg.buffer_size % cfg.num_envs == 0,
             f"must be a multiple of num_envs={cfg.num_envs} with n_step={cfg.n_step} (each env "
             "copy's transitions are num_envs slots apart, also across the buffer's wrap)")
    _require("n_step", cfg.n_step, cfg.n_step * cfg.num_envs <= cfg.buffer_size,
             f"must be <= buffer_size / num_envs = {cfg.buffer_size // cfg.num_envs} (a window "
             "of n_step steps of one env copy must fit in the buffer)")


def _default_epsilons(noisy: bool) -> tuple[float, float]:
    """``(start_epsilon, end_epsilon)`` of a config that gives neither: 0 and 0 with ``noisy``
    (exploration by the noise alone, as DQN Zoo's Rainbow acts greedily on its noisy network),
    else ``DEFAULT_EPSILONS``. One given alone takes the other's ``DEFAULT_EPSILONS`` value."""
    return (0.0, 0.0) if noisy else DEFAULT_EPSILONS


def _check_noisy(cfg: DQNConfig) -> None:
    """``noisy_sigma0`` in range and set only with ``noisy``; no ``buffer_age_metrics`` with it."""
    default = DQNConfig.__dataclass_fields__["noisy_sigma0"].default
    _check("noisy_sigma0", cfg.noisy_sigma0, cfg.noisy_sigma0 >= 0)
    _require("noisy_sigma0", cfg.noisy_sigma0, cfg.noisy or cfg.noisy_sigma0 == default,
             "applies to noisy=True only (leave it at its default)")
    _require("buffer_age_metrics", cfg.buffer_age_metrics,
             not (cfg.noisy and cfg.buffer_age_metrics),
             "must be False with noisy=True: the probability that a noisy network takes an action "
             "(its behaviour probability) has no closed form")


def _was_derived(cfg: DQNConfig, name: str) -> bool:
    if name == "learning_starts":
        return cfg.learning_starts == cfg.buffer_size
    return cfg.log_interval == _default_log_interval(cfg)


def _default_log_interval(cfg: DQNConfig) -> int:
    """The shortest interval giving at most 100 equal metric rows."""
    rows = _largest_divisor_at_most(cfg.num_iterations, 100)
    return cfg.steps_per_iteration * (cfg.num_iterations // rows)


def _largest_divisor_at_most(n: int, k: int) -> int:
    return max(d for d in range(1, min(n, k) + 1) if n % d == 0) if n >= 1 else 1


def _require(name: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"DQNConfig.{name}={value!r} is invalid: {allowed}")


def _check(name: str, value: Any, ok: bool) -> None:
    """``_require`` with the field's own allowed text: ``must be <allowed>``."""
    if not ok:
        allowed = DQNConfig.__dataclass_fields__[name].metadata["allowed"]
        raise ValueError(f"DQNConfig.{name}={value!r} is invalid: must be {allowed}")


_INT_FIELDS = ("total_timesteps", "buffer_size", "batch_size", "target_update_freq",
               "train_frequency", "num_envs", "conv_kernel_size", "eval_episodes", "n_step",
               "num_atoms", "num_quantiles", "scan_unroll")
_OPTIONAL_INT_FIELDS = ("learning_starts", "max_episode_steps", "log_interval", "ensemble_size",
                        "eval_interval", "exploration_steps")
INT32_MAX = 2**31 - 1
"""The largest value of an int field: the loop counts steps, updates, rows and slots in int32."""
_FLOAT_FIELDS = ("gamma", "learning_rate", "adam_eps", "huber_delta", "tau", "munchausen_tau",
                 "munchausen_alpha", "munchausen_clip", "sticky_action_prob", "priority_exponent",
                 "importance_exponent", "priority_epsilon", "noisy_sigma0", "v_min", "v_max",
                 "kappa")
_ESTIMATOR_FIELDS = {"munchausen": {
    "munchausen_tau": lambda v: v > 0,
    "munchausen_alpha": lambda v: 0 <= v <= 1,
    "munchausen_clip": lambda v: v <= 0,
}}
"""Fields that one estimator reads, each with its range: checked with that estimator, and
rejected at any other value than the default with another (they would change nothing)."""
_HEAD_FIELDS = {
    "c51": {"num_atoms": lambda v: v >= 2, "v_min": lambda v: True,
            "v_max": lambda v: True},  # v_min < v_max: _check_head_fields
    "qr": {"num_quantiles": lambda v: v >= 1, "kappa": lambda v: v > 0},
}
"""Fields that one distributional head reads, as ``_ESTIMATOR_FIELDS`` for estimators."""


def _check_option_fields(cfg: DQNConfig, option: str, table: dict) -> None:
    """The fields of ``table[value]`` checked where ``cfg.<option>`` is ``value``, and required
    at their defaults elsewhere."""
    for value, checks in table.items():
        for name, ok in checks.items():
            field = getattr(cfg, name)
            if getattr(cfg, option) == value:
                _check(name, field, ok(field))
            else:
                _require(name, field, field == DQNConfig.__dataclass_fields__[name].default,
                         f"applies to {option}={value!r} only, not {getattr(cfg, option)!r} "
                         "(leave it at its default)")


def _check_estimator_fields(cfg: DQNConfig) -> None:
    _check_option_fields(cfg, "estimator", _ESTIMATOR_FIELDS)


def _check_head_fields(cfg: DQNConfig) -> None:
    """The head's name, its fields, its support (``v_min < v_max``) and its estimator."""
    _check("distributional", cfg.distributional, cfg.distributional in HEADS)
    _check_option_fields(cfg, "distributional", _HEAD_FIELDS)
    if cfg.distributional == "c51":
        _require("v_max", cfg.v_max, cfg.v_max > cfg.v_min, f"must be > v_min={cfg.v_min!r}")
    if cfg.distributional != "none":
        _require("distributional", cfg.distributional,
                 ESTIMATORS[cfg.estimator].distributional_action is not None,
                 f"must be 'none' with estimator={cfg.estimator!r}: distributional heads are "
                 "defined with estimator=" + " or ".join(
                     repr(e.name) for e in ESTIMATORS.values()
                     if e.distributional_action is not None) + " only")


def _check_types(cfg: DQNConfig) -> None:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_real(v):
        return (is_int(v) or isinstance(v, float)) and math.isfinite(v)

    for name in _INT_FIELDS:
        _require(name, getattr(cfg, name), is_int(getattr(cfg, name)), "must be an int")
    for name in _OPTIONAL_INT_FIELDS:
        v = getattr(cfg, name)
        _require(name, v, v is None or is_int(v), "must be an int or None")
    for name in (*_INT_FIELDS, *_OPTIONAL_INT_FIELDS):
        v = getattr(cfg, name)
        _require(name, v, v is None or v <= INT32_MAX,
                 f"must be <= {INT32_MAX} (steps, gradient steps, metric rows and buffer slots are "
                 "counted in int32)")
    for name in _FLOAT_FIELDS:
        _require(name, getattr(cfg, name), is_real(getattr(cfg, name)), "must be a finite number")
    for name in ("max_grad_norm", "exploration_fraction", "start_epsilon", "end_epsilon"):
        v = getattr(cfg, name)
        _require(name, v, v is None or is_real(v), "must be a finite number or None")
    _require("env_id", cfg.env_id, isinstance(cfg.env_id, str), "must be a string")
    for name in ("anneal_lr", "update_all_members", "random_tie_break", "dueling", "noisy",
                 "prioritized", "buffer_age_metrics"):
        _require(name, getattr(cfg, name), isinstance(getattr(cfg, name), bool),
                 "must be True or False")
    for name, allowed in (("loss", LOSSES), ("estimator", tuple(ESTIMATORS)),
                          ("optimizer", OPTIMIZERS), ("network", NETWORKS),
                          ("distributional", tuple(HEADS))):
        _require(name, getattr(cfg, name), isinstance(getattr(cfg, name), str),
                 f"must be one of {allowed}")
    for name in ("hidden_sizes", "conv_channels"):
        v = getattr(cfg, name)
        _require(name, v, isinstance(v, tuple) and all(is_int(h) for h in v),
                 "must be a sequence of positive ints")


# Presets. "cartpole" was chosen by a vmapped sweep; see docs/cartpole_preset.md. "probes" learns
# every probe's exact Q-values (replace env_id with Probe1..Probe6; scripts/probe_check.py).
# "minatar" is the MinAtar paper's DQN (Young and Tian 2019; examples/dqn.py of kenjyoung/MinAtar):
# its network, replay, batch, target sync, step size, epsilon schedule, replay start, Huber loss,
# sticky actions (0.1, the paper's protocol: its Environment's default) and 5M frames with an
# update per frame, but Adam where the paper used centered RMSProp (decay 0.95, epsilon 0.01).
# "minatar-fast" takes a gradient step every 4 frames for 1M frames (a 20th of the updates);
# docs/minatar.md compares both with the paper's curves.
_MINATAR = dict(
    env_id="Breakout-MinAtar",
    network="cnn",
    conv_channels=(16,),
    conv_kernel_size=3,
    hidden_sizes=(128,),
    buffer_size=100_000,
    batch_size=32,
    learning_starts=5000,
    target_update_freq=1000,
    learning_rate=2.5e-4,
    gamma=0.99,
    loss="huber",
    start_epsilon=1.0,
    end_epsilon=0.1,
    sticky_action_prob=0.1,
)
_PRESETS: dict[str, dict[str, Any]] = {
    "reference": {},
    "probes": dict(
        env_id="Probe1",
        total_timesteps=3000,
        buffer_size=1000,
        learning_starts=256,
        batch_size=128,
        learning_rate=1e-2,
        anneal_lr=True,
        train_frequency=1,
        target_update_freq=100,
        exploration_fraction=0.5,
        start_epsilon=1.0,
        end_epsilon=0.5,
        hidden_sizes=(32,),
    ),
    "cartpole": dict(
        env_id="CartPole-v1",
        total_timesteps=80_000,
        num_envs=8,
        train_frequency=8,
        batch_size=128,
        buffer_size=50_000,
        learning_starts=1000,
        learning_rate=1.4e-2,
        anneal_lr=True,
        gamma=0.99,
        estimator="double_dqn",
        target_update_freq=8,  # a soft (Polyak) update after every gradient step ...
        tau=0.02,  # ... with a time constant of 50 gradient steps (400 env steps)
        exploration_fraction=0.2,
        end_epsilon=0.05,
    ),
}


_PRESETS["minatar"] = dict(_MINATAR, total_timesteps=5_000_000, train_frequency=1,
                           exploration_fraction=0.02)
_PRESETS["minatar-fast"] = dict(_MINATAR, total_timesteps=1_000_000, train_frequency=4,
                                exploration_fraction=0.1)
# "rainbow-minatar" is the Rainbow that Obando-Ceron and Castro's "Revisiting Rainbow" (ICML 2021)
# train on MinAtar with Dopamine (JohanSamir/revisiting_rainbow: Configs/rainbow_*.gin,
# Agents/rainbow_agent_new.py, networks_new.py, on Dopamine's JaxDQNAgent defaults):
# - the six components: n-step 3 (update_horizon), prioritized replay (alpha 0.5: Dopamine
#   samples by sqrt of the loss), C51 with 51 atoms on [-100, 100] (vmax), dueling, noisy nets,
#   Double DQN;
# - their network: one 3x3 convolution of 16 channels and no hidden dense layer (hidden_layer=0)
#   before the heads;
# - their optimizer and schedule: Adam, learning rate 1e-4, epsilon 3.125e-4; batch 32, buffer
#   100k, learning after 1000 transitions (min_replay_history), an update every 4 steps, the
#   target synced every 1000 steps, gamma 0.99;
# - exploration: with noisy nets Dopamine's agent acts with a constant epsilon_train of 0.01
#   (identity_epsilon); without them (the "minus noisy" ablation) epsilon decays linearly from 1
#   to 0.01 over 250k steps (epsilon_decay_period): set start_epsilon=1.0 and
#   exploration_steps=250000 there;
# - the MinAtar paper's protocol (sticky actions 0.1) and 1M steps, as the other MinAtar presets.
# Where jaxdqn differs, on purpose: the importance exponent anneals from 0.4 to 1 (Schaul et al.
# and Hessel et al.; Dopamine fixes it at 0.5); noisy layers start at sigma_0 = 0.5 and draw fresh
# noise at every pass (Fortunato et al.'s factorised values; the Revisiting Rainbow code scales
# sigma by 0.1 and draws its noise from PRNGKey(0) at every call, so the same noise each time);
# the dueling mean is over actions per atom (their RainbowDQN takes it over the atoms' axis);
# kernels start LeCun-normal (theirs Xavier-uniform).
_PRESETS["rainbow-minatar"] = dict(
    _MINATAR, hidden_sizes=(), total_timesteps=1_000_000, train_frequency=4,
    learning_starts=1000, learning_rate=1e-4, adam_eps=3.125e-4,
    n_step=3, prioritized=True, priority_exponent=0.5, distributional="c51", num_atoms=51,
    v_min=-100.0, v_max=100.0, dueling=True, noisy=True, estimator="double_dqn",
    start_epsilon=0.01, end_epsilon=0.01, exploration_steps=250_000)


# One line per preset, for `jaxdqn train --help` and `jaxdqn config`.
_PRESET_DESCRIPTIONS = {
    "reference": "the course's train_dqn defaults, DQNConfig() (old name: seed)",
    "probes": "learns each probe's exact Q-values in 3k steps (set env_id to Probe1..Probe6)",
    "cartpole": ("CartPole-v1 in 80k steps: 8 envs, Double DQN, soft target "
                 "(docs/cartpole_preset.md)"),
    "minatar": ("the MinAtar paper's DQN on Breakout-MinAtar, Adam, 5M steps, sticky actions "
                "0.1 as in the paper (docs/minatar.md)"),
    "minatar-fast": ("minatar (sticky actions 0.1) with an update every 4 steps, 1M steps "
                     "(docs/minatar.md)"),
    "rainbow-minatar": ("Revisiting Rainbow's MinAtar Rainbow (n-step 3, prioritized, C51, "
                        "dueling, noisy, double) on Breakout-MinAtar, sticky actions 0.1, 1M "
                        "steps (docs/minatar.md)"),
}


def preset_descriptions() -> dict[str, str]:
    """Each preset's one-line description, in preset order, ending with the field its epsilon
    decay follows (``exploration_fraction`` of the run or ``exploration_steps``)."""
    return {name: f"{_PRESET_DESCRIPTIONS.get(name, '')}; {_exploration(fields)}"
            for name, fields in _PRESETS.items()}


def _exploration(fields: dict[str, Any]) -> str:
    """``"exploration_steps=N"`` or ``"exploration_fraction=F"``: the field a preset's epsilon
    decay follows."""
    if fields.get("exploration_steps") is not None:
        return f"exploration_steps={fields['exploration_steps']}"
    fraction = fields.get("exploration_fraction", DEFAULT_EXPLORATION_FRACTION)
    return f"exploration_fraction={fraction}"


PRESET_ALIASES = {"seed": "reference"}
"""Old preset names, still accepted: ``"seed"`` (the starting design's name) is ``"reference"``."""


def preset(name: str) -> DQNConfig:
    """A named configuration: ``"reference"`` is the course's ``train_dqn`` defaults
    (``DQNConfig()``; ``"seed"``, its old name, is accepted); ``"cartpole"`` solves CartPole-v1;
    ``"probes"`` learns the probe environments' exact Q-values (set ``env_id`` to the probe);
    ``"minatar"`` is the MinAtar paper's DQN on Breakout-MinAtar (any MinAtar id fits), with its
    sticky actions (0.1), and ``"minatar-fast"`` the same with a gradient step every 4 of 1M env
    steps; ``"rainbow-minatar"`` is the Rainbow of "Revisiting Rainbow" on MinAtar (the comment
    above ``_PRESETS["rainbow-minatar"]`` gives every setting and its source)."""
    name = PRESET_ALIASES.get(name, name)
    if name not in _PRESETS:
        raise ValueError(f"preset {name!r} is unknown; known presets: {', '.join(_PRESETS)}")
    return DQNConfig(**_PRESETS[name])
