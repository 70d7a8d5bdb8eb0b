"""``jaxdqn evaluate``: a run's greedy (or epsilon-greedy) policies, in gymnax and optionally in
Gymnasium itself (CartPole and friends) or the original MinAtar (MinAtar games)."""

from __future__ import annotations

from pathlib import Path

from jaxdqn import run_folder
from jaxdqn.cli import interrupts
from jaxdqn.cli.options import make_config
from jaxdqn.cli.parser import UserError, say
from jaxdqn.cli.reports import eval_rows, eval_summary, format_eval_table, format_final_vs_best


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a run's greedy policies",
        description="Load a run's checkpoint and evaluate each seed's greedy policy. With "
                    "--gymnasium, also run it in Gymnasium's own implementation of the "
                    "environment as a cross-check.",
    )
    p.add_argument("run", metavar="RUN_DIR",
                   help=f"a run folder, or a {run_folder.FINAL_CHECKPOINT} file")
    p.add_argument("--episodes", type=int, default=100, metavar="E",
                   help="episodes per seed (default 100)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="evaluation seed (default: the run's base seed, which reproduces the "
                        "evaluation printed at the end of training)")
    p.add_argument("--gymnasium", action="store_true",
                   help="also evaluate in gymnasium.make(env_id) (CartPole-v1, Acrobot-v1, "
                        "MountainCar-v0)")
    p.add_argument("--minatar", action="store_true",
                   help='also evaluate in the original MinAtar (pip install "jaxdqn[minatar]"), '
                        "with its sticky actions (0.1) and difficulty ramping, episodes cut at "
                        "the gymnax time limit")
    p.add_argument("--sticky-action-prob", type=float, default=None, metavar="P",
                   help="--minatar: the original's sticky-action probability (default 0.1, the "
                        "paper's, whatever the run's sticky_action_prob; 0: none)")
    p.add_argument("--epsilon", type=float, default=0.0, metavar="EPS",
                   help="act epsilon-greedily with EPS in both evaluations (default 0: greedy; "
                        "0.05 is the usual MinAtar/Atari protocol)")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="also write the results to FILE as JSON")
    p.add_argument("--video", metavar="FILE", default=None,
                   help="also write one greedy episode of Gymnasium's rendered env to FILE "
                        "(.mp4 or .gif; CartPole-v1, Acrobot-v1, MountainCar-v0; needs "
                        'pip install "jaxdqn[video]")')
    p.add_argument("--video-seed-index", type=int, default=0, metavar="I",
                   help="which seed of the run plays the video (default 0)")
    p.add_argument("--video-params", choices=("final", "best"), default="final",
                   help="the final params, or the best kept during training (default final)")
    p.set_defaults(handler=run)


