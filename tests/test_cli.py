"""The ``jaxdqn`` command: config resolution, every user error as one line before compilation,
and a full train -> evaluate -> interrupt -> resume round trip in subprocesses."""

import json
import os
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest
from trees import assert_trees_equal

import jaxdqn.runs
from jaxdqn import DQNConfig, init_q_params, run_folder
from jaxdqn.checkpoint import load_checkpoint, save_checkpoint
from jaxdqn.cli import main, parse_field_value, resolve_config, split_values

TINY_SETS = ["--set", "total_timesteps=400", "--set", "buffer_size=200",
             "--set", "learning_starts=64", "--set", "batch_size=32"]


def _cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_compile(monkeypatch):
    """Errors must come before compilation: building a compiled batch fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("reached compilation")

    monkeypatch.setattr(jaxdqn.runs, "make_runs", refuse)


def _random_params(config, num_seeds):
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(lambda: init_q_params(config, jax.random.PRNGKey(0)))
    return jax.tree.map(lambda s: rng.standard_normal((num_seeds, *s.shape)).astype(s.dtype),
                        shapes)


# --- config resolution ------------------------------------------------------------------------


def test_field_values_parse_to_the_fields_types():
    assert parse_field_value("total_timesteps", "5e5", "--set") == 500_000
    assert parse_field_value("total_timesteps", "500_000", "--set") == 500_000
    assert parse_field_value("gamma", "0.98", "--set") == 0.98
    assert parse_field_value("anneal_lr", "True", "--set") is True
    assert parse_field_value("anneal_lr", "off", "--set") is False
    assert parse_field_value("hidden_sizes", "64,64", "--set") == (64, 64)
    assert parse_field_value("hidden_sizes", "[128, 64, 32]", "--set") == (128, 64, 32)
    assert parse_field_value("hidden_sizes", "64x64", "--set") == (64, 64)
    assert parse_field_value("max_grad_norm", "none", "--set") is None
    assert parse_field_value("learning_starts", "None", "--set") is None
    assert parse_field_value("loss", "huber", "--set") == "huber"
    assert split_values("1e-4,2.5e-4, 1e-3") == ["1e-4", "2.5e-4", "1e-3"]
    assert split_values("[64,64],[120, 84],32") == ["[64,64]", "[120, 84]", "32"]


def test_config_resolution_order_is_preset_file_set_env(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('env_id = "Acrobot-v1"\ngamma = 0.95\nbuffer_size = 5000\n'
                    "hidden_sizes = [64, 64]\nlearning_rate = 1e-3\n")
    cfg, settings = resolve_config("seed", str(toml), ["gamma=0.9", "batch_size=64"],
                                   "CartPole-v1")
    assert settings == {}
    assert cfg == DQNConfig(env_id="CartPole-v1", gamma=0.9, buffer_size=5000, batch_size=64,
                            hidden_sizes=(64, 64), learning_rate=1e-3)
    assert cfg.learning_starts == 5000  # re-derived from the file's buffer_size
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"max_grad_norm": None, "double_q": True, "tau": 0.5}))
    cfg, _ = resolve_config("seed", str(js), [], None)
    assert (cfg.max_grad_norm, cfg.estimator, cfg.tau, cfg.env_id) == (None, "double_dqn", 0.5,
                                                                      "CartPole-v1")


def test_a_run_config_json_reproduces_config_and_seeds(tmp_path):
    cfg = DQNConfig(env_id="Probe2", total_timesteps=1000, buffer_size=300, batch_size=16,
                    learning_starts=50, hidden_sizes=(8, 4), max_grad_norm=10.0)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"config": cfg.to_dict(), "seeds": 5, "seed": 9,
                                "jaxdqn_version": "0.1.0"}))
    got, settings = resolve_config("seed", str(path), [], None)
    assert got == cfg and settings == {"seeds": 5, "seed": 9}


@pytest.mark.parametrize("argv, message", [
    ([], "choose a command: train, evaluate, sweep, suite or config"),
    (["fly"], "argument COMMAND: invalid choice: 'fly'"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--seeds", "two"], "argument --seeds: invalid int value: 'two'"),
    (["train", "--env", "CartPol-v1"],
     "DQNConfig.env_id='CartPol-v1' is invalid: unknown env; known ids: CartPole-v1, Acrobot-v1,"),
    (["train", "--set", "learning_rat=1e-3"],
     "unknown DQNConfig field 'learning_rat' (--set); did you mean 'learning_rate'?"),
    (["train", "--set", "batch_size=12.5"],
     "--set: batch_size='12.5' is invalid: expected an integer"),
    (["train", "--set", "anneal_lr=maybe"], "anneal_lr='maybe' is invalid: expected true or false"),
    (["train", "--set", "max_grad_norm=big"], "expected a number or none"),
    (["train", "--set", "hidden_sizes=64,abc"], "expected a comma-separated list of integers"),
    (["train", "--set", "gamma=1.5"], "DQNConfig.gamma=1.5 is invalid: must be in [0, 1]"),
    (["train", "--set", "batch_size=0"], "DQNConfig.batch_size=0 is invalid: must be > 0"),
    (["train", "--set", "gamma"], "--set 'gamma' is invalid: expected FIELD=VALUE"),
    (["train", "--preset", "fast"], "preset 'fast' is unknown; known presets: reference"),
    (["train", "--seeds", "0"], "--seeds=0 is invalid: must be >= 1"),
    (["train", "--seed", "-1"], "--seed=-1 is invalid"),
    (["train", "--episodes", "0"], "--episodes=0 is invalid: must be >= 1"),
    (["train", "--config", "/nonexistent/c.toml"], "cannot read config file '/nonexistent/c.toml'"),
    (["train", "--resume", "/nonexistent/run"], "no config.json there, so it is not a run folder"),
    (["train", "--resume", "/x", "--set", "gamma=0.5"],
     "--resume takes every setting from the run folder; drop --set"),
    (["evaluate", "/nonexistent/run"], "'/nonexistent/run' does not exist"),
    (["evaluate", "/tmp", "--episodes", "0"], "--episodes=0 is invalid"),
    (["train", "--set", "total_timesteps=1000"],
     "total_timesteps=1000 takes no gradient step: learning starts after learning_starts=10000 "
     "env steps (whole iterations of 10); set total_timesteps >= 10000 or learning_starts <= 1000"),
    (["sweep", *TINY_SETS, "--grid", "learning_starts=64,800"],
     "grid combination learning_starts=800: total_timesteps=400 takes no gradient step"),
    (["sweep"], "sweep needs at least one --grid FIELD=V1,V2,..."),
    (["sweep", "--grid", "gama=0.9,0.99"], "unknown DQNConfig field 'gama' (--grid); did you mean"),
    (["sweep", "--grid", "batch_size=32,big"], "--grid: batch_size='big' is invalid"),
    (["sweep", "--grid", "gamma=0.9", "--grid", "gamma=0.99"], "--grid gamma is given twice"),
    (["sweep", "--grid", "gamma=0.9,,0.99"], "has an empty value"),
    (["sweep", *TINY_SETS, "--grid", "gamma=0.9,2.0"],
     "grid combination gamma=2.0: DQNConfig.gamma=2.0 is invalid: must be in [0, 1]"),
])
def test_every_user_error_is_one_line_with_exit_code_2_before_compiling(argv, message, capsys,
                                                                         no_compile):
    code, out, err = _cli(argv, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("jaxdqn: error: "), err
    assert message in err
    assert out == ""


def test_config_file_errors_name_the_file_and_the_problem(tmp_path, capsys, no_compile):
    cases = {
        "typo.toml": ('gama = 0.9\n', "unknown DQNConfig field 'gama' (in "),
        "broken.toml": ('gamma = = 0.9\n', "is not valid TOML"),
        "broken.json": ('{"gamma": 0.9,', "is not valid JSON"),
        "list.json": ('[1, 2]', "must hold a table of settings (field = value), not a list"),
        "type.toml": ('gamma = "high"\n',
                      "type.toml: DQNConfig.gamma='high' is invalid: must be a"),
        "range.json": ('{"gamma": 2.0}', "range.json: DQNConfig.gamma=2.0 is invalid: must be in"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        code, _, err = _cli(["train", "--config", str(tmp_path / name)], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, (name, err)
    assert "did you mean 'gamma'?" in _cli(["train", "--config", str(tmp_path / "typo.toml")],
                                            capsys)[2]


def test_an_output_folder_holding_a_run_is_refused_unless_overwrite(tmp_path, capsys, no_compile):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "checkpoint.msgpack").write_text("old")
    (out / "notes.txt").write_text("mine")
    (out / "tensorboard" / "seed_0").mkdir(parents=True)
    (out / "tensorboard" / "seed_0" / "events.out").write_text("old")
    code, _, err = _cli(["train", *TINY_SETS, "--out", str(out)], capsys)
    assert code == 2 and "already holds a run (config.json, checkpoint.msgpack); pass " \
        "--overwrite" in err
    assert (out / "checkpoint.msgpack").read_text() == "old"
    code, _, err = _cli(["train", *TINY_SETS, "--out", str(out), "--overwrite"], capsys)
    assert "reached compilation" in err  # got past the check
    assert not (out / "checkpoint.msgpack").exists()  # the old run's files are gone ...
    assert not (out / "tensorboard").exists()  # ... with its logs ...
    assert (out / "notes.txt").read_text() == "mine"  # ... and nothing else
    assert json.loads((out / "config.json").read_text())["config"]["total_timesteps"] == 400
    (tmp_path / "file").write_text("")
    code, _, err = _cli(["train", *TINY_SETS, "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and "is a file, not a folder" in err


def test_unreadable_mismatched_or_unsuitable_checkpoints_are_one_line_errors(tmp_path, capsys,
                                                                           no_compile):
    cfg = DQNConfig(env_id="Probe1", total_timesteps=400, buffer_size=200, batch_size=32,
                    learning_starts=64, hidden_sizes=(16,))
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / run_folder.FINAL_CHECKPOINT, _random_params(cfg, 2), cfg, {"seed": 0})
    other = cfg.replace(hidden_sizes=(32,))
    (run / run_folder.CONFIG).write_text(json.dumps({"config": other.to_dict(), "seeds": 2}))
    empty = tmp_path / "empty"
    empty.mkdir()
    garbage = tmp_path / "garbage.msgpack"
    garbage.write_bytes(b"\x00not a checkpoint")
    cases = [
        ([str(run)], "holds a 1 -> 16 -> 1 network (Probe1, hidden_sizes=[16]) but the config "
                     "asks for 1 -> 32 -> 1"),
        ([str(empty)], "holds no checkpoint.msgpack"),
        ([str(garbage)], "is not a jaxdqn checkpoint (unreadable or truncated)"),
        ([str(run / run_folder.FINAL_CHECKPOINT), "--gymnasium"],
         "--gymnasium cross-checks CartPole-v1, Acrobot-v1, MountainCar-v0 only; this run is on "
         "'Probe1'"),
    ]
    for argv, message in cases:
        code, _out, err = _cli(["evaluate", *argv], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, (argv, err)


def test_help_works_for_every_command(capsys):
    for argv in ([], ["train"], ["evaluate"], ["sweep"], ["config"]):
        code, out, _ = _cli([*argv, "--help"], capsys)
        assert code == 0 and out.startswith("usage: jaxdqn")
    assert "--gymnasium" in _cli(["evaluate", "--help"], capsys)[1]
    assert "learning_rate, gamma" in _cli(["sweep", "--help"], capsys)[1]


# --- subprocesses: the real command -------------------------------------------------------------

RUN_SETS = ["--set", "total_timesteps=30000", "--set", "buffer_size=2000",
            "--set", "learning_starts=500", "--set", "batch_size=32",
            "--set", "hidden_sizes=32,32", "--set", "target_update_freq=500"]


# ``jaxdqn`` in a process of its own that sends itself SIGTERM (what kill, timeout and job
# schedulers send; it acts as Ctrl-C does) as its first progress segment comes back: a real signal
# at a known point, not one timed on a printed line. The sweep tests stop theirs with SIGINT.
SIGTERM_AFTER_FIRST_SEGMENT = """
import os, signal, sys
from jaxdqn.runtime import fast_cpu_compile, use_all_cpu_cores
fast_cpu_compile()
use_all_cpu_cores()
import jaxdqn.runs
from jaxdqn.cli import interrupts, main
real = jaxdqn.runs.run_in_segments
def run_in_segments(*args, **kwargs):
    for i, segment in enumerate(real(*args, **kwargs)):
        if i == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        yield segment
