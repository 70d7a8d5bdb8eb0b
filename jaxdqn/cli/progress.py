"""Progress of a run: a tqdm bar on a terminal, one plain line per segment otherwise."""

from __future__ import annotations

import sys
import time

# Segments per run (a segment: consecutive metric rows run as one compiled call): progress
# updates without measurable slowdown.
PROGRESS_SEGMENTS = 20


class Progress:
    """Env steps done, throughput and latest mean return: a tqdm bar on a terminal, one plain
    line per segment otherwise (log files), nothing when disabled."""

    def __init__(self, desc: str, total_steps: int, num_runs: int, start_steps: int = 0,
                 enabled: bool = True):
        self.desc, self.total, self.num_runs = desc, total_steps, num_runs
        self.start = start_steps
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.latest_return = float("nan")
        self.first = None  # (time, env steps) at the first update
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
        now = time.perf_counter()
        # Throughput from the first segment's end on: the first call may still compile (a
        # resumed run's first segment too); the first reading alone counts from the start.
        since_t, since_steps = self.first or (self.t0, self.start)
        rate_per_run = (env_steps_done - since_steps) / max(now - since_t, 1e-9)
        if self.first is None:
            self.first = (now, env_steps_done)
        rate = rate_per_run * self.num_runs
        ret = "-" if np.isnan(self.latest_return) else f"{self.latest_return:.1f}"
        if self.bar is not None:
            self.bar.update(env_steps_done - self.bar.n)
            self.bar.set_postfix_str(f"{si(rate)} steps/s over {self.num_runs} runs, return {ret}")
        else:
            pct = 100.0 * env_steps_done / self.total
            left = (self.total - env_steps_done) / rate_per_run if rate_per_run > 0 else None
            eta = "?" if left is None else clock(left)
            print(f"{self.desc}: {pct:5.1f}%  {env_steps_done}/{self.total} env steps per run, "
                  f"{si(rate)} env steps/s over {self.num_runs} runs, mean return {ret}, "
                  f"elapsed {clock(now - self.t0)}, ETA {eta}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def clock(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    s = round(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def si(x: float) -> str:
    """``12345.0`` -> ``"12.3k"``."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"
