"""Per-test resource limits on a worker's process tree, and the sweep of what a
test left running.

The daemon makes one ``TreeLimits(worker_pid)`` per worker, calls
``apply(size, config)`` when a test starts, ``sweep()`` when processes the
tests left behind must go, and ``close()`` once the worker is gone.

Where the limits come from, best first, per resource:

- a cgroup of the worker's own (cgroups.py: v2 where the controller is
  delegated to the daemon's cgroup, else v1 at /sys/fs/cgroup/<controller>),
  created next to the daemon's cgroup: ``pids.max`` caps the tasks of the
  whole tree, the memory controller its memory. The cgroup also lists every
  process of the tree, even one that double-forked and called setsid(), so
  the sweep finds it.
- else soft rlimits set on the worker with prlimit(2) and inherited by what
  it spawns (rlimits.py): RLIMIT_AS per process, RLIMIT_NPROC per uid.

The sweep itself, and the removal of what dead daemons left, is strays.py.
What a process in the tree cannot escape is said in docs/threat-model.md: a
root test can move itself out of the cgroup, an unprivileged one cannot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import psutil

from ..sandbox import netguard
from . import cgroups, rlimits, strays
from .cgroups import Cgroup

GiB = 1 << 30


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


# --- the tree ----------------------------------------------------------------
class TreeLimits:
    """Limits and cleanup for one worker and everything it spawns."""

    def __init__(self, worker_pid: int, config: LimitsConfig | None = None) -> None:
        self.worker_pid = worker_pid
        self.config = config or DEFAULT_CONFIG
        self.notes: list[str] = []        # why a limit is weaker than asked (for logs)
        self.applied: SizeLimits | None = None
        self._cgroups: dict[str, Cgroup] = {}
        self._closed = False
        try:
            self._sid = os.getsid(worker_pid)
        except OSError:
            self._sid = None
        if self.config.cgroups:
            self._cgroups = cgroups.make(f"isod-{os.getpid()}-w{worker_pid}", {"pids", "memory"})
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

    def _unique_cgroups(self) -> list[Cgroup]:
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
        return cg.oom_kills() if cg is not None else 0

    def _apply_pids(self, n: int | None) -> None:
        cg = self._cgroups.get("pids")
        if cg is not None:
            cg.limit_tasks(n)
        else:
            self._note(rlimits.limit_tasks(self.worker_pid, n))

    def _apply_memory(self, n: int | None) -> None:
        cg = self._cgroups.get("memory")
        self._note(cg.limit_memory(n) if cg is not None else rlimits.limit_memory(self.worker_pid, n))

    def _note(self, note: str | None) -> None:
        if note is not None:
            self.notes.append(note)

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
        return {p for p in found if not strays.is_zombie(p)}

    def sweep(self, timeout: float = 5.0) -> list[tuple[int, str]]:
        """Kill every process of the tree but the worker; (pid, command) of each, for a warning."""
        return strays.sweep(lambda: self.members() - {self.worker_pid}, self._in_tree, timeout)

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