jaxdqn.runs.run_in_segments = run_in_segments
interrupts.install()
sys.exit(main(sys.argv[1:]))
"""


def _jaxdqn(*args):
    return [sys.executable, "-m", "jaxdqn", *args]


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The real command in subprocesses, two at a time where they do not depend on each other:

    A: 2 seeds of a small CartPole run as one compiled call (no progress);
    B: the same command in progress segments, stopped by SIGTERM as its first one ends;
    E: a command with an error;
    then ``evaluate A --gymnasium`` alongside ``train --resume B``.
    """
    root = tmp_path_factory.mktemp("cli")
    a, b = root / "A", root / "B"
    common = ["train", "--seeds", "2", "--episodes", "20", *RUN_SETS]
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc_a = subprocess.Popen(_jaxdqn(*common, "--out", str(a), "--no-progress"), **pipes)
    proc_b = subprocess.Popen([sys.executable, "-c", SIGTERM_AFTER_FIRST_SEGMENT, *common,
                               "--out", str(b)], **pipes)
    err_b = proc_b.communicate(timeout=300)[1]
    interrupted = {"returncode": proc_b.returncode, "stderr": err_b,
                   "summary": json.loads((b / run_folder.SUMMARY).read_text()),
                   "resume_state": (b / run_folder.RESUME_STATE).exists(),
                   "files": {p.name for p in b.iterdir()}}
    with np.load(b / run_folder.METRICS_NPZ) as m:
        interrupted["metrics_shape"] = m["env_steps"].shape
    error = subprocess.run(_jaxdqn("train", "--env", "Nope-v0"), capture_output=True, text=True,
                           timeout=300)
    out_a, err_a = proc_a.communicate(timeout=600)
    assert proc_a.returncode == 0, err_a

    eval_json = root / "eval.json"
    proc_e = subprocess.Popen(_jaxdqn("evaluate", str(a), "--episodes", "20", "--gymnasium",
                                      "--json", str(eval_json)), **pipes)
    resumed = subprocess.run(_jaxdqn("train", "--resume", str(b), "--no-progress"),
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "JAX_LOG_COMPILES": "1"})
    out_e, err_e = proc_e.communicate(timeout=600)
    assert proc_e.returncode == 0, err_e
    return {"root": root, "a": a, "b": b, "train_stdout": out_a, "error": error,
            "interrupted": interrupted, "resumed": resumed, "evaluate_stdout": out_e,
            "evaluation": json.loads(eval_json.read_text())}


