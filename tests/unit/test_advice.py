"""The size advisor's rule (isod.advice): report entries in, sizes and reasons out."""

from __future__ import annotations

import pytest
from isod import advice
from isod.advice import network_use, suggest, suggest_all, summary_lines
from isod.contract import Size

pytestmark = pytest.mark.small


def entry(name="test_x", size="xlarge", outcome="passed", call=0.01, commands=(), intents=(), marked=False,
          worker="gw0", fixtures=None, **extra) -> dict:
    return {"nodeid": f"test_m.py::{name}", "size": size, "outcome": outcome, "marked": marked, "worker": worker,
            "durations": {"setup": 0.001, "call": call, "teardown": 0.001}, "commands": list(commands),
            "intents": list(intents), "fixtures": fixtures or {}, **extra}


def execve(*argv, decision="allow", phase="call", **kw) -> dict:
    return {"syscall": "execve", "path": f"/usr/bin/{argv[0]}", "argv": list(argv), "decision": decision,
            "phase": phase, "pid": 20, "tid": 20, "offset_s": 0.002, **kw}


def fork(decision="allow", phase="call", syscall="clone", tid=10, offset_s=0.001) -> dict:
    return {"syscall": syscall, "decision": decision, "phase": phase, "pid": 10, "tid": tid, "offset_s": offset_s}


def net(syscall="connect", phase="call", **fields) -> dict:
    return {"syscall": syscall, "decision": "allow", "phase": phase, **fields}


# --- the rule ---------------------------------------------------------------
def test_a_pure_quick_test_is_small_with_no_reasons():
    assert suggest(entry()) == advice.Suggestion(Size.SMALL, ())


def test_a_spawn_makes_it_medium_naming_the_command():
    s = suggest(entry(commands=[fork(), execve("git", "init", "-q")]))
    assert s.size is Size.MEDIUM and s.reasons == ("spawned git init -q",)


def test_a_fork_without_exec_is_named_by_the_python_intent_on_its_thread():
    intents = [{"event": "subprocess.Popen", "argv": ["other"], "tid": 99, "offset_s": 0.0},
               {"event": "subprocess.Popen", "argv": ["make", "deploy"], "tid": 10, "offset_s": 0.0005}]
    s = suggest(entry(commands=[fork()], intents=intents))
    assert s.reasons == ("spawned make deploy",)
    assert suggest(entry(commands=[fork(syscall="fork")])).reasons == ("spawned a fork with no command",)


def test_clone3_enosys_alone_is_no_spawn():
    """The filter answers clone3 ENOSYS; libc's retry with clone is the attempt."""
    assert suggest(entry(commands=[fork(syscall="clone3", decision="enosys")])).size is Size.SMALL


@pytest.mark.parametrize(("call", "size"), [(0.0, Size.SMALL), (0.5, Size.SMALL), (0.51, Size.MEDIUM),
                                            (0.95, Size.MEDIUM), (150.0, Size.MEDIUM), (151.0, Size.LARGE),
                                            (450.0, Size.LARGE), (451.0, Size.XLARGE)])
def test_a_size_fits_when_the_call_takes_at_most_half_its_limit(call, size):
    assert suggest(entry(call=call)).size is size


def test_the_reason_for_a_slow_test_names_its_time_and_the_limit_it_misses():
    (reason,) = suggest(entry(call=0.62)).reasons
    assert reason == "call took 0.62 s of small's 1 s (needs under 50% of the limit)"


def test_only_the_call_phase_counts_against_the_limit():
    e = entry(call=0.1)
    e["durations"]["setup"] = 5.0
    assert suggest(e).size is Size.SMALL


def test_configured_limits_are_used():
    limits = {Size.SMALL: 0.1, Size.MEDIUM: 10.0, Size.LARGE: 20.0, Size.XLARGE: 60.0}
    assert suggest(entry(call=0.04), limits).size is Size.SMALL
    assert suggest(entry(call=0.06), limits).size is Size.MEDIUM
    assert suggest(entry(call=11.0), limits).size is Size.XLARGE
    assert advice.limits_of({"small": "0.1", "medium": 10, "bogus": 3, "large": "x"}) == {
        Size.SMALL: 0.1, Size.MEDIUM: 10.0, Size.LARGE: 900.0, Size.XLARGE: 900.0}


def test_a_spawning_test_too_slow_for_medium_is_large():
    s = suggest(entry(call=200.0, commands=[execve("sleep", "200")]))
    assert s.size is Size.LARGE
    assert s.reasons == ("spawned sleep 200", "call took 200 s of medium's 300 s (needs under 50% of the limit)")


