"""isod.server.limits.TreeLimits against real process trees: fork bombs stay
inside their cap, a memory bomb kills only itself, the sweep leaves nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from isod.server.limits import DEFAULT_CONFIG, GiB, LimitsConfig, SizeLimits, TreeLimits

pytestmark = pytest.mark.medium

CAP = LimitsConfig({"medium": SizeLimits(pids=16, memory=128 << 20)})
RLIMITS_ONLY = LimitsConfig({"medium": SizeLimits(pids=16, memory=256 << 20)}, cgroups=False)

# A stand-in for a worker: waits for "go", then runs what it is given. It must
# be in its limits before it starts anything, as a worker is before its first test.
WAITER = "import sys, os; sys.stdin.readline(); os.execvp(sys.argv[1], sys.argv[1:])"


class Tree:
    def __init__(self, argv: list[str], config: LimitsConfig) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WAITER, *argv], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.limits = TreeLimits(self.proc.pid, config)

    def go(self) -> None:
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()

    def close(self) -> None:
        self.limits.sweep()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            pipe.close()
        self.limits.close()


@pytest.fixture
def tree():
    made = []

    def make(argv, config=CAP):
        t = Tree(argv, config)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def cgroup_only(t: Tree, controller: str) -> None:
    if t.limits.mechanism[controller].startswith("cgroup"):
        return
    pytest.skip(f"no {controller} cgroup here ({'; '.join(t.limits.notes)})")


def read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_sh_fork_bomb_hits_the_pids_cap_and_the_sweep_kills_the_sleepers(tree):
    t = tree(["sh", "-c", "for i in $(seq 100); do sleep 30 >/dev/null 2>&1 & done; echo all-started; wait"])
    cgroup_only(t, "pids")
    t.limits.apply("medium")
    t.go()
    assert t.proc.wait(10) != 0               # the shell itself hit the cap
    err = t.proc.stderr.read().decode()
    assert "Cannot fork" in err or "Resource temporarily unavailable" in err, err
    members = t.limits.members()
    assert 0 < len(members) <= 16
    swept = t.limits.sweep()
    assert {pid for pid, _ in swept} == members
    # sleepers; one caught inside its exec shows its name only ("sleep"), one
    # caught between the shell's fork and its exec is still the shell
    assert all(cmd.split()[:1] in (["sleep"], ["sh"]) for _, cmd in swept), swept
    assert sum(cmd == "sleep 30" for _, cmd in swept) >= len(swept) - 2, swept
    assert t.limits.members() == set()
    assert all(not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
               for pid, _ in swept)
    assert subprocess.run(["true"], check=False).returncode == 0   # the machine still forks


EXPONENTIAL = """
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.001)
"""


def test_exponential_fork_bomb_is_contained_and_swept_while_the_worker_lives(tree):
    starter = (f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {EXPONENTIAL!r}])"
               "; import time; time.sleep(60)")
    t = tree([sys.executable, "-c", starter])
    cgroup_only(t, "pids")
    t.limits.apply("medium")
    t.go()
    assert wait_for(lambda: len(t.limits.members()) >= 16)
    time.sleep(0.3)
    assert len(t.limits.members()) <= 16
    t0 = time.monotonic()
    swept = t.limits.sweep()
    took = time.monotonic() - t0
    assert len(swept) >= 15 and took < 5, (len(swept), took)
    assert t.limits.members() == {t.proc.pid}     # the "worker" is spared
    assert t.proc.poll() is None


def test_memory_bomb_kills_only_its_own_process(tree):
    bomb = "b = b'x' * (512 << 20); print('survived')"
    parent = ("import subprocess, sys, time\n"
              "s = subprocess.Popen(['sleep', '30'])\n"
              f"r = subprocess.run([sys.executable, '-c', {bomb!r}])\n"
              "print('bomb', r.returncode, 'sibling alive', s.poll() is None, flush=True)\n"
              "time.sleep(30)\n")
    t = tree([sys.executable, "-c", parent])
    cgroup_only(t, "memory")
    t.limits.apply("medium")
    t.go()
    line = t.proc.stdout.readline().decode()
    assert line.split() == ["bomb", str(-signal.SIGKILL), "sibling", "alive", "True"], line
    assert t.proc.poll() is None                  # the "worker" lives on
    assert t.limits.oom_kills() == 1              # and the daemon can say why the bomb died


def test_rlimit_fallback_memory_bomb_gets_memoryerror(tree):
    bomb = "b = b'x' * (512 << 20)"
    parent = (f"import subprocess, sys\nr = subprocess.run([sys.executable, '-c', {bomb!r}], capture_output=True)\n"
              "print(r.returncode, r.stderr.decode().strip().splitlines()[-1])")
    t = tree([sys.executable, "-c", parent], RLIMITS_ONLY)
    assert t.limits.mechanism == {"pids": "RLIMIT_NPROC", "memory": "RLIMIT_AS"}
    assert any("RLIMIT_AS" in n for n in t.limits.notes)
    t.limits.apply("medium")
    assert psutil.Process(t.proc.pid).rlimit(psutil.RLIMIT_AS)[0] == 256 << 20
    t.go()
    out = t.proc.stdout.read().decode().strip()
    assert out == "1 MemoryError", out
    assert t.proc.wait(10) == 0


def test_rlimit_fallback_nproc(tree):
    t = tree(["sh", "-c", "for i in $(seq 40); do sleep 30 & done; wait"], RLIMITS_ONLY)
    t.limits.apply("medium")
    soft = psutil.Process(t.proc.pid).rlimit(psutil.RLIMIT_NPROC)[0]
    assert soft >= 16     # 16 above what the uid already runs
    if os.geteuid() == 0:
        assert any("root" in n and "RLIMIT_NPROC" in n for n in t.limits.notes), t.limits.notes
        pytest.skip("root ignores RLIMIT_NPROC (CAP_SYS_RESOURCE): only the pids cgroup caps a root tree")
    t.go()
    assert t.proc.wait(10) != 0


def test_without_cgroups_the_sweep_finds_children_and_orphans_of_the_session(tree):
    # an orphan (its parent exited) keeps the worker's session: found by sid
    t = tree(["sh", "-c", "sleep 30 & (sleep 31 &) ; echo started; exec sleep 60"], RLIMITS_ONLY)
    t.go()
    assert t.proc.stdout.readline() == b"started\n"
    assert wait_for(lambda: len(t.limits.members() - {t.proc.pid}) == 2)
    swept = t.limits.sweep()
    assert sorted(cmd for _, cmd in swept) == ["sleep 30", "sleep 31"]
    assert t.proc.poll() is None


def test_the_cgroup_finds_a_double_forked_setsid_daemon(tree):
    t = tree(["sh", "-c", "setsid sh -c 'sleep 32 &' ; echo started; exec sleep 60"])
    cgroup_only(t, "pids")
    t.go()
    assert t.proc.stdout.readline() == b"started\n"
    assert wait_for(lambda: any(psutil.Process(p).cmdline() == ["sleep", "32"]
                                for p in t.limits.members() if psutil.pid_exists(p)))
    swept = t.limits.sweep()
    assert [cmd for _, cmd in swept] == ["sleep 32"]


def test_apply_switches_limits_per_size_and_close_removes_the_cgroups(tree):
    cfg = LimitsConfig({"small": SizeLimits(None, 1 * GiB), "medium": SizeLimits(64, 2 * GiB)})
    t = tree(["sleep", "30"], cfg)
    cgroup_only(t, "pids")
    cgroup_only(t, "memory")
    paths = {c: cg.path for c, cg in t.limits._cgroups.items()}
    t.limits.apply("medium")
    assert read(paths["pids"], "pids.max") == "64"
    t.limits.apply("small")
    assert read(paths["pids"], "pids.max") == "max"
    mem = "memory.limit_in_bytes" if t.limits.mechanism["memory"] == "cgroup v1" else "memory.max"
    assert int(read(paths["memory"], mem)) == 1 * GiB
    t.limits.apply("unknown-size")   # no limits
    assert read(paths["pids"], "pids.max") == "max"
    t.proc.kill()
    t.proc.wait()
    t.limits.close()
    assert not any(os.path.exists(p) for p in paths.values())


def test_config_parse_and_defaults():
    assert DEFAULT_CONFIG.for_size("medium") == SizeLimits(512, 4 * GiB)
    assert DEFAULT_CONFIG.for_size("small").pids is None
    cfg = LimitsConfig.parse("medium.pids=100, medium.memory=512M, large.memory=off")
    assert cfg.for_size("medium") == SizeLimits(100, 512 << 20)
    assert cfg.for_size("large") == SizeLimits(512, None)
    assert LimitsConfig.parse("small.memory=1.5GiB").for_size("small").memory == int(1.5 * GiB)
    for bad in ("medium=5", "medium.cpu=1", "medium.pids=lots"):
        with pytest.raises(ValueError):
            LimitsConfig.parse(bad)


def test_cgroups_of_a_dead_daemon_are_emptied_and_removed_at_the_next_start(tmp_path):
    from isod.server import cgroups, strays

    dead = subprocess.Popen(["true"])
    dead.wait()                                   # a pid that no longer runs: the "daemon" that died
    sleeper = subprocess.Popen(["sleep", "30"])
    made = cgroups.make(f"isod-{dead.pid}-w{sleeper.pid}", {"pids"})
    if "pids" not in made:
        sleeper.kill()
        pytest.skip("no pids cgroup here")
    made["pids"].add(sleeper.pid)
    try:
        killed = strays.remove_stale_cgroups()
        assert (sleeper.pid, "sleep 30") in killed
        assert sleeper.wait(5) == -signal.SIGKILL
        assert not os.path.exists(made["pids"].path)
    finally:
        sleeper.kill()
        sleeper.wait()
        made["pids"].remove()


def test_with_a_sandboxed_tree_the_sweep_lets_the_supervisor_release_it():
    """As the daemon will use it: a seccomp-sandboxed worker stand-in, medium rule,
    capped fork loop; after the sweep and the root's exit the backend lets go of the tree."""
    from harness.sandbox import MEDIUM
    from isod.sandbox import open_backend

    backend = open_backend("seccomp")
    try:
        box = backend.spawn([sys.executable, "-c", WAITER, "sh", "-c",
                             "for i in $(seq 50); do sleep 30 >/dev/null 2>&1 & done; exec sleep 30"],
                            rule=MEDIUM, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        limits = TreeLimits(box.pid, CAP)
        try:
            if not limits.mechanism["pids"].startswith("cgroup"):
                pytest.skip("no pids cgroup here")
            limits.apply("medium")
            box.popen.stdin.write(b"go\n")
            box.popen.stdin.close()
            assert box.popen.wait(10) != 0          # the shell hit the cap
            assert not box.released.wait(0.3)       # its sleepers keep the tree alive
            swept = limits.sweep()
            assert 0 < len(swept) < 16 and all(cmd == "sleep 30" for _, cmd in swept), swept
            assert box.released.wait(5)             # nothing left under the filter
            forks = [e for e in box.take_events() if e.syscall in ("clone", "fork", "vfork")]
            assert forks and all(e.decision == "allow" for e in forks)
        finally:
            limits.sweep()
            box.kill()
            limits.close()
    finally:
        backend.close()
