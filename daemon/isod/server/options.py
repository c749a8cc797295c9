"""What `isod serve` says of an option that cannot work (app.py, grpc_server.py)."""

from __future__ import annotations


class UsageError(Exception):
    """An `isod serve` option that cannot work: the command line prints it on
    one line and exits with status 2, before the daemon has done anything."""
