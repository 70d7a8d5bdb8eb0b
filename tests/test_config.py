import dataclasses
import re

import pytest

import jaxdqn
from jaxdqn import DQNConfig


def test_defaults_are_the_seeds_train_dqn_signature():
    cfg = DQNConfig()
    assert (cfg.env_id, cfg.total_timesteps, cfg.buffer_size, cfg.batch_size) == (
        "CartPole-v1", 500_000, 10_000, 128)
    assert (cfg.gamma, cfg.learning_rate, cfg.target_update_freq) == (0.99, 2.5e-4, 1000)
    assert (cfg.start_epsilon, cfg.end_epsilon, cfg.exploration_fraction) == (1.0, 0.1, 0.2)
    assert cfg.learning_starts == 10_000  # the seed fills the buffer before training
    assert (cfg.train_frequency, cfg.num_envs, cfg.hidden_sizes) == (10, 1, (120, 84))
    assert cfg.estimator == "dqn" and cfg.loss == "mse" and cfg.max_grad_norm is None
    assert cfg.tau == 1.0 and cfg.anneal_lr is False
    assert jaxdqn.preset("reference") == cfg
    assert jaxdqn.preset("seed") == cfg  # the old name of "reference"


def test_config_is_frozen_and_hashable():
    cfg = DQNConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gamma = 0.5
    assert hash(cfg) == hash(DQNConfig())


def test_replace_rederives_defaults():
    cfg = DQNConfig().replace(buffer_size=5000)
    assert cfg.learning_starts == 5000
    assert DQNConfig(learning_starts=500).replace(buffer_size=5000).learning_starts == 500
    assert DQNConfig().replace(total_timesteps=30_000).log_interval == 300


def test_loop_sizes():
    cfg = DQNConfig(num_envs=4, train_frequency=2, total_timesteps=4000, learning_starts=128,
                    log_interval=400)
    assert cfg.vector_steps_per_iteration == 1 and cfg.updates_per_iteration == 2
    assert cfg.steps_per_iteration == 4 and cfg.num_iterations == 1000
    assert cfg.num_log_rows == 10 and cfg.iterations_per_log_row == 100
    # Buffer holds 128 transitions at the end of iteration 31 (steps 0..127).
    assert cfg.first_learning_iteration == 31
    assert cfg.num_updates == (1000 - 31) * 2


@pytest.mark.parametrize(
    "changes, field, allowed",
    [
        (dict(total_timesteps=0), "total_timesteps", "> 0"),
        (dict(buffer_size=-1), "buffer_size", "> 0"),
        (dict(batch_size=0), "batch_size", "> 0"),
        (dict(target_update_freq=0), "target_update_freq", "> 0"),
        (dict(train_frequency=0), "train_frequency", "> 0"),
        (dict(num_envs=0), "num_envs", "> 0"),
        (dict(hidden_sizes=(120, 0)), "hidden_sizes", "positive"),
        (dict(batch_size=20_000), "batch_size", "<= buffer_size=10000"),
        (dict(gamma=1.5), "gamma", "[0, 1]"),
        (dict(gamma=-0.1), "gamma", "[0, 1]"),
        (dict(learning_rate=0.0), "learning_rate", "> 0"),
        (dict(start_epsilon=2.0), "start_epsilon", "[0, 1]"),
        (dict(end_epsilon=-0.5), "end_epsilon", "[0, 1]"),
        (dict(exploration_fraction=0.0), "exploration_fraction", "(0, 1]"),
        (dict(exploration_fraction=1.5), "exploration_fraction", "(0, 1]"),
        (dict(learning_starts=64), "learning_starts", ">= batch_size=128"),
        (dict(env_id="Pong-v0"), "env_id", "CartPole-v1, "),
        (dict(loss="l1"), "loss", "'mse', 'huber'"),
        (dict(tau=0.0), "tau", "(0, 1]"),
        (dict(max_grad_norm=-1.0), "max_grad_norm", "> 0"),
        (dict(total_timesteps=1001), "total_timesteps", "multiple of 10"),
        (dict(num_envs=3, train_frequency=10), "train_frequency", "multiple or a divisor"),
        (dict(log_interval=999), "log_interval", "multiple of 10"),
        (dict(total_timesteps="100"), "total_timesteps", "an int"),
        (dict(gamma=float("nan")), "gamma", "finite"),
        (dict(anneal_lr=1), "anneal_lr", "True or False"),
        (dict(target_update_freq=9), "target_update_freq", "must be >= 10, the env steps of one"),
        (dict(target_update_freq=15, num_envs=16, train_frequency=4), "target_update_freq",
         "must be >= 16, the env steps of one iteration (max(train_frequency, num_envs))"),
    ],
)
def test_bad_values_raise_one_clear_error(changes, field, allowed):
    with pytest.raises(ValueError) as err:
        DQNConfig(**changes)
    message = str(err.value)
    assert f"DQNConfig.{field}=" in message and allowed in message
    assert repr(changes.get(field)) in message or field == "batch_size"


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ValueError, match="known presets: reference"):
        jaxdqn.preset("nope")


