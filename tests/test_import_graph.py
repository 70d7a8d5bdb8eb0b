"""The import graph of ``jaxdqn/``: no cycle, and no module imports upward.

Every module has a layer; a module imports only modules of lower layers, at module level and
inside functions alike (an import hidden in a function is still a dependency). Only the modules
of the ``jaxdqn.cli`` package import each other within their layer. A new module must be given a
layer here, which is where its place in the design is decided.
"""

import ast
import pathlib

import jaxdqn

LAYERS = (
    # what depends on nothing else in jaxdqn (the package itself only lazily re-exports)
    {"jaxdqn", "jaxdqn.io", "jaxdqn.run_folder", "jaxdqn.parallel", "jaxdqn.lazy",
     "jaxdqn.envs.ids", "jaxdqn.noisy_max", "jaxdqn.sum_tree",
     "jaxdqn.noisy_nets"},  # noisy dense layers: flax and JAX only
    {"jaxdqn.choice", "jaxdqn.envs.max_bias", "jaxdqn.envs.minatar", "jaxdqn.envs.probes",
     "jaxdqn.envs.deadly_triad", "jaxdqn.envs.sticky",
     "jaxdqn.buffer"},  # the buffer holds its priorities' sum tree
    {"jaxdqn.estimators", "jaxdqn.replay", "jaxdqn.distributional"},
    {"jaxdqn.envs"},
    {"jaxdqn.config"},
    {"jaxdqn.networks"},
    {"jaxdqn.policy", "jaxdqn.update", "jaxdqn.runtime", "jaxdqn.checkpoint",
     "jaxdqn.original_minatar", "jaxdqn.video", "jaxdqn.loggers"},
    {"jaxdqn.evaluation", "jaxdqn.replay_age"},
    {"jaxdqn.train"},  # the training loop
    {"jaxdqn.memory", "jaxdqn.bias", "jaxdqn.plotting", "jaxdqn.agent"},
    {"jaxdqn.runs"},  # a group of runs
    {"jaxdqn.sweep", "jaxdqn.suite"},  # grids of runs; a benchmark suite's spec and folder
    {"jaxdqn.suite_report"},  # a suite's aggregates across games
    {"jaxdqn.cli", "jaxdqn.cli.*"},  # the command line, above the library
    {"jaxdqn.__main__"},  # python -m jaxdqn
)
ROOT = pathlib.Path(jaxdqn.__file__).parent


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _imports(path: pathlib.Path, mods) -> set[str]:
    """The jaxdqn modules ``path`` imports anywhere in it (``from pkg import mod`` counts as
    ``pkg.mod`` when that is a module, else as ``pkg``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "jaxdqn":
                continue
            subs = [f"{node.module}.{a.name}" for a in node.names]
            found.update(m for m in subs if m in mods)
            if any(m not in mods for m in subs):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "jaxdqn")
    return found


def _layer(name: str) -> int:
    for i, layer in enumerate(LAYERS):
        if name in layer or any(p.endswith(".*") and name.startswith(p[:-1]) for p in layer):
            return i
    raise AssertionError(f"{name} has no layer in tests/test_import_graph.py: give it one")


def test_every_module_imports_only_lower_layers():
    mods = _modules()
    upward = []
    for name, path in mods.items():
        for target in _imports(path, mods) - {name}:
            same_cli = name.startswith("jaxdqn.cli") and target.startswith("jaxdqn.cli")
            if _layer(target) > _layer(name) or (_layer(target) == _layer(name) and not same_cli):
                upward.append(f"{name} imports {target}")
    assert not upward, "\n".join(upward)


def test_there_is_no_import_cycle():
    mods = _modules()
    graph = {name: _imports(path, mods) - {name} for name, path in mods.items()}
    state = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, "cycle: " + " -> ".join([*path, nxt])
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
