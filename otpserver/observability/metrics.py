"""Prometheus metrics: what the server counts, and the listener that serves them.

Every label takes values from a short fixed list (channels come from the credential
schema, outcomes and limits from the code), never from a client, so the number of series
stays bounded whatever the traffic.

With several workers each process counts in its own memory-mapped file under one
directory (prometheus-client's multiprocess mode); `python -m otpserver` empties that
directory at every start, points the workers at it, and serves `/metrics` from the
supervisor, summing the files. The record functions below are what the rest of the server
calls: one line at the place where the thing happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import start_http_server
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Where prometheus-client looks for the directory of per-process files."""

_SEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_VERIFY_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass(frozen=True, slots=True)
class Series:
    """Every metric the server records, made together so they share one registry."""

    registry: CollectorRegistry | None
    challenges_created: Counter
    sends: Counter
    send_seconds: Histogram
    verifications: Counter
    time_to_verify_seconds: Histogram
    rate_limited: Counter
    store_seconds: Histogram
    store_errors: Counter
    current_key: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None) -> Series:
        """The metrics, registered with `registry` (None in multiprocess mode, where the
        scrape reads the workers' files instead of live objects)."""
        return cls(
            registry=registry,
            challenges_created=Counter(
                "otp_challenges_created",
                "Codes issued for a new pending verification, by channel.",
                ["channel"],
                registry=registry,
            ),
            sends=Counter(
                "otp_sends",
                "Codes handed to a delivery provider, by channel, provider and outcome.",
                ["channel", "provider", "outcome"],
                registry=registry,
            ),
            send_seconds=Histogram(
                "otp_send_duration_seconds",
                "Time the delivery provider took to accept a code.",
                ["channel", "provider"],
                buckets=_SEND_BUCKETS,
                registry=registry,
            ),
            verifications=Counter(
                "otp_verifications",
                "Codes checked, by channel, method and outcome.",
                ["channel", "method", "outcome"],
                registry=registry,
            ),
            time_to_verify_seconds=Histogram(
                "otp_time_to_verify_seconds",
                "From sending a code to its successful verification.",
                ["channel", "method"],
                buckets=_VERIFY_BUCKETS,
                registry=registry,
            ),
            rate_limited=Counter(
                "otp_rate_limited",
                "Requests refused by an abuse limit, by the limit that refused.",
                ["limit"],
                registry=registry,
            ),
            store_seconds=Histogram(
                "otp_store_latency_seconds",
                "Round trips to the shared store that got an answer.",
                buckets=_STORE_BUCKETS,
                registry=registry,
            ),
            store_errors=Counter(
                "otp_store_errors",
                "Store calls that failed, by kind: timeout, connection or error.",
                ["kind"],
                registry=registry,
            ),
            current_key=Gauge(
                "otp_current_key_number",
                "Number (rotation epoch) of the key-encryption key sealing new cookies.",
                registry=registry,
                multiprocess_mode="max",
            ),
        )


def _multiprocess_directory() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


_series = Series.create(None if _multiprocess_directory() else CollectorRegistry())

_Metric = TypeVar("_Metric", bound=MetricWrapperBase)
_children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}


def _child(metric: _Metric, *label_values: str) -> _Metric:
    """`metric.labels(*label_values)`, looked up once per series.

    prometheus-client checks the values and takes a lock on every `labels` call, which
    costs more than the increment it leads to; the label values come from short fixed
    lists, so this map stays as small as the set of series.
    """
    key = (metric, label_values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*label_values)
    return cast(_Metric, child)


def registry() -> CollectorRegistry:
    """What a scrape reads: this process's metrics, or every worker's in multiprocess mode."""
    directory = _multiprocess_directory()
    if directory is None and _series.registry is not None:
        return _series.registry
    collected = CollectorRegistry()
    # prometheus-client leaves this constructor unannotated.
    MultiProcessCollector(collected, path=directory)  # type: ignore[no-untyped-call]
    return collected


def challenge_created(channel: str) -> None:
    """A code was issued for a new pending verification."""
    _child(_series.challenges_created, channel).inc()