@pytest.mark.parametrize("outcome", ["failed", "error", "skipped"])
def test_failed_errored_and_skipped_tests_get_no_suggestion(outcome):
    s = suggest(entry(outcome=outcome, commands=[execve("true")]))
    assert s.size is None and s.reasons == (f"no suggestion: {outcome}",)


def test_a_crashed_test_gets_no_suggestion():
    e = entry(outcome="failed", interruption="worker crashed while running test_x (SIGSEGV)",
              interruption_kind="worker_crashed")
    assert suggest(e) == advice.Suggestion(None, ("no suggestion: worker crashed while running test_x (SIGSEGV)",))


def test_a_test_failed_by_tc003_gets_a_lower_bound():
    """Under strict the spawn was denied: the test failed because of isod, so
    what it did up to then still says something."""
    s = suggest(entry(size="small", outcome="failed", commands=[fork(decision="deny")],
                      intents=[{"event": "subprocess.Popen", "argv": ["echo", "hi"], "tid": 10, "offset_s": 0.0}]))
    assert s.size is Size.MEDIUM
    assert s.reasons[0] == "tried to spawn echo hi (denied)"
    assert s.reasons[1].startswith("at least medium: isod stopped the test (TC003)")


def test_a_test_killed_at_its_time_limit_gets_a_lower_bound_from_the_elapsed_time():
    e = entry(size="small", outcome="failed", call=0.0, interruption="[TC006] Timeout: ...",
              interruption_kind="timeout", elapsed_s=1.02)
    s = suggest(e)
    assert s.size is Size.MEDIUM and s.reasons[0] == "killed at small's limit of 1 s after 1.02 s"
    assert "TC006" in s.reasons[1]
    del e["interruption_kind"], e["elapsed_s"]       # an older report: the message still says TC006
    assert suggest(e).size is Size.MEDIUM and "TC006" in suggest(e).reasons[-1]
    assert suggest({**e, "size": "medium"}).size is Size.LARGE


# --- network records -----------------------------------------------------------
@pytest.mark.parametrize(("fields", "remote", "text"), [
    ({"address": "127.0.0.1:8080"}, False, "connected to 127.0.0.1:8080 (loopback)"),
    ({"address": "127.3.4.5:80"}, False, "connected to 127.3.4.5:80 (loopback)"),
    ({"address": "[::1]:5432"}, False, "connected to [::1]:5432 (loopback)"),
    ({"address": "[::ffff:127.0.0.1]:1"}, False, "connected to [::ffff:127.0.0.1]:1 (loopback)"),
    ({"address": "localhost:6379"}, False, "connected to localhost:6379 (loopback)"),
    ({"address": "0.0.0.0:8000"}, False, "connected to 0.0.0.0:8000 (loopback)"),
    ({"address": "/run/postgresql/.s.PGSQL.5432"}, False, "connected to Unix socket /run/postgresql/.s.PGSQL.5432"),
    ({"address": "@abstract"}, False, "connected to Unix socket @abstract"),
    ({"path": "10.1.2.3:443"}, True, "connected to 10.1.2.3:443"),
    ({"address": "[2001:db8::1]:443", "path": "ignored"}, True, "connected to [2001:db8::1]:443"),
    ({"address": "pypi.org:443"}, True, "connected to pypi.org:443"),
    ({"address": {"host": "93.184.216.34", "port": 80}}, True, "connected to 93.184.216.34:80"),
    ({"address": {"host": "::1", "port": 80}}, False, "connected to [::1]:80 (loopback)"),
    ({"family": "AF_UNIX"}, False, "connected to a Unix socket"),
    ({"host": "10.0.0.1", "port": 443, "family": 2}, True, "connected to 10.0.0.1:443"),      # netguard's shape
    ({"host": "::1", "port": 8080, "family": 10}, False, "connected to [::1]:8080 (loopback)"),
    ({"host": "::ffff:127.0.0.1", "port": 1, "family": 10}, False, "connected to [::ffff:127.0.0.1]:1 (loopback)"),
    ({"host": "::", "port": 1}, False, "connected to [::]:1 (loopback)"),
    ({"path": "connected to the isod daemon's socket to open a session (pid 7)"}, False,
     "connected to the isod daemon's socket to open a session (pid 7)"),
])
def test_connect_records_are_read_as_loopback_or_beyond(fields, remote, text):
    assert network_use(net(**fields)) == advice.NetworkUse(remote, text)


