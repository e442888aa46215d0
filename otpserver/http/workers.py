"""Several workers, each with its own listening socket on the one port (`SO_REUSEPORT`).

uvicorn's own multiprocess mode shares one listening socket among its workers, and whichever
worker is first to wake takes each connection: under load one busy worker kept taking nearly
all of them while the other idled. Here every worker binds the port itself with
`SO_REUSEPORT`, so the kernel hashes each new connection to one of the sockets and the
connections spread evenly. A connection stays with the worker that accepted it.

`Supervisor` starts the workers as fresh interpreters (the `spawn` start method, as uvicorn
does), forwards SIGTERM and SIGINT to them as SIGTERM (each then finishes its requests in
flight), replaces a worker that dies, later and later while they keep dying, and gives up
when workers keep failing before they serve. A worker whose supervisor is gone stops too,
so a killed supervisor leaves no worker holding the port.

A worker that hangs is worse than one that dies: its socket stays open, so the kernel keeps
handing it its share of new connections, and they wait forever. Every worker's event loop
therefore sends the supervisor a heartbeat several times within `OTP_WORKER_TIMEOUT_SECONDS`;
a serving worker not heard from for that long (a loop blocked by a stuck call, a frozen
process) is killed and replaced like one that died.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from otpserver.settings.defaults import WORKER_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

SHARES_PORT = hasattr(socket, "SO_REUSEPORT")
"""Whether this platform lets several sockets listen on one port (Linux, the BSDs, macOS)."""

FIRST_RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 30.0
CRASH_WINDOW_SECONDS = 60.0
"""The restart delay doubles with each worker death within this window."""
MAX_FAILED_STARTS = 5
"""Workers in a row that exit before serving: then the fault is the configuration or the
machine, not a worker, and the supervisor stops instead of restarting forever."""

BEATS_PER_TIMEOUT = 5
"""Heartbeats a worker sends within one timeout: a few late ones on a busy machine never
add up to a kill."""

LATE_WAKE_SECONDS = 1.0
"""A wait that returns this much later than asked means the supervisor itself was not
running (the machine or the VM was paused): the workers were paused alike, so their
silence meanwhile proves nothing and each gets a fresh timeout."""

_READY = b"ready"
_BEAT = b"beat"


def listening_socket(host: str, port: int, *, share_port: bool) -> socket.socket:
    """A TCP socket bound to `host`:`port`, not yet listening; with `share_port`, one of
    several bound there (`SO_REUSEPORT`). Raises OSError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a restarted server bind while connections of the last one are in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def claim_port(host: str, port: int) -> int:
    """The port the workers will share (port 0 becomes the one the kernel picks). Raises
    OSError when something listens there already: bound without `SO_REUSEPORT`, this probe
    fails even against sockets that set it, so a stale server on the port is an error
    instead of a silent partner taking a share of the connections."""
    with listening_socket(host, port, share_port=False) as probe:
        chosen: int = probe.getsockname()[1]
        return chosen


@dataclass(slots=True)
class _Worker:
    process: BaseProcess
    connection: Connection
    """The supervisor's end of a pipe the worker sees close when the supervisor is gone."""
    heartbeat: Connection
    """The supervisor's end of a one-way pipe on which the worker says when it serves, then
    that its event loop still runs."""
    heard_at: float
    """When the worker was last heard from (`time.monotonic`)."""
    ready: bool = False
    deaf: bool = False
    """Its heartbeat pipe has closed: nothing more will come (the worker is exiting)."""
    silenced: bool = False
    """Killed for being silent too long; its exit is on its way."""

    @property
    def pid(self) -> int:
        return self.process.pid or 0


