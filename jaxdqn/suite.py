"""A benchmark suite: variants x games x seeds, each (game, variant) cell one run folder.

A suite spec names games (env ids), variants (a name and config changes) and the seeds; cell
``(game, variant)`` trains ``seeds`` runs of one config, built in this order, each step
overriding the ones before::

    preset    the variant's preset if it names one, else the game's, else DEFAULT_PRESETS'
    env_id    the game
    set       the spec's changes for every cell
    game      the game's own changes
    variant   the variant's changes

A spec is a table (a TOML or JSON file, or built from ``jaxdqn suite run`` flags)::

    seeds = 3              # runs per cell, vmapped in one program (default 3)
    seed = 0               # base seed: every cell trains with seed_keys(seed, seeds)
    episodes = 100         # greedy episodes per run after training: the run's score
    [set]                  # DQNConfig fields for every cell
    total_timesteps = 1_000_000
    [games]                # env id -> {preset = NAME, FIELD = VALUE, ...}; or a list of ids
    "Breakout-MinAtar" = {}
    [variants]             # name -> {preset = NAME or {game = NAME, ...}, FIELD = VALUE, ...}
    dqn = {}
    n3 = {n_step = 3}

Every cell's config is validated (``DQNConfig``'s own checks) before anything compiles. The suite
folder holds ``SUITE_SPEC`` (the spec and each cell's config) and the cells' run folders,
``<game>/<variant>/``, each written as ``jaxdqn train`` writes one. This module imports no JAX.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from jaxdqn import run_folder
from jaxdqn.config import DQNConfig, preset
from jaxdqn.envs import known_env_ids
from jaxdqn.envs.ids import MINATAR_ENV_IDS, PROBE_IDS

FORMAT = "jaxdqn-suite"
DEFAULT_SEEDS = 3
DEFAULT_SEED = 0
DEFAULT_EPISODES = 100
SPEC_KEYS = ("seeds", "seed", "episodes", "set", "games", "variants")
PRESET_KEY = "preset"
"""The key of a game or variant table that names a preset rather than a ``DQNConfig`` field."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
"""A variant's name: a folder name on every file system."""


def default_preset(env_id: str) -> str:
    """The preset a game starts from unless the spec names one: ``minatar-fast`` for MinAtar
    games (1M steps, an update every 4, sticky actions 0.1: the MinAtar protocol), ``cartpole``
    for CartPole-v1, ``probes`` for the probes, ``reference`` for everything else."""
    if env_id in MINATAR_ENV_IDS:
        return "minatar-fast"
    if env_id == "CartPole-v1":
        return "cartpole"
    if env_id in PROBE_IDS:
        return "probes"
    return "reference"


class Entry(NamedTuple):
    """A game or a variant: its name, the preset it names (None: none; for a variant also a
    table game -> preset) and its field changes."""

    name: str
    preset: str | dict[str, str] | None
    changes: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = {} if self.preset is None else {PRESET_KEY: self.preset}
        return {**out, **{k: _json_value(v) for k, v in self.changes.items()}}


class Cell(NamedTuple):
    """One (game, variant) of a suite: ``seeds`` runs of ``config`` in run folder ``folder``
    (relative to the suite folder)."""

    game: str
    variant: str
    config: DQNConfig

    @property
    def folder(self) -> Path:
        return Path(self.game) / self.variant

    @property
    def label(self) -> str:
        return f"{self.game}/{self.variant}"


