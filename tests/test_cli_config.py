"""Descriptions live once: ``jaxdqn config``, the presets in ``--help`` and the field table of
docs/cli.md all come from config.py."""

import dataclasses
import json
import pathlib

import pytest

from jaxdqn import DQNConfig, run_folder
from jaxdqn.cli import main
from jaxdqn.cli.config import markdown_field_table
from jaxdqn.config import field_allowed, field_descriptions, field_types, preset_descriptions

DOC = pathlib.Path(__file__).parent.parent / "docs" / "cli.md"


def test_every_field_and_preset_is_described():
    names = [f.name for f in dataclasses.fields(DQNConfig)]
    for table in (field_descriptions(), field_allowed(), field_types()):
        assert list(table) == names and all(table.values())
    assert all(preset_descriptions().values())
    assert field_types()["learning_starts"] == "int | None"
    assert field_types()["hidden_sizes"] == "tuple[int, ...]"


def test_validation_messages_quote_the_allowed_text():
    for name, value in (("gamma", 1.5), ("tau", 0.0), ("max_grad_norm", -1.0), ("loss", "l1")):
        with pytest.raises(ValueError) as err:
            DQNConfig(**{name: value})
        assert str(err.value).endswith(f"is invalid: must be {field_allowed()[name]}")


def test_the_doc_field_table_is_current():
    doc = DOC.read_text()
    start, end = "<!-- field table: start -->\n", "\n<!-- field table: end -->"
    table = doc[doc.index(start) + len(start):doc.index(end)]
    assert table == markdown_field_table(), (
        "docs/cli.md's field table is stale: replace it with `jaxdqn config --markdown`")


def test_config_prints_the_resolved_value_of_every_field(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # wide enough for one line per field
    assert main(["config", "--preset", "cartpole", "--set", "gamma=0.98"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["field", "value", "type", "allowed", "description"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == [f.name for f in dataclasses.fields(DQNConfig)]
    assert rows["gamma"].split()[1:3] == ["0.98", "float"]
    assert rows["total_timesteps"].split()[1] == "80000"  # the preset's
    assert field_descriptions()["tau"] in rows["tau"] and field_allowed()["tau"] in rows["tau"]


def test_config_wraps_to_the_terminal_width_with_each_column_under_itself(capsys, monkeypatch):
    import re

    monkeypatch.setenv("COLUMNS", "100")
    assert main(["config", "--preset", "cartpole"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 100
    spans = [m.span() for m in re.finditer("-+", lines[1])]  # each column's place in the rule
    cells = {}  # field -> its column texts, one list per column
    for line in lines[2:]:
        if not line.startswith(" "):
            cells[line.split()[0]] = [[] for _ in spans]
        for column, (start, end) in zip(cells[list(cells)[-1]], spans):
            assert line[end:end + 2].strip() == "", line  # nothing spills into the gap
            column.append(line[start:end].strip())
    assert list(cells) == [f.name for f in dataclasses.fields(DQNConfig)]
    assert " ".join(filter(None, cells["tau"][4])) == field_descriptions()["tau"]
    assert " ".join(filter(None, cells["batch_size"][3])) == field_allowed()["batch_size"]
    assert any(len(columns[4]) > 1 for columns in cells.values())  # the table did wrap


def test_train_help_lists_every_preset_with_its_line(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    presets = out[out.index("\npresets:\n") + len("\npresets:\n"):].splitlines()
    entries: dict[str, list[str]] = {}
    for line in presets:
        if not line.strip():
            break
        assert len(line) <= 79, line  # wrapped for an 80-column terminal
        if not line.startswith("   "):  # a preset's name, then its text continued below
            entries[line.split()[0]] = [line.split(None, 1)[1]]
        else:
            entries[list(entries)[-1]].append(line.strip())
    assert {name: " ".join(lines) for name, lines in entries.items()} == preset_descriptions()


def test_config_errors_are_one_line(capsys):
    assert main(["config", "--set", "gamma=2"]) == 2
    err = capsys.readouterr().err
    assert err == "jaxdqn: error: DQNConfig.gamma=2.0 is invalid: must be in [0, 1]\n"


@pytest.mark.device_count
def test_a_diverging_seed_is_flagged_in_the_table_summary_and_plot_title(tmp_path, capsys):
    """An absurd learning rate on one run: TD loss and Q-values overflow to inf/NaN."""
    import json

    out = tmp_path / "run"
    code = main(["train", "--env", "CartPole-v1", "--seeds", "2", "--episodes", "2",
                 "--no-progress", "--out", str(out),
                 "--set", "total_timesteps=2000", "--set", "buffer_size=500",
                 "--set", "learning_starts=100", "--set", "batch_size=32",
                 "--set", "hidden_sizes=16", "--set", "learning_rate=1e12",
                 "--set", "optimizer=sgd"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads((out / run_folder.SUMMARY).read_text())
    assert summary["diverged"] == [True, True]
    assert "warning: diverged (TD loss or Q-values not finite): seeds 0, 1 of 2" in captured.err
    head = captured.out.splitlines()[1].split()
    assert head[-1] == "diverged" and captured.out.splitlines()[-2].split()[-1] == "2/2"


def test_the_scripts_help_shows_each_default_that_says_something():
    import argparse

    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = argparse.ArgumentParser(prog="x.py", formatter_class=DefaultsHelpFormatter,
                                description="line one\n  kept as written")
    p.add_argument("--seeds", type=int, default=4, help="seeds per run")
    p.add_argument("--out", default=None, help="write JSON here (default: print only)")
    p.add_argument("--quick", action="store_true", help="fewer steps")
    p.add_argument("--set", action="append", default=[], help="override a field")
    text = " ".join(p.format_help().split())
    assert "seeds per run (default: 4)" in text and "line one\n  kept as written" in p.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: [])" not in text


def test_set_exploration_steps_replaces_the_fraction_of_a_preset_or_a_file(tmp_path, capsys,
                                                                           monkeypatch):
    from jaxdqn.cli.options import resolve_config

    monkeypatch.setenv("COLUMNS", "1000")
    assert main(["config", "--preset", "minatar", "--set", "exploration_steps=100000"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["exploration_steps"][1] == "100000" and rows["exploration_fraction"][1] == "None"
    file = tmp_path / "run.json"
    file.write_text(json.dumps({"config": DQNConfig().to_dict(), "seeds": 2}))
    config, _ = resolve_config("cartpole", str(file), ["exploration_steps=5000"], None)
    assert (config.exploration_fraction, config.exploration_steps) == (None, 5000)
    config, _ = resolve_config("cartpole", str(file), [], None)
    assert (config.exploration_fraction, config.exploration_steps) == (0.2, None)
    assert main(["config", "--set", "exploration_steps=10",
                 "--set", "exploration_fraction=0.5"]) == 2
    assert "exploration_steps=10 is invalid beside exploration_fraction=0.5" in (
        capsys.readouterr().err)