def test_error_in_a_real_process_is_one_line_on_stderr_and_exit_code_2(runs):
    proc = runs["error"]
    assert proc.returncode == 2
    assert proc.stderr.startswith("jaxdqn: error: DQNConfig.env_id='Nope-v0' is invalid")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.device_count
def test_train_writes_a_complete_run_folder_and_prints_the_evaluation_table(runs):
    a = runs["a"]
    assert {p.name for p in a.iterdir()} == {"config.json", "metrics.csv", "metrics.npz",
                                             "summary.json", "learning_curve.png",
                                             "checkpoint.msgpack"}
    config = json.loads((a / run_folder.CONFIG).read_text())
    assert (config["seeds"], config["seed"], config["jaxdqn_version"]) == (2, 0, "0.1.0")
    assert config["config"]["total_timesteps"] == 30000
    assert config["config"]["hidden_sizes"] == [32, 32] and "jax_version" in config
    summary = json.loads((a / run_folder.SUMMARY).read_text())
    assert summary["complete"] and not summary["interrupted"]
    assert summary["env_steps_done"] == 30000 and summary["rows_done"] == 100
    evaluation = summary["evaluation"]
    assert evaluation["num_episodes"] == 20 and evaluation["solve_threshold"] == 475.0
    assert [r["seed_index"] for r in evaluation["per_seed"]] == [0, 1]
    lines = runs["train_stdout"].splitlines()
    assert lines[0] == "greedy evaluation (solved: mean > 475)"
    assert lines[1].split()[:3] == ["seed", "mean", "return"]
    for i, row in enumerate(evaluation["per_seed"]):
        cells = lines[3 + i].split()
        assert cells[0] == str(i) and float(cells[1]) == pytest.approx(row["mean"], abs=0.006)
        assert cells[-1] == ("yes" if row["solved"] else "no")
    assert lines[-1] == f"run folder: {a}"
    with np.load(a / run_folder.METRICS_NPZ) as m:
        assert m["episode_return"].shape == (2, 100) and list(m["seed_index"]) == [0, 1]
        np.testing.assert_array_equal(m["env_steps"][0], np.arange(1, 101) * 300)
        csv = (a / run_folder.METRICS_CSV).read_text().splitlines()
        assert csv[0] == ("seed_index,row,env_steps,updates,episodes,episode_return,"
                          "episode_length,td_loss,q_taken,q_max,epsilon,eval_return,eval_truncated,"
                          "nonfinite")
        assert len(csv) == 1 + 200
        last = csv[-1].split(",")
        assert last[:3] == ["1", "99", "30000"]
        assert float(last[5]) == pytest.approx(float(m["episode_return"][1, 99]), rel=1e-6)
    width, height = _png_size(a / run_folder.LEARNING_CURVE)
    assert width > 800 and height > 600
    ckpt = load_checkpoint(a / run_folder.FINAL_CHECKPOINT)
    assert ckpt.num_seeds == 2 and ckpt.config.to_dict() == config["config"]


