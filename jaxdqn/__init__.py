"""jaxdqn: Deep Q-Networks in JAX. One jitted ``lax.scan`` per run, ``vmap`` over seeds.

The names below are imported on first use (PEP 562), so ``import jaxdqn.runtime`` does not import
JAX: entry points must set ``XLA_FLAGS`` (``jaxdqn.runtime``) before JAX reads them at import.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "jaxdqn.agent": ("Agent", "load"),
    "jaxdqn.buffer": ("BufferState", "Transition", "buffer_add", "buffer_init", "buffer_sample"),
    "jaxdqn.config": ("DQNConfig", "preset"),
    "jaxdqn.envs": ("expected_q", "known_env_ids", "legal_actions_fn", "make_env"),
    "jaxdqn.estimators": ("ESTIMATORS", "Estimator", "averaged_target", "clipped_double_target",
                          "double_dqn_target", "double_q_target", "dqn_target", "maxmin_target",
                          "munchausen_target"),
    "jaxdqn.evaluation": ("EpisodeStats", "evaluate", "evaluate_episodes", "start_state_value"),
    "jaxdqn.networks": ("QNetwork", "init_q_params", "make_q_fn"),
    "jaxdqn.policy": ("epsilon_at", "epsilon_greedy", "greedy_action", "make_acting_q_fn"),
    "jaxdqn.runs": ("evaluation_keys", "seed_keys", "train_seeds"),
    "jaxdqn.train": ("BestParams", "HParams", "RunnerState", "TrainMetrics", "TrainOutput",
                     "Trainer", "make_train", "make_trainer"),
    "jaxdqn.update": ("TrainState", "UpdateInfo", "init_train_state", "make_optimizer",
                      "make_td_update", "sync_target", "td_loss"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted([*_MODULE_OF, "__version__"])


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxdqn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})
