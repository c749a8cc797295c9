"""What the daemon says when it ends a test itself: time limits, crashes,
processes left running. Pure text (the client prints it as the failure)."""

from __future__ import annotations

import signal


def timeout_text(what: str, phase: str, elapsed: float, limit: float, size_limit: float) -> str:
    """TC006; ``what``: "NODEID (size)"."""
    if phase == "call":
        return f"[TC006] Timeout: {what} ran {elapsed:.2f} s, past its limit of {limit:g} s; isod killed its worker"
    return (f"[TC006] Timeout: the {phase} of {what} (its fixtures) ran {elapsed:.2f} s, past isod's limit of "
            f"{limit:g} s for a setup or teardown (the size's {size_limit:g} s limit times the call); "
            "isod killed its worker")


def crash_text(worker: str, nodeid: str, status: int, oom_killed: bool) -> str:
    how = f"signal {-status} ({signal_name(-status)})" if status < 0 else f"exit code {status}"
    if status == -9 and oom_killed:
        how += ", killed by the memory limit of its size (isod serve --limits)"
    return f"worker '{worker}' crashed while running {nodeid}: {how}"


def replaced_text(nodeid: str, argv: list[str], path: str) -> str:
    return f"{nodeid} replaced the worker process with exec: {' '.join(argv) or path}; a fresh worker takes over"


def stray_text(nodeid: str, pid: int) -> str:
    return f"{nodeid} left process {pid} running: {command_of(pid)} (isod kills it when the worker ends)"


def command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return " ".join(a.decode(errors="replace") for a in f.read().split(b"\0") if a) or "?"
    except OSError:
        return "?"


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "?"
