"""What workers collect with: the client's arguments minus what only the client does."""

from types import SimpleNamespace

import pytest
from isod_client.worker_args import worker_args

pytestmark = pytest.mark.small


def args_of(*argv):
    return worker_args(SimpleNamespace(invocation_params=SimpleNamespace(args=argv)))


def test_client_only_options_are_dropped_with_their_values():
    assert args_of("-p", "isod_client", "-x", "--maxfail", "3", "--junitxml=out.xml", "--durations", "5",
                   "--isod-target", "unix:///s", "--isod-workers=2", "--lf", "-k", "foo", "tests/") == \
        ["-k", "foo", "tests/"]


def test_short_clusters_lose_x_only():
    assert args_of("-xvs", "-vx", "-x") == ["-vs", "-v"]


def test_value_taking_short_options_are_kept_whole():
    assert args_of("-kx_and_y", "-mslow", "-pxdist.plugin") == ["-kx_and_y", "-mslow", "-pxdist.plugin"]


def test_other_plugins_and_options_pass_through():
    assert args_of("-p", "myplugin", "-o", "addopts=", "--tb=short", "-W", "error") == \
        ["-p", "myplugin", "-o", "addopts=", "--tb=short", "-W", "error"]
