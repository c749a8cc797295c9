"""The pytest arguments workers collect with: the client's, minus what only the client does."""

from __future__ import annotations

import pytest

# options the client handles (or that make no sense in a worker), with whether they take a value
CLIENT_ONLY = {
    "-x": False, "--exitfirst": False, "--maxfail": True, "--sw": False, "--stepwise": False,
    "--stepwise-skip": False, "--lf": False, "--last-failed": False, "--ff": False, "--failed-first": False,
    "--nf": False, "--new-first": False, "--lfnf": True, "--last-failed-no-failures": True,
    "--junitxml": True, "--junit-xml": True, "--junitprefix": True, "--junit-prefix": True,
    "--durations": True, "--durations-min": True, "--pdb": False, "--pdbcls": True, "--trace": False,
    "--co": False, "--collect-only": False, "--collectonly": False, "--html": True, "--resultlog": True,
    "-n": True, "--numprocesses": True, "--dist": True, "--maxprocesses": True,
    "--test-categories-enforcement": True, "--cache-clear": False, "--sw-skip": False,
}
# short options whose value may be glued on (-kfoo): a cluster stops there
_SHORT_WITH_VALUE = set("kmpcoWn")


ISOD_OPTIONS = {
    "--isod-target": True, "--isod-workers": True, "--isod-default-size": True, "--isod-report": True,
    "--isod-backend": True, "--isod-max-worker-restart": True, "--isod-tls-ca": True,
}


def worker_args(config: pytest.Config) -> list[str]:
    args = [str(a) for a in config.invocation_params.args]
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        name, eq, _ = a.partition("=")
        takes_value = ISOD_OPTIONS.get(name, CLIENT_ONLY.get(name))
        if takes_value is not None:
            if takes_value and not eq:
                i += 1   # the value is the next argument
            continue
        if a == "-p" and i < len(args) and args[i] == "isod_client":
            i += 1
            continue
        if a == "-pisod_client":
            continue
        if a.startswith("-") and not a.startswith("--") and len(a) > 2 and a[1] not in _SHORT_WITH_VALUE:
            a = _drop_x(a)
            if a == "-":
                continue
        out.append(a)
    return out


def _drop_x(cluster: str) -> str:
    """-xvs -> -vs (a short-flag cluster; a value-taking letter ends it)."""
    kept = "-"
    for pos, ch in enumerate(cluster[1:], start=1):
        if ch in _SHORT_WITH_VALUE:
            return kept + cluster[pos:]
        if ch != "x":
            kept += ch
    return kept
