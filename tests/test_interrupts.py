"""Ctrl-C handling (``jaxdqn.cli.interrupts``) in a bare subprocess (no JAX): the first SIGINT only
sets the flag that ``check()`` acts on; the second exits at once with 130 and one line, after the
file write in progress and the command's clean-up."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    from jaxdqn.cli import interrupts

    interrupts.install()
    marker = sys.argv[1]
    interrupts.on_force_exit("the folder is as it was", lambda: open(marker, "w").close())
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(200):  # the flag is set, nothing is raised until check()
        if interrupts.requested():
            break
        time.sleep(0.01)
    try:
        interrupts.check()
    except KeyboardInterrupt:
        print("check raised", flush=True)
    with interrupts.writing():  # a second Ctrl-C waits for this block
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        print("write finished", flush=True)
    time.sleep(5)
    print("not reached", flush=True)
""")


@pytest.mark.parametrize("signame, code, name", [("SIGINT", 130, "Ctrl-C"),
                                                  ("SIGTERM", 143, "SIGTERM")])
def test_first_signal_defers_and_second_exits_after_the_write(tmp_path, signame, code, name):
    """Ctrl-C, and SIGTERM (what ``kill``, ``timeout`` and schedulers send) alike: deferred to
    the next safe point; a second signal exits at once with 128 + the first one's number."""
    marker = tmp_path / "cleaned"
    script = SCRIPT.replace("signal.SIGINT", f"signal.{signame}")
    proc = subprocess.run([sys.executable, "-c", script, str(marker)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout.splitlines() == ["check raised", "write finished"]
    assert proc.stderr.splitlines() == [
        f"jaxdqn: {name}: stopping at the next safe point (press Ctrl-C again to exit at once)",
        "jaxdqn: interrupted again: exited at once; the folder is as it was"]
    assert marker.exists()  # the clean-up ran before the exit


EXIT_CODE_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from jaxdqn.cli import interrupts

    previous = signal.getsignal(signal.SIGUSR1)
    interrupts.install()
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    for _ in range(200):
        if interrupts.requested():
            break
        time.sleep(0.01)
    print(interrupts.requested(), interrupts.exit_code(), flush=True)
    interrupts.uninstall()
    print(signal.getsignal(signal.SIGUSR1) is previous, interrupts.exit_code(), flush=True)
""")


def test_sigusr1_asks_for_a_stop_and_uninstall_restores_the_handlers():
    """SLURM's ``--signal=USR1@N`` warning stops at the next safe point (exit 138 = 128 + 10);
    ``uninstall`` puts the previous handlers back and forgets the signal."""
    proc = subprocess.run([sys.executable, "-c", EXIT_CODE_SCRIPT, "SIGUSR1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True 138", "True 130"]
    assert proc.stderr.splitlines() == [
        "jaxdqn: SIGUSR1: stopping at the next safe point (press Ctrl-C again to exit at once)"]
