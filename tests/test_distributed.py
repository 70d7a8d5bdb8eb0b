"""Several processes (``jax.distributed``): two processes on localhost, one CPU device each, joined
with gloo collectives, compute what one process computes.

Each check starts its processes as children (``jax.distributed.initialize`` must run before JAX
starts its backend, which this process has done), on a free port, with a timeout that ends them
all and shows their output. The children force one CPU device each, so the results do not depend
on this process's device count.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxdqn import DQNConfig, make_train, run_folder
from jaxdqn.cli import main

# As tests/test_parallel.py's: a short CartPole run that learns (about 440 gradient steps).
SMALL = dict(total_timesteps=2000, buffer_size=1000, learning_starts=256, batch_size=32,
             train_frequency=4, num_envs=4, target_update_freq=200, log_interval=400)
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300  # per group of processes; a hung collective fails the test instead of CI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _run_together(commands, cwd, envs, expect: int = 0) -> list[subprocess.CompletedProcess]:
    """Starts every command at once and waits for all; on a timeout or an exit code other than
    ``expect``, ends the rest and fails with each one's exit code and last output."""
    procs = [subprocess.Popen(c, cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for c, e in zip(commands, envs)]
    deadline = time.monotonic() + TIMEOUT_S
    results, timed_out = [], False
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            timed_out = True
            for q in procs:
                q.kill()
            out, err = p.communicate()
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    report = "\n".join(f"--- process {i} (exit {r.returncode}): {' '.join(map(str, r.args[-6:]))}"
                       f"\n{r.stdout[-1500:]}{r.stderr[-2500:]}" for i, r in enumerate(results))
    assert not timed_out, f"timed out after {TIMEOUT_S} s:\n{report}"
    assert all(r.returncode == expect for r in results), report
    return results


# ---------------------------------------------------------------------------------------------
# The library: train_seeds over the devices of two processes, gathered with to_host

CHILD = textwrap.dedent("""
    import json, sys
    from jaxdqn.runtime import start_distributed

    port, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    start_distributed(f"localhost:{port}", 2, pid, timeout_s=120)   # before any JAX computation
    import jax, numpy as np, jaxdqn
    from jaxdqn.parallel import to_host
    from jaxdqn.runs import train_seeds

    cfg = jaxdqn.DQNConfig(**json.loads(sys.argv[4]))
    keys = jax.random.split(jax.random.key(5), 4)      # the same keys in every process
    out_tree = train_seeds(cfg, keys)                  # 4 runs over 2 devices, one per process
    kernel = out_tree.params["params"]["Dense_0"]["kernel"]
    held = sum(s.data.shape[0] for s in kernel.addressable_shards)
    host = to_host(out_tree)
    np.savez(out, **{jax.tree_util.keystr(p): np.asarray(leaf)
                     for p, leaf in jax.tree_util.tree_leaves_with_path(host)})
    print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                      "devices": jax.device_count(), "held_runs": held,
                      "fully_addressable": kernel.is_fully_addressable}))
""")

# The logged batch means of Q may round differently in the last bit under a partitioned program
# (docs/benchmarks.md, "Seeds across devices"); they never feed back into training.
ROUNDING_ONLY = (".metrics.q_taken", ".metrics.q_max")


def test_two_processes_train_seeds_equals_the_one_process_vmap(tmp_path):
    port = _free_port()
    results = _run_together(
        [[sys.executable, "-c", CHILD, str(port), str(i), str(tmp_path / f"p{i}.npz"),
          json.dumps(SMALL)] for i in range(2)], tmp_path, [_env(1)] * 2)
    infos = [json.loads(r.stdout.strip().splitlines()[-1]) for r in results]
    assert [i["process"] for i in infos] == [0, 1]
    for info in infos:  # the runs really were split: each process held 2 of the 4
        assert (info["processes"], info["devices"], info["held_runs"]) == (2, 2, 2)
        assert info["fully_addressable"] is False
    cfg = DQNConfig(**SMALL)
    with jax.default_device(jax.local_devices(backend="cpu")[0]):  # on CPU, as the children
        keys = jax.random.split(jax.random.key(5), 4)
        expected = jax.jit(jax.vmap(make_train(cfg)))(keys)
    paths = {jax.tree_util.keystr(p): np.asarray(leaf)
             for p, leaf in jax.tree_util.tree_leaves_with_path(expected)}
    with np.load(tmp_path / "p0.npz") as p0, np.load(tmp_path / "p1.npz") as p1:
        assert set(p0.files) == set(p1.files) == set(paths)
        for path, want in paths.items():
            np.testing.assert_array_equal(p1[path], p0[path], err_msg=f"process 1 vs 0: {path}")
            if path in ROUNDING_ONLY:
                np.testing.assert_allclose(p0[path], want, rtol=1e-6, atol=1e-6, err_msg=path)
            else:
                np.testing.assert_array_equal(p0[path], want, err_msg=path)
    assert np.all(paths[".metrics.updates"][:, -1] > 0)  # it learned: real updates compared


# ---------------------------------------------------------------------------------------------
# The command line: jaxdqn train --distributed

SETS = [a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]
TRAIN = ["-m", "jaxdqn", "train", "--env", "CartPole-v1", "--seeds", "4", "--episodes", "3",
         *SETS]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Two ``--distributed`` processes (one CPU device each; process 1 gets its own --out, which
    must stay unwritten) and, at the same time, one plain ``jaxdqn train`` of the same seeds on
    two CPU devices (the same split of runs over devices)."""
    tmp = tmp_path_factory.mktemp("distributed_cli")
    port = _free_port()
    group = ["--distributed", "--coordinator", f"localhost:{port}", "--num-processes", "2"]
    commands = [[sys.executable, *TRAIN, "--out", "two", *group, "--process-id", "0"],
                [sys.executable, *TRAIN, "--out", "unwritten", *group, "--process-id", "1"],
                [sys.executable, *TRAIN, "--out", "one", "--no-progress"]]
    t0 = time.perf_counter()
    results = _run_together(commands, tmp, [_env(1), _env(1), _env(2)])
    return tmp, results, time.perf_counter() - t0


def test_cli_two_processes_write_one_folder_equal_to_one_process(cli_runs):
    tmp, results, _ = cli_runs
    assert not (tmp / "unwritten").exists()  # process 1 computed and wrote nothing
    assert "run folder: two" in results[0].stdout
    # Process 1 prints nothing of its own (gloo's C++ layer may announce its connection).
    assert [ln for ln in results[1].stdout.splitlines() + results[1].stderr.splitlines()
            if not ln.startswith("[Gloo]")] == []
    two, one = tmp / "two", tmp / "one"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    with np.load(two / run_folder.METRICS_NPZ) as a, np.load(one / run_folder.METRICS_NPZ) as b:
        assert set(a.files) == set(b.files) and len(a.files) > 10
        for name in a.files:  # same per-device split: bit for bit, Q means included
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        assert np.all(a["updates"][:, -1] > 0)
    # The final params, byte for byte (same config and metadata), and the greedy evaluation.
    final = run_folder.FINAL_CHECKPOINT
    assert (two / final).read_bytes() == (one / final).read_bytes()
    s2, s1 = (json.loads((d / run_folder.SUMMARY).read_text()) for d in (two, one))
    assert s2["evaluation"] == s1["evaluation"] and s2["diverged"] == s1["diverged"]
    config = json.loads((two / run_folder.CONFIG).read_text())
    assert config["num_processes"] == 2 and "--distributed" in config["command"]
    assert "split across 2 devices of 2 processes" in results[0].stderr


@pytest.mark.parametrize("argv, message", [
    (["--process-id", "1"], "--process-id needs --distributed"),
    (["--distributed", "--process-id", "1"],
     "--process-id without --coordinator, --num-processes: give all of"),
    (["--distributed", "--coordinator", "localhost:1234", "--num-processes", "2",
      "--process-id", "2"], "--process-id=2 is invalid: must be in 0..1 for --num-processes=2"),
    (["--distributed", "--coordinator", "localhost", "--num-processes", "2",
      "--process-id", "0"], "--coordinator 'localhost' is invalid: expected HOST:PORT"),
    (["--distributed", "--coordinator", "node1:70000", "--num-processes", "2",
      "--process-id", "0"], "--coordinator 'node1:70000' is invalid"),
    (["--distributed", "--coordinator", "node1:1", "--num-processes", "0",
      "--process-id", "0"], "--num-processes=0 is invalid: must be >= 1"),
    (["--distributed", "--resume", "runs/x"], "--resume cannot be combined with --distributed"),
])
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_bad_process_group_options_are_one_line_errors(command, argv, message, capsys,
                                                       tmp_path):
    code = main([command, *argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_distributed_outside_a_cluster_says_how_to_give_the_group(tmp_path):
    """No SLURM/MPI environment to detect: one line naming the three options, exit 2."""
    env = _env(1)
    for name in list(env):
        if name.startswith(("SLURM_", "OMPI_", "PMI_", "MPI_")):
            del env[name]
    proc = subprocess.run([sys.executable, *TRAIN, "--distributed", "--out", "x"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--distributed found no cluster to join" in lines[0], lines
    assert "--coordinator HOST:PORT --num-processes N --process-id I" in lines[0]
    assert not (tmp_path / "x").exists()


def test_seeds_that_do_not_split_over_the_processes_devices_are_refused(tmp_path):
    """Known only once the group has formed (its device count): one line from each process, exit
    2, before anything is written."""
    port = _free_port()
    group = ["--distributed", "--coordinator", f"localhost:{port}", "--num-processes", "2"]
    argv = [a if a != "4" else "3" for a in TRAIN]  # --seeds 3 over 2 devices
    results = _run_together([[sys.executable, *argv, "--out", f"out{i}", *group, "--process-id",
                              str(i)] for i in range(2)], tmp_path, [_env(1)] * 2, expect=2)
    for r in results:
        lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("[Gloo]")]
        assert lines == ["jaxdqn: error: --seeds=3 cannot be split across the 2 devices of 2 "
                         "processes: use a multiple of 2"], r.stderr
    assert list(tmp_path.iterdir()) == []