@dataclasses.dataclass(frozen=True)
class SuiteSpec:
    """A validated suite spec (``spec_from_dict``); ``cells()`` resolves its configs."""

    games: tuple[Entry, ...]
    variants: tuple[Entry, ...]
    changes: dict[str, Any]  # the spec's ``set``: every cell
    seeds: int = DEFAULT_SEEDS
    seed: int = DEFAULT_SEED
    episodes: int = DEFAULT_EPISODES

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-able table (``spec_from_dict`` reads it back)."""
        return {"seeds": self.seeds, "seed": self.seed, "episodes": self.episodes,
                "set": {k: _json_value(v) for k, v in self.changes.items()},
                "games": {g.name: g.to_dict() for g in self.games},
                "variants": {v.name: v.to_dict() for v in self.variants}}

    def cells(self) -> list[Cell]:
        """Every cell, game by game and in each game variant by variant (the order they run in,
        so finished games come first), its config validated: a bad field or value raises
        ``ValueError`` naming the cell."""
        return [Cell(game.name, variant.name, _cell_config(game, variant, self.changes))
                for game in self.games for variant in self.variants]


def spec_from_dict(data: Mapping[str, Any], where: str = "suite spec") -> SuiteSpec:
    """The ``SuiteSpec`` of a table (``load_spec_file``, ``merge_specs``, a ``SUITE_SPEC``);
    raises ``ValueError`` naming ``where`` and what is wrong (keys, counts, names; the config
    values are checked by ``SuiteSpec.cells``)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a table, not a {type(data).__name__}")
    unknown = [k for k in data if k not in SPEC_KEYS]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; a suite spec has "
                         f"{', '.join(SPEC_KEYS)}")
    seeds = _count(data, "seeds", DEFAULT_SEEDS, 1, where)
    seed = _count(data, "seed", DEFAULT_SEED, 0, where)
    if seed >= 2**32:
        raise ValueError(f"{where}: seed={seed} is invalid: must be in [0, 2**32)")
    episodes = _count(data, "episodes", DEFAULT_EPISODES, 1, where)
    changes = _changes(data.get("set", {}), "set", where, allow_preset=False)[1]
    games_data = data.get("games", {})
    if isinstance(games_data, Sequence) and not isinstance(games_data, str):
        if len(set(games_data)) != len(games_data):
            raise ValueError(f"{where}: games lists a game twice: {list(games_data)}")
        games_data = {g: {} for g in games_data}
    if not isinstance(games_data, Mapping) or not games_data:
        raise ValueError(f"{where}: no game given: give games (env ids), e.g. "
                         "games = [\"Breakout-MinAtar\"] or --game Breakout-MinAtar")
    games = tuple(_game(name, table, where) for name, table in games_data.items())
    variants_data = data.get("variants", {})
    if not isinstance(variants_data, Mapping):
        raise ValueError(f"{where}: variants must be a table of name -> {{changes}}, e.g. "
                         "[variants] dqn = {} n3 = {n_step = 3}")
    if not variants_data:
        raise ValueError(f"{where}: no variant given: give variants, e.g. [variants] dqn = {{}} "
                         "or --variant dqn")
    check_variant_names(list(variants_data), where)
    variants = tuple(_variant(name, table, [g.name for g in games], where)
                     for name, table in variants_data.items())
    return SuiteSpec(games=games, variants=variants, changes=changes, seeds=seeds, seed=seed,
                     episodes=episodes)


def check_variant_names(names: Sequence[str], where: str = "suite spec") -> None:
    """Refuses a variant name that is no folder name (``NAME_PATTERN``) or that repeats another,
    also when they differ only in case (one folder on macOS and Windows)."""
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ValueError(f"{where}: variant name {name!r} is invalid: use letters, digits "
                             "and _.+- (it names the variant's folder), starting with a letter or "
                             "digit")
        if name.lower() in seen:
            same = "twice" if seen[name.lower()] == name else f"twice ({seen[name.lower()]!r})"
            raise ValueError(f"{where}: variant {name!r} is given {same}; variant names must "
                             "differ (also in more than case: each names a folder)")
        seen[name.lower()] = name