@pytest.mark.device_count
def test_evaluate_reproduces_the_training_evaluation_and_cross_checks_in_gymnasium(runs):
    result = runs["evaluation"]
    summary = json.loads((runs["a"] / run_folder.SUMMARY).read_text())
    # Same keys as at the end of training (the run's base seed): the same returns exactly.
    assert result["jax"]["per_seed"] == summary["evaluation"]["per_seed"]
    gym = result["gymnasium"]["per_seed"]
    assert len(gym) == 2 and all(1 <= r["min"] <= r["max"] <= 500 for r in gym)
    assert "gymnasium mean" in runs["evaluate_stdout"]
    assert "gymnax mean" in runs["evaluate_stdout"]


@pytest.mark.device_count
def test_sigterm_stops_cleanly_keeps_what_was_done_and_exits_143(runs):
    info = runs["interrupted"]
    assert info["returncode"] == 143, info["stderr"]
    assert "jaxdqn: SIGTERM: stopping at the next safe point" in info["stderr"]
    assert "Traceback" not in info["stderr"]
    assert f"continue it with: jaxdqn train --resume {runs['b']}" in info["stderr"]
    summary = info["summary"]
    assert summary["interrupted"] and not summary["complete"] and "evaluation" not in summary
    assert summary["rows_done"] == 5  # stopped as the first of 20 progress segments came back
    assert info["metrics_shape"] == (2, summary["rows_done"])
    assert info["resume_state"]
    assert {"checkpoint.msgpack", "learning_curve.png", "metrics.csv"} <= info["files"]