class Supervisor:
    """Runs `workers` copies of the uvicorn server `config` describes, each listening on
    `config.host`:`config.port` with its own socket, until SIGTERM or SIGINT."""

    def __init__(
        self,
        config: uvicorn.Config,
        workers: int,
        *,
        silent_after_seconds: float = WORKER_TIMEOUT_SECONDS,
    ) -> None:
        self.config = config
        self.workers = workers
        self.silent_after_seconds = silent_after_seconds
        self._context = multiprocessing.get_context("spawn")
        self._stop_signal: int | None = None
        self._deaths: collections.deque[float] = collections.deque()
        self._failed_starts = 0

    def run(self) -> int:
        """Serve until stopped; 0 after a stop by signal, 1 when workers kept failing to
        start. Every worker has exited when this returns."""
        wake_reader, wake_writer = socket.socketpair()
        wake_reader.setblocking(False)
        wake_writer.setblocking(False)
        previous_wakeup = signal.set_wakeup_fd(wake_writer.fileno())
        previous_handlers = {
            number: signal.signal(number, self._on_signal)
            for number in (signal.SIGINT, signal.SIGTERM)
        }
        slots: list[_Worker | None] = []
        try:
            log.info(
                "serving on %s:%d with %d workers, each listening with its own socket",
                self.config.host,
                self.config.port,
                self.workers,
            )
            slots = [self._start() for _ in range(self.workers)]
            return self._supervise(slots, wake_reader)
        finally:
            self._stop_all(slots)
            for number, handler in previous_handlers.items():
                signal.signal(number, handler)
            signal.set_wakeup_fd(previous_wakeup)
            wake_reader.close()
            wake_writer.close()

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        self._stop_signal = number

    def _supervise(self, slots: list[_Worker | None], wake_reader: socket.socket) -> int:
        restart_at: dict[int, float] = {}
        while self._stop_signal is None:
            live = [worker for worker in slots if worker is not None]
            waitables: list[Connection | socket.socket | int] = [wake_reader]
            waitables += [worker.process.sentinel for worker in live]
            waitables += [worker.heartbeat for worker in live if not worker.deaf]
            deadlines = [*restart_at.values(), *self._silence_deadlines(live)]
            timeout = None
            if deadlines:
                timeout = max(0.0, min(deadlines) - time.monotonic())
            asked_at = time.monotonic()
            wait(waitables, timeout)
            if timeout is not None and time.monotonic() - asked_at > timeout + LATE_WAKE_SECONDS:
                self._pardon(live)
            with contextlib.suppress(BlockingIOError):
                wake_reader.recv(64)
            if self._stop_signal is not None:
                break
            for index, worker in enumerate(slots):
                if worker is None:
                    continue
                self._hear(worker)
                if worker.process.is_alive():
                    self._kill_if_silent(worker)
                    continue
                worker.process.join()
                worker.connection.close()
                worker.heartbeat.close()
                slots[index] = None
                if not worker.ready:
                    self._failed_starts += 1
                if self._failed_starts >= MAX_FAILED_STARTS:
                    log.error(
                        "%d workers in a row exited before serving (the last, [%d], with "
                        "status %s); stopping",
                        self._failed_starts,
                        worker.pid,
                        worker.process.exitcode,
                    )
                    return 1
                delay = self._restart_delay()
                log.warning(
                    "worker [%d] exited with status %s %s; starting a replacement in %.1f s",
                    worker.pid,
                    worker.process.exitcode,
                    "while serving" if worker.ready else "before serving",
                    delay,
                )
                restart_at[index] = time.monotonic() + delay
            now = time.monotonic()
            for index, when in list(restart_at.items()):
                if when <= now:
                    del restart_at[index]
                    slots[index] = self._start()
        log.info(
            "received %s; stopping the workers once their requests in flight are answered",
            signal.Signals(self._stop_signal).name,
        )
        return 0

    def _hear(self, worker: _Worker) -> None:
        """Take in whatever the worker sent: that it serves, and heartbeats."""
        if worker.deaf:
            return
        try:
            while worker.heartbeat.poll():
                message = worker.heartbeat.recv_bytes()
                worker.heard_at = time.monotonic()
                if message == _READY and not worker.ready:
                    worker.ready = True
                    self._failed_starts = 0
        except (EOFError, OSError):
            worker.deaf = True

    @staticmethod
    def _pardon(live: list[_Worker]) -> None:
        now = time.monotonic()
        for worker in live:
            worker.heard_at = max(worker.heard_at, now)

    def _silence_deadlines(self, live: list[_Worker]) -> list[float]:
        # Only serving workers: importing the application may take long, and a worker that
        # never gets to serve is the failed-start count's business.
        return [
            worker.heard_at + self.silent_after_seconds
            for worker in live
            if worker.ready and not worker.silenced
        ]

    def _kill_if_silent(self, worker: _Worker) -> None:
        if not worker.ready or worker.silenced:
            return
        silent_for = time.monotonic() - worker.heard_at
        if silent_for <= self.silent_after_seconds:
            return
        log.error(
            "worker [%d] sent no heartbeat for %.1f s (OTP_WORKER_TIMEOUT_SECONDS): its event "
            "loop is blocked or the process is frozen; killing it",
            worker.pid,
            silent_for,
        )
        worker.silenced = True
        worker.process.kill()

    def _restart_delay(self) -> float:
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > CRASH_WINDOW_SECONDS:
            self._deaths.popleft()
        doubled: float = FIRST_RESTART_DELAY_SECONDS * 2.0 ** (len(self._deaths) - 1)
        return min(MAX_RESTART_DELAY_SECONDS, doubled)

    def _start(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        heard, beating = self._context.Pipe(duplex=False)
        beat_seconds = self.silent_after_seconds / BEATS_PER_TIMEOUT
        process = self._context.Process(
            target=serve_worker,
            args=(self.config, theirs, beating, beat_seconds),
            name="otpserver-worker",
        )
        process.start()
        # The worker holds the only other ends now: its EOF tells it the supervisor is gone.
        theirs.close()
        beating.close()
        log.info("started worker [%d]", process.pid)
        return _Worker(process, ours, heard, heard_at=time.monotonic())

    def _stop_all(self, slots: list[_Worker | None]) -> None:
        live = [worker for worker in slots if worker is not None]
        for worker in live:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in live:
            worker.process.join()
            worker.connection.close()
            worker.heartbeat.close()
        if live:
            log.info("all workers stopped")


class _WorkerServer(uvicorn.Server):
    """uvicorn's server, telling the supervisor once it serves, then beating while its
    event loop runs."""

    def __init__(self, config: uvicorn.Config, heartbeat: Connection, beat_seconds: float) -> None:
        super().__init__(config)
        self._heartbeat = heartbeat
        self._beat_seconds = beat_seconds
        self._beating: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._tell(_READY)
            self._beating = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        # From the event loop itself, not a thread: a beat proves the loop still turns.
        while True:
            await asyncio.sleep(self._beat_seconds)
            self._tell(_BEAT)

    def _tell(self, message: bytes) -> None:
        # The pipe does not block (`serve_worker`): should the supervisor stop reading, a
        # full pipe drops the beat instead of stopping the loop that sends it.
        with contextlib.suppress(OSError):
            self._heartbeat.send_bytes(message)


def serve_worker(
    config: uvicorn.Config, supervisor: Connection, heartbeat: Connection, beat_seconds: float
) -> None:
    """One worker process: its own socket on the shared port, then uvicorn until SIGTERM."""
    # A fresh interpreter: the supervisor's logging setup did not come along.
    config.configure_logging()
    try:
        sock = listening_socket(config.host, config.port, share_port=True)
    except OSError as error:
        # The reason is the whole story; a traceback of `bind` would add nothing.
        log.error("worker cannot listen on %s:%d: %s", config.host, config.port, error)  # noqa: TRY400
        sys.exit(STARTUP_FAILURE)
    os.set_blocking(heartbeat.fileno(), False)
    threading.Thread(target=_stop_when_orphaned, args=(supervisor,), daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        _WorkerServer(config, heartbeat, beat_seconds).run(sockets=[sock])


def _stop_when_orphaned(supervisor: Connection) -> None:
    # The supervisor never writes to the worker: this returns only when its end closes.
    with contextlib.suppress(EOFError, OSError):
        supervisor.recv_bytes()
    os.kill(os.getpid(), signal.SIGTERM)
