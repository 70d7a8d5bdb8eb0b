"""`DQNConfig`: every hyperparameter of a run, validated when it is built; and named presets."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxdqn.envs import known_env_ids

LOSSES = ("mse", "huber")


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """A DQN run. Names and defaults of the first ten fields are the seed's ``train_dqn`` signature.

    Step counts are in environment steps summed over the ``num_envs`` vectorised copies.
    ``learning_starts=None`` resolves to ``buffer_size`` (the seed fills the buffer first) and
    ``log_interval=None`` to about 100 metric rows per run.
    """

    env_id: str = "CartPole-v1"
    total_timesteps: int = 500_000
    buffer_size: int = 10_000
    batch_size: int = 128
    gamma: float = 0.99
    learning_rate: float = 2.5e-4
    target_update_freq: int = 1000
    start_epsilon: float = 1.0
    end_epsilon: float = 0.1
    exploration_fraction: float = 0.2
    learning_starts: int | None = None
    train_frequency: int = 10
    num_envs: int = 1
    hidden_sizes: tuple[int, ...] = (120, 84)
    double_q: bool = False
    loss: str = "mse"
    huber_delta: float = 1.0
    max_grad_norm: float | None = None
    tau: float = 1.0
    anneal_lr: bool = False
    max_episode_steps: int | None = None
    log_interval: int | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if isinstance(self.hidden_sizes, list):
            set_("hidden_sizes", tuple(self.hidden_sizes))
        _check_types(self)
        if self.env_id not in known_env_ids():
            raise ValueError(f"DQNConfig.env_id={self.env_id!r} is invalid: unknown env; "
                             f"known ids: {', '.join(known_env_ids())}")
        for name in ("total_timesteps", "buffer_size", "batch_size", "target_update_freq",
                     "train_frequency", "num_envs"):
            _require(name, getattr(self, name), getattr(self, name) > 0, "must be > 0")
        _require("hidden_sizes", self.hidden_sizes,
                 len(self.hidden_sizes) > 0 and all(h > 0 for h in self.hidden_sizes),
                 "must be a non-empty sequence of positive ints")
        _require("batch_size", self.batch_size, self.batch_size <= self.buffer_size,
                 f"must be <= buffer_size={self.buffer_size}")
        _require("num_envs", self.num_envs, self.num_envs <= self.buffer_size,
                 f"must be <= buffer_size={self.buffer_size}")
        _require("gamma", self.gamma, 0.0 <= self.gamma <= 1.0, "must be in [0, 1]")
        _require("learning_rate", self.learning_rate, self.learning_rate > 0, "must be > 0")
        for name in ("start_epsilon", "end_epsilon"):
            _require(name, getattr(self, name), 0.0 <= getattr(self, name) <= 1.0,
                     "must be in [0, 1]")
        _require("exploration_fraction", self.exploration_fraction,
                 0.0 < self.exploration_fraction <= 1.0, "must be in (0, 1]")
        _require("loss", self.loss, self.loss in LOSSES, f"must be one of {LOSSES}")
        _require("huber_delta", self.huber_delta, self.huber_delta > 0, "must be > 0")
        if self.max_grad_norm is not None:
            _require("max_grad_norm", self.max_grad_norm, self.max_grad_norm > 0,
                     "must be > 0 or None")
        _require("tau", self.tau, 0.0 < self.tau <= 1.0, "must be in (0, 1]")
        if self.max_episode_steps is not None:
            _require("max_episode_steps", self.max_episode_steps, self.max_episode_steps > 0,
                     "must be > 0 or None")
        f, e = self.train_frequency, self.num_envs
        _require("train_frequency", f, f % e == 0 or e % f == 0,
                 f"must be a multiple or a divisor of num_envs={e}")

        if self.learning_starts is None:
            set_("learning_starts", self.buffer_size)
        _require("learning_starts", self.learning_starts, self.learning_starts >= self.batch_size,
                 f"must be >= batch_size={self.batch_size}")
        chunk = self.steps_per_iteration
        _require("total_timesteps", self.total_timesteps, self.total_timesteps % chunk == 0,
                 f"must be a multiple of {chunk} (the env steps between gradient steps, "
                 f"max(train_frequency, num_envs))")
        if self.log_interval is None:
            set_("log_interval", _default_log_interval(self))
        _require("log_interval", self.log_interval,
                 self.log_interval > 0 and self.log_interval % chunk == 0
                 and self.total_timesteps % self.log_interval == 0,
                 f"must be a multiple of {chunk} that divides total_timesteps={self.total_timesteps}")

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
        return max(self.num_iterations - self.first_learning_iteration, 0) * self.updates_per_iteration

    @property
    def num_log_rows(self) -> int:
        return self.total_timesteps // self.log_interval

    @property
    def iterations_per_log_row(self) -> int:
        return self.log_interval // self.steps_per_iteration

    def replace(self, **changes: Any) -> "DQNConfig":
        """A copy with ``changes``; a derived default (``learning_starts``, ``log_interval``) is
        re-derived unless given, so ``replace(buffer_size=...)`` behaves like a fresh config."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in changes:
            if name not in fields:
                raise ValueError(f"unknown DQNConfig field {name!r}")
        for derived in ("learning_starts", "log_interval"):
            if derived not in changes and _was_derived(self, derived):
                fields[derived] = None
        fields.update(changes)
        return DQNConfig(**fields)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d


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


