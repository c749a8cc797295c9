"""Each test's size and time limit, from its markers and the configuration."""

from __future__ import annotations

import pytest
from isod.policy import DEFAULT_TIMEOUTS, Size

SIZE_MARKERS = {s.value: s for s in Size}


def item_size(item: pytest.Item, default: Size) -> tuple[Size, bool]:
    """(size, explicitly marked). The closest size marker wins (function over class over module)."""
    for mark in item.iter_markers():
        if mark.name in SIZE_MARKERS:
            return SIZE_MARKERS[mark.name], True
    return default, False


def limits(config: pytest.Config) -> dict[Size, float]:
    out = {}
    for size, default in DEFAULT_TIMEOUTS.items():
        raw = config.getini(f"isod_timeout_{size.value}")
        try:
            out[size] = float(raw) if raw not in (None, "") else default
        except ValueError:
            raise pytest.UsageError(f"isod_timeout_{size.value} = {raw!r} is not a number of seconds") from None
    return out


def item_timeout(item: pytest.Item, size: Size, table: dict[Size, float]) -> float:
    """The size's limit, or a tighter one from @pytest.mark.<size>(timeout=...)."""
    limit = table[size]
    mark = item.get_closest_marker(size.value)
    if mark is not None and "timeout" in mark.kwargs:
        try:
            asked = float(mark.kwargs["timeout"])
        except (TypeError, ValueError):
            raise pytest.UsageError(f"{item.nodeid}: timeout={mark.kwargs['timeout']!r} is not a number") from None
        if asked <= 0:
            raise pytest.UsageError(f"{item.nodeid}: timeout must be positive, got {asked}")
        limit = min(limit, asked)   # tighter only
    return limit
