"""Sends Ctrl-C (SIGINT), or SIGTERM, to ``jaxdqn train`` at random moments and checks that every
run exits with 128 + the signal (130, 143) and leaves a folder that is resumable (``--resume``),
complete, or holds no run; with ``--resume``, that every resumable folder, once resumed, holds
exactly what an uninterrupted run writes.

    python scripts/interrupt_check.py --runs 20 --seed 0
    python scripts/interrupt_check.py --runs 8 --sweep     # jaxdqn sweep (2 groups) instead
    python scripts/interrupt_check.py --runs 8 --twice     # a second Ctrl-C 0-0.5 s later
    python scripts/interrupt_check.py --runs 8 --signal TERM --resume

Moments are spread over the phases by waiting for the line that starts each phase on stderr
("training ..." = set-up and import, "compiling ...", the first progress line = training,
"evaluating ..." = evaluation) and then a random delay. Prints one line per run and a tally;
exits 1 if any run did not exit 128 + the signal, left an unusable folder, or (``--resume``)
resumed to other results than the uninterrupted run's: train's metrics and final params, every
array; a sweep's sweep.csv and sweep_runs.csv, byte for byte, and its metric arrays.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jaxdqn import run_folder
from jaxdqn.cli.parser import OneLineParser, UserError

PHASES = {  # phase -> (the stderr line that starts it, max random delay in s)
    "setup": ("training ", 0.5),
    "compile": ("compiling the training program", 1.5),
    "training": ("env steps per run", 1.0),
    "evaluation": ("evaluating ", 0.3),
}
RUN = ["--seeds", "2", "--episodes", "200", "--set", "total_timesteps=100000",
       "--set", "buffer_size=2000", "--set", "learning_starts=500", "--set", "batch_size=32",
       "--set", "hidden_sizes=32,32"]
SWEEP_PHASES = {  # phase -> (the stderr line that starts it, max random delay in s)
    "setup": ("sweep: ", 0.5),
    "compile": ("compiling group 1/2", 1.5),
    "training": ("env steps per run", 1.0),
    "group 2": ("compiling group 2/2", 1.5),
}
SWEEP = ["--seeds", "2", "--episodes", "50", "--set", "total_timesteps=20000",
         "--set", "buffer_size=2000", "--set", "learning_starts=500", "--set", "batch_size=32",
         "--set", "hidden_sizes=32,32", "--grid", "learning_rate=1e-3,3e-3",
         "--grid", "buffer_size=2000,3000"]


def folder_state(out: Path) -> str:
    """resumable | complete | empty | BROKEN (what a user could not continue from)."""
    import json

    present = [f for f in run_folder.RUN_FILES if (out / f).exists()] if out.exists() else []
    if not present:
        return "empty"
    if (out / run_folder.RESUME_STATE).exists() and (out / run_folder.CONFIG).exists():
        return "resumable"
    if (out / run_folder.SUMMARY).exists():
        summary = json.loads((out / run_folder.SUMMARY).read_text())
        if summary.get("complete") and (out / run_folder.FINAL_CHECKPOINT).exists():
            return "complete" + ("" if "evaluation" in summary else " (not evaluated)")
    return "BROKEN: " + ", ".join(present)


def sweep_folder_state(out: Path) -> str:
    """resumable | complete | empty | BROKEN, for a sweep folder."""
    import json

    present = [f for f in run_folder.SWEEP_FILES if (out / f).exists()] if out.exists() else []
    if not present:
        return "empty"
    if (out / run_folder.CONFIG).exists() and ((out / run_folder.SWEEP_RESUME).exists()
                                               or (out / run_folder.RESUME_STATE).exists()):
        return "resumable"
    if ((out / run_folder.SUMMARY).exists() and (out / run_folder.CONFIG).exists()
            and json.loads((out / run_folder.SUMMARY).read_text()).get("complete")):
        return "complete"
    return "BROKEN: " + ", ".join(present)


def one_run(out: Path, phase: str, delay: float, sweep: bool = False,
            second: float | None = None, signum: int = signal.SIGINT) -> tuple[int, str, str]:
    marker, _ = (SWEEP_PHASES if sweep else PHASES)[phase]
    command = ["sweep", *SWEEP] if sweep else ["train", *RUN]
    proc = subprocess.Popen([sys.executable, "-m", "jaxdqn", *command, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if marker in line:
            time.sleep(delay)
            proc.send_signal(signum)
            if second is not None:  # a second signal: exit at once
                time.sleep(second)
                if proc.poll() is None:
                    proc.send_signal(signum)
            break
    rest_err = proc.stderr.read()
    proc.wait(timeout=600)
    proc.stdout.read()
    last = (("".join(lines) + rest_err).strip().splitlines() or [""])[-1]
    return proc.returncode, (sweep_folder_state if sweep else folder_state)(out), last


def main(argv=None) -> int:
    from jaxdqn.cli.parser import DefaultsHelpFormatter

    p = OneLineParser(prog="interrupt_check.py", description=__doc__.splitlines()[0],
                      formatter_class=DefaultsHelpFormatter)
    p.add_argument("--runs", type=int, default=20, help="runs, spread evenly over the phases")
    p.add_argument("--seed", type=int, default=0, help="random delays' seed")
    p.add_argument("--sweep", action="store_true",
                   help="interrupt a 2-group jaxdqn sweep instead of jaxdqn train")
    p.add_argument("--twice", action="store_true",
                   help="send the signal a second time 0-0.5 s after the first (exits at once)")
    p.add_argument("--signal", choices=("INT", "TERM", "USR1"), default="INT",
                   help="the signal sent: INT is Ctrl-C, TERM what kill and schedulers send")
    p.add_argument("--resume", action="store_true",
                   help="resume every resumable folder and compare it with an uninterrupted run")
    try:
        args = p.parse_args(argv)
        if args.runs < 1:
            raise UserError("--runs must be >= 1")
    except UserError as e:
        print(f"interrupt_check.py: error: {e}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    table = SWEEP_PHASES if args.sweep else PHASES
    phases = [list(table)[i % len(table)] for i in range(args.runs)]
    signum = getattr(signal, f"SIG{args.signal}")
    expected = 128 + int(signum)
    bad = 0
    tally: dict[tuple[int, str], int] = {}
    with tempfile.TemporaryDirectory() as root:
        reference = Path(root) / "uninterrupted"
        if args.resume:
            command = ["sweep", *SWEEP] if args.sweep else ["train", *RUN]
            subprocess.run([sys.executable, "-m", "jaxdqn", *command, "--out", str(reference),
                            "--no-progress"], check=True, capture_output=True)
        for i, phase in enumerate(phases):
            delay = rng.uniform(0, table[phase][1])
            second = rng.uniform(0, 0.5) if args.twice else None
            out = Path(root) / f"run{i}"
            code, state, last = one_run(out, phase, delay, args.sweep, second, signum)
            ok = code == expected and not state.startswith("BROKEN")
            if ok and args.resume and state == "resumable":
                state = resumed_state(out, reference, args.sweep)
                ok = state == "resumed: equal"
            bad += not ok
            tally[(code, state)] = tally.get((code, state), 0) + 1
            print(f"{i:>3} {phase:<10} +{delay:.2f}s  exit {code:>4}  {state:<28} "
                  f"{'ok' if ok else 'FAIL'}  | {last[:90]}", flush=True)
    print("tally: " + "; ".join(f"exit {c}, {s}: {n}" for (c, s), n in sorted(tally.items())))
    print(f"{args.runs - bad}/{args.runs} runs exited {expected} with a resumable, complete or "
          "empty folder" + (" (resumable ones resumed equal to an uninterrupted run)"
                            if args.resume else ""))
    return 1 if bad else 0


def resumed_state(out: Path, reference: Path, sweep: bool) -> str:
    """``jaxdqn train|sweep --resume out``, then "resumed: equal" if its results are the
    uninterrupted run's (else what differs)."""
    import numpy as np

    from jaxdqn.checkpoint import load_checkpoint

    command = "sweep" if sweep else "train"
    proc = subprocess.run([sys.executable, "-m", "jaxdqn", command, "--resume", str(out),
                           "--no-progress"], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"resume FAILED (exit {proc.returncode})"
    if sweep:
        files = [run_folder.SWEEP_TABLE, run_folder.SWEEP_RUNS]
        differ = [f for f in files if (out / f).read_bytes() != (reference / f).read_bytes()]
        arrays = run_folder.SWEEP_METRICS
    else:
        a = load_checkpoint(out / run_folder.FINAL_CHECKPOINT).params
        b = load_checkpoint(reference / run_folder.FINAL_CHECKPOINT).params
        same = all(np.array_equal(x, y) for x, y in zip(jax_leaves(a), jax_leaves(b)))
        differ = [] if same else [run_folder.FINAL_CHECKPOINT]
        arrays = run_folder.METRICS_NPZ
    with np.load(out / arrays) as x, np.load(reference / arrays) as y:
        if sorted(x.files) != sorted(y.files) or not all(
                np.array_equal(x[k], y[k], equal_nan=True) for k in x.files):
            differ.append(arrays)
    return "resumed: equal" if not differ else "resumed: DIFFERS in " + ", ".join(differ)


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)


if __name__ == "__main__":
    sys.exit(main())