def run(args, argv) -> int:
    from jaxdqn.envs import solve_threshold

    if args.episodes < 1:
        raise UserError(f"--episodes={args.episodes} is invalid: must be >= 1")
    path = Path(args.run)
    try:
        ckpt_path = run_folder.run_checkpoint_path(path)
    except run_folder.CheckpointError as e:
        raise UserError(str(e)) from None
    run_config = _run_config(path)
    ckpt = _load(ckpt_path, run_config)
    config = ckpt.config
    if ckpt.metadata.get("complete") is False:
        say(f"note: {str(ckpt_path)!r} holds the params of an interrupted run, after "
            f"{ckpt.metadata.get('env_steps_done')} of {config.total_timesteps} env steps")
    seed = _check_options(args, config, int(ckpt.metadata.get("seed", 0)))
    best_path = run_folder.best_checkpoint_path(path)
    best = None if best_path is None else _load(best_path, run_config)
    if args.video is not None:
        _check_video(args, config, ckpt.num_seeds, best is not None)

    threshold = solve_threshold(config)
    jax_returns = _jax_returns(args, config, ckpt.num_seeds, seed)
    rows = eval_rows(jax_returns(ckpt.params), threshold)
    result = {"checkpoint": str(ckpt_path), "env_id": config.env_id,
              "jax": eval_summary(rows, threshold, args.episodes, seed)}
    best_rows, best_info = None, None
    if best is not None:  # the same fresh episodes as the final params
        best_rows = eval_rows(jax_returns(best.params), threshold)
        best_info = {"eval_return": list(best.metadata.get("best_eval_return") or []),
                     "env_steps": list(best.metadata.get("best_env_steps") or [])}
        result["jax_best"] = {**eval_summary(best_rows, threshold, args.episodes, seed),
                              "checkpoint": str(best_path),
                              "selection_score": best_info["eval_return"],
                              "selected_at_env_steps": best_info["env_steps"]}
    shown, extra = rows, None  # the table's rows; with a cross-check, its verdict
    if args.gymnasium:
        shown, extra = _gymnasium_rows(args, ckpt, seed, threshold, rows, result)
    if args.minatar:
        shown, extra = _minatar_rows(args, ckpt, seed, threshold, rows, result)
    result["jax"]["epsilon"] = args.epsilon
    label = ("gymnasium mean" if args.gymnasium else "minatar mean" if args.minatar
             else "mean return")
    policy = f"epsilon-greedy ({args.epsilon:g})" if args.epsilon else "greedy"
    print(format_eval_table(shown, threshold, extra, label, policy))
    if best is not None:
        print(format_final_vs_best(rows, best_rows, best_info, threshold, args.episodes))
    if args.video is not None:
        result["video"] = _write_video(args, ckpt, best, seed)
    if args.json:
        _write_json(args.json, result)
    return 0


def _check_options(args, config, run_seed: int) -> int:
    """Refuses options that do not fit together or the run; returns the evaluation seed."""
    seed = args.seed if args.seed is not None else run_seed
    if not 0 <= seed < 2**32:
        raise UserError(f"--seed={seed} is invalid: must be in [0, 2**32)")
    if not 0.0 <= args.epsilon <= 1.0:
        raise UserError(f"--epsilon={args.epsilon} is invalid: must be in [0, 1]")
    if args.gymnasium and args.minatar:
        raise UserError("--gymnasium and --minatar cross-check different games; give one")
    if args.gymnasium and args.epsilon:
        raise UserError("--epsilon applies to gymnax and --minatar evaluations, not --gymnasium")
    if args.gymnasium:
        _check_gymnasium_env(config)
    if args.minatar:
        _check_minatar_env(config)
    sticky = args.sticky_action_prob
    if sticky is not None and not args.minatar:
        raise UserError("--sticky-action-prob applies to --minatar only")
    if sticky is not None and not 0.0 <= sticky <= 1.0:
        raise UserError(f"--sticky-action-prob={sticky} is invalid: must be in [0, 1]")
    return seed


def _jax_returns(args, config, num_seeds: int, seed: int):
    """``fn(params) -> f32[num_seeds, episodes]``: each seed's returns in gymnax, greedy (on the
    runs' devices) or epsilon-greedy, from ``evaluation_keys(seed, num_seeds)``."""
    import jax

    from jaxdqn.runs import evaluation_keys, make_runs

    keys = evaluation_keys(seed, num_seeds)
    if args.epsilon:
        from jaxdqn.evaluation import make_greedy_episodes

        episodes = make_greedy_episodes(config, args.episodes, args.epsilon)
        evaluate_all = jax.jit(jax.vmap(lambda p, k: episodes(p, k).returns))
        return lambda params: jax.device_get(evaluate_all(params, keys))
    runs = make_runs(config, num_seeds)
    return lambda params: runs.results(runs.evaluate(params, keys, args.episodes))


