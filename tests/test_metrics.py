"""Prometheus metrics: the series §16 lists, bounded labels, and sums across workers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from otpserver.http.app import OtpApp
from otpserver.observability import metrics
from otpserver.settings.overrides import LimitOverrides
from tests.conftest import MASTER_KEY_TEXT, AppFactory
from tests.support.api import Browser, wrong
from tests.support.fakes import RecordingSender
from tests.support.process import ServerProcess
from tests.support.redis_server import free_port

ROOT = Path(__file__).parent.parent


def sample(name: str, **labels: str) -> float:
    """The current value of one series in this process (0 when it has no sample yet)."""
    return metrics.registry().get_sample_value(name, labels) or 0.0


async def test_the_browser_flow_counts_what_happens(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
) -> None:
    """A create, a wrong code, the right code and a refused verify move the challenge,
    verification, time-to-verify and rate-limit series by exactly what happened; readiness
    sets the current key number."""
    before = {
        "created": sample("otp_challenges_created_total", channel="email"),
        "approved": sample(
            "otp_verifications_total", channel="email", method="code", outcome="approved"
        ),
        "incorrect": sample(
            "otp_verifications_total", channel="email", method="code", outcome="incorrect"
        ),
        "timed": sample("otp_time_to_verify_seconds_count", channel="email", method="code"),
        "limited": sample("otp_rate_limited_total", limit="address-verifies"),
    }
    app = make_app(limit_overrides=LimitOverrides(numbers={"address_verifies": 2}))
    client = client_for(app)
    browser = Browser(client)
    await browser.create("ada@example.com")
    await browser.verify(wrong(sender.last_code))
    assert (await browser.verify(sender.last_code)).status_code == 200
    other = Browser(client)
    await other.create("bob@example.com")
    assert (await other.verify(sender.last_code)).status_code == 429
    assert sample("otp_challenges_created_total", channel="email") == before["created"] + 2
    assert (
        sample("otp_verifications_total", channel="email", method="code", outcome="approved")
        == before["approved"] + 1
    )
    assert (
        sample("otp_verifications_total", channel="email", method="code", outcome="incorrect")
        == before["incorrect"] + 1
    )
    assert (
        sample("otp_time_to_verify_seconds_count", channel="email", method="code")
        == before["timed"] + 1
    )
    assert sample("otp_rate_limited_total", limit="address-verifies") == before["limited"] + 1
    assert (await client.get("/health/ready")).status_code == 200
    keyring = app.state.keyring
    assert sample("otp_current_key_number") == keyring.epoch(time.time())


def test_sends_are_timed_by_channel_provider_and_outcome() -> None:
    """`timed_send` counts a hand-over as sent, or as failed when it raises, with its time."""
    before_sent = sample("otp_sends_total", channel="phone", provider="acme", outcome="sent")
    before_failed = sample("otp_sends_total", channel="phone", provider="acme", outcome="failed")
    with metrics.timed_send("phone", "acme"):
        pass
    with pytest.raises(RuntimeError), metrics.timed_send("phone", "acme"):
        raise RuntimeError("provider down")
    assert sample("otp_sends_total", channel="phone", provider="acme", outcome="sent") == (
        before_sent + 1
    )
    assert sample("otp_sends_total", channel="phone", provider="acme", outcome="failed") == (
        before_failed + 1
    )
    assert sample("otp_send_duration_seconds_count", channel="phone", provider="acme") >= 2


def test_provider_names_are_short_and_fixed() -> None:
    """A sender's provider label is its `provider` attribute, else its class name."""

    class SmtpSender:
        pass

    class Custom:
        provider = "acme"

    assert metrics.provider_name(SmtpSender()) == "smtp"
    assert metrics.provider_name(Custom()) == "acme"


def _value(text: str, series: str) -> float:
    """The value of one exact series line in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return 0.0


def metric_directories(parent: Path) -> list[Path]:
    """The metrics directories the server made under `parent` (its TMPDIR)."""
    return list(parent.glob("otpserver-metrics-*"))


def counting_processes(parent: Path) -> set[str]:
    """The process ids with a counter file in the server's one metrics directory."""
    directories = metric_directories(parent)
    assert len(directories) == 1
    return {re.sub(r"\D", "", f.stem) for f in directories[0].glob("counter_*.db")}


@pytest.mark.e2e
async def test_two_workers_are_scraped_as_one_sum(redis_url: str, tmp_path: Path) -> None:
    """Two uvicorn workers on Redis count creates in their own files; the one `/metrics`
    listener sums them to exactly the number of creates, whichever worker served each; a
    file an earlier run left is gone at start, and the directory after shutdown."""
    metrics_port = free_port()
    # What a server killed outright on this port left behind: must not be counted.
    stale = tmp_path / f"otpserver-metrics-{os.getuid()}-{metrics_port}"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"left by a killed server")
    server = ServerProcess(
        {
            "OTP_WORKERS": "2",
            "OTP_STORE_URL": redis_url,
            "OTP_MASTER_KEY": MASTER_KEY_TEXT,
            "OTP_METRICS_PORT": str(metrics_port),
            "OTP_LIMIT_ADDRESS_REQUESTS": "100000",
            "TMPDIR": str(tmp_path),
        }
    )
    server.start()
    creates = 60
    try:

        async def create(i: int) -> int:
            # One connection per request, so the kernel spreads them over both workers.
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                body = {"email": f"user{i}@example.com"}
                return (await client.post("/api/otp/create", json=body)).status_code

        statuses = await asyncio.gather(*(create(i) for i in range(creates)))
        assert statuses == [200] * creates
        pids = counting_processes(tmp_path)
        assert "1" not in pids
        async with httpx.AsyncClient(timeout=10) as client:
            scraped = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scraped.status_code == 200
        text = scraped.text
    finally:
        server.stop()
    assert len(pids) >= 2, "the creates all reached one worker"
    assert _value(text, 'otp_challenges_created_total{channel="email"}') == creates
    sends = 'otp_sends_total{channel="email",outcome="sent",provider="console"}'
    assert _value(text, sends) == creates
    assert _value(text, "otp_store_latency_seconds_count") >= creates
    assert _value(text, "otp_current_key_number") > 0
    assert not metric_directories(tmp_path)


def test_the_grafana_dashboard_queries_only_series_the_server_exports() -> None:
    """Every metric name in docs/grafana-otpserver.json is one the server exports (with its
    `_total`, `_bucket` or no suffix), and every exported series has a panel."""
    dashboard = json.loads((ROOT / "docs" / "grafana-otpserver.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(otp_[a-z_]+)", target["expr"])
    }
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exported = {
        family.name + suffix
        for family in metrics.registry().collect()
        for suffix in suffixes[family.type]
    }
    assert queried <= exported, queried - exported
    families = {family.name for family in metrics.registry().collect()}
    assert {q.removesuffix("_total").removesuffix("_bucket") for q in queried} == families


async def test_labels_stay_bounded_whatever_clients_send(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
) -> None:
    """Thirty different addresses, wrong codes and unknown paths add no series once each
    outcome has been seen: no label takes a value from a client."""
    client = client_for(make_app())

    async def round_of_traffic(i: int) -> None:
        browser = Browser(client)
        await browser.create(f"user{i}@example{i}.com")
        await browser.verify(wrong(sender.last_code))
        await client.get(f"/no-such-path-{i}")

    def series() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
        return {
            (s.name, tuple(sorted(s.labels.items())))
            for family in metrics.registry().collect()
            for s in family.samples
        }

    await round_of_traffic(0)
    seen = series()
    for i in range(1, 30):
        await round_of_traffic(i)
    assert series() == seen
