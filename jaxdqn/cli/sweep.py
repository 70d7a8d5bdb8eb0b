"""``jaxdqn sweep``: every combination of a hyperparameter grid x seeds, ranked; writes a sweep
folder."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxdqn import run_folder
from jaxdqn.cli import interrupts
from jaxdqn.cli.config import presets_epilog, wrap
from jaxdqn.cli.distributed import add_distributed_options, check_seed_split, is_writer, seed_share
from jaxdqn.cli.loggers import add_logging_options, check_logging_extras, open_loggers
from jaxdqn.cli.options import (
    add_config_options,
    add_out_options,
    check_counts,
    check_learns,
    parse_assignment,
    parse_field_value,
    refuse_settings_on_resume,
    resolve_config,
    traced_fields,
)
from jaxdqn.cli.outputs import default_out, prepare_out, provenance
from jaxdqn.cli.parser import EXIT_INTERRUPTED, PROG, UserError, say
from jaxdqn.cli.reports import csv_value, latest_returns, show
from jaxdqn.cli.segments import SegmentLoop, until_stopped


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep", help="train every combination of a hyperparameter grid x seeds",
        description=wrap(
            "Train every combination of the --grid values times every seed. Hyperparameters "
            "that keep array shapes (" + ", ".join(traced_fields()) + ") are batched into one "
            "compiled, vmapped program; every other field (buffer_size, batch_size, "
            "hidden_sizes, ...) makes its own compiled group. Prints a ranked table and writes "
            f"{run_folder.SWEEP_TABLE}, {run_folder.SWEEP_RUNS} and {run_folder.SWEEP_PLOT}."),
        epilog=wrap(f"Example: {PROG} sweep --env CartPole-v1 --seeds 16 "
                    "--grid learning_rate=1e-4,2.5e-4,1e-3 --grid gamma=0.98,0.99 "
                    "--out runs/lr-gamma. Tuple values are bracketed: "
                    "--grid hidden_sizes=[64,64],[120,84]") + "\n\n" + presets_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(p)
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="values to sweep for one DQNConfig field (repeat for more fields)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="runs per combination (default 8)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="base seed; every combination uses the same seed keys (default 0)")
    p.add_argument("--episodes", type=int, default=None, metavar="E",
                   help="greedy evaluation episodes per run (default 100)")
    add_out_options(p, "runs/sweep-<env>-<time>")
    p.add_argument("--resume", metavar="SWEEP_DIR", default=None,
                   help="finish an interrupted sweep in SWEEP_DIR (settings come from its "
                        f"{run_folder.CONFIG}); the results equal an uninterrupted sweep's")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    add_logging_options(p, "grid point (the mean over its seeds)")
    add_distributed_options(p)
    p.set_defaults(handler=run)


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
        name, text = parse_assignment(spec, "--grid")
        if name in grid:
            raise UserError(f"--grid {name} is given twice; list all its values in one --grid")
        values = split_values(text)
        if any(v == "" for v in values):
            raise UserError(f"--grid {spec!r} has an empty value")
        grid[name] = [parse_field_value(name, v, "--grid") for v in values]
    return grid


def run(args, argv) -> int:
    writer = is_writer(args)  # --distributed: the group was joined before parsing (app.main)
    check_logging_extras(args)
    out, stored, base, grid = _settings(args)
    groups = _checked_groups(args, base, grid)
    if not writer:  # another process writes the folder; this one computes its share
        from jaxdqn.sweep import iter_sweep

        for _ in iter_sweep(groups, args.seeds, args.seed, args.episodes):
            interrupts.check()
        return 0
    group_layout = [{"static": g.static_values(list(grid)),
                     "combinations": [c.index for c in g.combinations]} for g in groups]
    if args.resume is not None:
        if json_round_trip(group_layout) != stored.get("groups"):
            raise UserError(f"--resume {str(out)!r}: this jaxdqn splits the grid into other "
                            "compiled groups than the one that started the sweep; start it "
                            "again with --overwrite")
        results, progress_of, prior_seconds = _load_progress(out, groups, args.seeds, args.seed)
        interrupts.on_force_exit(f"{out} is as it was; finish it with: {PROG} sweep --resume {out}")
    else:
        interrupts.check()
        out = _new_folder(args, argv, base, grid, group_layout)
        results, progress_of, prior_seconds = [], None, 0.0
    say(_announcement(args, out, groups, results, progress_of))
    return _sweep(args, out, base, grid, groups, results, progress_of, prior_seconds)


def _settings(args):
    """The sweep folder and its stored settings (``--resume``; else None, None), the base config
    and the grid; fills in ``args.seeds``, ``args.seed`` and ``args.episodes``."""
    if args.resume is not None:
        out, stored = _resume_folder(args)
        base, _ = resolve_config("seed", str(out / run_folder.CONFIG), [], None)
        grid = {k: [tuple(v) if isinstance(v, list) else v for v in values]
                for k, values in stored["grid"].items()}
        args.seeds, args.seed = int(stored["seeds"]), int(stored["seed"])
        args.episodes = int(stored.get("eval_episodes", 100))
        return out, stored, base, grid
    base, _ = resolve_config(args.preset, args.config, args.sets, args.env)
    if not args.grid:
        raise UserError("sweep needs at least one --grid FIELD=V1,V2,...")
    grid = parse_grid(args.grid)
    args.seeds = 8 if args.seeds is None else args.seeds
    args.seed = 0 if args.seed is None else args.seed
    args.episodes = 100 if args.episodes is None else args.episodes
    return None, None, base, grid


def _checked_groups(args, base, grid):
    """The grid's compiled groups, each combination checked (it learns, it fits), before
    anything is written or compiled."""
    import jax

    from jaxdqn.sweep import check_sweep_fits, expand_grid, shape_groups

    check_counts(args, args.seeds, args.seed)
    try:
        combinations = expand_grid(base, grid)
        for c in combinations:
            where = ", ".join(f"{k}={show(v)}" for k, v in c.values.items())
            check_learns(c.config, f"grid combination {where}: ")
        groups = shape_groups(combinations)
        check_seed_split(args.seeds)
        check_sweep_fits(groups, seed_share(args.seeds), jax.local_devices())
    except ValueError as e:
        raise UserError(str(e)) from None
    return groups


def _new_folder(args, argv, base, grid, group_layout) -> Path:
    """The sweep folder, prepared, with its ``CONFIG`` (removed again by a second Ctrl-C before
    anything is saved)."""
    from jaxdqn.io import atomic_write_json

    out = prepare_out(args.out, default_out("sweep-", base.env_id), run_folder.SWEEP_FILES,
                      args.overwrite)
    interrupts.on_force_exit(
        f"nothing saved; {out} holds no sweep and can be used again as --out",
        lambda: (out / run_folder.CONFIG).unlink(missing_ok=True))
    atomic_write_json(out / run_folder.CONFIG, {
        "config": base.to_dict(), "grid": grid, "seeds": args.seeds, "seed": args.seed,
        "eval_episodes": args.episodes, "groups": group_layout, **provenance(argv),
    })
    return out


def _announcement(args, out, groups, results, progress_of) -> str:
    num_combos = sum(len(g.combinations) for g in groups)
    runs = f"{num_combos} combinations x {args.seeds} seeds = {num_combos * args.seeds} runs"
    if args.resume is None:
        return f"sweep: {runs} in {len(groups)} compiled group{'s' * (len(groups) != 1)} -> {out}"
    part = (f" and group {progress_of.group_index + 1}'s first "
            f"{progress_of.rows_done * groups[progress_of.group_index].config.log_interval}"
            " env steps" if progress_of is not None else "")
    return f"resuming sweep: {runs}; {len(results)} of {len(groups)} groups done{part} -> {out}"


def json_round_trip(value):
    import json

    return json.loads(json.dumps(value))


def _resume_folder(args):
    """The sweep folder ``--resume`` names and its stored settings, or one line saying why not."""
    import json

    refuse_settings_on_resume(args, "sweep folder", **{
        "--grid": args.grid, "--seeds": args.seeds is not None, "--seed": args.seed is not None,
        "--episodes": args.episodes is not None})
    out = Path(args.resume)
    where = f"--resume {str(out)!r}"
    try:
        stored = json.loads((out / run_folder.CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{where}: no {run_folder.CONFIG} there, so it is not a sweep folder"
                        ) from None
    except (OSError, ValueError) as e:
        raise UserError(f"{where}: cannot read its {run_folder.CONFIG}: {e}") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("grid"), dict):
        if isinstance(stored, dict) and isinstance(stored.get("config"), dict):
            raise UserError(f"{where} is a train run's folder, not a sweep's; continue it with: "
                            f"{PROG} train --resume {out}")
        raise UserError(f"{where}: its {run_folder.CONFIG} is not a sweep's (no grid)")
    if (not (out / run_folder.SWEEP_RESUME).exists()
            and not (out / run_folder.RESUME_STATE).exists()):
        try:
            summary = (out / run_folder.SUMMARY).read_text(encoding="utf-8")
            done = json.loads(summary).get("complete")
        except (OSError, ValueError):
            done = False
        if done:
            raise UserError(f"{where}: the sweep is already complete")
    return out, stored


def _stored_column(stored, key: str, name: str):
    """``stored[key]`` as an array; the ``nonfinite`` column of a sweep saved before it existed
    reads as zeros (nothing flagged), shaped like ``env_steps`` beside it, and an option's column
    the sweep did not log (its option off) as None."""
    import numpy as np

    from jaxdqn.train import TrainMetrics

    if key not in stored and name in TrainMetrics._field_defaults:
        return None
    if name == "nonfinite" and key not in stored:
        return np.zeros(np.shape(stored[key[:-len(name)] + "env_steps"]), np.int32)
    return np.asarray(stored[key])


def _load_progress(out: Path, groups, num_seeds: int, seed: int):
    """The finished groups' results (``SWEEP_RESUME``), the group stopped part-way
    (``RESUME_STATE``, if it is the next group) and the seconds spent so far."""
    import numpy as np

    from jaxdqn.checkpoint import CheckpointError, load_resume_state
    from jaxdqn.sweep import GroupProgress, GroupResult, group_state_shape
    from jaxdqn.train import TrainMetrics

    results, seconds = [], 0.0
    if (out / run_folder.SWEEP_RESUME).exists():
        try:
            with np.load(out / run_folder.SWEEP_RESUME) as f:
                seconds = float(f["seconds"])
                for gi in range(int(f["groups_done"])):
                    metrics = TrainMetrics(*(_stored_column(f, f"g{gi}/{name}", name)
                                             for name in TrainMetrics._fields))
                    results.append(GroupResult(group_index=gi, group=groups[gi], metrics=metrics,
                                               params=None, eval_returns=f[f"g{gi}/eval_returns"]))
        except (OSError, ValueError, KeyError, IndexError) as e:
            raise UserError(f"--resume: {str(out / run_folder.SWEEP_RESUME)!r} is unreadable: {e}"
                            ) from None
    progress = None
    if (out / run_folder.RESUME_STATE).exists() and len(results) < len(groups):
        group = groups[len(results)]
        try:
            state, meta = load_resume_state(out / run_folder.RESUME_STATE,
                                            group_state_shape(group, num_seeds, seed),
                                            group.config)
        except CheckpointError as e:
            raise UserError(str(e)) from None
        if int(meta.get("group_index", -1)) == len(results):  # else stale: its group finished
            stored = meta.get("metrics")
            metrics = None if not stored else TrainMetrics(
                *(_stored_column(stored, name, name) for name in TrainMetrics._fields))
            progress = GroupProgress(group_index=len(results), state=state,
                                     rows_done=int(meta["rows_done"]), metrics=metrics)
            seconds = max(seconds, float(meta.get("seconds", 0.0)))
    return results, progress, seconds


def _save_finished(out: Path, results, seconds: float) -> None:
    """Writes every finished group's metrics and greedy returns for ``--resume``."""
    from jaxdqn.io import atomic_save_npz

    arrays = {"groups_done": len(results), "seconds": seconds}
    for res in results:
        for name, values in res.metrics.columns().items():
            arrays[f"g{res.group_index}/{name}"] = values
        arrays[f"g{res.group_index}/eval_returns"] = res.eval_returns
    atomic_save_npz(out / run_folder.SWEEP_RESUME, arrays)


