"""``jaxdqn suite``: a benchmark of variants x games x seeds (``suite run``), each (game, variant)
cell one run folder trained as ``jaxdqn train`` trains one, and its report across games
(``suite report``: rliable aggregates, a table and figures)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NamedTuple

from jaxdqn import run_folder
from jaxdqn.cli import interrupts
from jaxdqn.cli.config import wrap
from jaxdqn.cli.loggers import add_logging_options, check_logging_extras
from jaxdqn.cli.options import check_learns, parse_assignment, parse_field_value
from jaxdqn.cli.outputs import provenance
from jaxdqn.cli.parser import EXIT_INTERRUPTED, PROG, OneLineParser, UserError, positive_int, say
from jaxdqn.cli.sweep import split_values
from jaxdqn.suite import default_preset

SPEC_EXAMPLE = """\
spec file (TOML or JSON; jaxdqn suite run ablation.toml runs/ablation):
  seeds = 3                      # runs per cell, vmapped in one program
  episodes = 100                 # greedy episodes per run after training: its score
  [set]                          # every cell
  total_timesteps = 1_000_000
  [games]                        # env id -> {preset = NAME, FIELD = VALUE, ...}
  "Breakout-MinAtar" = {}        # (default preset: minatar-fast for MinAtar games)
  [variants]                     # name -> changes on the game's preset
  dqn = {}
  n3 = {n_step = 3}
  rainbow = {preset = "rainbow-minatar"}

