"""Each test's size and time limit, from its markers and the configuration.

Read where the tests are collected (the session's zygote or worker: the
client collects nothing) from the real items, after every modifyitems.
"""

from __future__ import annotations

import pytest

from .contract import DEFAULT_TIMEOUTS, Size

SIZE_MARKERS = {s.value: s for s in Size}


def item_size(item: pytest.Item, default: Size) -> tuple[Size, bool]:
    """(size, explicitly marked), from the size mark that decides (size_mark)."""
    mark = size_mark(item)
    return (SIZE_MARKERS[mark.name], True) if mark is not None else (default, False)


def size_mark(item: pytest.Item) -> pytest.Mark | None:
    """The closest level with a size mark decides: a pytest.param's marks,
    then the function's own, its class's, its module's. A test has one size:
    two sizes at one level (@small stacked over @medium) is a usage error
    naming both, as in pytest-test-categories."""
    for level in _levels(item):
        sizes = [m for m in level if m.name in SIZE_MARKERS]
        names = sorted({m.name for m in sizes}, key=list(SIZE_MARKERS).index)
        if len(names) > 1:
            raise pytest.UsageError(f"{item.nodeid}: multiple size markers at one level: {', '.join(names)} "
                                    "(a test has one size)")
        if sizes:
            return sizes[0]
    return None


def _levels(item: pytest.Item):
    """The marks of each level, closest first. A parametrized function's own
    marks hold its pytest.param's too (after the decorators'): split them."""
    param = list(getattr(getattr(item, "callspec", None), "marks", ()))
    own = list(item.own_markers)
    for mark in param:
        if mark in own:
            own.remove(mark)
    yield param
    yield own
    for node in reversed(item.listchain()[:-1]):
        yield node.own_markers


def _ini(config: pytest.Config, name: str):
    """An ini value of isod_client's; None where it is not loaded (a worker
    of a gRPC client that runs pytest without it)."""
    try:
        return config.getini(name)
    except ValueError:
        return None


def default_size(config: pytest.Config) -> Size:
    """--isod-default-size, else ini isod_default_size, else small."""
    raw = config.getoption("isod_default_size", None) or _ini(config, "isod_default_size") or "small"
    try:
        return Size.parse(raw)
    except ValueError as e:
        raise pytest.UsageError(f"isod: {e}") from None


def fixture_scopes(item: pytest.Item) -> dict[str, str]:
    """Its fixtures and their scopes (the size advisor follows a shared
    fixture's spawns to the tests that use it)."""
    info = getattr(item, "_fixtureinfo", None)
    out = {}
    for name in getattr(info, "names_closure", ()):
        defs = info.name2fixturedefs.get(name)
        if defs and name != "request":
            out[name] = str(getattr(defs[-1], "scope", "function"))
    return out


def limits(config: pytest.Config) -> dict[Size, float]:
    out = {}
    for size, default in DEFAULT_TIMEOUTS.items():
        raw = _ini(config, f"isod_timeout_{size.value}")
        try:
            out[size] = float(raw) if raw not in (None, "") else default
        except ValueError:
            raise pytest.UsageError(f"isod_timeout_{size.value} = {raw!r} is not a number of seconds") from None
    return out


FIXTURE_TIMEOUT_S = 60.0


def fixture_limit(config: pytest.Config) -> float:
    """Seconds a test's setup or teardown may take (the size's limit times the call)."""
    raw = _ini(config, "isod_timeout_fixtures")
    try:
        return float(raw) if raw not in (None, "") else FIXTURE_TIMEOUT_S
    except ValueError:
        raise pytest.UsageError(f"isod_timeout_fixtures = {raw!r} is not a number of seconds") from None


def item_timeout(item: pytest.Item, size: Size, table: dict[Size, float]) -> float:
    """The size's limit, or a tighter one from @pytest.mark.<size>(timeout=...)."""
    limit = table[size]
    mark = size_mark(item)
    if mark is not None and mark.name == size.value and "timeout" in mark.kwargs:
        try:
            asked = float(mark.kwargs["timeout"])
        except (TypeError, ValueError):
            raise pytest.UsageError(f"{item.nodeid}: timeout={mark.kwargs['timeout']!r} is not a number") from None
        if asked <= 0:
            raise pytest.UsageError(f"{item.nodeid}: timeout must be positive, got {asked}")
        limit = min(limit, asked)   # tighter only
    return limit