def merge_specs(file_spec: Mapping[str, Any] | None, flags: Mapping[str, Any]) -> dict[str, Any]:
    """A spec table from a file's (or none) and the command line's: ``flags`` sets ``seeds``,
    ``seed`` and ``episodes``, adds its ``set`` after the file's and its games and variants after
    the file's (a name given by both is refused: merging two definitions would hide one)."""
    merged = dict(file_spec or {})
    for key in ("seeds", "seed", "episodes"):
        if flags.get(key) is not None:
            merged[key] = flags[key]
    if flags.get("set"):
        merged["set"] = {**(merged.get("set") or {}), **flags["set"]}
    for key, what in (("games", "game"), ("variants", "variant")):
        given = flags.get(key) or {}
        if not given:
            continue
        mine = merged.get(key) or {}
        if isinstance(mine, Sequence) and not isinstance(mine, str):
            mine = {g: {} for g in mine}
        if not isinstance(mine, Mapping):
            raise ValueError(f"the spec file's {key} must be a table")
        lower = {name.lower(): name for name in mine}
        for name in given:
            if name.lower() in lower:
                raise ValueError(f"--{what} {name} is in the spec file too ({lower[name.lower()]!r}"
                                 f"); define each {what} once")
        merged[key] = {**mine, **given}
    return merged


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """The table of a TOML (``.toml``) or JSON spec file; ``ValueError`` if unreadable."""
    from jaxdqn.io import ConfigFileError, load_config_file

    try:
        data = load_config_file(path)
    except ConfigFileError as e:
        raise ValueError(str(e).replace("config file", "suite spec")) from None
    if isinstance(data.get("spec"), dict) and data.get("format") == FORMAT:
        return data["spec"]  # a suite folder's SUITE_SPEC
    return data


