"""``jaxdqn suite``: the spec (files and flags, every mistake one line before compiling), a tiny
suite stopped by Ctrl-C and resumed, the refusal of a changed spec, and the report's aggregates
against hand-computed values."""

import contextlib
import importlib.util
import io
import json
import shutil
import sys

import numpy as np
import pytest
from interrupts import interrupt_after

import jaxdqn.runs
from jaxdqn import preset, run_folder
from jaxdqn.cli import build_parser, main
from jaxdqn.cli.suite import flags_spec
from jaxdqn.loggers import read_scalars
from jaxdqn.suite import merge_specs, read_suite_file, spec_from_dict
from jaxdqn.suite_report import (
    Normalisation,
    aggregate,
    baseline_normalisation,
    load_reference,
    markdown_table,
)

needs_rliable = pytest.mark.skipif(importlib.util.find_spec("rliable") is None,
                                   reason="the report's statistics need rliable (the study extra)")

SPEC = """\
seeds = 2
episodes = 4
[set]
total_timesteps = 400
buffer_size = 200
learning_starts = 64
batch_size = 32
log_interval = 40
[games]
"CartPole-v1" = {preset = "reference"}
[variants]
dqn = {}
n3 = {n_step = 3}
"""


def _errors(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.removeprefix("jaxdqn: error: ").rstrip("\n")


@pytest.fixture
def no_compile(monkeypatch):
    """Errors must come before compilation: building a compiled batch fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("reached compilation")

    monkeypatch.setattr(jaxdqn.runs, "make_runs", refuse)


# --- the spec ---------------------------------------------------------------------------------


def test_a_cell_is_its_presets_then_set_then_game_then_variant(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("""\
seeds = 5
[set]
gamma = 0.9
total_timesteps = 200_000
[games]
"Breakout-MinAtar" = {gamma = 0.95}
"CartPole-v1" = {preset = "reference", learning_rate = 1e-3}
[variants]
dqn = {}
late = {gamma = 0.97, hidden_sizes = [64, 64]}
mine = {preset = {"Breakout-MinAtar" = "minatar", "CartPole-v1" = "cartpole"}}
""")
    from jaxdqn.suite import load_spec_file

    spec = spec_from_dict(load_spec_file(path))
    cells = {(c.game, c.variant): c.config for c in spec.cells()}
    assert list(cells)[:3] == [("Breakout-MinAtar", "dqn"), ("Breakout-MinAtar", "late"),
                               ("Breakout-MinAtar", "mine")]  # game by game
    fast = preset("minatar-fast")
    assert cells[("Breakout-MinAtar", "dqn")] == fast.replace(gamma=0.95,
                                                              total_timesteps=200_000)
    assert cells[("Breakout-MinAtar", "late")] == fast.replace(
        gamma=0.97, total_timesteps=200_000, hidden_sizes=(64, 64))
    assert cells[("Breakout-MinAtar", "mine")] == preset("minatar").replace(
        gamma=0.95, total_timesteps=200_000)
    assert cells[("CartPole-v1", "dqn")] == preset("reference").replace(
        gamma=0.9, total_timesteps=200_000, learning_rate=1e-3)
    assert cells[("CartPole-v1", "mine")] == preset("cartpole").replace(
        gamma=0.9, total_timesteps=200_000, learning_rate=1e-3)
    assert (spec.seeds, spec.seed, spec.episodes) == (5, 0, 100)
    assert spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec  # stored and read


def test_flags_give_the_same_spec_and_add_to_a_file(tmp_path):
    argv = ["suite", "run", "DIR", "--game", "CartPole-v1:preset=reference,gamma=0.95",
            "--variant", "dqn", "--variant", "wide:hidden_sizes=[64,64],learning_rate=1e-3",
            "--set", "total_timesteps=200000", "--seeds", "4"]
    flags = flags_spec(build_parser().parse_args(argv))
    assert flags == {"seeds": 4, "set": {"total_timesteps": 200_000},
                     "games": {"CartPole-v1": {"preset": "reference", "gamma": 0.95}},
                     "variants": {"dqn": {}, "wide": {"hidden_sizes": (64, 64),
                                                      "learning_rate": 1e-3}}}
    file = {"seeds": 2, "set": {"gamma": 0.9}, "games": ["Breakout-MinAtar"],
            "variants": {"n3": {"n_step": 3}}}
    merged = merge_specs(file, flags)
    assert merged["seeds"] == 4 and merged["set"] == {"gamma": 0.9, "total_timesteps": 200_000}
    assert list(merged["games"]) == ["Breakout-MinAtar", "CartPole-v1"]
    assert list(merged["variants"]) == ["n3", "dqn", "wide"]
    assert len(spec_from_dict(merged).cells()) == 6


@pytest.mark.parametrize("spec, flags, message", [
    ("", ["--game", "CartPol-v1", "--variant", "dqn"],
     "the flags: unknown game 'CartPol-v1'; did you mean 'CartPole-v1'?"),
    ("", ["--game", "CartPole-v1", "--variant", "n3:n_stp=3"],
     "unknown DQNConfig field 'n_stp' (--variant n3); did you mean 'n_step'?"),
    ("", ["--game", "CartPole-v1", "--variant", "n3:n_step=three"],
     "--variant n3: n_step='three' is invalid: expected an integer"),
    ("", ["--game", "CartPole-v1", "--variant", "n0:n_step=0"],
     "variant 'n0' on CartPole-v1: DQNConfig.n_step=0 is invalid: must be > 0"),
    ("", ["--game", "CartPole-v1", "--variant", "dqn", "--variant", "DQN:n_step=3"],
     "--variant: variant 'DQN' is given twice ('dqn'); variant names must differ (also in more "
     "than case: each names a folder)"),
    ("", ["--game", "CartPole-v1", "--variant", "a/b"],
     "--variant: variant name 'a/b' is invalid: use letters, digits and _.+- (it names the "
     "variant's folder), starting with a letter or digit"),
    ("", ["--game", "CartPole-v1", "--variant", "dqn", "--seeds", "0"],
     "the flags: seeds=0 is invalid: must be an int >= 1"),
    ("", ["--variant", "dqn"],
     'the flags: no game given: give games (env ids), e.g. games = ["Breakout-MinAtar"] or '
     "--game Breakout-MinAtar"),
    ("", ["--game", "CartPole-v1", "--variant", "x:preset=nope"],
     "variant 'x' on CartPole-v1: preset 'nope' is unknown; known presets: reference, "),
    ('games = ["CartPole-v1"]\n[variants]\ndqn = {n_step = "3"}\n', [],
     "variant 'dqn' on CartPole-v1: DQNConfig.n_step='3' is invalid: must be an int"),
    ('games = ["CartPole-v1"]\nseeds = 0\n[variants]\ndqn = {}\n', [],
     "SPEC: seeds=0 is invalid: must be an int >= 1"),
    ('games = ["CartPole-v1"]\n[variants]\ndqn = {}\n', ["--variant", "dqn:n_step=3"],
     "--variant dqn is in the spec file too ('dqn'); define each variant once"),
    ('games = ["CartPole-v1"]\ngame = 1\n[variants]\ndqn = {}\n', [],
     "SPEC: unknown key 'game'; a suite spec has seeds, seed, episodes, set, games, variants"),
    ('games = ["CartPole-v1"]\n[variants]\ndqn = {env_id = "Acrobot-v1"}\n', [],
     "SPEC: variant dqn sets env_id; the games are the env ids"),
])
def test_every_spec_mistake_is_one_line_before_compiling(tmp_path, capsys, no_compile, spec,
                                                         flags, message):
    paths = [str(tmp_path / "out")]
    if spec:
        (tmp_path / "s.toml").write_text(spec)
        paths.insert(0, str(tmp_path / "s.toml"))
    got = _errors(["suite", "run", *paths, *flags], capsys)
    assert got.startswith(message.replace("SPEC", str(tmp_path / "s.toml"))), got
    assert not (tmp_path / "out").exists()


def test_a_dry_run_shows_each_cell_and_writes_nothing(tmp_path, capsys, no_compile):
    argv = ["suite", "run", str(tmp_path / "out"), "--game", "Breakout-MinAtar", "--game",
            "CartPole-v1:preset=reference", "--variant", "dqn", "--variant",
            "ddqn:estimator=double_dqn,n_step=3", "--seeds", "2", "--dry-run"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "4 cells x 2 seeds (seed 0, 100 evaluation episodes)"
    assert [line.split()[:3] for line in lines[3:]] == [
        ["Breakout-MinAtar/dqn", "new", "DQN"], ["Breakout-MinAtar/ddqn", "new", "Double"],
        ["CartPole-v1/dqn", "new", "DQN"], ["CartPole-v1/ddqn", "new", "Double"]]
    assert lines[3].endswith("1000000    preset minatar-fast: the same")
    assert lines[4].endswith("vs dqn: estimator=double_dqn, n_step=3")
    assert lines[5].endswith("500000     preset reference: the same")
    assert not (tmp_path / "out").exists()


def test_run_and_report_refuse_what_is_not_a_suite(tmp_path, capsys, no_compile):
    assert _errors(["suite", "run", str(tmp_path)], capsys) == (
        f"{str(tmp_path)!r} holds no suite (suite.json): give a spec file or --game and "
        "--variant flags")
    assert _errors(["suite", "report", str(tmp_path)], capsys) == (
        f"{str(tmp_path)!r} holds no suite.json: not a suite folder")
    (tmp_path / "config.json").write_text("{}")
    assert _errors(["suite", "run", str(tmp_path), "--game", "Probe1", "--variant", "a"],
                   capsys) == (f"{str(tmp_path)!r} already holds a run or a sweep (config.json); "
                               "choose another suite folder")


# --- a tiny suite, stopped and resumed --------------------------------------------------------


def _call(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """2 variants x CartPole-v1 x 2 seeds, 10 segments a cell: stopped in cell 2's 4th segment;
    then cell 1's evaluation removed (as a stop between its training and its evaluation leaves
    it) and the suite resumed."""
    root = tmp_path_factory.mktemp("suite")
    spec, out = root / "spec.toml", root / "S"
    spec.write_text(SPEC)
    calls = {}
    with pytest.MonkeyPatch.context() as mp:
        interrupt_after(mp, 14)
        calls["stopped"] = _call(["suite", "run", str(spec), str(out)])
    dqn = out / "CartPole-v1" / "dqn"
    mtime = (dqn / run_folder.FINAL_CHECKPOINT).stat().st_mtime_ns
    summary = json.loads((dqn / run_folder.SUMMARY).read_text())
    (dqn / run_folder.SUMMARY).write_text(json.dumps(
        {k: v for k, v in summary.items() if k != "evaluation"}))
    logging = ["--tensorboard"] if importlib.util.find_spec("tensorboardX") else []
    calls["resumed"] = _call(["suite", "run", str(out), *logging])
    return {"out": out, "spec": spec, "calls": calls, "mtime": mtime, "summary": summary}


def test_a_stopped_suite_resumes_where_it_stopped(suite):
    out = suite["out"]
    code, err = suite["calls"]["stopped"]
    assert code == 130, err
    assert err.splitlines()[0] == (f"jaxdqn: suite: 1 game x 2 variants x 2 seeds = 4 runs in 2 "
                                   f"compiled programs -> {out}")
    assert err.splitlines()[-1] == ("jaxdqn: interrupted: 1 of 2 cells finished, 1 part-way; "
                                    f"resume the suite with: jaxdqn suite run {out}")
    n3 = out / "CartPole-v1" / "n3"
    assert f"jaxdqn: partial run saved in {n3}; continue it with: jaxdqn suite run {out}" in err
    code, err = suite["calls"]["resumed"]
    assert code == 0, err
    lines = err.splitlines()
    assert lines[0] == ("jaxdqn: resuming suite: 1 game x 2 variants x 2 seeds = 4 runs in 2 "
                        f"compiled programs; 0 of 2 cells done, 2 part-way -> {out}")
    assert lines[1] == "jaxdqn: cell 1/2: CartPole-v1/dqn (evaluating)"
    assert "jaxdqn: cell 2/2: CartPole-v1/n3 (resuming)" in lines
    assert any(line.startswith("jaxdqn: resuming 2 seeds of DQN with n-step 3 on CartPole-v1, 400 "
                               "env steps each") for line in lines)
    # Cell 1 was evaluated, not trained again; cell 2 is a complete run folder.
    dqn = out / "CartPole-v1" / "dqn"
    assert (dqn / run_folder.FINAL_CHECKPOINT).stat().st_mtime_ns == suite["mtime"]
    assert not (n3 / run_folder.RESUME_STATE).exists()
    summary = json.loads((n3 / run_folder.SUMMARY).read_text())
    assert summary["complete"] and summary["rows_done"] == 10
    assert len(summary["evaluation"]["per_seed"]) == 2
    with np.load(n3 / run_folder.METRICS_NPZ) as m:
        np.testing.assert_array_equal(m["env_steps"][1], np.arange(40, 401, 40))
    config = json.loads((n3 / run_folder.CONFIG).read_text())
    assert config["config"]["n_step"] == 3 and (config["seeds"], config["seed"]) == (2, 0)
    spec, cells = read_suite_file(out)
    assert spec.seeds == 2 and spec.episodes == 4
    assert [c.label for c in cells] == ["CartPole-v1/dqn", "CartPole-v1/n3"]
    assert cells[1].config == preset("reference").replace(
        total_timesteps=400, buffer_size=200, learning_starts=64, batch_size=32,
        log_interval=40, n_step=3)


def test_a_resumed_cell_logs_its_remaining_segments_to_tensorboard_in_its_folder(suite):
    pytest.importorskip("tensorboardX")  # an optional extra: without it, no event files
    n3 = suite["out"] / "CartPole-v1" / "n3"
    with np.load(n3 / run_folder.METRICS_NPZ) as m:
        steps, epsilon = m["env_steps"], m["epsilon"]
    for s in range(2):
        scalars = read_scalars(n3 / run_folder.TENSORBOARD_DIR / f"seed_{s}")
        # the stop saved 4 of its 10 rows: the 6 trained after the resume are logged
        assert [step for step, _ in scalars["train/epsilon"]] == [int(x) for x in steps[s, 4:]]
        assert [v for _, v in scalars["train/epsilon"]] == [float(x) for x in epsilon[s, 4:]]
    # cell 1 was only evaluated after the resume: nothing to log
    assert not (suite["out"] / "CartPole-v1" / "dqn" / run_folder.TENSORBOARD_DIR).exists()


def test_a_cell_stopped_before_its_evaluation_is_evaluated_as_train_did(suite):
    again = json.loads((suite["out"] / "CartPole-v1" / "dqn" / run_folder.SUMMARY).read_text())
    assert again["evaluation"] == suite["summary"]["evaluation"]
    code, err = _call(["suite", "run", str(suite["out"])])  # nothing left to do
    assert code == 0 and err.splitlines()[0].endswith(" 2 of 2 cells done -> " + str(
        suite["out"])), err


def test_a_different_spec_for_the_folder_is_refused(suite, tmp_path, capsys, no_compile):
    out = suite["out"]
    changed = tmp_path / "changed.toml"
    changed.write_text(SPEC.replace("n_step = 3", "n_step = 5"))
    assert _errors(["suite", "run", str(changed), str(out)], capsys) == (
        f"{str(out)!r} holds a suite of another spec (variant 'n3': {{'n_step': 3}} (stored) vs "
        f"{{'n_step': 5}}); resume it with 'jaxdqn suite run {out}' or choose another folder")
    assert _errors(["suite", "run", str(suite["spec"]), str(out), "--seeds", "3"], capsys) == (
        f"{str(out)!r} holds a suite of another spec (seeds: 2 (stored) vs 3); resume it with "
        f"'jaxdqn suite run {out}' or choose another folder")
    assert _errors(["suite", "run", str(out), "--seeds", "3", "--set", "gamma=0.9"], capsys) == (
        f"{str(out)!r} holds a suite, whose spec cannot change (--seeds, --set given); resume it "
        f"with 'jaxdqn suite run {out}' or choose another folder")


@needs_rliable
def test_the_report_of_the_tiny_suite(suite, capsys):
    out = suite["out"]
    assert main(["suite", "report", str(out), "--reps", "100"]) == 0
    printed = capsys.readouterr().out
    for name in (run_folder.SUITE_REPORT, run_folder.SUITE_REPORT_JSON,
                 run_folder.SUITE_AGGREGATES_PLOT, run_folder.SUITE_PROFILES_PLOT,
                 run_folder.SUITE_CURVES_PLOT):
        assert (out / name).stat().st_size > 0, name
    assert printed.startswith((out / run_folder.SUITE_REPORT).read_text())
    data = json.loads((out / run_folder.SUITE_REPORT_JSON).read_text())
    for variant in ("dqn", "n3"):
        summary = json.loads((out / "CartPole-v1" / variant / run_folder.SUMMARY).read_text())
        scores = [row["mean"] for row in summary["evaluation"]["per_seed"]]
        assert data["variants"][variant]["raw_scores"] == {"CartPole-v1": scores}
    assert data["normalisation"]["high"] == {"CartPole-v1": float(np.mean(
        data["variants"]["dqn"]["raw_scores"]["CartPole-v1"]))}
    assert data["variants"]["dqn"]["mean"]["point"] == pytest.approx(1.0)


@needs_rliable
def test_reports_of_several_suites_put_their_variants_side_by_side(suite, tmp_path, capsys):
    from jaxdqn.suite import write_suite_file

    out, other = suite["out"], tmp_path / "other"
    spec = read_suite_file(out)[0]
    spec_other = spec_from_dict({**spec.to_dict(), "variants": {"n3copy": {"n_step": 3}}})
    (other / "CartPole-v1").mkdir(parents=True)
    shutil.copytree(out / "CartPole-v1" / "n3", other / "CartPole-v1" / "n3copy")
    write_suite_file(other, spec_other, spec_other.cells(), {})
    assert main(["suite", "report", str(out), str(other), str(out), "--variants", "dqn,n3copy",
                 "--reps", "20", "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    data = json.loads((tmp_path / "r" / run_folder.SUITE_REPORT_JSON).read_text())
    assert list(data["variants"]) == ["dqn", "n3copy"]
    n3 = json.loads((out / "CartPole-v1" / "n3" / run_folder.SUMMARY).read_text())
    assert data["variants"]["n3copy"]["raw_scores"]["CartPole-v1"] == [
        row["mean"] for row in n3["evaluation"]["per_seed"]]
    assert not (other / run_folder.SUITE_REPORT).exists()


def test_the_report_refuses_what_the_suite_does_not_hold(suite, capsys):
    """Checked before the report's extra is: the same messages with or without rliable."""
    out = str(suite["out"])
    for argv, message in (
            (["--variants", "dqn,n5"], "variant 'n5' is not in the suite; its variants: dqn, n3"),
            (["--baseline", "n3", "--variants", "dqn"],
             "--baseline n3 is not among --variants dqn"),
            (["--games", "Probe1"], "game 'Probe1' is not in the suite; its games: CartPole-v1")):
        assert _errors(["suite", "report", out, *argv], capsys) == message