def _sweep(args, out, base, grid, groups, results, resume, prior_seconds) -> int:
    from jaxdqn.envs import solve_threshold

    names = [f"c{c.index}_" + ",".join(f"{k}={show(v)}" for k, v in c.values.items())
             .replace("/", "_").replace(" ", "") for c in _in_grid_order(groups)]
    segment_log = open_loggers(args.tensorboard, args.wandb, out, names, out.name,
                               {**base.to_dict(), "grid": grid, "seeds": args.seeds},
                               args.seeds, base.log_interval)
    loop = SegmentLoop(segment_log, show_progress=not args.no_progress)
    t0 = time.perf_counter()
    seconds = lambda: prior_seconds + time.perf_counter() - t0  # noqa: E731
    work = lambda: _run_groups(args, out, grid, groups, results, resume, loop, seconds)  # noqa: E731
    if until_stopped(loop, work):
        return _save_stopped(out, groups, results, loop, seconds())
    with interrupts.writing():
        ranked = write_sweep_files(out, grid, groups, results, args, seconds())
        (out / run_folder.SWEEP_RESUME).unlink(missing_ok=True)
        (out / run_folder.RESUME_STATE).unlink(missing_ok=True)
        interrupts.on_force_exit(f"the sweep is complete in {out}")
    print(format_sweep_table(ranked, grid, solve_threshold(base)))
    print(f"sweep folder: {out}")
    return 0