def test_from_dict_reads_the_old_name_of_ensemble_size():
    """Run folders written before the rename hold ``num_estimators``."""
    saved = DQNConfig(estimator="maxmin", ensemble_size=3).to_dict()
    assert "num_estimators" not in saved and saved["ensemble_size"] == 3
    old = {("num_estimators" if k == "ensemble_size" else k): v for k, v in saved.items()}
    assert DQNConfig.from_dict(old) == DQNConfig.from_dict(saved)
    assert DQNConfig.from_dict(old).ensemble_size == 3
    with pytest.raises(ValueError,
                       match=r"DQNConfig\.num_estimators is invalid beside ensemble_size"):
        DQNConfig.from_dict({**saved, "num_estimators": 3})
    with pytest.raises(ValueError, match=r"DQNConfig\.ensemble_size=3 is invalid"):
        DQNConfig.from_dict({"estimator": "double_q", "num_estimators": 3})


def test_counts_that_overflow_int32_are_refused_and_the_largest_one_traces():
    """Steps, gradient steps, rows and slots are int32 inside the program: a larger count is one
    clear error naming the field and the largest value, and the largest run traces."""
    import jax

    from jaxdqn import make_train
    from jaxdqn.config import INT32_MAX

    for field, value in (("total_timesteps", 4_000_000_000), ("target_update_freq", 2**31),
                         ("max_episode_steps", 10**12)):
        with pytest.raises(ValueError, match=rf"^DQNConfig\.{field}={value} is invalid: must be "
                                             rf"<= {INT32_MAX} \("):
            DQNConfig(**{field: value})
    largest = INT32_MAX - INT32_MAX % 10  # a multiple of train_frequency=10
    cfg = DQNConfig(total_timesteps=largest, log_interval=largest // 4, buffer_size=100,
                    batch_size=32, target_update_freq=INT32_MAX)
    jax.jit(make_train(cfg)).lower(jax.random.key(0))  # traces without an overflow


def test_the_traced_fields_are_the_hparams_fields():
    """One list of sweepable fields: ``config.TRACED_FIELDS`` (read without JAX by the CLI's help)
    is what the training loop traces (``HParams``)."""
    from jaxdqn.config import TRACED_FIELDS
    from jaxdqn.train import HParams

    assert HParams._fields == TRACED_FIELDS


def test_exploration_is_a_fraction_of_the_run_or_a_step_count():
    cfg = DQNConfig(total_timesteps=30_000)
    assert (cfg.exploration_fraction, cfg.exploration_steps) == (0.2, None)
    by_steps = cfg.replace(exploration_steps=100_000)  # no need to unset the fraction by hand
    assert (by_steps.exploration_fraction, by_steps.exploration_steps) == (None, 100_000)
    assert DQNConfig(exploration_steps=5000).exploration_fraction is None
    back = by_steps.replace(exploration_fraction=0.5)
    assert (back.exploration_fraction, back.exploration_steps) == (0.5, None)
    assert by_steps.replace(exploration_steps=None) == cfg  # the default fraction again
    assert by_steps.replace(gamma=0.9).exploration_steps == 100_000  # other changes keep it
    assert DQNConfig.from_dict(by_steps.to_dict()) == by_steps
    legacy = {k: v for k, v in cfg.to_dict().items() if k != "exploration_steps"}
    assert DQNConfig.from_dict(legacy) == cfg  # a config.json written before the field
    with pytest.raises(ValueError, match=r"^DQNConfig.exploration_steps=1000 is invalid beside "
                       r"exploration_fraction=0.3: epsilon decays over one of the two; set the "
                       r"other to None$"):
        DQNConfig(exploration_fraction=0.3, exploration_steps=1000)
    with pytest.raises(ValueError, match="beside"):
        cfg.replace(exploration_fraction=0.3, exploration_steps=1000)
    for bad, allowed in ((0, "> 0, or None"), (2.5, "an int or None"), (2**31, "<= 2147483647")):
        with pytest.raises(ValueError, match=re.escape(f"exploration_steps={bad!r} is invalid: "
                                                       f"must be {allowed}")):
            DQNConfig(exploration_steps=bad)
    with pytest.raises(ValueError, match=r"exploration_fraction=0\.0 is invalid"):
        by_steps.replace(exploration_fraction=0.0)
