"""``jaxdqn train --tensorboard`` with evaluation during training, then ``jaxdqn evaluate`` on
final and best params and ``--video``: the files written and what they hold."""

import csv
import importlib.util
import json
import sys

import numpy as np
import pytest

import jaxdqn
from jaxdqn import run_folder
from jaxdqn.checkpoint import load_checkpoint
from jaxdqn.cli import main
from jaxdqn.loggers import read_scalars

TINY = ["--set", "total_timesteps=800", "--set", "buffer_size=400", "--set", "learning_starts=64",
        "--set", "batch_size=32", "--set", "log_interval=100", "--set", "eval_interval=200",
        "--set", "eval_episodes=3", "--set", "hidden_sizes=16"]


def _cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    with pytest.MonkeyPatch.context() as mp:
        captured = []
        mp.setattr(sys, "stdout", _Tee(captured))
        code = main(["train", *TINY, "--seeds", "2", "--episodes", "4", "--out", str(out),
                     "--no-progress", "--tensorboard"])
    assert code == 0
    return out, "".join(captured)


def _needs_video_extra():
    for name in ("imageio", "pygame"):
        pytest.importorskip(name)


class _Tee:
    def __init__(self, sink):
        self.sink = sink

    def write(self, text):
        self.sink.append(text)

    def flush(self):
        pass


def test_train_keeps_best_params_and_writes_eval_columns_and_event_files(run):
    out, stdout = run
    final, best = load_checkpoint(out / run_folder.FINAL_CHECKPOINT), load_checkpoint(
        out / run_folder.BEST_CHECKPOINT)
    assert final.metadata["which"] == "final" and best.metadata["which"] == "best"
    with np.load(out / run_folder.METRICS_NPZ) as m:
        evals = m["eval_return"]
        assert np.isnan(evals[:, 0::2]).all() and np.isfinite(evals[:, 1::2]).all()
        # the kept params' score is each seed's best evaluation, the latest among ties
        np.testing.assert_array_equal(best.metadata["best_eval_return"], np.nanmax(evals, axis=1))
        for s in range(2):
            latest = np.flatnonzero(evals[s] == np.nanmax(evals[s]))[-1]
            assert best.metadata["best_env_steps"][s] == m["env_steps"][s, latest]
    with open(out / run_folder.METRICS_CSV) as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["eval_return"] == repr(float(evals[0, 1])) and rows[0]["eval_return"] == "nan"
    summary = json.loads((out / run_folder.SUMMARY).read_text())
    assert summary["best_during_training"]["eval_return"] == np.nanmax(evals, axis=1).tolist()
    assert len(summary["evaluation_best"]["per_seed"]) == 2
    assert "final vs best params" in stdout
    pytest.importorskip("tensorboardX")  # an optional extra: without it, no event files
    for s in range(2):
        scalars = read_scalars(out / run_folder.TENSORBOARD_DIR / f"seed_{s}")
        with np.load(out / run_folder.METRICS_NPZ) as m:
            assert scalars["eval/return"] == [(int(m["env_steps"][s, r]), float(evals[s, r]))
                                              for r in range(1, 8, 2)]
            assert [v for _, v in scalars["train/epsilon"]] == [float(x) for x in m["epsilon"][s]]
        assert {"train/td_loss", "train/q_max", "perf/env_steps_per_second"} <= set(scalars)


def test_evaluate_scores_final_and_best_on_the_same_fresh_episodes(run, capsys, tmp_path):
    out, _ = run
    code, stdout, _ = _cli(["evaluate", str(out), "--episodes", "4",
                            "--json", str(tmp_path / "e.json")], capsys)
    assert code == 0 and "final vs best params" in stdout
    result = json.loads((tmp_path / "e.json").read_text())
    summary = json.loads((out / run_folder.SUMMARY).read_text())
    assert result["jax"]["per_seed"] == summary["evaluation"]["per_seed"]
    assert result["jax_best"]["per_seed"] == summary["evaluation_best"]["per_seed"]
    assert result["jax_best"]["selection_score"] == summary["best_during_training"]["eval_return"]
    # jaxdqn.load gives the same best params
    agent = jaxdqn.load(out, seed_index=1, which="best")
    best = load_checkpoint(out / run_folder.BEST_CHECKPOINT)
    np.testing.assert_array_equal(agent.params["params"]["Dense_0"]["kernel"],
                                  best.params["params"]["Dense_0"]["kernel"][1])


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_evaluate_video_writes_one_episode_of_the_chosen_params(run, capsys, tmp_path):
    _needs_video_extra()
    out, _ = run
    code, stdout, _ = _cli(["evaluate", str(out), "--episodes", "1", "--video",
                            str(tmp_path / "ep.gif"), "--video-params", "best",
                            "--video-seed-index", "1"], capsys)
    assert code == 0
    line = next(x for x in stdout.splitlines() if x.startswith("video: "))
    assert "best params of seed 1" in line and (tmp_path / "ep.gif").stat().st_size > 0


@pytest.mark.parametrize("extra, message", [
    (["--video", "x.avi"], "must end in .mp4 or .gif"),
    (["--video", "x.gif", "--video-seed-index", "2"], "--video-seed-index=2 is invalid"),
])
def test_bad_video_requests_are_one_line(run, capsys, extra, message):
    _needs_video_extra()  # without it, the missing packages are the one line
    out, _ = run
    code, _, err = _cli(["evaluate", str(out), *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_tensorboardx_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """A logger asked for whose package is missing: one line and exit 2 before anything is
    compiled or written (not a note after compiling and a run without its logs)."""
    args = ["train", *TINY, "--set", "eval_interval=none", "--episodes", "1", "--no-progress"]
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "tensorboardX", None)
        code, out, err = _cli([*args, "--out", str(tmp_path / "r"), "--tensorboard"], capsys)
    assert code == 2 and out == ""
    assert err == ("jaxdqn: error: --tensorboard needs the tensorboardX package: pip install "
                   '"jaxdqn[tensorboard]", or drop --tensorboard to run without it\n')
    assert not (tmp_path / "r").exists()
    code, _, _ = _cli([*args, "--out", str(tmp_path / "r")], capsys)
    assert code == 0 and not (tmp_path / "r" / run_folder.BEST_CHECKPOINT).exists()
    code, _, err = _cli(["evaluate", str(tmp_path / "r"), "--episodes", "1", "--video", "v.gif",
                         "--video-params", "best"], capsys)
    # without the video extra that is refused first (one line, exit 2 as well)
    have_pygame = importlib.util.find_spec("pygame") is not None
    assert code == 2 and ("kept no best params" if have_pygame else "--video needs pygame") in err
