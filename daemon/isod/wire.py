"""Text for protobuf string fields, which must be valid UTF-8.

Paths and argv come from the kernel as bytes and are decoded with
surrogateescape (os.fsdecode); a byte that is not UTF-8 (b"\\xff") becomes a
lone surrogate that protobuf refuses. On the wire it is shown escaped instead.
"""

from __future__ import annotations


def text(s: str) -> str:
    try:
        s.encode()
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def texts(items) -> list[str]:
    return [text(s) for s in items]