def _run_groups(args, out, grid, groups, results, resume, loop: SegmentLoop, seconds) -> None:
    """Trains the groups left (``iter_sweep``), each through ``loop``, saving each finished group
    (``results`` grows by it)."""
    from jaxdqn.loggers import mean_over_seeds
    from jaxdqn.sweep import iter_sweep

    position = {c.index: i for i, c in enumerate(_in_grid_order(groups))}  # its logged run

    def describe(gi, group):
        static = ", ".join(f"{k}={show(v)}" for k, v in group.static_values(list(grid)).items())
        return f"group {gi + 1}/{len(groups)}" + (f" ({static})" if static else "")

    def on_compile(gi, group):
        loop.end()
        if not args.no_progress:
            say(f"compiling {describe(gi, group)}: {len(group.combinations)} combinations x "
                f"{args.seeds} seeds ...")

    def on_group_start(gi, group):
        interrupts.check()  # after compiling: a safe point
        resumed = resume is not None and resume.group_index == gi
        rows = resume.rows_done if resumed else 0
        loop.start(describe(gi, group), group.config, len(group.combinations) * args.seeds,
                   rows, [resume.metrics] if resumed and rows else [], group=gi,
                   logged=mean_over_seeds,  # each grid point: the mean over its seeds
                   log_runs=[position[c.index] for c in group.combinations])

    for res in iter_sweep(groups, args.seeds, args.seed, args.episodes, on_compile=on_compile,
                          on_group_start=on_group_start, on_segment=lambda gi, s: loop.add(s),
                          first_group=len(results), resume=resume):
        results.append(res)
        loop.end()
        with interrupts.writing():  # a second Ctrl-C waits for these files
            _save_finished(out, results, seconds())
            (out / run_folder.RESUME_STATE).unlink(missing_ok=True)  # its group has finished
            write_sweep_files(out, grid, groups, results, args, seconds())
            interrupts.on_force_exit(
                f"{len(results)} of {len(groups)} groups are saved in {out}; finish the "
                f"sweep with: {PROG} sweep --resume {out}")
        interrupts.check()  # between groups: a safe point