def test_other_network_calls():
    assert network_use(net("sendto", address="8.8.8.8:53")) == advice.NetworkUse(True, "sent to 8.8.8.8:53")
    assert network_use(net("sendmsg", address="127.0.0.1:53")).remote is False
    assert network_use(net("socket")) == advice.NetworkUse(False, "opened a socket")
    assert network_use(net("socket", family=2, sock_type=1)) == advice.NetworkUse(False, "opened a socket (AF_INET)")
    assert network_use(net("socketcall", family=10)) == advice.NetworkUse(False, "opened a socket (AF_INET6)")
    assert network_use(net("socket", family="AF_NETLINK")) is None          # the kernel, not a host
    assert network_use(net("socket", family=16)) is None
    assert network_use(net("socket", family=17)) == advice.NetworkUse(True, "opened a packet socket")
    assert network_use(net("sendmsg", host="192.0.2.1", port=53, family=2)) == \
        advice.NetworkUse(True, "sent to 192.0.2.1:53")
    assert network_use(net("openat", path="/etc/hosts")) is None
    assert network_use(execve("curl")) is None


def test_network_sizes_a_test():
    assert suggest(entry(commands=[net(address="127.0.0.1:8080")])).size is Size.MEDIUM
    s = suggest(entry(commands=[net(address="127.0.0.1:1"), net(address="10.0.0.1:443"), execve("true")]))
    assert s == advice.Suggestion(Size.LARGE, ("connected to 10.0.0.1:443",))
    assert suggest(entry(call=460.0, commands=[net(address="10.0.0.1:443")])).size is Size.XLARGE


def test_no_network_records_means_no_network():
    assert suggest(entry(commands=[{"syscall": "connect", "decision": "allow", "phase": "call"}])).size is Size.MEDIUM
    assert suggest(entry(commands=[])).size is Size.SMALL


def test_many_commands_are_summed_up():
    s = suggest(entry(commands=[execve("cmd", str(i)) for i in range(6)]))
    assert s.reasons == ("spawned cmd 0", "spawned cmd 1", "spawned cmd 2", "and 3 more commands")


def test_network_use_reads_protobuf_like_objects_too():
    class Ev:
        syscall = "connect"
        path = "10.0.0.1:80"
    assert network_use(Ev()).remote


# --- shared fixtures ------------------------------------------------------------
def test_users_of_a_session_fixture_that_spawns_in_setup_need_what_it_needs():
    """Set up once per worker, its spawn is charged to the first user; under
    strict the others would set it up in a small worker and fail."""
    fx = {"server": "session", "tmp_path": "function"}
    tests = [entry("test_a", commands=[execve("redis-server", phase="setup")], fixtures=fx),
             entry("test_b", fixtures=fx), entry("test_c", fixtures={}),
             entry("test_d", fixtures=fx, worker="gw1", commands=[execve("redis-server", phase="setup")]),
             entry("test_e", fixtures=fx, worker="gw1")]
    got = suggest_all(tests)
    assert [s.size for s in got] == [Size.MEDIUM, Size.MEDIUM, Size.SMALL, Size.MEDIUM, Size.MEDIUM]
    assert got[1].reasons == ("uses session fixture server, whose setup spawned redis-server (in test_m.py::test_a)",)


def test_a_teardown_spawn_of_a_module_fixture_is_charged_to_its_last_user():
    fx = {"compose": "module"}
    tests = [entry("test_a", fixtures=fx), entry("test_b", fixtures=fx,
                                                  commands=[execve("docker", "compose", "down", phase="teardown")]),
             {**entry("test_c"), "nodeid": "test_other.py::test_c"}]
    got = suggest_all(tests)
    assert got[0].size is Size.MEDIUM and "whose teardown spawned docker compose down" in got[0].reasons[0]


def test_a_spawning_function_fixture_is_not_blamed_on_a_shared_one():
    """Every user of `repo` spawns in setup: that accounts for the spawn, so
    the autouse session fixture set up in the same test stays innocent."""
    auto = {"settings": "session"}
    tests = [entry("test_a", fixtures={**auto, "repo": "function"}, commands=[execve("git", "init", phase="setup")]),
             entry("test_b", fixtures={**auto, "repo": "function"}, commands=[execve("git", "init", phase="setup")]),
             entry("test_c", fixtures=auto)]
    assert [s.size for s in suggest_all(tests)] == [Size.MEDIUM, Size.MEDIUM, Size.SMALL]


