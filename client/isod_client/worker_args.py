"""The pytest arguments workers start with: the client's own, untouched.

Workers must collect what the client collected, so they parse the same
command line: the same paths, -k/-m, rootdir, and every option's value
(a list of client-only options here once turned `-rx tests/` into
`-r tests/`). What only the client does (-x, --lf, --junitxml, --pdb, -n, ...)
is neutralised inside the worker by option name, after parsing, as
pytest-xdist's remote.setup_config does: `_CLIENT_ONLY` in
isod/worker/plugin.py, one list, which covers ini addopts too.
"""

from __future__ import annotations

import pytest


def worker_args(config: pytest.Config) -> list[str]:
    # the plugin itself first: its options (--isod-*) must parse in the worker
    # even when the client loaded it some other way (pytest.main(plugins=...));
    # a second -p of a loaded plugin is a no-op, and in a worker it does nothing
    # and the client's rootdir and ini file, named: an argument that is a path
    # only in the client (a report file written since) must not move them
    where = [f"--rootdir={config.rootpath}"]
    if config.inipath is not None:
        where += ["-c", str(config.inipath)]
    return ["-p", "isod_client", *where, *(str(a) for a in config.invocation_params.args)]


def launch() -> str:
    """How this pytest was started, for workers to start the same way:
    "-m" for `python -m pytest` (the cwd first on sys.path), else the path of
    the script (the `pytest` entry point: its directory first on sys.path,
    and argv[0] the program name that argparse-based code prints)."""
    import os
    import sys

    argv0 = sys.argv[0] if sys.argv else ""
    if not argv0 or argv0.endswith(os.path.join("pytest", "__main__.py")) or not os.path.isfile(argv0):
        return "-m"
    return os.path.abspath(argv0)