the same with flags:
  jaxdqn suite run runs/ablation --game Breakout-MinAtar --variant dqn \\
      --variant n3:n_step=3 --variant rainbow:preset=rainbow-minatar --seeds 3"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "suite", help="a benchmark of variants x games x seeds, and its report across games",
        description=wrap(
            "A benchmark suite: every variant (config changes on a game's preset) on every game "
            "(env id) with the same seeds. 'suite run' trains each (game, variant) cell as one "
            "compiled program vmapped over its seeds, into DIR/<game>/<variant>/ (a jaxdqn train "
            "run folder); a Ctrl-C leaves DIR resumable by the same command. 'suite report' "
            "aggregates the runs' scores across games (rliable: IQM, optimality gap, probability "
            "of improvement, performance profiles, stratified-bootstrap intervals)."),
        epilog=f"Run '{PROG} suite run --help' and '{PROG} suite report --help'. Docs: "
               "docs/cli.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=_no_subcommand)
    sub2 = p.add_subparsers(dest="suite_command", metavar="SUBCOMMAND",
                            parser_class=OneLineParser)
    r = sub2.add_parser(
        "run", help="train every cell of a suite (or resume it)",
        usage=f"{PROG} suite run [SPEC] DIR [--game ENV_ID[:FIELD=VALUE,...]] "
              "[--variant NAME[:FIELD=VALUE,...]] [--set FIELD=VALUE] [--seeds N] [--seed S] "
              "[--episodes E] [--report] [--tensorboard] [--wandb]",
        description=wrap(
            "Train every (game, variant) cell of a suite spec, game by game, into DIR. The spec "
            "comes from SPEC (a TOML or JSON file), the flags (added to SPEC's), or, when neither "
            f"is given, DIR's own {run_folder.SUITE_SPEC}. Run again with the same spec (or none) "
            "to resume: finished cells are skipped, a stopped cell continues from its resume "
            "state; a different spec for the same DIR is refused."),
        epilog=SPEC_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("paths", nargs="+", metavar="[SPEC] DIR",
                   help="the spec file (optional) and the suite folder")
    r.add_argument("--game", action="append", default=[], metavar="ENV_ID[:FIELD=VALUE,...]",
                   help="a game: an env id, optionally with preset=NAME and field changes "
                        "(repeatable)")
    r.add_argument("--variant", action="append", default=[], metavar="NAME[:FIELD=VALUE,...]",
                   help="a variant: a name, optionally with preset=NAME and field changes, "
                        "comma-separated (tuples bracketed: hidden_sizes=[64,64]; repeatable)")
    r.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="sets",
                   help="a DQNConfig field for every cell (repeatable)")
    r.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="runs per cell (default 3)")
    r.add_argument("--seed", type=int, default=None, metavar="S",
                   help="base seed: every cell trains with the same seed keys (default 0)")
    r.add_argument("--episodes", type=int, default=None, metavar="E",
                   help="greedy evaluation episodes per run after training (default 100)")
    r.add_argument("--report", action="store_true",
                   help="when every cell is done, write the report (suite report's defaults)")
    add_logging_options(r, "seed of each cell", folder="DIR/GAME/VARIANT", view="DIR")
    r.add_argument("--dry-run", action="store_true",
                   help="check the spec and show each cell's config (the fields where it "
                        "differs from its game's first variant); write and train nothing")
    r.set_defaults(handler=run)
    q = sub2.add_parser(
        "report", help="aggregate a suite's scores across games: table and figures",
        description=wrap(
            "Aggregate the scores of a suite's finished runs (each run's mean greedy return "
            "after training) across the games on which every reported variant has finished: "
            "scores normalised per game by the baseline variant's mean (or by reference "
            "scores), median, IQM, mean, optimality gap, probability of improvement over the "
            "baseline and performance profiles, each with a 95% stratified-bootstrap interval "
            f"(rliable; {'pip install jaxdqn[study]'}). Prints the table and writes "
            f"{run_folder.SUITE_REPORT}, {run_folder.SUITE_REPORT_JSON}, "
            f"{run_folder.SUITE_AGGREGATES_PLOT}, {run_folder.SUITE_PROFILES_PLOT} and "
            f"{run_folder.SUITE_CURVES_PLOT} in DIR."),
        epilog=wrap('--reference FILE is JSON: {"Breakout-MinAtar": {"random": 0.5, '
                    '"reference": 10.0}, ...} (optionally "source": "where the numbers come '
                    'from"); a score then reads (score - random) / (reference - random).'),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("folders", nargs="+", metavar="DIR",
                   help="the suite folder; several are reported together (their variants side by "
                        "side, a variant in two of them taken from the first)")
    q.add_argument("--baseline", default=None, metavar="VARIANT",
                   help="the variant others are compared with, and (without --reference) each "
                        "game's scale (default: the suite's first variant)")
    q.add_argument("--reference", default=None, metavar="FILE",
                   help="normalise by reference scores from FILE instead of the baseline's mean")
    q.add_argument("--variants", default=None, metavar="V1,V2,...",
                   help="report these variants only (default: all)")
    q.add_argument("--games", default=None, metavar="G1,G2,...",
                   help="report these games only (default: all)")
    q.add_argument("--reps", type=positive_int, default=2000, metavar="N",
                   help="bootstrap resamples per interval (default 2000)")
    q.add_argument("--seed", type=int, default=0, metavar="S",
                   help="the bootstrap's seed (default 0)")
    q.add_argument("--out", default=None, metavar="FOLDER",
                   help="write the report there (default: DIR), e.g. a second report with "
                        "another --baseline")
    q.set_defaults(handler=report)


def _no_subcommand(args, argv) -> int:
    raise UserError(f"choose a suite subcommand: run or report (see '{PROG} suite --help')")


# ---------------------------------------------------------------------------------------------
# Spec from the command line


def parse_entry(text: str, option: str) -> tuple[str, dict[str, Any]]:
    """``"n3:n_step=3,gamma=0.98"`` -> ``("n3", {"n_step": 3, "gamma": 0.98})``: a game or
    variant of the command line (``preset=NAME`` kept as text, every other value read as its
    field's type); ``option`` names the flag in errors."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise UserError(f"{option} {text!r} is invalid: expected NAME[:FIELD=VALUE,...]")
    table: dict[str, Any] = {}
    if rest.strip():
        for item in split_values(rest):
            field, value = parse_assignment(item, f"{option} {name}:")
            if field in table:
                raise UserError(f"{option} {name}: {field} is given twice")
            table[field] = (value.strip() if field == "preset"
                            else parse_field_value(field, value, f"{option} {name}"))
    return name, table


def flags_spec(args) -> dict[str, Any]:
    """The spec table the flags give (empty when they give nothing)."""
    from jaxdqn.suite import check_variant_names

    games = [parse_entry(text, "--game") for text in args.game]
    variants = [parse_entry(text, "--variant") for text in args.variant]
    names = [g for g, _ in games]
    if len(set(names)) != len(names):
        raise UserError(f"--game {next(g for g in names if names.count(g) > 1)} is given twice")
    try:
        check_variant_names([v for v, _ in variants], "--variant")
    except ValueError as e:
        raise UserError(str(e)) from None
    sets = {}
    for text in args.sets:
        field, value = parse_assignment(text, "--set")
        sets[field] = parse_field_value(field, value, "--set")
    spec = {"seeds": args.seeds, "seed": args.seed, "episodes": args.episodes, "set": sets,
            "games": dict(games), "variants": dict(variants)}
    return {k: v for k, v in spec.items() if v not in (None, {}, [])}


def _paths(paths: list[str]) -> tuple[Path | None, Path]:
    if len(paths) > 2:
        raise UserError(f"suite run takes [SPEC] DIR, got {len(paths)} paths: "
                        f"{' '.join(paths)}")
    if len(paths) == 1 and Path(paths[0]).is_file():
        raise UserError(f"{paths[0]!r} is a file: give the suite folder after it: "
                        f"{PROG} suite run {paths[0]} DIR")
    return (Path(paths[0]) if len(paths) == 2 else None), Path(paths[-1])


# ---------------------------------------------------------------------------------------------
# suite run


def run(args, argv) -> int:
    from jaxdqn.cli.train import check_memory

    check_logging_extras(args)
    spec_path, out = _paths(args.paths)
    spec, cells, resuming = _spec_and_cells(spec_path, flags_spec(args), out)
    for cell in cells:
        check_learns(cell.config, f"{cell.label}: ")
    if not resuming:
        _check_new_folder(out, cells)
    states = _checked_states(out, cells, spec)
    for config in {c.config: None for c in cells if states[c] in ("new", "partial")}:
        check_memory(config, spec.seeds)
    if args.dry_run:
        print(_describe_cells(spec, cells, states))
        return 0
    interrupts.check()
    if not resuming:
        _new_suite(out, spec, cells, argv)
    say(_announcement(out, spec, cells, states, resuming))
    code = _run_cells(out, spec, cells, argv, loggers=(args.tensorboard, args.wandb))
    if code != 0:
        return code
    _print_scores(out, spec, cells)
    print(f"suite folder: {out}")
    if args.report:
        return _report([out], ReportOptions())
    say(f"report with: {PROG} suite report {out}")
    return 0


def _spec_and_cells(spec_path: Path | None, flags: dict, out: Path):
    """``(spec, cells, resuming)``: the spec given (a file and flags) or, when none is, the one
    stored in ``out``; a suite already in ``out`` keeps its stored cells, and a spec that differs
    from its own is refused, naming the differences."""
    from jaxdqn.suite import (
        config_differences,
        load_spec_file,
        merge_specs,
        read_suite_file,
        spec_differences,
        spec_from_dict,
    )

    stored = None
    if (out / run_folder.SUITE_SPEC).exists():
        try:
            stored = read_suite_file(out)
        except ValueError as e:
            raise UserError(str(e)) from None
    again = f"resume it with '{PROG} suite run {out}' or choose another folder"
    if spec_path is None and not flags:
        if stored is None:
            raise UserError(f"{str(out)!r} holds no suite ({run_folder.SUITE_SPEC}): give a spec "
                            "file or --game and --variant flags")
        return *stored, True
    if stored is not None and spec_path is None and not (flags.get("games")
                                                         or flags.get("variants")):
        given = [f"--{k}" for k in ("seeds", "seed", "episodes", "set") if k in flags]
        raise UserError(f"{str(out)!r} holds a suite, whose spec cannot change ("
                        f"{', '.join(given)} given); {again}")
    try:
        data = merge_specs(None if spec_path is None else load_spec_file(spec_path), flags)
        spec = spec_from_dict(data, "the flags" if spec_path is None else str(spec_path))
        cells = spec.cells()
    except ValueError as e:
        raise UserError(str(e)) from None
    if stored is None:
        return spec, cells, False
    differences = spec_differences(stored[0].to_dict(), spec.to_dict())
    for old, new in zip(stored[1], cells):
        if not differences and old.config != new.config:
            differences = [f"cell {old.label} resolves to another config now: "
                           + "; ".join(config_differences(old.config, new.config))]
    if differences:
        raise UserError(f"{str(out)!r} holds a suite of another spec ({'; '.join(differences)}); "
                        + again)
    return *stored, True


def _describe_cells(spec, cells, states: dict) -> str:
    """One line per cell: its state, method, steps, and the fields where its config differs
    from its game's first variant's (the first: from its preset)."""
    from jaxdqn.cli.reports import method_name, plain_table
    from jaxdqn.config import preset

    rows, first = [], {}
    for cell in cells:
        base = first.setdefault(cell.game, cell.config)
        if base is cell.config:
            name = next((v.preset for v in spec.variants if v.name == cell.variant), None)
            game = next(g for g in spec.games if g.name == cell.game)
            source = name.get(cell.game) if isinstance(name, dict) else name
            source = source or game.preset or default_preset(cell.game)
            base, what = preset(source), f"preset {source}: "
        else:
            what = f"vs {cells[[c.game for c in cells].index(cell.game)].variant}: "
        a, b = base.to_dict(), cell.config.to_dict()
        changed = ", ".join(f"{k}={b[k]}" for k in b if a[k] != b[k] and k != "env_id")
        changed = changed or "the same"
        rows.append([cell.label, states[cell], method_name(cell.config),
                     str(cell.config.total_timesteps), what + changed])
    return (f"{len(cells)} cells x {spec.seeds} seeds (seed {spec.seed}, {spec.episodes} "
            "evaluation episodes)\n" + plain_table(["cell", "state", "method", "env steps",
                                                     "config"], rows))


def _checked_states(out: Path, cells, spec) -> dict:
    """Each cell's state; refuses a cell folder holding a run of another config or seeds."""
    import json

    from jaxdqn.suite import cell_state, config_differences, stored_cell_config

    states = {}
    for cell in cells:
        folder = out / cell.folder
        state = cell_state(folder)
        if state.status != "new":
            config = stored_cell_config(folder)
            settings = json.loads((folder / run_folder.CONFIG).read_text(encoding="utf-8")) \
                if config is not None else {}
            if config != cell.config or (settings.get("seeds"), settings.get("seed")) != (
                    spec.seeds, spec.seed):
                what = ("no readable config" if config is None else
                        "; ".join(config_differences(config, cell.config))
                        or f"seeds {settings.get('seeds')}, seed {settings.get('seed')}")
                raise UserError(f"{str(folder)!r} holds a run that is not this suite's cell "
                                f"({what}); move it away to train the cell again")
        states[cell] = state.status
    return states


def _check_new_folder(out: Path, cells) -> None:
    """Refuses a new suite's folder that is a file or holds a run or a sweep, or a cell folder
    that holds a run."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{str(out)!r} is a file, not a folder")
    for folder, what in ((out, "a run or a sweep"),
                         *((out / c.folder, f"a run (cell {c.label})") for c in cells)):
        held = [f for f in dict.fromkeys((*run_folder.RUN_FILES, *run_folder.SWEEP_FILES))
                if (folder / f).exists()]
        if held:
            raise UserError(f"{str(folder)!r} already holds {what} ({', '.join(held)}); choose "
                            "another suite folder")


def _new_suite(out: Path, spec, cells, argv) -> None:
    """Creates the suite folder with its ``SUITE_SPEC``."""
    from jaxdqn.suite import write_suite_file

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create suite folder {str(out)!r}: {e.strerror or e}") from None
    with interrupts.writing():
        write_suite_file(out, spec, cells, provenance(argv))


def _announcement(out: Path, spec, cells, states: dict, resuming: bool) -> str:
    g, v = len(spec.games), len(spec.variants)
    what = (f"{g} game{'s' * (g != 1)} x {v} variant{'s' * (v != 1)} x {spec.seeds} seed"
            f"{'s' * (spec.seeds != 1)} = {len(cells) * spec.seeds} runs in {len(cells)} compiled "
            f"program{'s' * (len(cells) != 1)}")
    if not resuming:
        return f"suite: {what} -> {out}"
    done = sum(s == "done" for s in states.values())
    partial = sum(s in ("partial", "trained") for s in states.values())
    return (f"resuming suite: {what}; {done} of {len(cells)} cells done"
            + (f", {partial} part-way" if partial else "") + f" -> {out}")


def _run_cells(out: Path, spec, cells, argv, loggers: tuple[bool, bool] = (False, False)) -> int:
    """Trains (or resumes, or evaluates) every unfinished cell in order, each logging to
    ``loggers`` (TensorBoard, W&B) in its own folder; 130 after a stop."""
    from jaxdqn.cli.train import train_folder
    from jaxdqn.suite import cell_state

    again = f"{PROG} suite run {out}"
    try:
        for i, cell in enumerate(cells):
            interrupts.check()  # between cells: a safe point
            folder = out / cell.folder
            status = cell_state(folder).status
            if status == "done":
                continue
            say(f"cell {i + 1}/{len(cells)}: {cell.label}"
                + {"new": "", "partial": " (resuming)", "trained": " (evaluating)"}[status])
            if status == "trained":  # stopped after training, before its evaluation
                code = _evaluate_cell(folder, cell, spec)
            else:
                if status == "new":
                    _new_cell(folder, cell, spec, argv, again)
                else:
                    interrupts.on_force_exit(f"{folder} is as it was; resume the suite with: "
                                             f"{again}")
                code = train_folder(cell.config, spec.seeds, spec.seed, spec.episodes, folder,
                                    no_progress=False, resume=status == "partial",
                                    loggers=loggers, log_name=cell.label, continue_with=again)
            if code != 0:
                return _stopped(out, cells, again)
            done = sum(cell_state(out / c.folder).status == "done" for c in cells)
            interrupts.on_force_exit(f"{done} of {len(cells)} cells are finished in {out}; "
                                     f"resume the suite with: {again}")
    except KeyboardInterrupt:
        return _stopped(out, cells, again)
    return 0


def _stopped(out: Path, cells, again: str) -> int:
    from jaxdqn.suite import cell_state

    status = [cell_state(out / c.folder).status for c in cells]
    partial = sum(s in ("partial", "trained") for s in status)
    say(f"interrupted: {status.count('done')} of {len(cells)} cells finished"
        + (f", {partial} part-way" if partial else "") + f"; resume the suite with: {again}")
    return EXIT_INTERRUPTED


def _new_cell(folder: Path, cell, spec, argv, again: str) -> None:
    """The cell's run folder with its ``CONFIG``, as ``jaxdqn train`` starts one (files of an
    earlier start that saved nothing are the suite's own: removed)."""
    from jaxdqn.io import atomic_write_json

    folder.mkdir(parents=True, exist_ok=True)
    for name in run_folder.RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    interrupts.on_force_exit(f"{folder} saved nothing; resume the suite with: {again}",
                             lambda: (folder / run_folder.CONFIG).unlink(missing_ok=True))
    with interrupts.writing():
        atomic_write_json(folder / run_folder.CONFIG, {
            "config": cell.config.to_dict(), "seeds": spec.seeds, "seed": spec.seed,
            "eval_episodes": spec.episodes, "suite": {"game": cell.game, "variant": cell.variant},
            **provenance(argv)})


def _evaluate_cell(folder: Path, cell, spec) -> int:
    """The greedy evaluation after training of a cell stopped between its training and its
    evaluation: the same keys and program as ``jaxdqn train``'s, into its ``SUMMARY``."""
    import json

    from jaxdqn.checkpoint import CheckpointError, load_checkpoint
    from jaxdqn.cli.reports import eval_rows, eval_summary, format_eval_table
    from jaxdqn.envs import solve_threshold
    from jaxdqn.io import atomic_write_json
    from jaxdqn.runs import evaluation_keys, make_runs

    summary = json.loads((folder / run_folder.SUMMARY).read_text(encoding="utf-8"))
    threshold = solve_threshold(cell.config)
    runs = make_runs(cell.config, spec.seeds)
    keys = evaluation_keys(spec.seed, spec.seeds)
    evaluated = {}
    for key, name in (("evaluation", run_folder.FINAL_CHECKPOINT),
                      ("evaluation_best", run_folder.BEST_CHECKPOINT)):
        if not (folder / name).is_file():
            continue
        try:
            params = load_checkpoint(folder / name, config=cell.config).params
        except CheckpointError as e:
            raise UserError(str(e)) from None
        interrupts.check()
        rows = eval_rows(runs.results(runs.evaluate(params, keys, spec.episodes)), threshold)
        evaluated[key] = eval_summary(rows, threshold, spec.episodes, spec.seed)
        if key == "evaluation":
            print(format_eval_table(rows, threshold, diverged=summary.get("diverged")))
    with interrupts.writing():
        atomic_write_json(folder / run_folder.SUMMARY, {**summary, **evaluated})
    return 0


def _print_scores(out: Path, spec, cells) -> None:
    """Each cell's mean score over its runs: variants by games."""
    from jaxdqn.cli.reports import plain_table
    from jaxdqn.suite import cell_state

    games = [g.name for g in spec.games]
    rows = []
    for v in spec.variants:
        row = [v.name]
        for game in games:
            state = cell_state(out / game / v.name)
            row.append(f"{state.summary['evaluation']['mean_over_seeds']:.2f}"
                       if state.status == "done" else "-")
        rows.append(row)
    print(f"mean greedy return over {spec.seeds} runs ({spec.episodes} episodes each)")
    print(plain_table(["variant", *games], rows))


# ---------------------------------------------------------------------------------------------
# suite report


class ReportOptions(NamedTuple):
    """What ``suite report`` reports (None: its default) and where it writes (None: the suite
    folder)."""

    baseline: str | None = None
    reference: str | None = None
    variants: list[str] | None = None
    games: list[str] | None = None
    reps: int = 2000
    seed: int = 0
    out: Path | None = None


def report(args, argv) -> int:
    def names(text):
        return None if text is None else [v.strip() for v in text.split(",")]

    return _report([Path(f) for f in args.folders], ReportOptions(
        args.baseline, args.reference, names(args.variants), names(args.games), args.reps,
        args.seed, None if args.out is None else Path(args.out)))


def _report(folders: list[Path], options: ReportOptions) -> int:
    from jaxdqn.suite_report import require_rliable

    if not 0 <= options.seed < 2**32:
        raise UserError(f"--seed={options.seed} is invalid: must be in [0, 2**32)")
    cells, variants, all_games = _suite_cells(folders)
    chosen = options.variants or variants
    baseline = options.baseline or chosen[0]
    for v in [*chosen, baseline]:
        if v not in variants:
            raise UserError(f"variant {v!r} is not in the suite; its variants: "
                            f"{', '.join(variants)}")
    if baseline not in chosen:
        raise UserError(f"--baseline {baseline} is not among --variants {','.join(chosen)}")
    for g in options.games or ():
        if g not in all_games:
            raise UserError(f"game {g!r} is not in the suite; its games: {', '.join(all_games)}")
    out = options.out or folders[0]
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file, not a folder")
    try:  # after the options: a typo is named before a missing extra
        require_rliable()
    except ImportError as e:
        raise UserError(str(e)) from None
    return _write_report(folders, out, cells, options._replace(
        baseline=baseline, variants=chosen, games=options.games or all_games))


def _suite_cells(folders: list[Path]):
    """``([(folder, cell), ...], variants, games)`` of one or more suite folders, in order; a
    variant of a later folder that an earlier one has is taken from the earlier one if its
    cells' configs are the same there, else refused."""
    from jaxdqn.suite import read_suite_file

    cells, variants, games = [], [], []
    seen: dict[tuple[str, str], tuple[Path, object]] = {}
    for folder in folders:
        try:
            spec, suite_cells = read_suite_file(folder)
        except ValueError as e:
            raise UserError(str(e)) from None
        for cell in suite_cells:
            key = (cell.game, cell.variant)
            if key in seen:
                first, config = seen[key]
                if config != cell.config:
                    raise UserError(f"variant {cell.variant!r} on {cell.game} is in {str(first)!r}"
                                    f" and, with another config, in {str(folder)!r}: report "
                                    "them apart, or rename one")
                continue
            seen[key] = (folder, cell.config)
            cells.append((folder, cell))
        variants += [v.name for v in spec.variants if v.name not in variants]
        games += [g.name for g in spec.games if g.name not in games]
    return cells, variants, games


def _write_report(folders: list[Path], out: Path, cells, options: ReportOptions) -> int:
    from jaxdqn import suite_report as sr

    baseline, chosen, games = options.baseline, options.variants, options.games
    results, unfinished = sr.read_results(cells)
    done_games = sr.complete_games(games, chosen, results)
    left_out = [f"{g} (" + ", ".join(f"{v}: {unfinished.get((g, v), 'not in the suite')}"
                                     for v in chosen if (g, v) not in results) + ")"
                for g in games if g not in done_games]
    if not done_games:
        raise UserError(f"no game has finished every variant reported yet: {'; '.join(left_out)}"
                        f"; finish them with: {PROG} suite run {folders[0]}")
    raw = sr.score_matrices(results, done_games, chosen)
    try:
        norm = (sr.load_reference(options.reference, done_games)
                if options.reference is not None
                else sr.baseline_normalisation(raw, done_games, baseline))
    except ValueError as e:
        raise UserError(str(e)) from None
    agg = sr.aggregate(norm.apply(raw, done_games), baseline, options.reps, options.seed)
    table = sr.markdown_table(agg, raw, done_games, baseline)
    title = "Suite " + " + ".join(f.resolve().name for f in folders)
    text = sr.report_text(title, table, norm, done_games, results, chosen, options.reps,
                          options.seed, baseline, left_out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out {str(out)!r}: {e.strerror or e}") from None
    with interrupts.writing():
        sr.write_report(out, text, sr.report_json(agg, raw, norm, done_games, baseline,
                                                  options.reps, options.seed))
        sr.plot_aggregates(agg, baseline, norm, out / run_folder.SUITE_AGGREGATES_PLOT, title)
        sr.plot_profiles(agg, norm, out / run_folder.SUITE_PROFILES_PLOT, title)
        plotted = [g for g in games if any((g, v) in results for v in chosen)]
        sr.plot_curves(results, plotted, chosen, out / run_folder.SUITE_CURVES_PLOT, title)
    print(text, end="")
    print(f"report: {out / run_folder.SUITE_REPORT} (figures: {run_folder.SUITE_AGGREGATES_PLOT}, "
          f"{run_folder.SUITE_PROFILES_PLOT}, {run_folder.SUITE_CURVES_PLOT})")
    return 0
