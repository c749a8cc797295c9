"""Per-test resource limits on a worker's process tree, and the sweep of what a
test left running.

The daemon makes one ``TreeLimits(worker_pid)`` per worker, calls
``apply(size, config)`` when a test starts, ``sweep()`` when processes the
tests left behind must go, and ``close()`` once the worker is gone.

Where the limits come from, best first, per resource:

- a cgroup of the worker's own (v2 where the controller is delegated to the
  daemon's cgroup, else v1 at /sys/fs/cgroup/<controller>), created next to
  the daemon's cgroup: ``pids.max`` caps the tasks (processes *and threads*)
  of the whole tree, ``memory.max`` / ``memory.limit_in_bytes`` its memory
  (when the tree hits it, the kernel OOM-kills the largest process in the
  tree, normally the one that allocated; nothing outside the tree is touched).
  The cgroup also lists every process of the tree, even one that double-forked
  and called setsid(), so the sweep finds it.
- else rlimits set on the worker with prlimit(2) and inherited by what it
  spawns: RLIMIT_AS (per process: an allocation past it fails with ENOMEM,
  MemoryError in Python) and RLIMIT_NPROC (counted per real uid over the whole
  machine, not per tree, so the limit is set to N above what the uid already
  runs; and root, or anything with CAP_SYS_RESOURCE/CAP_SYS_ADMIN, ignores
  it). Only soft limits are changed: a test may raise them back up to the hard
  limit, these are guard rails against accidents, not a boundary.

What a process in the tree cannot escape is said in docs/threat-model.md: a
root test can move itself out of the cgroup, an unprivileged one cannot.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import time
from dataclasses import dataclass, field

import psutil

from ..sandbox import cgroupfs, netguard

GiB = 1 << 30
CGROUP_FS = "/sys/fs/cgroup"


@dataclass(frozen=True)
class SizeLimits:
    pids: int | None = None     # tasks (processes + threads) in the tree; None: no limit
    memory: int | None = None   # bytes for the tree (cgroup) or per process (RLIMIT_AS); None: no limit


@dataclass(frozen=True)
class LimitsConfig:
    """Limits per test size (by name); sizes not listed get no limit."""

    sizes: dict[str, SizeLimits] = field(default_factory=lambda: dict(DEFAULT_SIZES))
    cgroups: bool = True        # False: rlimits only

    def for_size(self, size_name: str) -> SizeLimits:
        return self.sizes.get(size_name.lower(), SizeLimits())

    @classmethod
    def parse(cls, spec: str, base: LimitsConfig | None = None) -> LimitsConfig:
        """``medium.pids=512,medium.memory=4G,large.memory=off``: changes to base (the defaults)."""
        sizes = dict((base or cls()).sizes)
        for entry in filter(None, (e.strip() for e in spec.split(","))):
            key, eq, value = entry.partition("=")
            size, dot, what = key.strip().lower().partition(".")
            if not (eq and dot) or what not in ("pids", "memory"):
                raise ValueError(f"bad limit {entry!r}: expected SIZE.pids=N or SIZE.memory=BYTES[K|M|G] (or =off)")
            number = None if value.strip().lower() in ("off", "none", "0") else _parse_amount(value)
            current = sizes.get(size, SizeLimits())
            sizes[size] = SizeLimits(pids=number if what == "pids" else current.pids,
                                     memory=number if what == "memory" else current.memory)
        return cls(sizes=sizes, cgroups=(base or cls()).cgroups)


# small tests cannot fork (the seccomp filter), so a process cap is moot for
# them; their threads stay unlimited. Memory for the whole tree grows with the
# size (`isod serve --limits` changes any of these).
DEFAULT_SIZES = {
    "small": SizeLimits(pids=None, memory=2 * GiB),
    "medium": SizeLimits(pids=512, memory=4 * GiB),
    "large": SizeLimits(pids=512, memory=8 * GiB),
    "xlarge": SizeLimits(pids=512, memory=8 * GiB),
}
DEFAULT_CONFIG = LimitsConfig()


def _parse_amount(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
    digits = text[:-1] if scale != 1 else text
    try:
        n = int(float(digits) * scale)
    except ValueError:
        raise ValueError(f"bad amount {text!r}") from None
    if n <= 0:
        raise ValueError(f"bad amount {text!r}: must be positive")
    return n


# --- cgroups -----------------------------------------------------------------
class _Cgroup:
    """One cgroup directory of one controller (v1) or of several (v2)."""

    def __init__(self, path: str, version: int) -> None:
        self.path = path
        self.version = version

    def write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def read(self, name: str) -> str:
        with open(os.path.join(self.path, name)) as f:
            return f.read().strip()

    def procs(self) -> set[int]:
        try:
            return {int(x) for x in self.read("cgroup.procs").split()}
        except (OSError, ValueError):
            return set()

    def add(self, pid: int) -> None:
        self.write("cgroup.procs", str(pid))

    def remove(self) -> None:
        """Move any process left to the parent, then delete the directory
        (and what a nested isod left inside it)."""
        cgroupfs.remove_tree(self.path)


def _own_cgroups() -> tuple[dict[str, str], str | None]:
    """(v1 controller -> this process's cgroup path, this process's v2 path)."""
    v1: dict[str, str] = {}
    v2 = None
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                hid, controllers, path = line.rstrip("\n").split(":", 2)
                if hid == "0" and controllers == "":
                    v2 = path
                for c in controllers.split(","):
                    if c:
                        v1[c] = path
    except OSError:
        pass
    return v1, v2


def _v2_root() -> str | None:
    for candidate in (CGROUP_FS, os.path.join(CGROUP_FS, "unified")):
        if os.path.exists(os.path.join(candidate, "cgroup.controllers")):
            return candidate
    return None


def _make_cgroups(name: str, wanted: set[str]) -> dict[str, _Cgroup]:
    """controller -> a fresh cgroup holding nothing yet, for each controller we can get."""
    v1_paths, v2_path = _own_cgroups()
    out: dict[str, _Cgroup] = {}
    root2 = _v2_root()
    if root2 is not None and v2_path is not None:
        parent = os.path.join(root2, v2_path.lstrip("/"))
        try:
            with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                enabled = set(f.read().split())
        except OSError:
            enabled = set()
        usable = wanted & enabled
        if usable:
            path = os.path.join(parent, name)
            try:
                os.mkdir(path, 0o755)
                cg = _Cgroup(path, 2)
                out.update({c: cg for c in usable})
            except OSError:
                pass
    for controller in sorted(wanted - set(out)):
        base = os.path.join(CGROUP_FS, controller)
        if controller not in v1_paths or not os.path.exists(os.path.join(base, "cgroup.procs")):
            continue
        path = os.path.join(base, v1_paths[controller].lstrip("/"), name)
        try:
            os.mkdir(path, 0o755)
        except OSError:
            continue
        out[controller] = _Cgroup(path, 1)
    return out


def remove_stale_cgroups() -> list[tuple[int, str]]:
    """At daemon start: kill what is left in the cgroups of daemons that died
    without closing them (SIGKILL, OOM), and remove those cgroups. (pid, command)
    of each process killed. Only cgroups next to this daemon's own are looked at,
    named by a daemon pid that no longer runs (a daemon in another pid namespace
    sharing this cgroup would look dead: do not share one)."""
    v1_paths, v2_path = _own_cgroups()
    parents = {(os.path.join(CGROUP_FS, c, p.lstrip("/")), 1) for c, p in v1_paths.items() if c in ("pids", "memory")}
    root2 = _v2_root()
    if root2 is not None and v2_path is not None:
        parents.add((os.path.join(root2, v2_path.lstrip("/")), 2))
    killed: dict[int, str] = {}
    for parent, version in parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            prefix, _, rest = name.partition("-")
            owner = rest.partition("-")[0]
            if prefix != "isod" or not owner.isdigit() or psutil.pid_exists(int(owner)):
                continue
            cg = _Cgroup(os.path.join(parent, name), version)
            for _ in range(50):
                procs = {p for p in cg.procs() if not _is_zombie(p)}
                if not procs:
                    break
                for pid in procs:
                    killed.setdefault(pid, _command(pid))
                    _kill(pid, lambda _pid: True)
                time.sleep(0.01)
            cg.remove()
    return sorted(killed.items())


# --- the tree ----------------------------------------------------------------
class TreeLimits:
    """Limits and cleanup for one worker and everything it spawns."""

    def __init__(self, worker_pid: int, config: LimitsConfig | None = None) -> None:
        self.worker_pid = worker_pid
        self.config = config or DEFAULT_CONFIG
        self.notes: list[str] = []        # why a limit is weaker than asked (for logs)
        self.applied: SizeLimits | None = None
        self._cgroups: dict[str, _Cgroup] = {}
        self._closed = False
        try:
            self._sid = os.getsid(worker_pid)
        except OSError:
            self._sid = None
        if self.config.cgroups:
            self._cgroups = _make_cgroups(f"isod-{os.getpid()}-w{worker_pid}", {"pids", "memory"})
            for cg in self._unique_cgroups():
                try:
                    cg.add(worker_pid)
                except OSError as e:
                    self.notes.append(f"cannot move worker {worker_pid} into {cg.path}: {e.strerror}")
                    cg.remove()
                    self._cgroups = {c: other for c, other in self._cgroups.items() if other is not cg}
        # the network rules (sandbox/netguard.py): the tree is in a cgroup of
        # the guard's own since its launch; a v2 cgroup of ours just took it
        # out of that one, so the guard's hooks go on ours too
        self.net = netguard.for_pid(worker_pid)
        for cg in self._unique_cgroups():
            if self.net is not None and cg.version == 2:
                try:
                    self.net.guard.attach(cg.path)
                except OSError as e:
                    self.notes.append(f"network rules not attached to {cg.path}: {e.strerror or e}")
        if "pids" not in self._cgroups:
            root = " (and root, like anything with CAP_SYS_RESOURCE, ignores it)" if os.geteuid() == 0 else ""
            self.notes.append(f"no pids cgroup: using RLIMIT_NPROC, counted per uid{root}")
        if "memory" not in self._cgroups:
            self.notes.append("no memory cgroup: using RLIMIT_AS, per process")

    def _unique_cgroups(self) -> list[_Cgroup]:
        return list({id(c): c for c in self._cgroups.values()}.values())

    @property
    def mechanism(self) -> dict[str, str]:
        """controller -> what enforces it: 'cgroup v1', 'cgroup v2' or the rlimit."""
        out = {c: f"cgroup v{cg.version}" for c, cg in self._cgroups.items()}
        out.setdefault("pids", "RLIMIT_NPROC")
        out.setdefault("memory", "RLIMIT_AS")
        return out

    # --- at test start -----------------------------------------------------
    def apply(self, size_name: str, config: LimitsConfig | None = None) -> None:
        """Set the limits of this size for the tree (the running test's size),
        and its network rule unless the worker set that itself already."""
        if self.net is not None:
            self.net.set_size(size_name)
        want = (config or self.config).for_size(size_name)
        if want == self.applied:
            return
        try:
            self._apply_pids(want.pids)
            self._apply_memory(want.memory)
        except OSError as e:   # never let a limit break a test start: say why instead
            self.notes.append(f"limits for {size_name} not applied: {e}")
        self.applied = want

    def oom_kills(self) -> int:
        """Processes of the tree the kernel killed for the memory limit so far
        (to say "killed by the memory limit" rather than just "signal 9")."""
        cg = self._cgroups.get("memory")
        if cg is None:
            return 0
        try:
            text = cg.read("memory.events" if cg.version == 2 else "memory.oom_control")
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def _apply_pids(self, n: int | None) -> None:
        cg = self._cgroups.get("pids")
        if cg is not None:
            cg.write("pids.max", "max" if n is None else str(n))
            return
        if n is None:
            self._prlimit(resource.RLIMIT_NPROC, None)
            return
        try:   # RLIMIT_NPROC counts every process of the uid: give the tree n more
            uid = psutil.Process(self.worker_pid).uids().real
            running = sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid)
        except psutil.Error:
            running = 0
        self._prlimit(resource.RLIMIT_NPROC, running + n)

    def _apply_memory(self, n: int | None) -> None:
        cg = self._cgroups.get("memory")
        if cg is None:
            self._prlimit(resource.RLIMIT_AS, n)
            return
        name = "memory.max" if cg.version == 2 else "memory.limit_in_bytes"
        value = ("max" if cg.version == 2 else "-1") if n is None else str(n)
        try:
            cg.write(name, value)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            # v1: the tree already uses more than the new limit and could not be reclaimed
            self.notes.append(f"memory limit {n} not applied: the tree already uses {cg.read('memory.usage_in_bytes')}")

    def _prlimit(self, which: int, soft: int | None) -> None:
        try:
            _cur, hard = resource.prlimit(self.worker_pid, which)
            new = resource.RLIM_INFINITY if soft is None else soft
            if hard != resource.RLIM_INFINITY and (new == resource.RLIM_INFINITY or new > hard):
                new = hard
            resource.prlimit(self.worker_pid, which, (new, hard))
        except (ProcessLookupError, PermissionError, ValueError) as e:
            self.notes.append(f"prlimit({which}) on {self.worker_pid} failed: {e}")

    # --- at test end -------------------------------------------------------
    def members(self) -> set[int]:
        """Every live process of the tree, the worker included while it lives (zombies are dead)."""
        found: set[int] = set()
        for cg in self._unique_cgroups():
            found |= cg.procs()
        # without a cgroup: children still attached, plus the worker's session
        # (a child that re-parented to init but kept the session is still found;
        # one that called setsid() is not — say so in the threat model)
        try:
            found |= {p.pid for p in psutil.Process(self.worker_pid).children(recursive=True)}
        except psutil.Error:
            pass
        if not self._cgroups and self._sid is not None:
            for p in psutil.process_iter():
                try:
                    if os.getsid(p.pid) == self._sid:
                        found.add(p.pid)
                except OSError:
                    pass
        found.discard(os.getpid())
        return {p for p in found if not _is_zombie(p)}

    def sweep(self, timeout: float = 5.0) -> list[tuple[int, str]]:
        """Kill every process of the tree but the worker; (pid, command) of each, for a warning."""
        killed: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            strays = self.members() - {self.worker_pid}
            if not strays:
                break
            for pid in strays:
                if pid not in killed:
                    killed[pid] = _command(pid)
                _kill(pid, self._in_tree)
            time.sleep(0.005)   # a fork bomb's children appear between two rounds
        return sorted(killed.items())

    def _in_tree(self, pid: int) -> bool:
        """Whether pid (just pinned by a pidfd) is still one of ours, not a reused number."""
        if self._cgroups:
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    text = f.read()
            except OSError:
                return False
            return all(os.path.basename(cg.path) in text for cg in self._unique_cgroups())
        return pid in self.members()

    def close(self) -> None:
        """Remove the cgroups (any process still in them moves to the parent)."""
        if self._closed:
            return
        self._closed = True
        for cg in self._unique_cgroups():
            cg.remove()
        self._cgroups.clear()


def _is_zombie(pid: int) -> bool:
    """Dead and waiting for its parent to reap it (a killed child of a live worker): nothing to kill."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2][1:2] in (b"Z", b"X")
    except OSError:
        return True


def _command(pid: int) -> str:
    try:
        p = psutil.Process(pid)
        return " ".join(p.cmdline()) or p.name()
    except psutil.Error:
        return "?"


def _kill(pid: int, still_ours) -> None:
    """SIGKILL through a pidfd, after checking the pinned process is still ours:
    a pid number reused since the listing is never hit."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if still_ours(pid):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)
