"""Sends Ctrl-C (SIGINT) to ``jaxdqn train`` at random moments and checks that every run exits
with 130 and leaves a folder that is resumable (``--resume``), complete, or holds no run.

    python scripts/interrupt_check.py --runs 20 --seed 0

Moments are spread over the phases by waiting for the line that starts each phase on stderr
("training ..." = set-up and import, "compiling ...", the first progress line = training,
"evaluating ..." = evaluation) and then a random delay. Prints one line per run and a tally;
exits 1 if any run did not exit 130 or left an unusable folder.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jaxdqn.cli.parser import OneLineParser, UserError

PHASES = {  # phase -> (the stderr line that starts it, max random delay in s)
    "setup": ("training ", 0.5),
    "compile": ("compiling the training program", 1.5),
    "training": ("env steps per run", 1.0),
    "evaluation": ("evaluating ", 0.3),
}
RUN = ["--seeds", "2", "--episodes", "200", "--set", "total_timesteps=30000",
       "--set", "buffer_size=2000", "--set", "learning_starts=500", "--set", "batch_size=32",
       "--set", "hidden_sizes=32,32"]
RUN_FILES = ("config.json", "metrics.csv", "metrics.npz", "summary.json", "learning_curve.png",
             "checkpoint.msgpack", "resume_state.msgpack")


def folder_state(out: Path) -> str:
    """resumable | complete | empty | BROKEN (what a user could not continue from)."""
    import json

    present = [f for f in RUN_FILES if (out / f).exists()] if out.exists() else []
    if not present:
        return "empty"
    if (out / "resume_state.msgpack").exists() and (out / "config.json").exists():
        return "resumable"
    if (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
        if summary.get("complete") and (out / "checkpoint.msgpack").exists():
            return "complete" + ("" if "evaluation" in summary else " (not evaluated)")
    return "BROKEN: " + ", ".join(present)


def one_run(out: Path, phase: str, delay: float) -> tuple[int, str, str]:
    marker, _ = PHASES[phase]
    proc = subprocess.Popen([sys.executable, "-m", "jaxdqn", "train", *RUN, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if marker in line:
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            break
    rest_err = proc.stderr.read()
    proc.wait(timeout=600)
    proc.stdout.read()
    last = (("".join(lines) + rest_err).strip().splitlines() or [""])[-1]
    return proc.returncode, folder_state(out), last


def main(argv=None) -> int:
    p = OneLineParser(prog="interrupt_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20, help="runs, spread evenly over the phases")
    p.add_argument("--seed", type=int, default=0, help="random delays' seed")
    try:
        args = p.parse_args(argv)
        if args.runs < 1:
            raise UserError("--runs must be >= 1")
    except UserError as e:
        print(f"interrupt_check.py: error: {e}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    phases = [list(PHASES)[i % len(PHASES)] for i in range(args.runs)]
    bad = 0
    tally: dict[tuple[int, str], int] = {}
    with tempfile.TemporaryDirectory() as root:
        for i, phase in enumerate(phases):
            delay = rng.uniform(0, PHASES[phase][1])
            code, state, last = one_run(Path(root) / f"run{i}", phase, delay)
            ok = code == 130 and not state.startswith("BROKEN")
            bad += not ok
            tally[(code, state)] = tally.get((code, state), 0) + 1
            print(f"{i:>3} {phase:<10} +{delay:.2f}s  exit {code:>4}  {state:<28} "
                  f"{'ok' if ok else 'FAIL'}  | {last[:90]}", flush=True)
    print("tally: " + "; ".join(f"exit {c}, {s}: {n}" for (c, s), n in sorted(tally.items())))
    print(f"{args.runs - bad}/{args.runs} runs exited 130 with a resumable, complete or empty "
          "folder")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