def _gymnasium_rows(args, ckpt, seed: int, threshold, rows, result):
    """The final params in Gymnasium itself: its rows (its verdict is the table's "solved"
    column) and the gymnax means beside them; adds ``result["gymnasium"]``."""
    import jax
    import numpy as np

    config = ckpt.config
    gym = per_seed(ckpt.num_seeds, lambda i: gymnasium_returns(
        config, jax.tree.map(lambda x: np.asarray(x)[i], ckpt.params), args.episodes, seed, i))
    gym_rows = eval_rows(np.stack(gym), threshold)
    result["gymnasium"] = eval_summary(gym_rows, threshold, args.episodes, seed)
    result["gymnasium"]["keys"] = "env.reset(seed=SeedSequence([seed, seed_index, episode]))"
    print(f"{config.env_id}: {ckpt.num_seeds} seed(s) in Gymnasium {_gym_version()} "
          f"(actions from the run's acting Q-values), {args.episodes} episodes each")
    return gym_rows, {"gymnax mean": [r["mean"] for r in rows]}


def _minatar_rows(args, ckpt, seed: int, threshold, rows, result):
    """The final params in the original MinAtar: its rows and the gymnax means beside them; adds
    ``result["minatar"]``."""
    import jax
    import numpy as np

    from jaxdqn.original_minatar import STICKY_ACTION_PROB, original_returns
    from jaxdqn.policy import make_acting_q_fn

    config = ckpt.config
    q_fn = jax.jit(make_acting_q_fn(config))
    sticky = (STICKY_ACTION_PROB if args.sticky_action_prob is None
              else args.sticky_action_prob)
    runs = per_seed(ckpt.num_seeds, lambda i: original_returns(
        config, q_fn, jax.tree.map(lambda x: x[i], ckpt.params), args.episodes, seed, i,
        args.epsilon, sticky))
    orig_rows = eval_rows(np.stack([r for r, _ in runs]), threshold)
    result["minatar"] = eval_summary(orig_rows, threshold, args.episodes, seed)
    result["minatar"].update(
        sticky_action_prob=sticky, epsilon=args.epsilon,
        truncated=[int(t.sum()) for _, t in runs],
        keys="minatar.Environment.seed(SeedSequence([seed, seed_index, episode]))")
    print(f"{config.env_id}: {ckpt.num_seeds} seed(s) in the original MinAtar "
          f"{_minatar_version()} (sticky actions {sticky}, "
          f"epsilon {args.epsilon}), {args.episodes} episodes each")
    return orig_rows, {"gymnax mean": [r["mean"] for r in rows]}


def _write_json(file: str, result: dict) -> None:
    from jaxdqn.io import atomic_write_json

    try:
        atomic_write_json(file, result)
    except OSError as e:
        raise UserError(f"cannot write --json {file!r}: {e.strerror or e}") from None


def _run_config(path: Path):
    """The config in run folder ``path``'s ``run_folder.CONFIG``, to check its checkpoints
    against; None for a checkpoint file or a folder without one."""
    from jaxdqn.config import DQNConfig
    from jaxdqn.io import ConfigFileError, load_config_file

    if not path.is_dir() or not (path / run_folder.CONFIG).exists():
        return None
    try:
        data = load_config_file(path / run_folder.CONFIG)
    except ConfigFileError as e:
        raise UserError(str(e)) from None
    return make_config(DQNConfig(), dict(data.get("config") or {}))


def _load(path: Path, run_config):
    """The checkpoint at ``path``, checked against ``run_config`` when there is one."""
    from jaxdqn.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path, config=run_config)
    except CheckpointError as e:
        raise UserError(str(e)) from None


def _check_video(args, config, num_seeds: int, has_best: bool) -> None:
    from jaxdqn.video import check_video_request

    try:
        check_video_request(config, args.video)
    except ValueError as e:
        raise UserError(str(e)) from None
    if not 0 <= args.video_seed_index < num_seeds:
        raise UserError(f"--video-seed-index={args.video_seed_index} is invalid: the run has "
                        f"{num_seeds} seed(s), index 0..{num_seeds - 1}")
    if args.video_params == "best" and not has_best:
        raise UserError("--video-params best: this run kept no best params (it did not evaluate "
                        "during training; set eval_interval)")


