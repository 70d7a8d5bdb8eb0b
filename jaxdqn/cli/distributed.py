"""``--distributed``: one run or sweep computed by several processes (hosts), written by one.

Every process runs the same command; ``jax.distributed`` joins them, the seeds are split across
the devices of all processes (``jaxdqn.runs``), results are gathered onto every process
(``to_host``), and only process 0 writes the output folder and prints the results.
"""

from __future__ import annotations

import argparse

from jaxdqn.cli.parser import PROG, OneLineParser, UserError

DISTRIBUTED_COMMANDS = ("train", "sweep")


def add_distributed_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several processes (jax.distributed; see docs/cli.md)")
    g.add_argument("--distributed", action="store_true",
                   help="join the other processes of this run (detected under SLURM, Open MPI "
                        "and the other clusters jax.distributed detects, or given by the three "
                        "options below); only process 0 writes --out")
    g.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="address of process 0, which the others connect to")
    g.add_argument("--num-processes", type=int, metavar="N", default=None,
                   help="how many processes take part")
    g.add_argument("--process-id", type=int, metavar="I", default=None,
                   help="this process's index, 0..N-1 (0 writes the output)")


def check_distributed_args(args) -> None:
    """Refuses, before anything starts, options that cannot describe a process group."""
    explicit = {"--coordinator": args.coordinator, "--num-processes": args.num_processes,
                "--process-id": args.process_id}
    given = [k for k, v in explicit.items() if v is not None]
    if given and not args.distributed:
        raise UserError(f"{given[0]} needs --distributed")
    if args.distributed and getattr(args, "resume", None) is not None:
        raise UserError("--resume cannot be combined with --distributed: a resume runs in "
                        "one process")
    if not given:
        return
    missing = [k for k, v in explicit.items() if v is None]
    if missing:
        raise UserError(f"{', '.join(given)} without {', '.join(missing)}: give all of "
                        "--coordinator HOST:PORT --num-processes N --process-id I, or none "
                        "(to detect them under SLURM/MPI)")
    parse_host_port(args.coordinator)
    if args.num_processes < 1:
        raise UserError(f"--num-processes={args.num_processes} is invalid: must be >= 1")
    if not 0 <= args.process_id < args.num_processes:
        raise UserError(f"--process-id={args.process_id} is invalid: must be in "
                        f"0..{args.num_processes - 1} for --num-processes={args.num_processes}")


def parse_host_port(text: str) -> tuple[str, int]:
    """``"node1:1234"`` -> ``("node1", 1234)``; ``[::1]:1234`` for IPv6."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UserError(f"--coordinator {text!r} is invalid: expected HOST:PORT with a port in "
                        "1..65535, e.g. node1:12345")
    return host, int(port)


def start_from_argv(argv: list[str]) -> None:
    """Joins the process group when ``argv`` is a ``train`` or ``sweep`` with ``--distributed``:
    before the full parser is built, because building it imports modules (gymnax) that start
    JAX's backend, after which ``jax.distributed.initialize`` refuses."""
    if not argv or argv[0] not in DISTRIBUTED_COMMANDS or "-h" in argv or "--help" in argv:
        return
    pre = OneLineParser(prog=f"{PROG} {argv[0]}", add_help=False)
    add_distributed_options(pre)
    pre.add_argument("--resume", default=None)
    args, _ = pre.parse_known_args(argv[1:])
    check_distributed_args(args)
    if not args.distributed:
        return
    from jaxdqn.runtime import start_distributed

    try:
        start_distributed(args.coordinator, args.num_processes, args.process_id)
    except (ValueError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
        if args.coordinator:
            raise UserError(f"--distributed: cannot join the process group at "
                            f"{args.coordinator}: {first}") from None
        raise UserError(f"--distributed found no cluster to join ({first}): under SLURM, Open "
                        "MPI and the like it is detected; elsewhere pass --coordinator HOST:PORT "
                        "--num-processes N --process-id I") from None


def is_writer(args) -> bool:
    """Whether this process writes the output: process 0 of a ``--distributed`` group, or the
    only process."""
    check_distributed_args(args)
    if not args.distributed:
        return True
    import jax

    if not jax.distributed.is_initialized():  # start_from_argv did not see the option
        raise UserError("--distributed did not take effect: spell it (and --coordinator, "
                        "--num-processes, --process-id) in full")
    return jax.process_index() == 0


def seed_share(num_seeds: int) -> int:
    """The seeds this process's devices hold (all of them without ``--distributed``), for the
    memory check."""
    import jax

    return max(num_seeds // jax.process_count(), 1)


def check_seed_split(num_seeds: int) -> None:
    """Several processes split the seeds evenly across all their devices: refuse a count that
    does not divide. This is the one exception to ``jaxdqn.runs.run_devices``'s padded split,
    because each process checks memory for, and reports, a share of ``num_seeds // processes``."""
    import jax

    n, p = jax.device_count(), jax.process_count()
    if p > 1 and num_seeds % n:
        raise UserError(f"--seeds={num_seeds} cannot be split across the {n} devices of {p} "
                        f"processes: use a multiple of {n}")