def test_a_shared_fixture_is_blamed_only_if_every_setup_of_it_spawned():
    fx = {"settings": "session"}
    tests = [entry("test_a", fixtures=fx, commands=[execve("true", phase="setup")]), entry("test_b", fixtures=fx),
             entry("test_c", fixtures=fx, worker="gw1"), entry("test_d", fixtures=fx, worker="gw1")]
    assert [s.size for s in suggest_all(tests)] == [Size.MEDIUM, Size.SMALL, Size.SMALL, Size.SMALL]


def test_a_module_fixture_set_up_again_after_its_module_was_left():
    fx = {"db": "module"}
    other = {**entry("test_z"), "nodeid": "test_other.py::test_z"}
    tests = [entry("test_a", fixtures=fx, commands=[execve("initdb", phase="setup")]), other,
             entry("test_b", fixtures=fx, commands=[execve("initdb", phase="setup")]), entry("test_c", fixtures=fx)]
    assert [s.size for s in suggest_all(tests)] == [Size.MEDIUM, Size.SMALL, Size.MEDIUM, Size.MEDIUM]


def test_entries_without_fixtures_are_judged_alone():
    tests = [entry("test_a", commands=[execve("true", phase="setup")]), entry("test_b")]
    del tests[0]["fixtures"], tests[1]["fixtures"]
    assert [s.size for s in suggest_all(tests)] == [Size.MEDIUM, Size.SMALL]


# --- the summary ----------------------------------------------------------------
def test_summary_per_size_then_totals():
    tests = [entry("test_pure"), entry("test_spawn", commands=[execve("true")]), entry("test_fail", outcome="failed"),
             entry("test_marked", size="small", marked=True, commands=[execve("echo", "hi")]),
             entry("test_slow", size="small", call=0.7),
             entry("test_fits", size="medium", marked=True, commands=[execve("true")]),
             entry("test_m_pure", size="medium", marked=True)]
    assert summary_lines(tests) == [
        "small: 2 tests (1 unmarked): 2 too small",
        "    test_m.py::test_marked -> medium: spawned echo hi",
        "    test_m.py::test_slow (unmarked) -> medium: call took 0.7 s of small's 1 s (needs under 50% of the limit)",
        "medium: 2 tests: 1 could be smaller (1 small)",
        "xlarge: 3 tests (3 unmarked): 2 could be smaller (1 small, 1 medium)",
        "no suggestion for 1 test (1 failed):",
        "    test_m.py::test_fail: failed",
        "total: 7 tests: 3 could be smaller, 2 too small, 1 fit their size, 1 without a suggestion; "
        "suggested 2 small, 4 medium, 0 large, 0 xlarge",
    ]


def test_summary_counts_skipped_tests_and_lists_failed_ones():
    tests = [entry("test_s1", outcome="skipped"), entry("test_s2", outcome="skipped"), entry("test_f", outcome="error"),
             entry("test_c", outcome="failed", interruption="worker crashed (SIGSEGV)",
                   interruption_kind="worker_crashed")]
    assert summary_lines(tests)[1:4] == ["no suggestion for 4 tests (2 skipped, 1 error, 1 failed):",
                                         "    test_m.py::test_f: error",
                                         "    test_m.py::test_c: worker crashed (SIGSEGV)"]


def test_summary_lists_a_bounded_number_of_tests():
    tests = [entry(f"test_{i}", size="small", commands=[execve("true")]) for i in range(5)]
    lines = summary_lines(tests, listed=2)
    assert lines[3] == "    ... and 3 more (--isod-report has them all)"


def test_annotate_writes_the_report_fields():
    tests = advice.annotate([entry(commands=[execve("true")]), entry(outcome="skipped")])
    assert [(t["suggested_size"], t["suggestion_reasons"]) for t in tests] == [
        ("medium", ["spawned true"]), (None, ["no suggestion: skipped"])]


def test_a_python_connect_intent_counts_where_no_hook_recorded_it():
    """A medium worker records no loopback connection; the audit hook's
    intent still tells the test needs the network, and a Unix path does not."""
    loop = {"outcome": "passed", "durations": {"call": 0.01}, "commands": [],
            "intents": [{"event": "socket.connect", "argv": ["127.0.0.1", "8080"]}]}
    unix = {"outcome": "passed", "durations": {"call": 0.01}, "commands": [],
            "intents": [{"event": "socket.connect", "argv": ["/run/app.sock"]}]}
    assert advice.suggest(loop).size is Size.MEDIUM
    assert advice.suggest(unix).size is Size.SMALL