def send_finished(channel: str, provider: str, outcome: str, seconds: float) -> None:
    """A provider accepted (`outcome="sent"`) or refused (`"failed"`) a code in `seconds`."""
    _child(_series.sends, channel, provider, outcome).inc()
    _child(_series.send_seconds, channel, provider).observe(seconds)


@contextlib.contextmanager
def timed_send(channel: str, provider: str) -> Iterator[None]:
    """Around one hand-over to a provider: counts it as sent, or failed if it raises."""
    started = time.perf_counter()
    try:
        yield
    except Exception:
        send_finished(channel, provider, "failed", time.perf_counter() - started)
        raise
    send_finished(channel, provider, "sent", time.perf_counter() - started)


def provider_name(sender: object) -> str:
    """A sender's `provider` attribute, else its class name (`SmtpSender` → `smtp`)."""
    name = getattr(sender, "provider", None)
    if isinstance(name, str):
        return name
    return type(sender).__name__.removesuffix("Sender").lower() or "custom"


def verification(channel: str, method: str, outcome: str, seconds: float | None = None) -> None:
    """A code was checked. `method`: code, link, totp, backup_code; `outcome`: approved,
    incorrect, expired, locked, too_many_attempts, ...; `seconds` since it was sent, for an
    approval."""
    _child(_series.verifications, channel, method, outcome).inc()
    if seconds is not None:
        _child(_series.time_to_verify_seconds, channel, method).observe(max(0.0, seconds))


def rate_limited(limit: str) -> None:
    """An abuse limit (its kind, e.g. `credential_sends`) refused a request."""
    _child(_series.rate_limited, limit).inc()


def store_answered(seconds: float) -> None:
    """A store round trip got its answer in `seconds`."""
    _series.store_seconds.observe(seconds)


def store_failed(kind: str) -> None:
    """A store call failed: `timeout`, `connection` or `error`."""
    _child(_series.store_errors, kind).inc()


def current_key(number: int) -> None:
    """New cookies are sealed with key `number`."""
    _series.current_key.set(number)


class _WorkerFiles:
    """A collector summing the files every process of this server wrote, read at each
    scrape (the directory may be emptied after the listener is up)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        # prometheus-client leaves this constructor unannotated.
        files = MultiProcessCollector(None, path=str(self.directory))  # type: ignore[no-untyped-call]
        collected: Iterable[Metric] = files.collect()  # type: ignore[no-untyped-call]
        return collected


def files_directory(port: int) -> Path:
    """Where the processes of the server whose metrics listener is on `port` count."""
    return Path(tempfile.gettempdir()) / f"otpserver-metrics-{os.getuid()}-{port}"


class Listener:
    """The `/metrics` listener of a server with any number of workers.

    `open` runs before the app is built and the workers start. It binds the port first, so
    a second server given the same port stops there and touches nothing of the first's.
    Then it empties the directory of this port's files, under the temporary directory, so
    counters start at zero and no file of an earlier run (even one killed outright) is
    counted, and switches this process (and through the environment, its workers) to
    count in files there. `close` stops the listener and removes the directory.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.directory = files_directory(port)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        """Bind and serve, then start counting afresh in the port's directory. Raises
        OSError when the port is taken or the directory is not this user's own."""
        collected = CollectorRegistry()
        collected.register(_WorkerFiles(self.directory))
        self._server, self._thread = start_http_server(self.port, self.host, collected)
        if self.directory.is_symlink():
            raise OSError(f"{self.directory} is a symbolic link; refusing to use it")
        shutil.rmtree(self.directory, ignore_errors=True)
        # 0700 and exclusive: a directory someone else made in between fails here.
        self.directory.mkdir(mode=0o700)
        os.environ[MULTIPROCESS_ENV] = str(self.directory)
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        # The record functions must follow the switch.
        global _series
        _series = Series.create(None)

    def close(self) -> None:
        """Stop serving and remove the workers' files."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            shutil.rmtree(self.directory, ignore_errors=True)