def _write_video(args, ckpt, best, seed: int) -> dict:
    from jaxdqn.agent import Agent
    from jaxdqn.video import record_episode

    source = best if args.video_params == "best" else ckpt
    i = args.video_seed_index
    agent = Agent(source.config, jax_tree_index(source.params, i), which=args.video_params,
                  seed_index=i)
    try:
        video = record_episode(agent, args.video, seed=seed)
    except OSError as e:
        raise UserError(f"cannot write --video {args.video!r}: {e.strerror or e}") from None
    print(f"video: {video.path} ({args.video_params} params of seed {i}, Gymnasium reset seed "
          f"{seed}): return {video.episode_return:g} in {video.length} steps"
          + (", cut by the time limit" if video.truncated else ""))
    return {"path": str(video.path), "params": args.video_params, "seed_index": i,
            "reset_seed": seed, "return": video.episode_return, "length": video.length,
            "fps": video.fps, "frames": video.length + 1}


def per_seed(num_seeds: int, fn):
    """``[fn(0), fn(1), ...]`` for the host-side evaluations, with a Ctrl-C check before each."""
    results = []
    for i in range(num_seeds):
        interrupts.check()
        results.append(fn(i))
    return results


def jax_tree_index(tree, i: int):
    import jax
    import numpy as np

    return jax.tree.map(lambda x: np.asarray(x)[i], tree)


def _check_gymnasium_env(config) -> None:
    from jaxdqn.envs import GYMNASIUM_ENV_IDS, gymnasium_limit_mismatch

    if config.env_id not in GYMNASIUM_ENV_IDS:
        raise UserError(f"--gymnasium cross-checks {', '.join(GYMNASIUM_ENV_IDS)} only; this run "
                        f"is on {config.env_id!r}")
    limit = gymnasium_limit_mismatch(config)
    if limit is not None:
        raise UserError(f"--gymnasium uses {config.env_id}'s standard time limit of {limit} steps;"
                        f" this run uses max_episode_steps={config.max_episode_steps}")


def _check_minatar_env(config) -> None:
    from jaxdqn.original_minatar import ORIGINAL_GAMES, require_minatar

    if config.env_id not in ORIGINAL_GAMES:
        raise UserError(f"--minatar cross-checks the MinAtar games ({', '.join(ORIGINAL_GAMES)})"
                        f" only; this run is on {config.env_id!r}")
    try:
        require_minatar()
    except ValueError as e:
        raise UserError(str(e)) from None


def _minatar_version() -> str:
    from importlib.metadata import version

    return version("MinAtar")


def _gym_version() -> str:
    import gymnasium

    return gymnasium.__version__


def gymnasium_returns(config, params, num_episodes: int, seed: int, seed_index: int):
    """``f64[num_episodes]``: greedy returns in ``gymnasium.make(config.env_id)``, with the
    run's sticky actions (``envs.gymnasium_env``).

    All episodes run in lockstep so each step needs one batched forward pass; episode ``e`` is
    reset with a seed drawn from ``SeedSequence([seed, seed_index, e])``.
    """
    import jax
    import numpy as np

    from jaxdqn.envs import gymnasium_env
    from jaxdqn.policy import make_acting_q_fn

    acting_q = jax.jit(make_acting_q_fn(config))  # members, linear Q: what training acts on
    envs = [gymnasium_env(config) for _ in range(num_episodes)]
    obs = np.stack([
        env.reset(seed=int(np.random.SeedSequence([seed, seed_index, e]).generate_state(1)[0]))[0]
        for e, env in enumerate(envs)
    ])
    returns = np.zeros(num_episodes)
    alive = np.ones(num_episodes, bool)
    while alive.any():
        interrupts.check()  # a Python loop over steps: Ctrl-C stops it here
        idx = np.flatnonzero(alive)
        # All rows each step (one compiled shape); finished episodes' actions are unused.
        actions = np.argmax(np.asarray(acting_q(params, obs)), axis=-1)[idx]
        for i, a in zip(idx, actions):
            o, r, terminated, truncated, _ = envs[i].step(int(a))
            obs[i] = o
            returns[i] += r
            alive[i] = not (terminated or truncated)
    for env in envs:
        env.close()
    return returns
