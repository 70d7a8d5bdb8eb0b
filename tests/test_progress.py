"""Progress lines without a terminal: elapsed time, ETA, and throughput that leaves out the first
segment (which may include compilation)."""

import jaxdqn.cli.progress as progress


def test_plain_progress_lines_show_elapsed_eta_and_throughput_after_compilation(monkeypatch,
                                                                              capsys):
    clock = iter([100.0, 130.0, 140.0, 150.0])  # start; first segment took 30 s (compiling)
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    p = progress.Progress("run", 4000, 2, start_steps=1000)  # a resumed run: 1000 steps done
    p.update(2000, [1.0])
    p.update(3000, [2.0])
    p.update(4000, [3.0])
    lines = capsys.readouterr().err.splitlines()
    # First line: 1000 steps in 30 s -> 33 per run, 67 over 2 runs; 2000 left -> 60 s.
    assert lines[0] == ("run:  50.0%  2000/4000 env steps per run, 67 env steps/s over 2 runs, "
                        "mean return 1.0, elapsed 0:30, ETA 1:00")
    # Then measured from the first segment's end: 1000 steps per 10 s, compilation excluded.
    assert lines[1].endswith("75.0%  3000/4000 env steps per run, 200 env steps/s over 2 runs, "
                             "mean return 2.0, elapsed 0:40, ETA 0:10")
    assert lines[2].endswith("200 env steps/s over 2 runs, mean return 3.0, elapsed 0:50, ETA 0:00")


def test_clock():
    assert [progress.clock(s) for s in (0, 59.6, 75.2, 3725)] == ["0:00", "1:00", "1:15", "1:02:05"]
