"""``jaxdqn train``: seeds vmapped in one compiled program, progress, Ctrl-C and ``--resume``,
then a greedy evaluation; writes a run folder."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

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
    refuse_settings_on_resume,
    resolve_config,
)
from jaxdqn.cli.outputs import default_out, prepare_out, provenance
from jaxdqn.cli.parser import EXIT_INTERRUPTED, PROG, UserError, say
from jaxdqn.cli.progress import PROGRESS_SEGMENTS
from jaxdqn.cli.reports import (
    eval_rows,
    eval_summary,
    first_nonfinite_rows,
    format_eval_table,
    format_final_vs_best,
    latest_returns,
    method_name,
    nonfinite_line,
)
from jaxdqn.cli.segments import SegmentLoop, ready_state, run_segments, until_stopped


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train DQN on several seeds at once and write a run folder",
        description=wrap("Train DQN with every seed vmapped in one compiled program; show "
                         "progress; evaluate the greedy policy of each seed; write config, "
                         "metrics, plot and checkpoint to --out."),
        epilog=wrap("Config resolution: --preset, then --config FILE, then each --set, then "
                    f"--env; '{PROG} config' shows every field. Example: {PROG} train --env "
                    "CartPole-v1 --seeds 8 --out runs/cp --set learning_rate=1e-3 "
                    "--set hidden_sizes=64,64") + "\n\n" + presets_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(p)
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="number of independent runs, vmapped together (default 1, or the "
                        "value stored in a run's config.json given to --config)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="base seed: run i uses jax.random.split(jax.random.key(S), N)[i] "
                        "(default 0)")
    p.add_argument("--episodes", type=int, default=100, metavar="E",
                   help="greedy evaluation episodes per seed at the end (default 100)")
    add_out_options(p, "runs/<env>-<time>")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue an interrupted run in RUN_DIR (settings come from its "
                        "config.json); the result is the same as an uninterrupted run")
    p.add_argument("--no-progress", action="store_true",
                   help="run the whole training as one compiled call, without progress output")
    add_logging_options(p, "seed")
    add_distributed_options(p)
    p.set_defaults(handler=run)


def run(args, argv) -> int:
    writer = is_writer(args)  # --distributed: the group was joined before parsing (app.main)
    check_logging_extras(args)
    if args.resume is not None:
        return _resume(args, argv)
    config, run_settings = resolve_config(args.preset, args.config, args.sets, args.env)
    num_seeds = args.seeds if args.seeds is not None else int(run_settings.get("seeds", 1))
    seed = args.seed if args.seed is not None else int(run_settings.get("seed", 0))
    check_counts(args, num_seeds, seed)
    check_learns(config)
    check_seed_split(num_seeds)
    check_memory(config, num_seeds)
    interrupts.check()
    if not writer:  # another process writes the folder; this one only computes
        return train_folder(config, num_seeds, seed, args.episodes, Path(args.out or "."),
                            args.no_progress, writer=False)  # the same segments: the same gathers
    out = prepare_out(args.out, default_out("", config.env_id), run_folder.RUN_FILES,
                      args.overwrite)
    from jaxdqn.io import atomic_write_json

    interrupts.on_force_exit(f"nothing saved; {out} holds no run and can be used again as --out",
                             lambda: (out / run_folder.CONFIG).unlink(missing_ok=True))
    atomic_write_json(out / run_folder.CONFIG, {
        "config": config.to_dict(), "seeds": num_seeds, "seed": seed,
        "eval_episodes": args.episodes, **provenance(argv),
    })
    return train_folder(config, num_seeds, seed, args.episodes, out, args.no_progress,
                        loggers=(args.tensorboard, args.wandb))


def check_memory(config, num_seeds: int) -> None:
    """Refuses, before anything is written or compiled, runs that will not fit in memory (this
    process's share of the seeds on its devices)."""
    import jax

    from jaxdqn.memory import check_fits
    from jaxdqn.runs import run_devices

    share = seed_share(num_seeds)
    try:
        check_fits(config, share, run_devices(share, jax.local_devices()), can_limit=False,
                   in_segments=True)
    except ValueError as e:
        raise UserError(str(e)) from None


def _resume(args, argv) -> int:
    refuse_settings_on_resume(args, "run folder", **{"--seeds": args.seeds, "--seed": args.seed})
    out = Path(args.resume)
    if not (out / run_folder.CONFIG).is_file():
        raise UserError(f"--resume {str(out)!r}: no {run_folder.CONFIG} there, so it is not a run "
                        "folder")
    try:
        with open(out / run_folder.CONFIG, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError):
        stored = None  # resolve_config below reports what is wrong with it
    if isinstance(stored, dict) and "grid" in stored:
        raise UserError(f"--resume {str(out)!r} is a sweep's folder, not a train run's; finish it "
                        f"with: {PROG} sweep --resume {out}")
    if not (out / run_folder.RESUME_STATE).is_file():
        done = ((out / run_folder.SUMMARY).is_file()
                and (out / run_folder.FINAL_CHECKPOINT).is_file())
        raise UserError(f"--resume {str(out)!r}: no {run_folder.RESUME_STATE} there"
                        + ("; the run is already complete" if done else ""))
    config, settings = resolve_config("seed", str(out / run_folder.CONFIG), [], None)
    episodes = int(stored.get("eval_episodes", args.episodes))  # resolve_config read it
    check_memory(config, int(settings["seeds"]))
    interrupts.on_force_exit(f"{out} is as it was; continue it with: {PROG} train --resume {out}")
    return train_folder(config, int(settings["seeds"]), int(settings["seed"]), episodes, out,
                        args.no_progress, resume=True, loggers=(args.tensorboard, args.wandb))


class _Job(NamedTuple):
    """One ``jaxdqn train`` as every process runs it (``writer``: this process writes and
    prints)."""

    config: Any
    num_seeds: int
    seed: int
    num_episodes: int
    out: Path
    writer: bool
    continue_with: str | None = None  # the command that continues a stopped run

    def report(self, message: str) -> None:
        if self.writer:  # the others only compute
            say(message)


class _Start(NamedTuple):
    """Where training starts: a resume file's state (None: from init), its metric rows and the
    seconds trained before."""

    saved: Any = None
    rows_done: int = 0
    metrics: tuple = ()
    train_seconds: float = 0.0


def train_folder(config, num_seeds: int, seed: int, num_episodes: int, out: Path,
                 no_progress: bool, resume: bool = False,
                 loggers: tuple[bool, bool] = (False, False), writer: bool = True,
                 continue_with: str | None = None, log_name: str | None = None) -> int:
    """Trains, saves and evaluates the run of run folder ``out`` (its ``CONFIG`` written by the
    caller; ``resume``: from its ``RESUME_STATE``); returns the exit code. With several
    processes (``--distributed``) every process runs this with the same arguments (the
    collectives must match); only the ``writer`` writes files and prints results. A stopped run
    names ``continue_with`` (default ``jaxdqn train --resume OUT``) as the command that
    continues it (``jaxdqn suite`` names its own); ``log_name`` names the run in the loggers
    (default: ``out``'s name)."""
    from jaxdqn.runs import make_runs, rows_per_segment, seed_keys

    job = _Job(config, num_seeds, seed, num_episodes, out, writer, continue_with)
    batch = make_runs(config, num_seeds)
    keys = _host(seed_keys(seed, num_seeds))
    start = _load_start(batch, keys, out) if resume else _Start()
    job.report(_announcement(job, batch, resume))
    left = config.num_log_rows - start.rows_done
    segment_rows = left if no_progress or not left else rows_per_segment(left, PROGRESS_SEGMENTS)
    state, compile_seconds = ready_state(batch, keys, None, start.saved, start.rows_done,
                                         segment_rows, job.report)
    if interrupts.requested():  # a stop while setting up or compiling: nothing trained yet
        return _stopped_before_training(job, resume)
    segment_log = open_loggers(*loggers, out, [f"seed_{i}" for i in range(num_seeds)],
                               log_name or out.name, {**config.to_dict(), "seeds": num_seeds,
                                               "seed": seed},
                               num_seeds, config.log_interval) if any(loggers) and writer else None
    loop = SegmentLoop(segment_log, show_progress=writer and not no_progress)
    loop.start(f"{config.env_id} x{num_seeds}", config, num_seeds, start.rows_done,
               start.metrics)
    t_train = time.perf_counter()
    interrupted = until_stopped(loop, lambda: run_segments(loop, batch, state, None,
                                                           start.rows_done, segment_rows))
    session_seconds = time.perf_counter() - t_train
    if loop.latest is not None:
        state = loop.latest.state
    if interrupted:
        job.report(f"interrupted: saving the {loop.rows_done * config.log_interval} env steps "
                   "per run done so far")
    timing = {"compile_seconds": compile_seconds,
              "train_seconds": start.train_seconds + session_seconds,
              "env_steps_per_second": (loop.rows_done - start.rows_done) * config.log_interval
              * num_seeds / max(session_seconds, 1e-9)}
    return _finish(job, batch, state, loop, interrupted, timing)


def _host(keys):
    """Keys as every process passes them: host arrays with several processes (the same in each),
    else as they are."""
    import jax

    from jaxdqn.runs import host_key_data

    return host_key_data(keys) if jax.process_count() > 1 else keys


def _load_start(batch, keys, out: Path) -> _Start:
    """The state, metric rows and seconds of ``out``'s resume file."""
    from jaxdqn.checkpoint import CheckpointError, load_resume_state

    try:
        state, meta = load_resume_state(out / run_folder.RESUME_STATE,
                                        batch.state_shape(keys, None), batch.config)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    rows_done = int(meta["rows_done"])
    return _Start(saved=state, rows_done=rows_done,
                  metrics=(_metrics_from(meta["metrics"]),) if rows_done else (),
                  train_seconds=float(meta.get("train_seconds", 0.0)))


def _announcement(job: _Job, batch, resume: bool) -> str:
    import jax

    num_devices = len(batch.devices)
    on_devices = f" split across {num_devices} devices" if num_devices > 1 else ""
    if jax.process_count() > 1:
        on_devices += f" of {jax.process_count()} processes"
    n, config = job.num_seeds, job.config
    return (f"{'resuming' if resume else 'training'} {n} seed{'s' * (n != 1)} of "
            f"{method_name(config)} on {config.env_id}, {config.total_timesteps} env steps each"
            f"{on_devices} -> {job.out}")


def _stopped_before_training(job: _Job, resume: bool) -> int:
    out = job.out
    if not job.writer:
        pass
    elif resume:
        say(f"interrupted before training resumed: {out} is as it was" + _continue_hint(job))
    else:
        (out / run_folder.CONFIG).unlink(missing_ok=True)
        say(f"interrupted before training: nothing saved; {out} holds no run and can be "
            "used again as --out")
    return EXIT_INTERRUPTED


def _finish(job: _Job, batch, state, loop: SegmentLoop, interrupted: bool, timing: dict) -> int:
    """After training (whole or stopped): the results gathered, saved, then evaluated."""
    import numpy as np

    from jaxdqn.runs import concat_metrics
    from jaxdqn.train import best_params

    config, num_seeds = job.config, job.num_seeds
    metrics = concat_metrics(loop.metrics, 1) if loop.metrics else None
    params = state.train.params  # on the devices, for the evaluation
    best = best_params(state)
    host_params, host_best = batch.results(params), batch.results(best)  # a collective
    rows_done = loop.rows_done
    summary = {
        "env_id": config.env_id, "num_seeds": num_seeds, "seed": job.seed,
        "total_timesteps": config.total_timesteps,
        "env_steps_done": rows_done * config.log_interval,
        "rows_done": rows_done, "num_log_rows": config.num_log_rows,
        "complete": rows_done == config.num_log_rows, "interrupted": interrupted, **timing,
        "final_training_return": None if metrics is None
        else [None if np.isnan(v) else float(v) for v in latest_returns(metrics)],
        # Per seed: did its TD loss or Q-values stop being finite (or its params)?
        "diverged": diverged_seeds(metrics, host_params, num_seeds),
        "first_nonfinite": first_nonfinite(metrics),
    }
    for run, first in enumerate(summary["first_nonfinite"]):
        if first is not None:
            job.report(nonfinite_line(run, first["row"], first["bits"], first["env_steps"]))
    if any(summary["diverged"]):
        job.report(f"warning: diverged (TD loss or Q-values not finite): "
                   f"{_seed_list(summary['diverged'])}; lower learning_rate or set max_grad_norm")
    if best is not None:
        summary["best_during_training"] = _best_summary(host_best, config)
    if not job.writer:
        return _evaluate_quietly(batch, params, best, job.seed, num_seeds, job.num_episodes,
                                 interrupted)
    _save(job, batch, state, metrics, host_params, host_best, summary)
    if interrupted:
        say(f"partial run saved in {job.out}" + _continue_hint(job))
        return EXIT_INTERRUPTED
    if interrupts.requested():
        say(f"interrupted before the evaluation: the run is complete in {job.out}; evaluate it "
            f"with: {PROG} evaluate {job.out}")
        return EXIT_INTERRUPTED
    return _evaluate(job, batch, params, best, summary)


def _continue_hint(job: _Job) -> str:
    """How to continue a stopped run: ``--resume`` (one process only, which holds the state)."""
    import jax

    command = job.continue_with or f"{PROG} train --resume {job.out}"
    return "" if jax.process_count() > 1 else f"; continue it with: {command}"


def _save(job: _Job, batch, state, metrics, host_params, host_best, summary) -> None:
    """The run files; when stopped, first what ``--resume`` needs: the state and metric rows."""
    import jax

    from jaxdqn.checkpoint import save_resume_state

    out, interrupted = job.out, summary["interrupted"]
    resume_path = out / run_folder.RESUME_STATE
    with interrupts.writing():  # a second Ctrl-C waits for these files
        if interrupted and jax.process_count() == 1:
            save_resume_state(resume_path, batch.saved_state(state), job.config, {
                "rows_done": summary["rows_done"], "train_seconds": summary["train_seconds"],
                "metrics": None if metrics is None else metrics.columns()})
        write_run_files(out, job.config, job.num_seeds, job.seed, metrics, host_params, summary,
                        host_best)
        if not interrupted:
            resume_path.unlink(missing_ok=True)
        interrupts.on_force_exit(
            f"the run is complete in {out}; evaluate it with: {PROG} evaluate {out}"
            if not interrupted else f"partial run saved in {out}" + _continue_hint(job))


def _evaluate(job: _Job, batch, params, best, summary) -> int:
    """The greedy evaluation after training (of the best params too), its table and summary."""
    from jaxdqn.envs import solve_threshold
    from jaxdqn.io import atomic_write_json
    from jaxdqn.runs import evaluation_keys

    n = job.num_episodes
    say(f"trained in {summary['train_seconds']:.1f} s (+{summary['compile_seconds']:.1f} s "
        f"compile); evaluating {n} greedy episodes per seed ...")
    eval_keys = _host(evaluation_keys(job.seed, job.num_seeds))
    threshold = solve_threshold(job.config)
    rows = eval_rows(batch.results(batch.evaluate(params, eval_keys, n)), threshold)
    summary["evaluation"] = eval_summary(rows, threshold, n, job.seed)
    if best is not None:  # the same fresh episodes for the best params
        best_rows = eval_rows(batch.results(batch.evaluate(best.params, eval_keys, n)),
                              threshold)
        summary["evaluation_best"] = eval_summary(best_rows, threshold, n, job.seed)
    atomic_write_json(job.out / run_folder.SUMMARY, summary)
    print(format_eval_table(rows, threshold, diverged=summary["diverged"]))
    if best is not None:
        print(format_final_vs_best(rows, best_rows, summary["best_during_training"], threshold,
                                   n))
    print(f"run folder: {job.out}")
    if interrupts.requested():
        say("interrupted during the evaluation, which finished: the run folder is complete")
        return EXIT_INTERRUPTED
    return 0


def _evaluate_quietly(batch, params, best, seed, num_seeds, num_episodes, interrupted) -> int:
    """A non-writing process's part of the evaluation: the same computations and gathers as the
    writer's, in the same order, with nothing written or printed."""
    from jaxdqn.runs import evaluation_keys, host_key_data

    if interrupted or interrupts.requested():
        return EXIT_INTERRUPTED
    eval_keys = host_key_data(evaluation_keys(seed, num_seeds))
    batch.results(batch.evaluate(params, eval_keys, num_episodes))
    if best is not None:
        batch.results(batch.evaluate(best.params, eval_keys, num_episodes))
    return 0


def first_nonfinite(metrics) -> list[dict | None]:
    """Per seed, where its ``nonfinite`` metric column first flags a row: ``{"row", "env_steps",
    "bits"}`` (``bits``: ``jaxdqn.train.NONFINITE_LOSS``/``NONFINITE_PARAMS``); None while finite
    (every seed None without metric rows)."""
    import numpy as np

    if metrics is None:
        return []
    steps = np.asarray(metrics.env_steps)
    return [None if first is None else
            {"row": first[0], "env_steps": int(steps[run, first[0]]), "bits": first[1]}
            for run, first in enumerate(first_nonfinite_rows(metrics))]


def diverged_seeds(metrics, params, num_seeds: int) -> list[bool]:
    """Per seed: a row with gradient steps whose mean TD loss or Q-values is not finite, or final
    params that are not. (Rows without a gradient step hold NaN by design.)"""
    import jax
    import numpy as np

    bad = np.zeros(num_seeds, bool)
    for leaf in jax.tree.leaves(params):
        leaf = np.asarray(leaf).reshape(num_seeds, -1)
        bad |= ~np.isfinite(leaf).all(axis=1)
    if metrics is not None:
        updates = np.asarray(metrics.updates)
        stepped = np.diff(updates, axis=-1, prepend=0) > 0
        with np.errstate(invalid="ignore"):
            for name in ("td_loss", "q_taken", "q_max"):
                values = np.asarray(getattr(metrics, name))
                bad |= (stepped & ~np.isfinite(values)).any(axis=-1)
    return bad.tolist()


def _seed_list(flags) -> str:
    seeds = [str(i) for i, f in enumerate(flags) if f]
    return f"seed{'s' * (len(seeds) != 1)} {', '.join(seeds)} of {len(flags)}"


def _metrics_from(stored: dict):
    import numpy as np

    from jaxdqn.train import TrainMetrics

    rows = np.shape(stored["env_steps"])
    missing = np.full(rows, np.nan, np.float32)  # eval columns of runs stored before they existed
    # runs stored before nonfinite: none flagged; an option's columns: None where it was off
    fill = {"nonfinite": np.zeros(rows, np.int32), **TrainMetrics._field_defaults}
    return TrainMetrics(*(np.asarray(stored[f]) if f in stored else fill.get(f, missing)
                          for f in TrainMetrics._fields))


def _best_summary(best, config) -> dict:
    """Each seed's best evaluation during training: its selection score and when it ran."""
    import numpy as np

    return {"eval_interval": config.eval_interval, "eval_episodes": config.eval_episodes,
            "eval_return": np.asarray(best.eval_return, np.float64).tolist(),
            "env_steps": np.asarray(best.env_steps).tolist(),
            "note": "eval_return is the maximum over evaluations of a few episodes each: it "
                    "overstates the params it picked; see evaluation_best for fresh episodes"}


def write_run_files(out: Path, config, num_seeds, seed, metrics, params, summary,
                    best=None) -> None:
    """Checkpoints (final, and with evaluation during training the best), metrics (npz and csv),
    learning curve and summary of a finished or stopped run."""
    import numpy as np

    from jaxdqn.checkpoint import save_checkpoint
    from jaxdqn.envs import solve_threshold
    from jaxdqn.io import atomic_save_npz, atomic_write_csv, atomic_write_json
    from jaxdqn.plotting import plot_learning_curves

    meta = {"seed": seed, "env_steps_done": summary["env_steps_done"],
            "complete": summary["complete"]}
    save_checkpoint(out / run_folder.FINAL_CHECKPOINT, params, config, {**meta, "which": "final"})
    if best is not None:
        best_info = summary["best_during_training"]
        save_checkpoint(out / run_folder.BEST_CHECKPOINT, best.params, config,
                        {**meta, "which": "best", "best_eval_return": best_info["eval_return"],
                         "best_env_steps": best_info["env_steps"]})
    if metrics is not None:
        arrays = {f: np.asarray(v) for f, v in metrics.columns().items()}
        atomic_save_npz(out / run_folder.METRICS_NPZ,
                        {**arrays, "seed_index": np.arange(num_seeds)})
        rows = ([s, r, *(column[s, r].item() for column in arrays.values())]
                for s in range(num_seeds) for r in range(arrays["env_steps"].shape[1]))
        atomic_write_csv(out / run_folder.METRICS_CSV, ["seed_index", "row", *arrays], rows)
        title = f"{method_name(config)} on {config.env_id}"
        if not summary["complete"]:
            title += (f" (interrupted at {summary['env_steps_done']} of "
                      f"{config.total_timesteps} steps)")
        if any(summary.get("diverged", ())):
            title += f" - diverged: {_seed_list(summary['diverged'])}"
        plot_learning_curves(metrics, out / run_folder.LEARNING_CURVE, title,
                             solve_threshold(config), config.env_id, config.gamma)
    atomic_write_json(out / run_folder.SUMMARY, summary)
