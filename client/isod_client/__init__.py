"""isod_client: the pytest plugin (`pytest -p isod_client`).

Reports the collection made in the daemon's collecting process (the client
imports no test module), runs the tests on an isod daemon (a private embedded one
unless --isod-target / ISOD_TARGET names one), reports through pytest's own
hooks, and fails small tests that tried to create a process with TC003.
"""

from __future__ import annotations

import os

import pytest
from isod import sizes
from isod.contract import MARKERS, Size

SIZES = [s.value for s in Size]
ENFORCEMENTS = ("strict", "warn", "off")


def pytest_addoption(parser: pytest.Parser, pluginmanager) -> None:
    group = parser.getgroup("isod", "isod: kernel-enforced test sizes")
    group.addoption("--isod-target", default=os.environ.get("ISOD_TARGET"), metavar="ADDR",
                    help="daemon address (unix:///path or host:port; env ISOD_TARGET). "
                         "Unset: start a private embedded daemon for this run.")
    group.addoption("--isod-tls-ca", default=os.environ.get("ISOD_TLS_CA"), metavar="FILE",
                    help="connect to --isod-target over TLS, trusting this PEM CA (env ISOD_TLS_CA); "
                         "the bearer token comes from env ISOD_TOKEN")
    group.addoption("--isod-workers", type=int, default=None, metavar="N",
                    help="workers for this session (default: the daemon's, CPU count)")
    group.addoption("--isod-default-size", default=None, choices=SIZES,
                    help="size of tests without a size marker (default: small; ini isod_default_size)")
    group.addoption("--isod-report", default=None, metavar="FILE",
                    help="write a JSON report: per test its size, outcome, durations and every attempted command")
    group.addoption("--isod-suggest-sizes", action="store_true", default=False,
                    help="at the end, suggest for each test the smallest size it would pass under "
                         "(any enforcement; with --isod-report, the file has them too)")
    group.addoption("--isod-backend", default=None, choices=("auto", "seccomp", "ptrace"),
                    help="sandbox backend of the embedded daemon")
    group.addoption("--isod-network", default=None, choices=("on", "off"),
                    help="network rules of the sizes (TC001: small none, medium localhost only; "
                         "default on; ini isod_network); off: process rules only")
    group.addoption("--isod-max-worker-restart", type=int, default=None, metavar="N",
                    help="stop the run after N worker crashes (default: 4 + workers)")
    if not _registered(parser, "--test-categories-enforcement") and not _test_categories_will_load(pluginmanager):
        group.addoption("--test-categories-enforcement", dest="test_categories_enforcement", default=None,
                        choices=ENFORCEMENTS, help="strict: fail violations; warn: warn; off: only record")
    for name, help_text in (
        ("test_categories_enforcement", "strict | warn | off (default strict under isod)"),
        ("isod_default_size", "size of unmarked tests (default small)"),
        ("isod_network", "on | off: enforce the sizes' network rules (TC001; default on)"),
        ("isod_timeout_small", "time limit of small tests in seconds (default 1)"),
        ("isod_timeout_medium", "time limit of medium tests in seconds (default 300)"),
        ("isod_timeout_large", "time limit of large tests in seconds (default 900)"),
        ("isod_timeout_xlarge", "time limit of xlarge tests in seconds (default 900)"),
        ("isod_timeout_fixtures", "time limit of a test's setup and of its teardown in seconds, whatever "
                                  "its size (default 60, or the size's limit if longer)"),
    ):
        try:
            parser.addini(name, help_text, default=None)
        except ValueError:
            pass


def _registered(parser: pytest.Parser, name: str) -> bool:
    """Whether another plugin added this option already (in any group)."""
    groups = [*parser._groups, parser._anonymous]
    return any(name in opt.names() for g in groups for opt in g.options)


def _test_categories_will_load(pluginmanager) -> bool:
    """pytest-test-categories owns --test-categories-enforcement when it loads
    (possibly after us, from its entry point): share its option then. It does
    not load when plugin autoload is off or its entry point is blocked."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("pytest-test-categories")
    except PackageNotFoundError:
        return False
    names = [ep.name for ep in dist.entry_points if ep.group == "pytest11"]
    if not names or os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return any(pluginmanager.has_plugin(n) for n in names)
    return not any(pluginmanager.is_blocked(n) for n in names)


_IN_WORKER = pytest.StashKey[bool]()
# options with which pytest runs no test (--collect-only, --fixtures, --markers, ...)
_NO_TESTS_RUN = ("collectonly", "help", "version", "showfixtures", "show_fixtures_per_test", "markers")


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    # read now: a worker takes its channel out of the environment at the end
    # of its own configure (isod/worker/plugin.py), before the hook below
    config.stash[_IN_WORKER] = bool(os.environ.get("ISOD_WORKER_FD"))


@pytest.hookimpl(trylast=True, specname="pytest_configure")
def pytest_configure_isod_session(config: pytest.Config) -> None:
    """After every other plugin's configure (the temp dir factory, the
    cache): the session is known, and the embedded daemon starts with it
    before the client imports gRPC (its start and its zygote's collection
    overlap the client's own start)."""
    if config.stash.get(_IN_WORKER, False):
        return   # inside a worker: the daemon's worker plugin runs things there
    opt = config.option
    if any(getattr(opt, name, False) for name in _NO_TESTS_RUN):
        return   # pytest collects or prints here, and runs nothing: plain pytest's own

    enforcement = (config.getoption("test_categories_enforcement", None)
                   or config.getini("test_categories_enforcement") or "strict").strip().lower()
    if enforcement not in ENFORCEMENTS:
        raise pytest.UsageError(f"test_categories_enforcement must be one of {', '.join(ENFORCEMENTS)}, "
                                f"got {enforcement!r}")
    default_size = sizes.default_size(config)
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") != "no":
        raise pytest.UsageError("isod: pytest-xdist's -n and isod both run the tests in other processes; "
                                "drop -n and use --isod-workers N")
    from .session_open import check_usage, session_open

    check_usage(config)
    open_msg = session_open(config, enforcement, default_size)
    daemon = None
    if not config.getoption("isod_target"):
        from .embedded import EmbeddedDaemon

        daemon = EmbeddedDaemon(config.getoption("isod_backend"), config.getoption("isod_workers"))
        daemon.start(open_msg)
    try:
        from .dsession import Controller  # gRPC is imported here

        controller = Controller(config, enforcement, default_size, open_msg, daemon)
    except BaseException:
        if daemon is not None:
            daemon.stop(graceful=False)
        raise
    controller.link.tls_ca = config.getoption("isod_tls_ca")
    config.pluginmanager.register(controller, "isod-controller")
