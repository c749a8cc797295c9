"""A worker's xdist-style workerinput from its environment, and workeroutput
on the wire (JSON standing in for execnet, which keeps bytes and tuples)."""

from __future__ import annotations

import json

import pytest
from isod.contract import xdist_dumps, xdist_loads
from isod.worker import xdist_compat

pytestmark = pytest.mark.small


def test_workerinput_from_the_daemons_and_the_clients_variables():
    env = {"ISOD_WORKER_ID": "gw1", "ISOD_WORKER_COUNT": "2", "ISOD_TESTRUN_UID": "abc",
           "ISOD_MAINARGV": json.dumps(["/usr/bin/pytest", "-p", "isod_client"]),
           "ISOD_WORKERINPUT": xdist_dumps({"cov_master_host": "h", "cov_master_rsync_roots": []}).decode()}
    assert xdist_compat.workerinput(env) == {
        "workerid": "gw1", "workercount": 2, "testrunuid": "abc", "mainargv": ["/usr/bin/pytest", "-p", "isod_client"],
        "cov_master_host": "h", "cov_master_rsync_roots": []}


def test_what_the_client_configured_cannot_override_the_workers_own_id():
    env = {"ISOD_WORKER_ID": "gw0", "ISOD_WORKERINPUT": xdist_dumps({"workerid": "gw*"}).decode()}
    assert xdist_compat.workerinput(env)["workerid"] == "gw0"


def test_xdist_names_are_read_when_isod_ones_are_missing():
    wi = xdist_compat.workerinput({"PYTEST_XDIST_WORKER": "gw3", "PYTEST_XDIST_WORKER_COUNT": "4",
                                   "PYTEST_XDIST_TESTRUNUID": "u", "ISOD_MAINARGV": "not json"})
    assert (wi["workerid"], wi["workercount"], wi["testrunuid"]) == ("gw3", 4, "u")
    assert isinstance(wi["mainargv"], list) and wi["mainargv"]


def test_workeroutput_round_trips_what_execnet_would_carry():
    out = {"cov_worker_data": b"\x00\xffdata", "pair": (1, "a"), "nested": [{"t": ("x",)}], "s": {1, 2},
           "fs": frozenset({"a"}), "by_tuple": {(1, 2): "v"}, "__isod__": "a user key", "n": None, "f": 1.5,
           "exitstatus": 1, "shouldfail": False, "shouldstop": "stopping"}
    back = xdist_loads(xdist_dumps(out))
    assert back == out
    assert type(back["pair"]) is tuple and type(back["fs"]) is frozenset and type(back["cov_worker_data"]) is bytes


def test_an_object_json_cannot_carry_arrives_as_its_text():
    class Odd:
        def __repr__(self):
            return "<odd>"

    assert xdist_loads(xdist_dumps({"x": Odd()})) == {"x": "<odd>"}
