"""``jaxdqn sweep``: every combination of a hyperparameter grid x seeds, ranked; writes a sweep
folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

from jaxdqn.cli import interrupts
from jaxdqn.cli.config import presets_epilog, wrap
from jaxdqn.cli.loggers import add_logging_options, open_loggers
from jaxdqn.cli.options import (add_config_options, add_out_options, check_counts, check_learns,
                                parse_assignment, parse_field_value, resolve_config,
                                traced_fields)
from jaxdqn.cli.outputs import SWEEP_FILES, default_out, prepare_out, provenance
from jaxdqn.cli.parser import EXIT_INTERRUPTED, PROG, UserError, say
from jaxdqn.cli.progress import Progress
from jaxdqn.cli.reports import csv_value, latest_returns, show


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep", help="train every combination of a hyperparameter grid x seeds",
        description=wrap(
            "Train every combination of the --grid values times every seed. Hyperparameters "
            "that keep array shapes (" + ", ".join(traced_fields()) + ") are batched into one "
            "compiled, vmapped program; every other field (buffer_size, batch_size, "
            "hidden_sizes, ...) makes its own compiled group. Prints a ranked table and writes "
            "sweep.csv, sweep_runs.csv and sweep.png."),
        epilog=wrap(f"Example: {PROG} sweep --env CartPole-v1 --seeds 16 "
                    "--grid learning_rate=1e-4,2.5e-4,1e-3 --grid gamma=0.98,0.99 "
                    "--out runs/lr-gamma. Tuple values are bracketed: "
                    "--grid hidden_sizes=[64,64],[120,84]") + "\n\n" + presets_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(p)
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="values to sweep for one DQNConfig field (repeat for more fields)")
    p.add_argument("--seeds", type=int, default=8, metavar="N",
                   help="runs per combination (default 8)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="base seed; every combination uses the same seed keys (default 0)")
    p.add_argument("--episodes", type=int, default=100, metavar="E",
                   help="greedy evaluation episodes per run (default 100)")
    add_out_options(p, "runs/sweep-<env>-<time>")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    add_logging_options(p, "grid point (the mean over its seeds)")
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
    from jaxdqn.envs import solve_threshold
    from jaxdqn.io import atomic_write_json
    from jaxdqn.sweep import check_sweep_fits, expand_grid, iter_sweep, shape_groups

    base, _ = resolve_config(args.preset, args.config, args.sets, args.env)
    if not args.grid:
        raise UserError("sweep needs at least one --grid FIELD=V1,V2,...")
    grid = parse_grid(args.grid)
    check_counts(args, args.seeds, args.seed)
    try:
        combinations = expand_grid(base, grid)
        for c in combinations:
            where = ", ".join(f"{k}={show(v)}" for k, v in c.values.items())
            check_learns(c.config, f"grid combination {where}: ")
        groups = shape_groups(combinations)
        check_sweep_fits(groups, args.seeds)
    except ValueError as e:
        raise UserError(str(e)) from None
    interrupts.check()
    out = prepare_out(args.out, default_out("sweep-", base.env_id), SWEEP_FILES, args.overwrite)
    atomic_write_json(out / "config.json", {
        "config": base.to_dict(), "grid": grid, "seeds": args.seeds, "seed": args.seed,
        "eval_episodes": args.episodes,
        "groups": [{"static": g.static_values(list(grid)),
                    "combinations": [c.index for c in g.combinations]} for g in groups],
        **provenance(argv),
    })
    num_combos = sum(len(g.combinations) for g in groups)
    say(f"sweep: {num_combos} combinations x {args.seeds} seeds = {num_combos * args.seeds} runs "
        f"in {len(groups)} compiled group{'s' * (len(groups) != 1)} -> {out}")

    results, progress = [], None
    combos = sorted((c for g in groups for c in g.combinations), key=lambda c: c.index)
    position = {c.index: i for i, c in enumerate(combos)}  # logged run of each combination
    names = [f"c{c.index}_" + ",".join(f"{k}={show(v)}" for k, v in c.values.items())
             .replace("/", "_").replace(" ", "") for c in combos]
    chunk_log = open_loggers(args.tensorboard, args.wandb, out, names, out.name,
                             {**base.to_dict(), "grid": grid, "seeds": args.seeds},
                             args.seeds, base.log_interval) \
        if args.tensorboard or args.wandb else None

    def describe(gi, group):
        static = ", ".join(f"{k}={show(v)}" for k, v in group.static_values(list(grid)).items())
        return f"group {gi + 1}/{len(groups)}" + (f" ({static})" if static else "")

    def on_compile(gi, group):
        nonlocal progress
        if progress is not None:
            progress.close()
            progress = None
        if not args.no_progress:
            say(f"compiling {describe(gi, group)}: {len(group.combinations)} combinations x "
                f"{args.seeds} seeds ...")

    def on_group_start(gi, group):
        nonlocal progress
        interrupts.check()  # after compiling: a safe point
        progress = Progress(describe(gi, group), group.config.total_timesteps,
                            len(group.combinations) * args.seeds, enabled=not args.no_progress)
        if chunk_log is not None:
            chunk_log.restart_clock()

    def on_segment(gi, segment):
        progress.update(segment.rows_done * groups[gi].config.log_interval,
                        latest_returns(segment.metrics))
        interrupts.check()
        if chunk_log is not None:  # each grid point: the mean over its seeds
            from jaxdqn.loggers import mean_over_seeds

            group_combos = groups[gi].combinations
            chunk_log.steps_per_row = groups[gi].config.log_interval
            chunk_log.log(mean_over_seeds(segment.metrics), segment.metrics.env_steps.shape[-1],
                          [position[c.index] for c in group_combos], len(group_combos))

    t0 = time.perf_counter()
    try:
        for res in iter_sweep(groups, args.seeds, args.seed, args.episodes,
                              on_compile=on_compile, on_group_start=on_group_start,
                              on_chunk=on_segment):
            results.append(res)
            write_sweep_files(out, grid, groups, results, args, time.perf_counter() - t0)
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        if chunk_log is not None:
            chunk_log.close()
        if not results:
            (out / "config.json").unlink(missing_ok=True)
            say(f"interrupted before any group finished: nothing saved; {out} holds no sweep and "
                "can be used again as --out")
        else:
            say(f"interrupted after {len(results)} of {len(groups)} groups; results of finished "
                f"groups are in {out}")
        return EXIT_INTERRUPTED
    if progress is not None:
        progress.close()
    if chunk_log is not None:
        chunk_log.close()
    ranked = write_sweep_files(out, grid, groups, results, args, time.perf_counter() - t0)
    print(format_sweep_table(ranked, grid, solve_threshold(base)))
    print(f"sweep folder: {out}")
    return 0


def write_sweep_files(out: Path, grid, groups, results, args, seconds: float):
    """sweep.csv, sweep_runs.csv, sweep_metrics.npz, sweep.png and summary.json of the groups
    finished so far; returns the ranked combinations."""
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
        out / "sweep.csv",
        ["rank", *fields, "group", "mean", "std", "median", "min", "max", "solved_fraction"],
        ([rc.rank, *(csv_value(rc.combination.values[f]) for f in fields), rc.group_index,
          rc.mean, rc.std, rc.median, rc.min, rc.max, solved(rc.final_returns)] for rc in ranked),
    )
    runs, npz = [], {}
    for res in results:
        finals = res.eval_returns.astype(np.float64).mean(axis=-1)
        for ci, combo in enumerate(res.group.combinations):
            last = latest_returns(type(res.metrics)(*(m[ci] for m in res.metrics)))
            for s in range(args.seeds):
                runs.append([combo.index, *(csv_value(combo.values[f]) for f in fields), s,
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
    label = lambda values: ", ".join(show(values[f]) for f in fields)  # noqa: E731
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
