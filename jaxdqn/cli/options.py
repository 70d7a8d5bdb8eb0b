"""Options shared by the commands and the run's ``DQNConfig`` from presets, files and ``--set``."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

from jaxdqn.cli.parser import UserError


def add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default=None, metavar="ENV_ID",
                   help="environment id, e.g. CartPole-v1, Acrobot-v1, Probe1..Probe6")
    p.add_argument("--preset", default="reference", metavar="NAME",
                   help="named starting config (default 'reference'; listed below; 'seed' is "
                        "the old name of 'reference')")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML or JSON file of DQNConfig fields (a run's config.json works too)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="sets",
                   help="override one DQNConfig field, e.g. --set gamma=0.98 (repeatable)")


def add_out_options(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", default=None, metavar="DIR", help=f"output folder (default {default})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results already in --out (and its tensorboard/ and wandb/ "
                        "logs) instead of refusing")


def refuse_settings_on_resume(args, folder: str, **more: bool) -> None:
    """One line naming every setting given beside ``--resume``, which takes all of them from
    the ``folder`` it resumes; ``more`` adds a command's own options (name -> given)."""
    given = [opt for opt, v in (("--env", args.env), ("--config", args.config),
                                ("--set", args.sets)) if v]
    given += [opt for opt, v in more.items() if v]
    given += ["--out"] * bool(args.out) + ["--preset"] * (args.preset != "reference")
    if given:
        raise UserError(f"--resume takes every setting from the {folder}; drop {', '.join(given)}")


def traced_fields() -> tuple[str, ...]:
    """The hyperparameters a sweep batches into one compiled program."""
    from jaxdqn.config import TRACED_FIELDS

    return TRACED_FIELDS


def field_names() -> list[str]:
    from jaxdqn.config import DQNConfig

    return [f.name for f in dataclasses.fields(DQNConfig)]


def unknown_field(name: str, where: str) -> UserError:
    close = difflib.get_close_matches(name, field_names(), n=1, cutoff=0.5)
    hint = (f"; did you mean {close[0]!r}?" if close
            else f"; fields are: {', '.join(field_names())}")
    return UserError(f"unknown DQNConfig field {name!r} ({where}){hint}")


def parse_field_value(name: str, text: str, where: str) -> Any:
    """Converts ``text`` to the type of DQNConfig field ``name`` (int, float, bool, str, a tuple
    of ints, or None where allowed); a text that does not fit raises ``UserError``."""
    from jaxdqn.config import DQNConfig

    if name not in field_names():
        raise unknown_field(name, where)
    hint = typing.get_type_hints(DQNConfig)[name]
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    kind = next(a for a in args if a is not type(None)) if optional else hint
    t = text.strip()
    if optional and t.lower() in ("none", "null"):
        return None
    expected = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    try:
        if kind is bool:
            words = {"true": True, "yes": True, "on": True, "1": True,
                     "false": False, "no": False, "off": False, "0": False}
            return words[t.lower()]
        if kind is int:
            return _to_int(t)
        if kind is float:
            return float(t)
        if kind is str:
            return t
        if typing.get_origin(kind) is tuple:
            if t.replace(" ", "") in ("()", "[]"):  # hidden_sizes=(): a linear Q
                return ()
            inner = t.strip("[]() ")
            values = tuple(_to_int(v) for v in inner.replace("x", ",").split(",") if v.strip())
            if not values:
                raise ValueError
            return values
    except (KeyError, ValueError):
        what = expected.get(kind, "a comma-separated list of integers, e.g. 64,64, or ()")
        none = " or none" if optional else ""
        raise UserError(f"{where}: {name}={text!r} is invalid: expected {what}{none}") from None
    raise UserError(f"{where}: field {name!r} cannot be set from text")


def _to_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        value = float(text)  # "5e5": an integer written in float notation
        if not value.is_integer():
            raise
        return int(value)


def parse_assignment(text: str, option: str) -> tuple[str, str]:
    """``"gamma=0.9"`` -> ``("gamma", "0.9")``; ``option`` names the flag in the error."""
    if "=" not in text:
        raise UserError(f"{option} {text!r} is invalid: expected FIELD=VALUE")
    name, value = text.split("=", 1)
    return name.strip(), value


def resolve_config(preset_name: str, config_file: str | None, sets: Sequence[str],
                   env: str | None):
    """The run's ``DQNConfig``: preset, then the file, then ``--set``s, then ``--env``.

    Returns ``(config, run_settings)`` where ``run_settings`` holds ``seeds``/``seed`` when the
    file is a run's ``config.json``.
    """
    from jaxdqn.config import EITHER_OR, preset, upgrade_legacy_fields
    from jaxdqn.io import ConfigFileError, load_config_file

    try:
        base = preset(preset_name)
    except ValueError as e:
        raise UserError(str(e)) from None
    changes: dict[str, Any] = {}
    run_settings: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = load_config_file(config_file)
        except ConfigFileError as e:
            raise UserError(str(e)) from None
        if isinstance(data.get("config"), dict):  # a run folder's config.json
            run_settings = {k: data[k] for k in ("seeds", "seed") if k in data}
            data = data["config"]
        try:
            data = upgrade_legacy_fields(data)
        except ValueError as e:
            raise UserError(f"{config_file}: {e}") from None
        for name, value in data.items():
            if name not in field_names():
                raise unknown_field(name, f"in {config_file}")
            changes[name] = tuple(value) if isinstance(value, list) else value
    file_changes = dict(changes)
    set_names = set()
    for text in sets:
        name, value = parse_assignment(text, "--set")
        changes[name] = parse_field_value(name, value, "--set")
        set_names.add(name)
    for name in set_names:  # a --set of one of two either-or fields replaces the file's other
        other = EITHER_OR.get(name)
        if other is not None and other not in set_names and changes[name] is not None:
            changes.pop(other, None)
    if env is not None:
        changes["env_id"] = env
    try:
        return base.replace(**changes), run_settings
    except (TypeError, ValueError) as e:
        bad = re.match(r"DQNConfig\.(\w+)=", str(e))
        if bad and bad.group(1) in file_changes and changes[bad.group(1)] == file_changes[
                bad.group(1)]:  # the file's own value is the invalid one: name the file
            raise UserError(f"{config_file}: {e}") from None
        raise UserError(str(e)) from None


def make_config(base, changes: dict):
    """``base.replace(**changes)``, an invalid value raising ``UserError``."""
    try:
        return base.replace(**changes)
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None


def check_learns(config, where: str = "") -> None:
    """Refuses a config that would take no gradient step (``total_timesteps`` ends before
    ``learning_starts``), naming the numbers and the smallest ``total_timesteps`` that learns."""
    if config.num_updates > 0:
        return
    s = config.steps_per_iteration
    need = (config.first_learning_iteration + 1) * s
    raise UserError(
        f"{where}total_timesteps={config.total_timesteps} takes no gradient step: learning starts "
        f"after learning_starts={config.learning_starts} env steps (whole iterations of {s}); "
        f"set total_timesteps >= {need} or learning_starts <= {config.total_timesteps}")


def check_counts(args, num_seeds: int, seed: int) -> None:
    if num_seeds < 1:
        raise UserError(f"--seeds={num_seeds} is invalid: must be >= 1")
    if not 0 <= seed < 2**32:
        raise UserError(f"--seed={seed} is invalid: must be in [0, 2**32)")
    if args.episodes < 1:
        raise UserError(f"--episodes={args.episodes} is invalid: must be >= 1")
