"""``jaxdqn sweep --resume``: a sweep stopped by Ctrl-C (SIGINT, at the command's safe points)
and resumed, twice, ends with exactly the files of the same sweep run without stopping."""

import contextlib
import io
import json

import numpy as np
import pytest
from interrupts import interrupt_after

from jaxdqn import run_folder
from jaxdqn.cli import main

# Two compiled groups (batch_size) x two traced values (gamma) x 2 seeds; 10 segments per group.
# A probe and a small network: the resume machinery is what is tested, and they compile fastest.
SWEEP = ["sweep", "--env", "Probe2", "--set", "hidden_sizes=8",
         "--set", "total_timesteps=400", "--set", "buffer_size=200",
         "--set", "learning_starts=64", "--set", "batch_size=32", "--set", "log_interval=40",
         "--grid", "batch_size=16,32", "--grid", "gamma=0.9,0.99", "--seeds", "2",
         "--episodes", "5", "--no-progress"]
SAME = (run_folder.SWEEP_TABLE, run_folder.SWEEP_RUNS)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """A: the sweep in one call. B: the same sweep stopped at group 1's last segment (before it
    evaluates), resumed and stopped 4 segments into group 2, then resumed to the end."""
    root = tmp_path_factory.mktemp("sweep")
    a, b = root / "A", root / "B"
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        assert main([*SWEEP, "--out", str(a)]) == 0
        for argv, stop in (([*SWEEP, "--out", str(b)], 10),
                           (["sweep", "--resume", str(b), "--no-progress"], 4),
                           (["sweep", "--resume", str(b), "--no-progress"], None)):
            mp.undo()
            if stop is not None:
                interrupt_after(mp, stop)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(argv)
            calls.append((code, {p.name for p in b.iterdir()}, err.getvalue()))
    return {"a": a, "b": b, "calls": calls}


@pytest.mark.device_count
def test_each_ctrl_c_exits_130_and_leaves_a_resumable_folder(sweeps):
    b = sweeps["b"]
    (first, files1, err1), (second, files2, err2), (last, files3, _) = sweeps["calls"]
    assert (first, second, last) == (130, 130, 0), err1 + err2
    assert err1.splitlines()[-2:] == [
        "jaxdqn: interrupted: saved group 1/2 after 400 of 400 env steps per run",
        f"jaxdqn: interrupted with 0 of 2 groups finished; finish the sweep with: jaxdqn sweep "
        f"--resume {b}"]
    assert err2.splitlines()[0] == ("jaxdqn: resuming sweep: 4 combinations x 2 seeds = 8 runs; "
                                    f"0 of 2 groups done and group 1's first 400 env steps -> {b}")
    assert err2.splitlines()[-2:] == [
        "jaxdqn: interrupted: saved group 2/2 after 160 of 400 env steps per run",
        f"jaxdqn: interrupted with 1 of 2 groups finished (their results are in {b}); finish "
        f"the sweep with: jaxdqn sweep --resume {b}"]
    # Stopped in group 1: its state is saved; no group has finished, so no ranking yet.
    assert {"config.json", "resume_state.msgpack"} <= files1 and "sweep.csv" not in files1
    # Stopped in group 2: group 1's results are written and kept for the resume.
    assert {"sweep_resume.npz", "resume_state.msgpack", "sweep.csv", "summary.json"} <= files2
    assert not {"sweep_resume.npz", "resume_state.msgpack"} & files3


@pytest.mark.device_count
def test_a_resumed_sweep_equals_the_uninterrupted_sweep_bit_for_bit(sweeps):
    a, b = sweeps["a"], sweeps["b"]
    for name in SAME:
        assert (b / name).read_text() == (a / name).read_text(), name
    with np.load(a / run_folder.SWEEP_METRICS) as ma, np.load(b / run_folder.SWEEP_METRICS) as mb:
        assert sorted(ma.files) == sorted(mb.files) and len(ma.files) == 12
        for name in ma.files:
            np.testing.assert_array_equal(mb[name], ma[name], err_msg=name)
    sa, sb = (json.loads((d / run_folder.SUMMARY).read_text()) for d in (a, b))
    assert sb["complete"] and sb["groups_done"] == 2
    assert {k: v for k, v in sb.items() if k != "seconds"} == \
        {k: v for k, v in sa.items() if k != "seconds"}
    assert sb["seconds"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--grid", "gamma=0.5,0.9"],
     "--resume takes every setting from the sweep folder; drop --grid"),
    (["--seeds", "3", "--out", "x"],
     "--resume takes every setting from the sweep folder; drop --seeds, --out"),
])
def test_resume_refuses_settings_given_again(sweeps, capsys, argv, message):
    assert main(["sweep", "--resume", str(sweeps["b"]), *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"jaxdqn: error: {message}\n"


def test_resume_refuses_what_is_not_an_unfinished_sweep(sweeps, tmp_path, capsys):
    b = sweeps["b"]
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {}, "seeds": 1, "seed": 0}))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{")
    for folder, message in (
            (b, f"--resume {str(b)!r}: the sweep is already complete"),
            (tmp_path / "none", f"--resume {str(tmp_path / 'none')!r}: no config.json there, "
                                "so it is not a sweep folder"),
            (run, f"--resume {str(run)!r} is a train run's folder, not a sweep's; continue it "
                  f"with: jaxdqn train --resume {run}"),
            (tmp_path / "bad", f"--resume {str(tmp_path / 'bad')!r}: cannot read its "
                               "config.json: Expecting property name")):
        assert main(["sweep", "--resume", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"jaxdqn: error: {message}") and err.count("\n") == 1, err
    assert main(["train", "--resume", str(b)]) == 2
    assert capsys.readouterr().err == (f"jaxdqn: error: --resume {str(b)!r} is a sweep's "
                                       f"folder, not a train run's; finish it with: jaxdqn "
                                       f"sweep --resume {b}\n")
