"""The old names of renamed public functions, classes and keywords ("chunk" meant three things)
still work, each warning once with the new name."""

import warnings

import pytest

import jaxdqn.deprecation
import jaxdqn.parallel
import jaxdqn.sweep
from jaxdqn import DQNConfig
from jaxdqn.memory import estimate_memory


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(jaxdqn.deprecation, "_warned", set())


def _warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn()
    return value, [str(w.message) for w in caught if w.category is DeprecationWarning]


def test_old_names_are_the_new_objects_and_warn_once():
    for old, new in (("Chunk", "Segment"), ("chunk_rows_for", "rows_per_segment"),
                     ("run_in_chunks", "run_in_segments")):
        value, said = _warnings(lambda: getattr(jaxdqn.sweep, old))
        assert value is getattr(jaxdqn.sweep, new)
        assert said == [f"jaxdqn.sweep.{old} is deprecated: use jaxdqn.sweep.{new}"]
        assert _warnings(lambda: getattr(jaxdqn.sweep, old))[1] == []  # once
    value, said = _warnings(lambda: jaxdqn.parallel.even_chunk(100, 16))
    assert value == jaxdqn.parallel.even_batch_size(100, 16) == 15
    assert said == ["jaxdqn.parallel.even_chunk is deprecated: use even_batch_size"]
    with pytest.raises(AttributeError):
        jaxdqn.sweep.no_such_name  # noqa: B018


def test_seeds_per_chunk_is_seeds_at_once():
    cfg = DQNConfig(total_timesteps=400, buffer_size=200, learning_starts=64, batch_size=32)
    old, said = _warnings(lambda: estimate_memory(cfg, 8, seeds_per_chunk=2))
    assert old == estimate_memory(cfg, 8, seeds_at_once=2) != estimate_memory(cfg, 8)
    assert said == ["estimate_memory(seeds_per_chunk=...) is deprecated: use "
                    "estimate_memory(seeds_at_once=...)"]
    with pytest.raises(TypeError, match="got both seeds_per_chunk and seeds_at_once"):
        estimate_memory(cfg, 8, seeds_at_once=2, seeds_per_chunk=2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'seeds_per_batch'"):
        estimate_memory(cfg, 8, seeds_per_batch=2)
    _, said = _warnings(lambda: jaxdqn.sweep.iter_sweep([], 1, on_chunk=print, target_chunks=3))
    assert said == ["iter_sweep(on_chunk=...) is deprecated: use iter_sweep(on_segment=...)",
                    "iter_sweep(target_chunks=...) is deprecated: use "
                    "iter_sweep(target_segments=...)"]
