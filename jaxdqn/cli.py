"""The ``jaxdqn`` command: ``train``, ``evaluate`` and ``sweep``, each writing a folder of results.

Every user mistake (unknown env or field, a bad value, an unreadable checkpoint, a folder that
already holds a run) is found before anything compiles and reported as one line on stderr with
exit code 2; Ctrl-C exits with 130 after saving what is done. Set ``JAXDQN_DEBUG=1`` to see the
traceback of an unexpected internal error instead of its one-line summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import platform
import shlex
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any, Sequence

from jaxdqn.runtime import fast_cpu_compile, use_all_cpu_cores

PROG = "jaxdqn"
RUN_FILES = ("config.json", "metrics.csv", "metrics.npz", "summary.json", "learning_curve.png",
             "checkpoint.msgpack", "resume_state.msgpack")
SWEEP_FILES = ("config.json", "sweep.csv", "sweep_runs.csv", "sweep.png", "sweep_metrics.npz",
               "summary.json")
PROGRESS_CHUNKS = 20  # metric-row chunks per run: progress updates without measurable slowdown
EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 2, 1, 130


class UserError(Exception):
    """A mistake in the command line or its inputs, shown as one line (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message and exits; we want one line
        raise UserError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------------------------------
# Entry point



def _method(config) -> str:
    """The method's name for titles and messages: DQN or Double DQN."""
    return {"dqn": "DQN", "double_dqn": "Double DQN"}.get(config.estimator, config.estimator)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    if "jax" not in sys.modules:  # an in-process caller (a test) has set up its JAX already
        fast_cpu_compile()
        use_all_cpu_cores()  # seeds split across cores: jaxdqn.sweep.make_run_batch
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UserError(f"choose a command: train, evaluate or sweep (see '{PROG} --help')")
        return args.handler(args, argv)
    except UserError as e:
        _say(f"error: {e}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else 0
    except Exception as e:  # noqa: BLE001 - the one place that turns bugs into one line
        if os.environ.get("JAXDQN_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        _say(f"error: {type(e).__name__}: {msg} (set JAXDQN_DEBUG=1 for the traceback)")
        return EXIT_FAILURE


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    from jaxdqn import __version__

    parser = _Parser(
        prog=PROG,
        description="Deep Q-Networks in JAX: one jitted lax.scan per run, vmapped over seeds.",
        epilog=f"Run '{PROG} COMMAND --help' for a command's options. Docs: docs/cli.md",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "train", help="train DQN on several seeds at once and write a run folder",
        description="Train DQN with every seed vmapped in one compiled program; show progress; "
                    "evaluate the greedy policy of each seed; write config, metrics, plot and "
                    "checkpoint to --out.",
        epilog="Config resolution: --preset, then --config FILE, then each --set, then --env. "
               f"Example: {PROG} train --env CartPole-v1 --seeds 8 --out runs/cp "
               "--set learning_rate=1e-3 --set hidden_sizes=64,64",
    )
    _add_config_options(p)
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="number of independent runs, vmapped together (default 1, or the "
                        "value stored in a run's config.json given to --config)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="base seed: run i uses jax.random.split(PRNGKey(S), N)[i] (default 0)")
    p.add_argument("--episodes", type=int, default=100, metavar="E",
                   help="greedy evaluation episodes per seed at the end (default 100)")
    _add_out_options(p, "runs/<env>-<time>")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue an interrupted run in RUN_DIR (settings come from its "
                        "config.json); the result is the same as an uninterrupted run")
    p.add_argument("--no-progress", action="store_true",
                   help="run the whole training as one compiled call, without progress output")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser(
        "evaluate", help="evaluate a run's greedy policies",
        description="Load a run's checkpoint and evaluate each seed's greedy policy. With "
                    "--gymnasium, also run it in Gymnasium's own implementation of the "
                    "environment (numpy on the host) as a cross-check.",
    )
    p.add_argument("run", metavar="RUN_DIR", help="a run folder, or a checkpoint.msgpack file")
    p.add_argument("--episodes", type=int, default=100, metavar="E",
                   help="episodes per seed (default 100)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="evaluation seed (default: the run's base seed, which reproduces the "
                        "evaluation printed at the end of training)")
    p.add_argument("--gymnasium", action="store_true",
                   help="also evaluate in gymnasium.make(env_id) (CartPole-v1, Acrobot-v1, "
                        "MountainCar-v0)")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="also write the results to FILE as JSON")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser(
        "sweep", help="train every combination of a hyperparameter grid x seeds",
        description="Train every combination of the --grid values times every seed. "
                    "Hyperparameters that keep array shapes (" + ", ".join(_traced_fields())
                    + ") are batched into one compiled, vmapped program; every other field "
                    "(buffer_size, batch_size, hidden_sizes, ...) makes its own compiled group. "
                    "Prints a ranked table and writes sweep.csv, sweep_runs.csv and sweep.png.",
        epilog=f"Example: {PROG} sweep --env CartPole-v1 --seeds 16 "
               "--grid learning_rate=1e-4,2.5e-4,1e-3 --grid gamma=0.98,0.99 --out runs/lr-gamma."
               " Tuple values are bracketed: --grid hidden_sizes=[64,64],[120,84]",
    )
    _add_config_options(p)
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="values to sweep for one DQNConfig field (repeat for more fields)")
    p.add_argument("--seeds", type=int, default=8, metavar="N",
                   help="runs per combination (default 8)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="base seed; every combination uses the same seed keys (default 0)")
    p.add_argument("--episodes", type=int, default=100, metavar="E",
                   help="greedy evaluation episodes per run (default 100)")
    _add_out_options(p, "runs/sweep-<env>-<time>")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.set_defaults(handler=cmd_sweep)
    return parser


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default=None, metavar="ENV_ID",
                   help="environment id, e.g. CartPole-v1, Acrobot-v1, Probe1..Probe5")
    p.add_argument("--preset", default="seed", metavar="NAME",
                   help="named starting config (default 'seed': the seed's train_dqn defaults)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML or JSON file of DQNConfig fields (a run's config.json works too)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="sets",
                   help="override one DQNConfig field, e.g. --set gamma=0.98 (repeatable)")


def _add_out_options(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", default=None, metavar="DIR", help=f"output folder (default {default})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results already in --out instead of refusing")


# ---------------------------------------------------------------------------------------------
# Configs from presets, files and --set


def _traced_fields() -> tuple[str, ...]:
    from jaxdqn.train import HParams

    return HParams._fields


def _field_names() -> list[str]:
    from jaxdqn.config import DQNConfig

    return [f.name for f in dataclasses.fields(DQNConfig)]


def _unknown_field(name: str, where: str) -> UserError:
    close = difflib.get_close_matches(name, _field_names(), n=1, cutoff=0.5)
    hint = (f"; did you mean {close[0]!r}?" if close
            else f"; fields are: {', '.join(_field_names())}")
    return UserError(f"unknown DQNConfig field {name!r} ({where}){hint}")


def parse_field_value(name: str, text: str, where: str) -> Any:
    """Converts ``text`` to the type of DQNConfig field ``name`` (int, float, bool, str, a tuple
    of ints, or None where allowed); a text that does not fit raises ``UserError``."""
    from jaxdqn.config import DQNConfig

    if name not in _field_names():
        raise _unknown_field(name, where)
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
            inner = t.strip("[]() ")
            values = tuple(_to_int(v) for v in inner.replace("x", ",").split(",") if v.strip())
            if not values:
                raise ValueError
            return values
    except (KeyError, ValueError):
        what = expected.get(kind, "a comma-separated list of integers, e.g. 64,64")
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


def _parse_assignment(text: str, option: str) -> tuple[str, str]:
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
    from jaxdqn.config import preset, upgrade_legacy_fields
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
            if name not in _field_names():
                raise _unknown_field(name, f"in {config_file}")
            changes[name] = tuple(value) if isinstance(value, list) else value
    for text in sets:
        name, value = _parse_assignment(text, "--set")
        changes[name] = parse_field_value(name, value, "--set")
    if env is not None:
        changes["env_id"] = env
    return _make_config(base, changes), run_settings


def _make_config(base, changes: dict):
    try:
        return base.replace(**changes)
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None


def _check_counts(args, num_seeds: int, seed: int) -> None:
    if num_seeds < 1:
        raise UserError(f"--seeds={num_seeds} is invalid: must be >= 1")
    if not 0 <= seed < 2**32:
        raise UserError(f"--seed={seed} is invalid: must be in [0, 2**32)")
    if args.episodes < 1:
        raise UserError(f"--episodes={args.episodes} is invalid: must be >= 1")


def _prepare_out(out: str | None, default: str, files: Sequence[str], overwrite: bool) -> Path:
    """Creates the output folder; refuses one that holds results unless ``overwrite``."""
    path = Path(out if out is not None else default)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {str(path)!r} is a file, not a folder")
    existing = [f for f in files if (path / f).exists()]
    if existing and not overwrite:
        raise UserError(f"{str(path)!r} already holds a run ({', '.join(existing)}); pass "
                        "--overwrite to replace it or choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        for f in existing:
            (path / f).unlink()
    except OSError as e:
        raise UserError(f"cannot prepare output folder {str(path)!r}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"output folder {str(path)!r} is not writable")
    return path


def _default_out(prefix: str, env_id: str) -> str:
    return f"runs/{prefix}{env_id}-{time.strftime('%Y%m%d-%H%M%S')}"


def _provenance(argv: Sequence[str]) -> dict[str, Any]:
    import jax
    import jaxlib

    from jaxdqn import __version__

    return {
        "jaxdqn_version": __version__,
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "num_devices": jax.local_device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "python": platform.python_version(),
        "command": shlex.join([PROG, *argv]),
    }


# ---------------------------------------------------------------------------------------------
# Evaluation helpers


def solve_threshold(config) -> float | None:
    """Gymnasium's ``reward_threshold`` for the env at its standard time limit, else None."""
    try:
        import gymnasium

        spec = gymnasium.spec(config.env_id)
    except Exception:  # noqa: BLE001 - not a Gymnasium env (probes, registered extras)
        return None
    if config.max_episode_steps not in (None, spec.max_episode_steps):
        return None
    return None if spec.reward_threshold is None else float(spec.reward_threshold)


def _eval_rows(returns, threshold: float | None) -> list[dict[str, Any]]:
    """Per-seed statistics of ``returns: [num_seeds, num_episodes]``."""
    import numpy as np

    rows = []
    for i, r in enumerate(np.asarray(returns, np.float64)):
        rows.append({"seed_index": i, "mean": float(r.mean()), "std": float(r.std()),
                     "min": float(r.min()), "max": float(r.max()),
                     "solved": None if threshold is None else bool(r.mean() > threshold)})
    return rows


def _eval_summary(rows: list[dict[str, Any]], threshold, num_episodes: int, seed: int) -> dict:
    import numpy as np

    solved = [r["solved"] for r in rows]
    return {
        "num_episodes": num_episodes,
        "seed": seed,
        "keys": f"jax.random.split(jax.random.fold_in(PRNGKey({seed}), 1), num_seeds)",
        "solve_threshold": threshold,
        "mean_over_seeds": float(np.mean([r["mean"] for r in rows])),
        "solved_seeds": None if threshold is None else int(sum(solved)),
        "per_seed": rows,
    }


def _format_eval_table(rows, threshold, extra: dict[str, list[float]] | None = None,
                       mean_label: str = "mean return") -> str:
    extra = extra or {}
    head = ["seed", mean_label, "std", "min", "max", *extra, "solved"]
    lines = []
    for i, r in enumerate(rows):
        solved = "-" if r["solved"] is None else ("yes" if r["solved"] else "no")
        lines.append([str(r["seed_index"]), f"{r['mean']:.2f}", f"{r['std']:.2f}",
                      f"{r['min']:.1f}", f"{r['max']:.1f}",
                      *(f"{v[i]:.2f}" for v in extra.values()), solved])
    means = [r["mean"] for r in rows]
    solved = [r["solved"] for r in rows]
    total = "-" if threshold is None else f"{sum(solved)}/{len(rows)}"
    lines.append(["all", f"{sum(means) / len(means):.2f}", "", "", "",
                  *(f"{sum(v) / len(v):.2f}" for v in extra.values()), total])
    title = "greedy evaluation" + ("" if threshold is None else f" (solved: mean > {threshold:g})")
    return title + "\n" + _table(head, lines)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    fmt = lambda row: "  ".join(str(c).rjust(w) for c, w in zip(row, widths))  # noqa: E731
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(head), rule, *(fmt(r) for r in rows[:-1]), rule, fmt(rows[-1])]) \
        if len(rows) > 1 else "\n".join([fmt(head), rule, *(fmt(r) for r in rows)])


# ---------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """Env steps done, throughput and latest mean return: a tqdm bar on a terminal, one plain
    line per chunk otherwise (log files), nothing when disabled."""

    def __init__(self, desc: str, total_steps: int, num_runs: int, start_steps: int = 0,
                 enabled: bool = True):
        self.desc, self.total, self.num_runs = desc, total_steps, num_runs
        self.start = start_steps
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.latest_return = float("nan")
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_steps, desc=desc, unit="step",
                            unit_scale=True, file=sys.stderr, dynamic_ncols=True, leave=True)

    def update(self, env_steps_done: int, episode_returns) -> None:
        import numpy as np

        with np.errstate(all="ignore"):
            finite = np.asarray(episode_returns, np.float64)
            finite = finite[np.isfinite(finite)]
        if finite.size:
            self.latest_return = float(finite.mean())
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = (env_steps_done - self.start) * self.num_runs / elapsed
        ret = "-" if np.isnan(self.latest_return) else f"{self.latest_return:.1f}"
        if self.bar is not None:
            self.bar.update(env_steps_done - self.bar.n)
            self.bar.set_postfix_str(f"{_si(rate)} steps/s over {self.num_runs} runs, return {ret}")
        else:
            pct = 100.0 * env_steps_done / self.total
            print(f"{self.desc}: {pct:5.1f}%  {env_steps_done}/{self.total} env steps per run, "
                  f"{_si(rate)} env steps/s over {self.num_runs} runs, mean return {ret}",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _si(x: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def _latest_returns(metrics) -> Any:
    """Each run's return in the chunk's last row that finished an episode."""
    import numpy as np

    r = np.asarray(metrics.episode_return, np.float64)
    r = r.reshape(-1, r.shape[-1])
    out = np.full(r.shape[0], np.nan)
    for i, row in enumerate(r):
        finite = np.flatnonzero(np.isfinite(row))
        if finite.size:
            out[i] = row[finite[-1]]
    return out


# ---------------------------------------------------------------------------------------------
# train


def cmd_train(args, argv) -> int:
    if args.resume is not None:
        return _resume(args, argv)
    config, run_settings = resolve_config(args.preset, args.config, args.sets, args.env)
    num_seeds = args.seeds if args.seeds is not None else int(run_settings.get("seeds", 1))
    seed = args.seed if args.seed is not None else int(run_settings.get("seed", 0))
    _check_counts(args, num_seeds, seed)
    _check_memory(config, num_seeds)
    out = _prepare_out(args.out, _default_out("", config.env_id), RUN_FILES, args.overwrite)
    from jaxdqn.io import atomic_write_json

    atomic_write_json(out / "config.json", {
        "config": config.to_dict(), "seeds": num_seeds, "seed": seed,
        "eval_episodes": args.episodes, **_provenance(argv),
    })
    return _train(config, num_seeds, seed, args.episodes, out, args.no_progress)


def _check_memory(config, num_seeds: int) -> None:
    """Refuses, before anything is written or compiled, runs that will not fit in memory."""
    from jaxdqn.memory import check_fits
    from jaxdqn.parallel import devices_for

    try:
        check_fits(config, num_seeds, devices_for(num_seeds), can_chunk=False)
    except ValueError as e:
        raise UserError(str(e)) from None


def _resume(args, argv) -> int:
    given = [opt for opt, v in (("--env", args.env), ("--config", args.config),
                                ("--set", args.sets), ("--seeds", args.seeds),
                                ("--seed", args.seed), ("--out", args.out)) if v]
    if args.preset != "seed":
        given.append("--preset")
    if given:
        raise UserError("--resume takes every setting from the run folder; "
                        f"drop {', '.join(given)}")
    out = Path(args.resume)
    if not (out / "config.json").is_file():
        raise UserError(f"--resume {str(out)!r}: no config.json there, so it is not a run folder")
    if not (out / "resume_state.msgpack").is_file():
        done = (out / "summary.json").is_file() and (out / "checkpoint.msgpack").is_file()
        raise UserError(f"--resume {str(out)!r}: no resume_state.msgpack there"
                        + ("; the run is already complete" if done else ""))
    config, settings = resolve_config("seed", str(out / "config.json"), [], None)
    with open(out / "config.json", encoding="utf-8") as f:
        episodes = int(json.load(f).get("eval_episodes", args.episodes))
    _check_memory(config, int(settings["seeds"]))
    return _train(config, int(settings["seeds"]), int(settings["seed"]), episodes, out,
                  args.no_progress, resume=True)


def _train(config, num_seeds: int, seed: int, num_episodes: int, out: Path, no_progress: bool,
           resume: bool = False) -> int:
    import jax
    import numpy as np

    from jaxdqn.checkpoint import CheckpointError, load_resume_state
    from jaxdqn.sweep import (chunk_rows_for, concat_metrics, evaluation_keys, make_run_batch,
                              run_in_chunks, seed_keys)

    from jaxdqn.parallel import devices_for

    run_devices = devices_for(num_seeds)
    batch = make_run_batch(config)
    keys = seed_keys(seed, num_seeds)
    first_row, done_chunks, prior = 0, [], {}
    if resume:
        template = jax.eval_shape(batch.init, keys, None)
        try:
            state, meta = load_resume_state(out / "resume_state.msgpack", template, config)
        except CheckpointError as e:
            raise UserError(str(e)) from None
        first_row = int(meta["rows_done"])
        prior = {"train_seconds": float(meta.get("train_seconds", 0.0))}
        done_chunks = [_metrics_from(meta["metrics"])] if first_row else []
    num_rows = config.num_log_rows
    left = num_rows - first_row
    chunk_rows = left if no_progress else chunk_rows_for(left, PROGRESS_CHUNKS)
    num_devices = len(run_devices)
    on_devices = f" split across {num_devices} devices" if num_devices > 1 else ""
    _say(f"{'resuming' if resume else 'training'} {num_seeds} seed{'s' * (num_seeds != 1)} of "
         f"{_method(config)} on {config.env_id}, {config.total_timesteps} env steps each"
         f"{on_devices} -> {out}")
    t_compile = time.perf_counter()
    if not resume:
        state = batch.init(keys, None)
    if left:
        _say("compiling the training program ...")
        batch.run.lower(state, None, first_row, chunk_rows).compile()
    compile_seconds = time.perf_counter() - t_compile

    steps_per_row = config.log_interval
    progress = _Progress(f"{config.env_id} x{num_seeds}", config.total_timesteps, num_seeds,
                         first_row * steps_per_row, enabled=not no_progress)
    done, interrupted = [], False  # appending a finished chunk is the loop's only mutation
    t_train = time.perf_counter()
    try:
        for chunk in run_in_chunks(batch, state, None, first_row, chunk_rows):
            done.append(chunk)
            progress.update(chunk.rows_done * steps_per_row, _latest_returns(chunk.metrics))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    session_seconds = time.perf_counter() - t_train
    train_seconds = prior.get("train_seconds", 0.0) + session_seconds
    chunks = [c.metrics for c in done]
    if done:
        state, rows_done = done[-1].state, done[-1].rows_done
    else:
        rows_done = first_row
    if interrupted:
        _say(f"interrupted: saving the {rows_done * steps_per_row} env steps per run done so far")

    metrics = concat_metrics(done_chunks + chunks, 1) if done_chunks + chunks else None
    params = state.train.params
    summary = {
        "env_id": config.env_id, "num_seeds": num_seeds, "seed": seed,
        "total_timesteps": config.total_timesteps, "env_steps_done": rows_done * steps_per_row,
        "rows_done": rows_done, "num_log_rows": num_rows,
        "complete": rows_done == num_rows, "interrupted": interrupted,
        "compile_seconds": compile_seconds, "train_seconds": train_seconds,
        "env_steps_per_second": (rows_done - first_row) * steps_per_row * num_seeds
        / max(session_seconds, 1e-9),
        "final_training_return": None if metrics is None
        else [None if np.isnan(v) else float(v) for v in _latest_returns(metrics)],
    }
    from jaxdqn.checkpoint import save_resume_state

    resume_path = out / "resume_state.msgpack"
    if interrupted:  # first what --resume needs: the state and the metric rows so far
        save_resume_state(resume_path, state, config, {
            "rows_done": rows_done, "train_seconds": train_seconds,
            "metrics": None if metrics is None else metrics._asdict()})
    _write_run_files(out, config, num_seeds, seed, metrics, params, summary)
    if interrupted:
        _say(f"partial run saved in {out}; continue it with: {PROG} train --resume {out}")
        return EXIT_INTERRUPTED
    if resume_path.exists():
        resume_path.unlink()

    _say(f"trained in {train_seconds:.1f} s (+{compile_seconds:.1f} s compile); "
         f"evaluating {num_episodes} greedy episodes per seed ...")
    returns = batch.evaluate(params, evaluation_keys(seed, num_seeds), num_episodes)
    threshold = solve_threshold(config)
    rows = _eval_rows(jax.device_get(returns), threshold)
    summary["evaluation"] = _eval_summary(rows, threshold, num_episodes, seed)
    from jaxdqn.io import atomic_write_json

    atomic_write_json(out / "summary.json", summary)
    print(_format_eval_table(rows, threshold))
    print(f"run folder: {out}")
    return 0


def _metrics_from(stored: dict):
    import numpy as np

    from jaxdqn.train import TrainMetrics

    return TrainMetrics(*(np.asarray(stored[f]) for f in TrainMetrics._fields))


def _write_run_files(out: Path, config, num_seeds, seed, metrics, params, summary) -> None:
    import numpy as np

    from jaxdqn.checkpoint import save_checkpoint
    from jaxdqn.io import atomic_save_npz, atomic_write_csv, atomic_write_json
    from jaxdqn.plotting import plot_learning_curves, value_ceiling
    from jaxdqn.train import TrainMetrics

    save_checkpoint(out / "checkpoint.msgpack", params, config,
                    {"seed": seed, "env_steps_done": summary["env_steps_done"],
                     "complete": summary["complete"]})
    if metrics is not None:
        arrays = {f: np.asarray(getattr(metrics, f)) for f in TrainMetrics._fields}
        atomic_save_npz(out / "metrics.npz", {**arrays, "seed_index": np.arange(num_seeds)})
        rows = ([s, r, *(arrays[f][s, r].item() for f in TrainMetrics._fields)]
                for s in range(num_seeds) for r in range(arrays["env_steps"].shape[1]))
        atomic_write_csv(out / "metrics.csv", ["seed_index", "row", *TrainMetrics._fields], rows)
        title = f"{_method(config)} on {config.env_id}"
        if not summary["complete"]:
            title += (f" (interrupted at {summary['env_steps_done']} of "
                      f"{config.total_timesteps} steps)")
        plot_learning_curves(metrics, out / "learning_curve.png", title, solve_threshold(config),
                             value_ceiling(config.env_id, config.gamma))
    atomic_write_json(out / "summary.json", summary)


# ---------------------------------------------------------------------------------------------
# evaluate


def cmd_evaluate(args, argv) -> int:
    import jax

    from jaxdqn.checkpoint import CheckpointError, load_checkpoint
    from jaxdqn.io import ConfigFileError, atomic_write_json, load_config_file
    from jaxdqn.sweep import evaluation_keys, make_run_batch

    if args.episodes < 1:
        raise UserError(f"--episodes={args.episodes} is invalid: must be >= 1")
    path = Path(args.run)
    run_config = None
    if path.is_dir():
        ckpt_path = path / "checkpoint.msgpack"
        if not ckpt_path.exists():
            raise UserError(f"{str(path)!r} holds no checkpoint.msgpack: not a finished or "
                            "interrupted jaxdqn run folder")
        if (path / "config.json").exists():
            try:
                data = load_config_file(path / "config.json")
            except ConfigFileError as e:
                raise UserError(str(e)) from None
            run_config = _make_config(_base_config(), dict(data.get("config") or {}))
    elif path.exists():
        ckpt_path = path
    else:
        raise UserError(f"{str(path)!r} does not exist")
    try:
        ckpt = load_checkpoint(ckpt_path, config=run_config)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    config = ckpt.config
    if ckpt.metadata.get("complete") is False:
        _say(f"note: {str(ckpt_path)!r} holds the params of an interrupted run, after "
             f"{ckpt.metadata.get('env_steps_done')} of {config.total_timesteps} env steps")
    seed = args.seed if args.seed is not None else int(ckpt.metadata.get("seed", 0))
    if not 0 <= seed < 2**32:
        raise UserError(f"--seed={seed} is invalid: must be in [0, 2**32)")
    if args.gymnasium:
        _check_gymnasium_env(config)

    threshold = solve_threshold(config)
    batch = make_run_batch(config)
    returns = jax.device_get(batch.evaluate(ckpt.params, evaluation_keys(seed, ckpt.num_seeds),
                                            args.episodes))
    rows = _eval_rows(returns, threshold)
    result = {"checkpoint": str(ckpt_path), "env_id": config.env_id,
              "jax": _eval_summary(rows, threshold, args.episodes, seed)}
    extra = None
    if args.gymnasium:
        import numpy as np

        gym = [gymnasium_returns(config, jax.tree.map(lambda x: np.asarray(x)[i], ckpt.params),
                                 args.episodes, seed, i) for i in range(ckpt.num_seeds)]
        gym_rows = _eval_rows(np.stack(gym), threshold)
        result["gymnasium"] = _eval_summary(gym_rows, threshold, args.episodes, seed)
        result["gymnasium"]["keys"] = "env.reset(seed=SeedSequence([seed, seed_index, episode]))"
        # The table's "solved" column is Gymnasium's verdict in this mode.
        extra = {"gymnax mean": [r["mean"] for r in rows]}
        rows = gym_rows
        print(f"{config.env_id}: {ckpt.num_seeds} seed(s) in Gymnasium {_gym_version()} "
              f"(numpy forward pass), {args.episodes} episodes each")
    print(_format_eval_table(rows, threshold, extra,
                             "gymnasium mean" if args.gymnasium else "mean return"))
    if args.json:
        try:
            atomic_write_json(args.json, result)
        except OSError as e:
            raise UserError(f"cannot write --json {args.json!r}: {e.strerror or e}") from None
    return 0


def _base_config():
    from jaxdqn.config import DQNConfig

    return DQNConfig()


GYMNASIUM_ENV_IDS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")


def _check_gymnasium_env(config) -> None:
    if config.env_id not in GYMNASIUM_ENV_IDS:
        raise UserError(f"--gymnasium cross-checks {', '.join(GYMNASIUM_ENV_IDS)} only; this run "
                        f"is on {config.env_id!r}")
    import gymnasium

    limit = gymnasium.spec(config.env_id).max_episode_steps
    if config.max_episode_steps not in (None, limit):
        raise UserError(f"--gymnasium uses {config.env_id}'s standard time limit of {limit} steps;"
                        f" this run uses max_episode_steps={config.max_episode_steps}")


def _gym_version() -> str:
    import gymnasium

    return gymnasium.__version__


def numpy_q_values(params, obs):
    """Q-values of ``QNetwork`` params (one seed) in numpy: ReLU after every layer but the last."""
    import numpy as np

    layers = params["params"]
    names = sorted(layers, key=lambda n: int(n.rsplit("_", 1)[1]))
    x = np.asarray(obs, np.float32)
    for i, name in enumerate(names):
        x = x @ np.asarray(layers[name]["kernel"]) + np.asarray(layers[name]["bias"])
        if i < len(names) - 1:
            x = np.maximum(x, 0.0)
    return x


def gymnasium_returns(config, params, num_episodes: int, seed: int, seed_index: int):
    """``f64[num_episodes]``: greedy returns in ``gymnasium.make(config.env_id)``.

    All episodes run in lockstep so each step needs one batched forward pass; episode ``e`` is
    reset with a seed drawn from ``SeedSequence([seed, seed_index, e])``.
    """
    import gymnasium
    import numpy as np

    envs = [gymnasium.make(config.env_id) for _ in range(num_episodes)]
    obs = np.stack([
        env.reset(seed=int(np.random.SeedSequence([seed, seed_index, e]).generate_state(1)[0]))[0]
        for e, env in enumerate(envs)
    ])
    returns = np.zeros(num_episodes)
    alive = np.ones(num_episodes, bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        actions = np.argmax(numpy_q_values(params, obs[idx]), axis=-1)
        for i, a in zip(idx, actions):
            o, r, terminated, truncated, _ = envs[i].step(int(a))
            obs[i] = o
            returns[i] += r
            alive[i] = not (terminated or truncated)
    for env in envs:
        env.close()
    return returns


# ---------------------------------------------------------------------------------------------
# sweep


def split_values(text: str) -> list[str]:
    """Splits ``"a,b,[1,2]"`` on the commas outside brackets: ``["a", "b", "[1,2]"]``."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["learning_rate=1e-4,1e-3", ...]`` -> ``{"learning_rate": [1e-4, 1e-3], ...}``."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, text = _parse_assignment(spec, "--grid")
        if name in grid:
            raise UserError(f"--grid {name} is given twice; list all its values in one --grid")
        values = split_values(text)
        if any(v == "" for v in values):
            raise UserError(f"--grid {spec!r} has an empty value")
        grid[name] = [parse_field_value(name, v, "--grid") for v in values]
    return grid


def cmd_sweep(args, argv) -> int:
    from jaxdqn.io import atomic_write_json
    from jaxdqn.sweep import check_sweep_fits, expand_grid, iter_sweep, shape_groups

    base, _ = resolve_config(args.preset, args.config, args.sets, args.env)
    if not args.grid:
        raise UserError("sweep needs at least one --grid FIELD=V1,V2,...")
    grid = parse_grid(args.grid)
    _check_counts(args, args.seeds, args.seed)
    try:
        groups = shape_groups(expand_grid(base, grid))
        check_sweep_fits(groups, args.seeds)
    except ValueError as e:
        raise UserError(str(e)) from None
    out = _prepare_out(args.out, _default_out("sweep-", base.env_id), SWEEP_FILES, args.overwrite)
    atomic_write_json(out / "config.json", {
        "config": base.to_dict(), "grid": grid, "seeds": args.seeds, "seed": args.seed,
        "eval_episodes": args.episodes,
        "groups": [{"static": g.static_values(list(grid)),
                    "combinations": [c.index for c in g.combinations]} for g in groups],
        **_provenance(argv),
    })
    num_combos = sum(len(g.combinations) for g in groups)
    _say(f"sweep: {num_combos} combinations x {args.seeds} seeds = {num_combos * args.seeds} runs "
         f"in {len(groups)} compiled group{'s' * (len(groups) != 1)} -> {out}")

    results, progress = [], None

    def describe(gi, group):
        static = ", ".join(f"{k}={_show(v)}" for k, v in group.static_values(list(grid)).items())
        return f"group {gi + 1}/{len(groups)}" + (f" ({static})" if static else "")

    def on_compile(gi, group):
        nonlocal progress
        if progress is not None:
            progress.close()
            progress = None
        if not args.no_progress:
            _say(f"compiling {describe(gi, group)}: {len(group.combinations)} combinations x "
                 f"{args.seeds} seeds ...")

    def on_group_start(gi, group):
        nonlocal progress
        progress = _Progress(describe(gi, group), group.config.total_timesteps,
                             len(group.combinations) * args.seeds, enabled=not args.no_progress)

    def on_chunk(gi, chunk):
        progress.update(chunk.rows_done * groups[gi].config.log_interval,
                        _latest_returns(chunk.metrics))

    t0 = time.perf_counter()
    try:
        for res in iter_sweep(groups, args.seeds, args.seed, args.episodes,
                              on_compile=on_compile, on_group_start=on_group_start,
                              on_chunk=on_chunk):
            results.append(res)
            _write_sweep_files(out, grid, groups, results, args, time.perf_counter() - t0)
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        _say(f"interrupted after {len(results)} of {len(groups)} groups; results of finished "
             f"groups are in {out}")
        return EXIT_INTERRUPTED
    if progress is not None:
        progress.close()
    ranked = _write_sweep_files(out, grid, groups, results, args, time.perf_counter() - t0)
    print(_format_sweep_table(ranked, grid, solve_threshold(base)))
    print(f"sweep folder: {out}")
    return 0


def _show(v) -> str:
    if isinstance(v, tuple):
        return str(list(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def _write_sweep_files(out: Path, grid, groups, results, args, seconds: float):
    import numpy as np

    from jaxdqn.io import atomic_save_npz, atomic_write_csv, atomic_write_json
    from jaxdqn.plotting import plot_sweep
    from jaxdqn.sweep import rank_combinations

    ranked = rank_combinations(results)
    threshold = solve_threshold(groups[0].config)
    fields = list(grid)
    solved = lambda r: None if threshold is None else float(np.mean(r > threshold))  # noqa: E731
    atomic_write_csv(
        out / "sweep.csv",
        ["rank", *fields, "group", "mean", "std", "median", "min", "max", "solved_fraction"],
        ([rc.rank, *(_csv_value(rc.combination.values[f]) for f in fields), rc.group_index,
          rc.mean, rc.std, rc.median, rc.min, rc.max, solved(rc.final_returns)] for rc in ranked),
    )
    runs, npz = [], {}
    for res in results:
        finals = res.eval_returns.astype(np.float64).mean(axis=-1)
        for ci, combo in enumerate(res.group.combinations):
            last = _latest_returns(type(res.metrics)(*(m[ci] for m in res.metrics)))
            for s in range(args.seeds):
                runs.append([combo.index, *(_csv_value(combo.values[f]) for f in fields), s,
                             float(finals[ci, s]), None if np.isnan(last[s]) else float(last[s])])
            npz[f"c{combo.index}/env_steps"] = res.metrics.env_steps[ci, 0]
            npz[f"c{combo.index}/episode_return"] = res.metrics.episode_return[ci]
            npz[f"c{combo.index}/td_loss"] = res.metrics.td_loss[ci]
    runs.sort(key=lambda r: (r[0], r[len(fields) + 1]))
    atomic_write_csv(out / "sweep_runs.csv",
                     ["combination", *fields, "seed_index", "final_greedy_return",
                      "final_training_return"], runs)
    atomic_save_npz(out / "sweep_metrics.npz", npz)
    by_index = {}
    for res in results:
        for ci, combo in enumerate(res.group.combinations):
            by_index[combo.index] = (res.metrics.env_steps[ci, 0], res.metrics.episode_return[ci])
    label = lambda values: ", ".join(_show(values[f]) for f in fields)  # noqa: E731
    curves = [(label(rc.combination.values), *by_index[rc.combination.index]) for rc in ranked]
    finals = [(label(rc.combination.values), rc.final_returns) for rc in ranked]
    done = sum(len(r.group.combinations) for r in results)
    total = sum(len(g.combinations) for g in groups)
    title = (f"Sweep on {groups[0].config.env_id}: {total} combinations x {args.seeds} seeds"
             + ("" if done == total else f" ({done} finished so far)"))
    plot_sweep(curves, finals, out / "sweep.png", title, ", ".join(fields), threshold)
    atomic_write_json(out / "summary.json", {
        "complete": done == total, "combinations_done": done, "combinations": total,
        "groups_done": len(results), "groups": len(groups), "seconds": seconds,
        "solve_threshold": threshold,
        "ranking": [{"rank": rc.rank, "combination": rc.combination.index,
                     "values": rc.combination.values, "group": rc.group_index, "mean": rc.mean,
                     "std": rc.std, "median": rc.median, "min": rc.min, "max": rc.max,
                     "final_returns": rc.final_returns} for rc in ranked],
    })
    return ranked


def _csv_value(v):
    return str(list(v)) if isinstance(v, tuple) else v


def _format_sweep_table(ranked, grid, threshold) -> str:
    import numpy as np

    fields = list(grid)
    head = ["rank", *fields, "mean return", "std", "median", "min", "max"]
    if threshold is not None:
        head.append("solved")
    rows = []
    for rc in ranked:
        row = [str(rc.rank), *(str(list(rc.combination.values[f]))
                               if isinstance(rc.combination.values[f], tuple)
                               else f"{rc.combination.values[f]:g}"
                               if isinstance(rc.combination.values[f], float)
                               else str(rc.combination.values[f]) for f in fields),
               f"{rc.mean:.2f}", f"{rc.std:.2f}", f"{rc.median:.2f}", f"{rc.min:.1f}",
               f"{rc.max:.1f}"]
        if threshold is not None:
            row.append(f"{int(np.sum(rc.final_returns > threshold))}/{len(rc.final_returns)}")
        rows.append(row)
    widths = [max(len(c) for c in col) for col in zip(head, *rows)]
    fmt = lambda row: "  ".join(c.rjust(w) for c, w in zip(row, widths))  # noqa: E731
    n = len(ranked[0].final_returns) if ranked else 0
    title = f"ranked by mean final greedy return over {n} seeds (best first)"
    return "\n".join([title, fmt(head), "  ".join("-" * w for w in widths), *map(fmt, rows)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