def test_the_report_without_rliable_is_one_line(suite, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rliable", None)
    assert _errors(["suite", "report", str(suite["out"])], capsys).startswith(
        'the suite report needs rliable: pip install "jaxdqn[study]"')


# --- the report's numbers ---------------------------------------------------------------------

# Two games, four runs each. Baseline means: A 3, B 20.
RAW = {"dqn": np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 20.0], [6.0, 40.0]]),
       "x": np.array([[3.0, 20.0], [6.0, 40.0], [9.0, 60.0], [12.0, 80.0]])}


@needs_rliable
def test_baseline_normalisation_and_aggregates_by_hand():
    norm = baseline_normalisation(RAW, ["A", "B"], "dqn")
    assert norm.high == {"A": 3.0, "B": 20.0} and norm.low == {"A": 0.0, "B": 0.0}
    scores = norm.apply(RAW, ["A", "B"])
    np.testing.assert_allclose(scores["x"], [[1, 1], [2, 2], [3, 3], [4, 4]])
    agg = aggregate(scores, "dqn", reps=200, seed=3)
    # dqn's 8 runs: 1/3, 2/3, 1, 2 (A) and 1/2, 1/2, 1, 2 (B); x's: 1, 2, 3, 4 twice.
    # median of the games' means: dqn (1 + 1) / 2; x (2.5 + 2.5) / 2.
    # IQM, the middle four of eight: dqn 1/2, 2/3, 1, 1; x 2, 2, 3, 3.
    # optimality gap, 1 - mean(min(s, 1)): dqn 1 - 6/8; x 0.
    np.testing.assert_allclose(agg.point["dqn"], [1.0, (0.5 + 2 / 3 + 1 + 1) / 4, 1.0, 0.25])
    np.testing.assert_allclose(agg.point["x"], [2.5, 2.5, 2.5, 0.0])
    # P(x > dqn) per game, ties half: A 3 beats 1, 2 and ties 3 (2.5), 6 beats 3 ties 1 (3.5),
    # 9 and 12 beat all (4 + 4): 14/16; B the same.
    assert agg.improvement == {"x": pytest.approx(14 / 16)} and "dqn" not in agg.improvement
    # Profiles: the fraction of runs above tau; x's runs are 1, 2, 3, 4 (twice).
    taus = agg.taus
    np.testing.assert_allclose(agg.profile["x"], [np.mean(np.array([1, 2, 3, 4]) > t)
                                                  for t in taus])
    assert taus[0] == 0 and taus[-1] == pytest.approx(4 * 1.02) and len(taus) == 101
    for v in ("dqn", "x"):
        low, high = agg.interval[v]
        assert np.all(low <= agg.point[v] + 1e-12) and np.all(agg.point[v] <= high + 1e-12)
    low, high = agg.improvement_ci["x"]
    assert low <= 14 / 16 <= high


