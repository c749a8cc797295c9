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
    return ["-p", "isod_client", *(str(a) for a in config.invocation_params.args)]