def spec_differences(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """What differs between two spec tables (``SuiteSpec.to_dict``), one phrase each:
    ``"seeds: 3 (stored) vs 5"``, ``"variant 'n3': {'n_step': 3} (stored) vs {'n_step': 5}"``."""
    out = []
    for key in ("seeds", "seed", "episodes", "set"):
        if stored.get(key) != given.get(key):
            out.append(f"{key}: {stored.get(key)!r} (stored) vs {given.get(key)!r}")
    for key, what in (("games", "game"), ("variants", "variant")):
        a, b = dict(stored.get(key) or {}), dict(given.get(key) or {})
        if list(a) != list(b):
            out.append(f"{key}: {', '.join(a)} (stored) vs {', '.join(b)}")
        for name in a.keys() & b.keys():
            if a[name] != b[name]:
                out.append(f"{what} {name!r}: {a[name]!r} (stored) vs {b[name]!r}")
    return out


def config_differences(stored: DQNConfig, now: DQNConfig) -> list[str]:
    """``"field: stored (stored) vs now"`` for each field where two configs differ."""
    a, b = stored.to_dict(), now.to_dict()
    return [f"{k}: {a[k]!r} (stored) vs {b[k]!r}" for k in a if a[k] != b[k]]


# ---------------------------------------------------------------------------------------------
# The suite folder


def write_suite_file(folder: Path, spec: SuiteSpec, cells: Sequence[Cell],
                     extra: Mapping[str, Any]) -> None:
    """Writes ``SUITE_SPEC``: the spec, every cell's folder and config, and ``extra``
    (provenance)."""
    from jaxdqn.io import atomic_write_json

    atomic_write_json(folder / run_folder.SUITE_SPEC, {
        "format": FORMAT, "spec": spec.to_dict(),
        "cells": [{"game": c.game, "variant": c.variant, "folder": c.folder.as_posix(),
                   "config": c.config.to_dict()} for c in cells],
        **extra})


def read_suite_file(folder: Path) -> tuple[SuiteSpec, list[Cell]]:
    """The spec and the cells (with the configs stored when the suite started) of suite folder
    ``folder``; ``ValueError`` naming what is missing or unreadable."""
    path = folder / run_folder.SUITE_SPEC
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{str(folder)!r} holds no {run_folder.SUITE_SPEC}: not a suite folder"
                         ) from None
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {str(path)!r}: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a jaxdqn suite file")
    spec = spec_from_dict(data["spec"], str(path))
    try:
        cells = [Cell(c["game"], c["variant"], DQNConfig.from_dict(c["config"]))
                 for c in data["cells"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{str(path)!r}: a cell cannot be read: {e}") from None
    return spec, cells


class CellState(NamedTuple):
    """Where a cell's run folder stands: ``"new"`` (nothing trained), ``"partial"`` (a resume
    state), ``"trained"`` (complete, not yet evaluated after training) or ``"done"``."""

    status: str
    summary: dict | None = None


def cell_state(folder: Path) -> CellState:
    """The ``CellState`` of a cell's run folder."""
    if (folder / run_folder.RESUME_STATE).is_file():
        return CellState("partial")
    try:
        summary = json.loads((folder / run_folder.SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return CellState("new")
    if (not isinstance(summary, dict) or not summary.get("complete")
            or not (folder / run_folder.FINAL_CHECKPOINT).is_file()):
        return CellState("new")
    return CellState("done" if "evaluation" in summary else "trained", summary)


def stored_cell_config(folder: Path) -> DQNConfig | None:
    """The config in a cell's run folder's ``CONFIG`` (None: none there, or unreadable)."""
    try:
        data = json.loads((folder / run_folder.CONFIG).read_text(encoding="utf-8"))
        return DQNConfig.from_dict(data["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------
# Spec pieces


def _count(data, key: str, default: int, least: int, where: str) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"{where}: {key}={value!r} is invalid: must be an int >= {least}")
    return value


def _changes(table, name: str, where: str, allow_preset: bool) -> tuple[Any, dict[str, Any]]:
    """``(preset, field changes)`` of a game, variant or ``set`` table, its field names checked
    (their values are ``DQNConfig``'s to check)."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: {name} must be a table of DQNConfig fields, not "
                         f"{table!r}")
    fields = [f.name for f in dataclasses.fields(DQNConfig)]
    changes = {}
    for key, value in table.items():
        if key == PRESET_KEY and allow_preset:
            continue
        if key == "env_id":
            raise ValueError(f"{where}: {name} sets env_id; the games are the env ids")
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{where}: unknown DQNConfig field {key!r} ({name}){hint}")
        changes[key] = tuple(value) if isinstance(value, list) else value
    return table.get(PRESET_KEY) if allow_preset else None, changes


def _game(name, table, where: str) -> Entry:
    if name not in known_env_ids():
        close = difflib.get_close_matches(str(name), known_env_ids(), n=1, cutoff=0.6)
        hint = (f"did you mean {close[0]!r}?" if close
                else f"known env ids: {', '.join(known_env_ids())}")
        raise ValueError(f"{where}: unknown game {name!r}; {hint}")
    game_preset, changes = _changes(table, f"game {name}", where, allow_preset=True)
    if game_preset is not None and not isinstance(game_preset, str):
        raise ValueError(f"{where}: game {name}'s preset must be a preset's name, not "
                         f"{game_preset!r}")
    return Entry(name, game_preset, changes)


def _variant(name: str, table, games: Sequence[str], where: str) -> Entry:
    variant_preset, changes = _changes(table, f"variant {name}", where, allow_preset=True)
    if isinstance(variant_preset, Mapping):
        missing = [g for g in games if g not in variant_preset]
        if missing:
            raise ValueError(f"{where}: variant {name}'s preset table names no preset for game "
                             f"{missing[0]!r}")
        variant_preset = {g: variant_preset[g] for g in games}
        if not all(isinstance(v, str) for v in variant_preset.values()):
            raise ValueError(f"{where}: variant {name}'s preset table must map games to preset "
                             f"names, not {variant_preset!r}")
    elif variant_preset is not None and not isinstance(variant_preset, str):
        raise ValueError(f"{where}: variant {name}'s preset must be a preset's name or a table "
                         f"game -> name, not {variant_preset!r}")
    return Entry(name, variant_preset, changes)


def _cell_config(game: Entry, variant: Entry, changes: dict[str, Any]) -> DQNConfig:
    """The config of a cell: see the module docstring for the order of its parts."""
    name = variant.preset.get(game.name) if isinstance(variant.preset, dict) else variant.preset
    name = name or game.preset or default_preset(game.name)
    try:
        config = preset(name).replace(env_id=game.name)
        for layer in (changes, game.changes, variant.changes):
            if layer:
                config = config.replace(**layer)
    except (TypeError, ValueError) as e:
        raise ValueError(f"variant {variant.name!r} on {game.name}: {e}") from None
    return config


def _json_value(value):
    return list(value) if isinstance(value, tuple) else value


__all__ = [
    "DEFAULT_EPISODES",
    "DEFAULT_SEED",
    "DEFAULT_SEEDS",
    "FORMAT",
    "Cell",
    "CellState",
    "Entry",
    "SuiteSpec",
    "cell_state",
    "check_variant_names",
    "config_differences",
    "default_preset",
    "load_spec_file",
    "merge_specs",
    "read_suite_file",
    "spec_differences",
    "spec_from_dict",
    "stored_cell_config",
    "write_suite_file",
]