_INT_FIELDS = ("total_timesteps", "buffer_size", "batch_size", "target_update_freq",
               "train_frequency", "num_envs")
_FLOAT_FIELDS = ("gamma", "learning_rate", "start_epsilon", "end_epsilon",
                 "exploration_fraction", "huber_delta", "tau")


def _check_types(cfg: DQNConfig) -> None:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_real(v):
        return (is_int(v) or isinstance(v, float)) and math.isfinite(v)

    for name in _INT_FIELDS:
        _require(name, getattr(cfg, name), is_int(getattr(cfg, name)), "must be an int")
    for name in ("learning_starts", "max_episode_steps", "log_interval"):
        v = getattr(cfg, name)
        _require(name, v, v is None or is_int(v), "must be an int or None")
    for name in _FLOAT_FIELDS:
        _require(name, getattr(cfg, name), is_real(getattr(cfg, name)), "must be a finite number")
    _require("max_grad_norm", cfg.max_grad_norm,
             cfg.max_grad_norm is None or is_real(cfg.max_grad_norm),
             "must be a finite number or None")
    _require("env_id", cfg.env_id, isinstance(cfg.env_id, str), "must be a string")
    for name in ("double_q", "anneal_lr"):
        _require(name, getattr(cfg, name), isinstance(getattr(cfg, name), bool),
                 "must be True or False")
    _require("loss", cfg.loss, isinstance(cfg.loss, str), f"must be one of {LOSSES}")
    _require("hidden_sizes", cfg.hidden_sizes,
             isinstance(cfg.hidden_sizes, tuple) and all(is_int(h) for h in cfg.hidden_sizes),
             "must be a sequence of positive ints")


# Presets. "cartpole" was chosen by a vmapped sweep; see docs/cartpole_preset.md. "probes" learns
# every probe's exact Q-values (replace env_id with Probe1..Probe5; scripts/probe_check.py).
_PRESETS: dict[str, dict[str, Any]] = {
    "seed": {},
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
        learning_rate=7e-3,
        anneal_lr=True,
        gamma=0.995,
        double_q=True,
        target_update_freq=200,
        exploration_fraction=0.2,
        end_epsilon=0.05,
    ),
}


def preset(name: str) -> DQNConfig:
    """A named configuration: ``"seed"`` is the seed's defaults; ``"cartpole"`` solves CartPole-v1;
    ``"probes"`` learns the probe environments' exact Q-values (set ``env_id`` to the probe)."""
    if name not in _PRESETS:
        raise ValueError(f"preset {name!r} is unknown; known presets: {', '.join(_PRESETS)}")
    return DQNConfig(**_PRESETS[name])