def _in_grid_order(groups) -> list:
    """Every combination of the groups, in the grid's order (one logged run each)."""
    return sorted((c for g in groups for c in g.combinations), key=lambda c: c.index)


def _save_stopped(out, groups, results, loop: SegmentLoop, seconds: float) -> int:
    """After a stop: the group in progress (if it ran a segment in this session; with several
    processes its state is spread over them, so only finished groups) and the finished groups."""
    import jax

    from jaxdqn.checkpoint import save_resume_state
    from jaxdqn.runs import concat_metrics

    gi = loop.group
    with interrupts.writing():  # a second Ctrl-C waits until this is saved
        if gi is not None and loop.latest is not None and jax.process_count() == 1:
            config = groups[gi].config
            save_resume_state(
                out / run_folder.RESUME_STATE, loop.latest.saved_state(), config, {
                    "group_index": gi, "rows_done": loop.rows_done, "seconds": seconds,
                    "metrics": concat_metrics(loop.metrics, 2).columns()})
            say(f"interrupted: saved group {gi + 1}/{len(groups)} after "
                f"{loop.rows_done * config.log_interval} of {config.total_timesteps} env steps "
                "per run")
        if results:
            _save_finished(out, results, seconds)
        nothing = not results and not (out / run_folder.RESUME_STATE).exists()
        if nothing:
            (out / run_folder.CONFIG).unlink(missing_ok=True)
        interrupts.on_force_exit()
    if nothing:
        say(f"interrupted before any training was saved: {out} holds no sweep and can be "
            "used again as --out")
    else:
        kept = f" (their results are in {out})" if results else ""
        say(f"interrupted with {len(results)} of {len(groups)} groups finished{kept}; finish "
            f"the sweep with: {PROG} sweep --resume {out}")
    return EXIT_INTERRUPTED


