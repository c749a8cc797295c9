"""Getting a worker's process: started fresh, or forked by the zygote and adopted.

A fresh worker is a new interpreter under its class's backend; it collects
by itself. A forked one is asked of the session's zygote (server/
zygote_handle.py) with its channel, output pipes and phase word; its first
message says it runs (with the listener of its filter, for a trapping
class), and the backend then takes it over (``adopt``) before it is sent a
test. The worker handle decides which, and what to do when a fork fails.
"""

from __future__ import annotations

import os
import select
import subprocess

from google.protobuf.message import DecodeError

from .. import channel, phase_word
from ..phase_word import PhaseWord
from ..policy import Rule
from ..sandbox import Box
from ..sandbox.adopted import AdoptedProcess
from ..v1 import isod_pb2 as pb
from .worker_start import BASETEMP_ENV, process_env, pytest_argv, session_basetemp

FORK_READY_TIMEOUT = 30.0    # seconds from the zygote's fork to the worker's first message


def spawn_fresh(backend, open_msg: pb.SessionOpen, identity: dict[str, str],
                phase: PhaseWord) -> tuple[Box, channel.Channel]:
    """A worker of its own, and the daemon's end of its channel."""
    daemon_end, worker_end = channel.pair()
    env = process_env(open_msg, identity)
    env["ISOD_WORKER_FD"] = str(worker_end.fileno())
    env[phase_word.ENV_FD] = str(phase.fd)
    try:
        box = backend.spawn(
            pytest_argv(open_msg), cwd=open_msg.cwd or None, env=env, pass_fds=(worker_end.fileno(), phase.fd),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except BaseException:
        daemon_end.close()
        raise
    finally:
        worker_end.close()
    return box, channel.Channel(daemon_end)


def can_fork(zygote, backend) -> bool:
    return zygote is not None and zygote.usable and hasattr(backend, "adopt")


class ForkedWorker:
    """A worker asked of the zygote: its channel and output pipes are ready
    here before the fork; ``wait`` gives its process, ``adopt`` its box."""

    def __init__(self, zygote, backend, open_msg: pb.SessionOpen, name: str, cls: str,
                 identity: dict[str, str], phase: PhaseWord) -> None:
        self.backend = backend
        self.env = process_env(open_msg, identity)
        daemon_end, worker_end = channel.pair()
        self.chan = channel.Channel(daemon_end)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self.pipes = (open(out_r, "rb", buffering=0), open(err_r, "rb", buffering=0))  # noqa: SIM115
        # what the child sets in its os.environ: who it is, and this session's basetemp
        # (a warm zygote collected for an earlier one)
        child_env = {**identity, BASETEMP_ENV: session_basetemp(open_msg)}
        program = backend.filter_for(self.env) if hasattr(backend, "filter_for") else b""
        try:
            self.request = zygote.fork(name, cls, child_env, program, [worker_end.fileno(), out_w, err_w, phase.fd])
        finally:
            worker_end.close()
            os.close(out_w)
            os.close(err_w)

    def wait(self) -> AdoptedProcess:
        """Its process once forked; ForkFailed says why not."""
        proc = self.request.result()
        proc.stdout, proc.stderr = self.pipes
        return proc

    def adopt(self, proc: AdoptedProcess, rule: Rule) -> Box | None:
        """Its box, supervised by the backend; None (and the process killed)
        when it did not say it runs."""
        try:
            ready = select.select([self.chan.fileno()], [], [], FORK_READY_TIMEOUT)[0]
            raw, fds = self.chan.recv_fds(1) if ready else (b"", [])
            first = pb.WorkerEvent.FromString(raw) if raw else None
        except (EOFError, OSError, DecodeError):
            first, fds = None, []
        if first is None or first.WhichOneof("kind") != "forked" or first.forked.pid != proc.pid:
            for fd in fds:
                os.close(fd)
            proc.kill()
            return None
        if fds:       # a trapping class: the listener of the filter it installed
            return self.backend.adopt(proc, fds[0], rule=rule, env=self.env)
        return self.backend.adopt(proc, env=self.env)

    def abandon(self) -> None:
        """The fork failed: nothing of it stays open."""
        for pipe in self.pipes:
            pipe.close()
        self.chan.close()
