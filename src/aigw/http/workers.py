"""Several worker processes on one port: a small supervisor that binds the sockets and forks workers.

How the port is shared: the parent binds one listening socket per worker, all on the same address
with SO_REUSEPORT, before any worker starts, and worker i serves socket i. Why:
- balance: the kernel spreads new connections over the sockets by a hash of their addresses. With one
  socket shared by all workers, they race to accept, and one that wakes first takes every waiting
  connection (uvloop accepts until the queue is empty): measured here, 16 connections opened at once
  all went to one of two workers, and keep-alive clients (benchmarks, SDK connection pools) then stay
  on it, so the second core sat idle;
- the port is bound once, by the parent: a bind error is one message and exit status 1, and
  "listening" is logged once, when the port really is bound;
- the parent keeps every socket open, so a worker that dies loses nothing: connections in its queue
  wait there until its successor accepts them (at once after a steady run, else after the back-off
  below). Had each worker bound its own SO_REUSEPORT socket, its queue would be reset when it died.
The price: while a worker is down, the share of new connections hashed to it waits. And SO_REUSEPORT
lets another process of the same user join the group; the gateway runs as its own user.

Workers are forked (the parent has loaded the settings and the code, and holds no threads, event
loop or database connection at that point) and stay in the parent's process group, so tools that
watch or stop a group (a benchmark's CPU count, `kill -- -PGID`) see them all. A stop that reaches
a worker twice (a terminal's Ctrl-C or systemd's stop reach every process, and the parent forwards
it too) counts once (aigw.http.lifespan). The parent waits for signals with `sigtimedwait`, with no
handler and no polling loop:
- SIGTERM / SIGINT: forwarded to every worker (each drains its requests, see aigw.http.server), then
  the parent waits for them and exits; a second one is forwarded too and hurries them;
- SIGHUP: the parent reads the configuration file; if it is valid, it keeps it for the workers it
  starts later and forwards the signal, and each worker reloads (aigw.reload); if not, the error is
  logged once and the workers are left alone;
- a worker that exits while the gateway is not stopping is started again, at once if it had run a
  while, else after a back-off doubling from 0.5 s up to 30 s, so a crash loop does not spin. A
  worker whose first start fails (exit status 3: the application's start-up failed) stops them all.
Workers ask the kernel to send them SIGTERM if the parent dies (Linux's PR_SET_PDEATHSIG), so a
killed supervisor does not leave workers serving a port nobody manages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("aigw.workers")

STARTUP_FAILED = 3  # a worker's exit status when the application's start-up failed (http.server.run)
STEADY_SECONDS = 10.0  # a worker that ran this long before dying is restarted at once
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerStart:
    """What a worker is told when it starts: its index, and `hangup()`, true once a SIGHUP reached
    it before its server could handle one itself (it then reloads once listening)."""

    index: int
    sock: socket.socket  # the listening socket to serve
    hangup: Callable[[], bool]


@dataclass
class _Slot:
    index: int
    pid: int | None = None
    started: float = 0.0
    starts: int = 0
    failures: int = 0  # quick deaths in a row
    restart_at: float | None = None


def bind_sockets(host: str, port: int, count: int, backlog: int = 2048) -> list[socket.socket]:
    """`count` listening sockets on one address, one per worker (raises OSError if the address
    cannot be bound)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def supervise(
    sockets: list[socket.socket], serve_worker: Callable[[WorkerStart], None], reload: Callable[[], bool] | None = None,
    ended: Callable[[int], None] | None = None,
) -> int:
    """Run `serve_worker` in one forked process per socket until SIGTERM/SIGINT; the exit status.
    On SIGHUP, `reload()` (in the parent) checks the configuration and keeps it for the workers it
    starts from then on: only if it returns true is the signal forwarded to the running workers.
    `ended(pid)` is called for each worker that has exited, before its successor starts."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    slots = [_Slot(i) for i in range(len(sockets))]
    for slot in slots:
        _spawn(slot, sockets, serve_worker)
    stopping = False
    status = 0
    while True:
        for pid, code in _reaped():
            slot = next((s for s in slots if s.pid == pid), None)
            if slot is None:
                continue
            if ended is not None:
                try:
                    ended(pid)
                except Exception:
                    log.exception("after worker %d (pid %d) ended", slot.index, pid)
            if stopping:
                slot.pid = None
                continue
            if code == STARTUP_FAILED and slot.starts == 1:
                log.error("worker %d could not start; stopping", slot.index)
                slot.pid = None
                stopping, status = True, STARTUP_FAILED
                _close(sockets)
                _forward(slots, signal.SIGTERM)
                continue
            _schedule_restart(slot, code)
            slot.pid = None
        if stopping and all(s.pid is None for s in slots):
            return status
        now = time.monotonic()
        for slot in slots:
            if not stopping and slot.pid is None and slot.restart_at is not None and slot.restart_at <= now:
                _spawn(slot, sockets, serve_worker)
        waits = [s.restart_at - now for s in slots if s.pid is None and s.restart_at is not None and not stopping]
        info = signal.sigtimedwait(_SIGNALS, max(0.0, min(waits)) if waits else 60.0)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        if info.si_signo == signal.SIGHUP:
            if not stopping and (reload is None or reload()):
                log.info("SIGHUP: the workers reload their configuration")
                _forward(slots, signal.SIGHUP)
            continue
        if not stopping:
            log.info("%s: stopping %d worker(s)", signal.Signals(info.si_signo).name, sum(s.pid is not None for s in slots))
            stopping = True
            _close(sockets)  # the port is released once the workers' copies close too
        _forward(slots, info.si_signo)


def _spawn(slot: _Slot, sockets: list[socket.socket], serve_worker: Callable[[WorkerStart], None]) -> None:
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            _die_with_parent(parent)
            # A SIGHUP before the server handles its own (its default action ends the process) is
            # noted, and the worker reloads once it listens.
            hangups: list[int] = []
            signal.signal(signal.SIGHUP, lambda signo, frame: hangups.append(signo))
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            for i, other in enumerate(sockets):
                if i != slot.index:
                    other.close()  # the parent keeps them; this worker serves its own
            serve_worker(WorkerStart(slot.index, sockets[slot.index], lambda: bool(hangups)))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("worker %d failed", slot.index)
        finally:
            logging.shutdown()
            os._exit(code)
    slot.pid, slot.started, slot.restart_at = pid, time.monotonic(), None
    slot.starts += 1
    log.debug("worker %d started (pid %d)", slot.index, pid)


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this process when the supervisor dies (elsewhere: nothing)."""
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path, use_errno=True) if path else None
        if libc is not None and hasattr(libc, "prctl"):
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _reaped() -> list[tuple[int, int]]:
    """(pid, exit status) of every child that ended (a signal's death as 128 + its number)."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        code = os.waitstatus_to_exitcode(status)
        ended.append((pid, code if code >= 0 else 128 - code))


def _schedule_restart(slot: _Slot, code: int) -> None:
    ran = time.monotonic() - slot.started
    slot.failures = 0 if ran >= STEADY_SECONDS else slot.failures + 1
    delay = 0.0 if slot.failures == 0 else min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (slot.failures - 1))
    slot.restart_at = time.monotonic() + delay
    log.warning("worker %d (pid %s) exited with status %d after %.1f s; restarting it in %.1f s", slot.index, slot.pid, code, ran, delay)


def _close(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def _forward(slots: list[_Slot], signo: int) -> None:
    for slot in slots:
        if slot.pid is not None:
            try:
                os.kill(slot.pid, signo)
            except ProcessLookupError:
                pass
