"""What a collection depends on, and whether it still holds (warm zygotes).

Files (modules, data a test module reads at import, the ini file) by their
mtime; directories the collection listed by the names in them that pytest
could collect: Python files and subdirectories, hidden ones aside. A file a
test run writes (a report, a log) changes its directory's mtime but not
what can be collected, so a directory is compared by that listing.
"""

from __future__ import annotations

import hashlib
import os


def listing_digest(path: str) -> int | None:
    """A digest of the collectable names in a directory (None: unreadable)."""
    try:
        with os.scandir(path) as entries:
            names = sorted(e.name for e in entries
                           if not e.name.startswith(".") and (e.name.endswith(".py") or e.is_dir()))
    except OSError:
        return None
    digest = hashlib.blake2b("\0".join(names).encode(errors="surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def unchanged(files, mtimes, dirs, digests) -> bool:
    if len(files) != len(mtimes) or len(dirs) != len(digests):
        return False
    for path, mtime in zip(files, mtimes):
        try:
            if os.stat(path).st_mtime_ns != mtime:
                return False
        except OSError:
            return False
    return all(listing_digest(path) == digest for path, digest in zip(dirs, digests))
