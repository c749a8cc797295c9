"""Workers get the client's arguments untouched; client-only options are
neutralised inside the worker by option name (one list, in the worker)."""

from types import SimpleNamespace

import pytest
from isod.worker import plugin as worker_plugin
from isod_client.worker_args import worker_args

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.small


def args_of(*argv, inipath=None):
    return worker_args(SimpleNamespace(invocation_params=SimpleNamespace(args=argv), rootpath="/proj",
                                       inipath=inipath))


def test_arguments_pass_untouched():
    # -r takes a value: "-rx tests/" once became "-r tests/" (workers collected other paths)
    argv = ("-rx", "tests/", "-xvs", "-kx_and_y", "--maxfail", "3", "--isod-report", "r.json", "-p", "myplugin")
    assert args_of(*argv) == ["-p", "isod_client", "--rootdir=/proj", *argv]


def test_the_clients_rootdir_and_ini_file_are_named():
    """A path that exists only in the client (a report written since) must not move them."""
    assert args_of("tests", inipath="/proj/pytest.ini") == ["-p", "isod_client", "--rootdir=/proj",
                                                            "-c", "/proj/pytest.ini", "tests"]


# what only the client does: stopping early, report files, debugging, xdist
CLIENT_ONLY = ["-x", "--maxfail=3", "--junitxml=out.xml", "--junitprefix=p", "--durations=5", "--durations-min=1",
               "--pdb", "--pdbcls=pdb:Pdb", "--trace", "-n", "2", "--maxprocesses=2", "--dist=load", "-d", "-f"]
# selection from pytest's cache: made where the tests are collected (the client collects nothing)
CACHE_SELECTION = ["--sw", "--sw-skip", "--sw-reset", "--lf", "--ff", "--nf", "--lfnf=none", "--cache-clear"]
# inert once the option they modify is off (--junitxml, --durations)
INERT = {"junitprefix", "durations_min"}


def worker_options(pytester, monkeypatch, *args) -> dict:
    """The options a worker runs with, given these arguments: parsed, then neutralised."""
    config = pytester.parseconfig("-p", "isod_client", *args)
    monkeypatch.setenv("ISOD_WORKER_FD", "-1")
    monkeypatch.setenv("ISOD_WORKER_ID", "w1")
    worker_plugin.pytest_cmdline_main(config)
    return {k: v for k, v in vars(config.option).items() if k not in INERT}


def test_client_only_options_are_neutralised_in_the_worker_by_name(pytester, monkeypatch):
    given = worker_options(pytester, monkeypatch, *CLIENT_ONLY, "-rx", "-k", "foo")
    plain = worker_options(pytester, monkeypatch, "-rx", "-k", "foo")
    assert given == plain
    assert (given["reportchars"], given["keyword"]) == ("x", "foo")      # the rest is the client's


def test_selection_from_the_cache_stays_in_the_collecting_process(pytester, monkeypatch):
    given = worker_options(pytester, monkeypatch, *CACHE_SELECTION)
    assert {k: given[k] for k in ("stepwise", "stepwise_skip", "stepwise_reset", "lf", "failedfirst", "newfirst",
                                  "cacheclear", "last_failed_no_failures")} == {
        "stepwise": True, "stepwise_skip": True, "stepwise_reset": True, "lf": True, "failedfirst": True,
        "newfirst": True, "cacheclear": True, "last_failed_no_failures": "none"}