@needs_rliable
def test_the_bootstrap_is_seeded_and_leaves_numpy_as_it_was():
    scores = baseline_normalisation(RAW, ["A", "B"], "dqn").apply(RAW, ["A", "B"])
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = aggregate(scores, "dqn", reps=100, seed=7)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    b = aggregate(scores, "dqn", reps=100, seed=7)
    c = aggregate(scores, "dqn", reps=100, seed=8)
    for v in scores:
        np.testing.assert_array_equal(a.interval[v], b.interval[v])
        np.testing.assert_array_equal(a.profile_ci[v], b.profile_ci[v])
    assert any(not np.array_equal(a.interval[v], c.interval[v]) for v in scores)


@needs_rliable
def test_one_game_gives_the_iqm_across_runs():
    raw = {"dqn": np.array([[1.0], [2.0], [3.0], [10.0]]), "y": np.array([[4.0]] * 4)}
    scores = baseline_normalisation(raw, ["A"], "dqn").apply(raw, ["A"])  # mean 4
    agg = aggregate(scores, "dqn", reps=50, seed=0)
    assert agg.point["dqn"][1] == pytest.approx((2 + 3) / 2 / 4)  # IQM: the middle two runs
    assert agg.point["y"][1] == pytest.approx(1.0)
    assert agg.improvement["y"] == pytest.approx((1 + 1 + 1 + 0) / 4)  # 4 beats 1, 2, 3