@pytest.mark.device_count
def test_resuming_an_interrupted_run_gives_the_uninterrupted_run_bit_for_bit(runs):
    """B ran in progress segments, was stopped, saved to disk and resumed; A ran in one call."""
    a, b = runs["a"], runs["b"]
    assert runs["resumed"].returncode == 0, runs["resumed"].stderr
    assert not (b / run_folder.RESUME_STATE).exists()
    # The loaded state is placed as init's output is, so the training program compiles once.
    assert runs["resumed"].stderr.count("Compiling jit(run_rows)") == 1, runs["resumed"].stderr
    with np.load(a / run_folder.METRICS_NPZ) as ma, np.load(b / run_folder.METRICS_NPZ) as mb:
        for name in ma.files:
            np.testing.assert_array_equal(mb[name], ma[name], err_msg=name)
    pa, pb = (load_checkpoint(d / run_folder.FINAL_CHECKPOINT) for d in (a, b))
    assert_trees_equal(pa.params, pb.params)
    sa, sb = (json.loads((d / run_folder.SUMMARY).read_text()) for d in (a, b))
    assert sb["complete"] and sb["evaluation"] == sa["evaluation"]
    assert runs["resumed"].stdout == runs["train_stdout"].replace(str(a), str(b))
    assert os.path.getsize(b / run_folder.LEARNING_CURVE) > 10_000


@pytest.mark.device_count
def test_runs_that_do_not_fit_are_refused_before_writing_or_compiling(no_compile, monkeypatch,
                                                                       tmp_path, capsys):
    import jaxdqn.memory

    monkeypatch.setattr(jaxdqn.memory, "free_bytes", lambda devices: (4 * 10**6, "test memory"))
    for argv in (["train", *TINY_SETS, "--seeds", "64", "--out", str(tmp_path / "t")],
                 ["sweep", *TINY_SETS, "--seeds", "64", "--grid", "gamma=0.9,0.99",
                  "--out", str(tmp_path / "s")]):
        code, _out, err = _cli(argv, capsys)
        assert code == 2, argv
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "only 3.8 MiB of test memory is free" in lines[0], err
        assert "runs fit at once" in lines[0] and "seeds_at_once" not in lines[0]
        assert "is free per device" in lines[0] and "seeds" in lines[0].rsplit("fit at once", 1)[1]
    assert not (tmp_path / "t").exists() and not (tmp_path / "s").exists()