def write_sweep_files(out: Path, grid, groups, results, args, seconds: float):
    """The sweep's files (``SWEEP_TABLE``, ``SWEEP_RUNS``, ``SWEEP_METRICS``, ``SWEEP_PLOT``,
    ``SUMMARY``) for the groups finished so far; returns the ranked combinations."""
    import numpy as np

    from jaxdqn.envs import solve_threshold
    from jaxdqn.io import atomic_save_npz, atomic_write_csv, atomic_write_json
    from jaxdqn.plotting import plot_sweep
    from jaxdqn.sweep import rank_combinations

    ranked = rank_combinations(results)
    threshold = solve_threshold(groups[0].config)
    fields = list(grid)
    solved = lambda r: None if threshold is None else float(np.mean(r > threshold))  # noqa: E731
    atomic_write_csv(
        out / run_folder.SWEEP_TABLE,
        ["rank", *fields, "group", "mean", "std", "median", "min", "max", "solved_fraction"],
        ([rc.rank, *(csv_value(rc.combination.values[f]) for f in fields), rc.group_index,
          rc.mean, rc.std, rc.median, rc.min, rc.max, solved(rc.final_returns)] for rc in ranked),
    )
    runs, npz = [], {}
    for res in results:
        finals = res.eval_returns.astype(np.float64).mean(axis=-1)
        for ci, combo in enumerate(res.group.combinations):
            last = latest_returns(type(res.metrics)(*(None if m is None else m[ci]
                                                      for m in res.metrics)))
            for s in range(args.seeds):
                runs.append([combo.index, *(csv_value(combo.values[f]) for f in fields), s,
                             float(finals[ci, s]), None if np.isnan(last[s]) else float(last[s])])
            npz[f"c{combo.index}/env_steps"] = res.metrics.env_steps[ci, 0]
            npz[f"c{combo.index}/episode_return"] = res.metrics.episode_return[ci]
            npz[f"c{combo.index}/td_loss"] = res.metrics.td_loss[ci]
    runs.sort(key=lambda r: (r[0], r[len(fields) + 1]))
    atomic_write_csv(out / run_folder.SWEEP_RUNS,
                     ["combination", *fields, "seed_index", "final_greedy_return",
                      "final_training_return"], runs)
    atomic_save_npz(out / run_folder.SWEEP_METRICS, npz)
    by_index = {}
    for res in results:
        for ci, combo in enumerate(res.group.combinations):
            by_index[combo.index] = (res.metrics.env_steps[ci, 0], res.metrics.episode_return[ci])
    label = lambda values: ", ".join(show(values[f]) for f in fields)  # noqa: E731
    curves = [(label(rc.combination.values), *by_index[rc.combination.index]) for rc in ranked]
    finals = [(label(rc.combination.values), rc.final_returns) for rc in ranked]
    done = sum(len(r.group.combinations) for r in results)
    total = sum(len(g.combinations) for g in groups)
    title = (f"Sweep on {groups[0].config.env_id}: {total} combinations x {args.seeds} seeds"
             + ("" if done == total else f" ({done} finished so far)"))
    plot_sweep(curves, finals, out / run_folder.SWEEP_PLOT, title, ", ".join(fields), threshold)
    atomic_write_json(out / run_folder.SUMMARY, {
        "complete": done == total, "combinations_done": done, "combinations": total,
        "groups_done": len(results), "groups": len(groups), "seconds": seconds,
        "solve_threshold": threshold,
        "ranking": [{"rank": rc.rank, "combination": rc.combination.index,
                     "values": rc.combination.values, "group": rc.group_index, "mean": rc.mean,
                     "std": rc.std, "median": rc.median, "min": rc.min, "max": rc.max,
                     "final_returns": rc.final_returns} for rc in ranked],
    })
    return ranked


def format_sweep_table(ranked, grid, threshold) -> str:
    import numpy as np

    fields = list(grid)
    head = ["rank", *fields, "mean return", "std", "median", "min", "max"]
    if threshold is not None:
        head.append("solved")
    rows = []
    for rc in ranked:
        row = [str(rc.rank), *(show(rc.combination.values[f]) for f in fields),
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
