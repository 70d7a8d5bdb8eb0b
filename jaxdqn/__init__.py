"""jaxdqn: Deep Q-Networks in JAX. One jitted ``lax.scan`` per run, ``vmap`` over seeds."""

from jaxdqn.buffer import BufferState, Transition, buffer_add, buffer_init, buffer_sample
from jaxdqn.config import DQNConfig, preset
from jaxdqn.envs import expected_q, known_env_ids, make_env
from jaxdqn.evaluate import evaluate
from jaxdqn.networks import QNetwork, init_q_params, make_q_fn
from jaxdqn.policy import epsilon_at, epsilon_greedy
from jaxdqn.train import (HParams, RunnerState, TrainMetrics, TrainOutput, Trainer, make_train,
                          make_trainer)
from jaxdqn.parallel import train_seeds
from jaxdqn.update import (TrainState, UpdateInfo, make_optimizer, make_td_update, sync_target,
                           td_loss, td_targets)

__version__ = "0.1.0"

__all__ = [
    "BufferState", "DQNConfig", "HParams", "QNetwork", "RunnerState", "TrainMetrics",
    "TrainOutput", "TrainState", "Trainer", "Transition", "UpdateInfo", "__version__",
    "buffer_add", "buffer_init", "buffer_sample", "epsilon_at", "epsilon_greedy", "evaluate",
    "expected_q", "init_q_params", "known_env_ids", "make_env", "make_optimizer", "make_q_fn",
    "make_td_update", "make_train", "make_trainer", "preset", "sync_target", "td_loss",
    "td_targets", "train_seeds",
]