@needs_rliable
def test_reference_normalisation_and_the_table(tmp_path):
    path = tmp_path / "ref.json"
    path.write_text(json.dumps({"source": "made up", "A": {"random": 1.0, "reference": 5.0},
                                "B": {"random": 0, "reference": 100}}))
    norm = load_reference(path, ["A", "B"])
    assert norm == Normalisation("reference", {"A": 1.0, "B": 0.0}, {"A": 5.0, "B": 100.0},
                                 "made up")
    np.testing.assert_allclose(norm.apply(RAW, ["A", "B"])["x"],
                               [[0.5, 0.2], [1.25, 0.4], [2.0, 0.6], [2.75, 0.8]])
    with pytest.raises(ValueError, match=r"give no numbers .* for C"):
        load_reference(path, ["A", "C"])
    with pytest.raises(ValueError, match="cannot normalise B by dqn's mean score 0: it must be"):
        baseline_normalisation({"dqn": np.array([[1.0, 0.0]])}, ["A", "B"], "dqn")
    agg = aggregate(norm.apply(RAW, ["A", "B"]), "dqn", reps=50, seed=0)
    table = markdown_table(agg, RAW, ["A", "B"], "dqn").splitlines()
    assert table[0] == ("| variant | median | IQM | mean | optimality gap | P(X > dqn) | A | B |")
    assert table[2].startswith("| dqn | ") and table[2].endswith(
        " | - | 3.00 [1.00, 6.00] | 20.00 [10.00, 40.00] |")
    assert table[3].endswith(" | 7.50 [3.00, 12.00] | 50.00 [20.00, 80.00] |")
