"""Log hygiene: every path that logs, in-process and in a real process, logs no secret.

SECURITY.md L.44. The other adversarial modules (properties, races, outages, key events,
fuzzing) each sweep what their servers logged; this one drives every path that writes a log
line on purpose (refusals, limits, delivery failures, crashes, outages, removed keys) and
sweeps the captured records at DEBUG and a real server's whole output.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
import redis
from starlette.requests import Request
from starlette.responses import Response

from otpserver.crypto.keyring import KEY_CACHE_SECONDS
from otpserver.delivery import ConsoleSender
from otpserver.delivery.message import OutgoingCode
from otpserver.hooks import VerifiedCredential
from otpserver.http.app import OtpApp
from otpserver.otp.credentials import Credential
from otpserver.settings.api import ApiSettings
from otpserver.settings.overrides import LimitOverrides
from otpserver.stores.redis import KEY_PREFIX
from tests.conftest import ISSUER, MASTER_KEY, MASTER_KEY_TEXT, AppFactory
from tests.support import factors as factor_support
from tests.support.api import Browser, wrong
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.hooks import HOOKS
from tests.support.hygiene import (
    assert_no_leaks,
    captured_records,
    encodings,
    leaks,
    redis_key_material,
)
from tests.support.process import ServerProcess
from tests.support.redis_server import RedisServer
from tests.support.remote import CodeTail, RemoteBrowser, Seen

WEBHOOK_TOKEN = "tok-6Hq2vZ9rLw4pX8sN1cB7mK3d"
WEBHOOK_SECRET = "whsec-4f8a1c9e2b7d6a3f0e5c8b1a9d2e7f4c"


def test_the_sweep_finds_what_it_looks_for() -> None:
    """A code outside the dev-sender line, a cookie or a key is found; look-alikes are not."""
    assert leaks("otp dev-sender: to=ada@example.com code=123456", ["123456"]) == []
    assert leaks("INFO: verify 123456 refused", ["123456"])
    assert leaks("INFO: 127.0.0.1:51234560 - POST", ["123456"]) == []
    assert leaks("WARNING x: cookie=AbC-dEf_123", ["AbC-dEf_123"])
    assert leaks(f"ERROR kek {bytes(range(32)).hex()}", encodings(bytes(range(32))))


class _Writes(io.StringIO):
    """A stream that remembers each write call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


async def test_the_dev_sender_writes_each_line_at_once() -> None:
    """The dev-sender line reaches the stream in one write, so workers sharing an unbuffered
    stderr cannot splice another line into it (a code would then sit outside its line)."""
    stream = _Writes()
    message = OutgoingCode(Credential("email", "ada@example.com"), "123456", 300, "example.com")
    await ConsoleSender(stream).send(message)
    assert stream.calls == ["otp dev-sender: to=ada@example.com code=123456\n"]


async def test_every_logging_path_of_the_app_logs_no_secret(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
    clock: FakeClock,
) -> None:
    """Refusals, limits, a failed delivery, a crash in the final hook, a removed KEK and a
    store outage, all at DEBUG: no record carries a code, cookie, KEK or master key."""
    store = RedisServer()
    store.start()
    crash = {"on": False}

    async def final(verified: VerifiedCredential, request: Request) -> Response:
        if crash["on"]:
            raise RuntimeError("the fork's final hook failed")
        return await HOOKS.final(verified, request)

    secrets: list[str] = [MASTER_KEY_TEXT]
    try:
        with captured_records() as records:
            app = make_app(
                store_url=store.url,
                store_timeout_seconds=0.3,
                hooks=dataclasses.replace(HOOKS, final=final),
                limit_overrides=LimitOverrides(numbers={"address_verifies": 6}),
            )
            client = client_for(app)
            browser = Browser(client)
            await browser.create("ada@example.com")
            await browser.verify(wrong(sender.last_code))
            await browser.verify("12345\x00")
            await browser.post("/api/otp/verify", cookie="tampered", data={"otp": "123456"})
            await client.post("/api/otp/verify", content=b"x" * 10_000)
            await client.post(
                "/api/otp/create", content=b"{}", headers={"content-type": "text/plain"}
            )
            sender.fail_with = "provider said no"
            clock.advance(30)
            await browser.resend()
            sender.fail_with = None
            clock.advance(5)
            crash["on"] = True
            assert (await browser.verify(sender.last_code)).status_code == 500
            crash["on"] = False
            others = [Browser(client) for _ in range(8)]
            for i, other in enumerate(others):
                await other.create(f"user{i}@example.com")
                await other.verify(wrong(sender.last_code))  # the last ones are rate limited
            removed = Browser(client)
            await removed.create("removed@example.com")
            secrets += redis_key_material(store.url, MASTER_KEY)
            plain = redis.Redis.from_url(store.url)
            plain.delete(*plain.keys(KEY_PREFIX + b"*"))
            plain.close()
            clock.advance(KEY_CACHE_SECONDS + 1)
            assert (await removed.verify(sender.last_code)).status_code == 400
            store.stop()
            outage = Browser(client)
            assert (await outage.create("outage@example.com")).status_code == 503
            store.start()
            recovered = Browser(client)
            await recovered.create("recovered@example.com")
            assert (await recovered.verify(sender.last_code)).status_code == 200
            secrets += redis_key_material(store.url, MASTER_KEY)
    finally:
        store.close()

    kinds = records.text
    for expected in ("rate limited", "delivery failed", "unhandled error", "Traceback"):
        assert expected in kinds, f"the run never logged {expected!r}"
    cookies = [c for b in (browser, *others, removed, recovered) for c in b.history]
    assert "audit otp.failed" in kinds, "the sweep never saw an audit event"
    # Audit events name credentials only by HMAC and mask: no address appears in clear.
    addresses = {m.credential.address for m in sender.sent}
    assert_no_leaks(records.text, [*secrets, *cookies, *(m.code for m in sender.sent), *addresses])


class _Webhook(BaseHTTPRequestHandler):
    """An SMS gateway on loopback that accepts every message and counts them."""

    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers.get("content-length", "0"))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the server's output, not the gateway's."""


@pytest.fixture
def sms_gateway() -> Iterator[str]:
    """The URL of a loopback SMS webhook that carries a token in its query, as many do."""
    _Webhook.received = []
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{gateway.server_address[1]}/sms?token={WEBHOOK_TOKEN}"
    gateway.shutdown()
    gateway.server_close()


@pytest.mark.e2e
async def test_a_real_server_logs_no_secret(redis_url: str, sms_gateway: str) -> None:
    """A real server (Redis, console email, SMS by webhook) through successes and refusals
    prints codes only on the development sender's line, and nothing else secret."""
    server = ServerProcess(
        {
            "OTP_STORE_URL": redis_url,
            "OTP_MASTER_KEY": MASTER_KEY_TEXT,
            "OTP_SMS_PROVIDER": "webhook",
            "OTP_SMS_WEBHOOK_URL": sms_gateway,
            "OTP_SMS_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "OTP_RESEND_COOLDOWN_SECONDS": "0",
        }
    )
    seen = Seen()
    server.start()
    try:
        codes = CodeTail(server.log_path)
        email = RemoteBrowser(server.url, "127.0.0.1", seen)
        await email.create("ada@example.com")
        await email.verify("000000")
        await email.resend()
        code = codes.code_for("ada@example.com")
        assert code is not None
        assert (await email.verify(code)).status_code == 200
        phone = RemoteBrowser(server.url, "127.0.0.1", seen)
        assert (await phone.create("+14155550100")).status_code == 200
        await phone.verify("000000")
        await phone.post("/api/otp/verify", cookie="tampered", data={"otp": "123456"})
        await phone.post("/api/otp/verify", content=b"x" * 10_000)
        async with httpx.AsyncClient(base_url=server.url) as client:
            outbox = (await client.get("/dev/outbox")).json()["messages"]
            await client.get("/nothing-here")
        seen.codes += [m["code"] for m in outbox]
    finally:
        server.stop()
    output = server.output()
    assert len(_Webhook.received) == 1
    secrets = [*seen.secrets(), MASTER_KEY_TEXT, WEBHOOK_TOKEN, WEBHOOK_SECRET]
    assert_no_leaks(output, [*secrets, *redis_key_material(redis_url, MASTER_KEY)])


async def test_the_api_logs_no_key_result_or_blob(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
    redis_url: str,
) -> None:
    """API keys refused, limited and accepted, idempotent runs, replays, refusals and a
    crash, and signed results, all at DEBUG: no record carries
    a key, its secret or digest, a result, a sealed memo or the master key."""
    from otpserver.errors import RateLimited
    from otpserver.http.app import ExactRoute
    from otpserver.settings.api import ApiSettings, parse_api_keys
    from otpserver.stores.markers_redis import MARKER_PREFIX
    from otpserver.v1.auth import authenticate
    from otpserver.v1.idempotency import run_idempotent
    from otpserver.v1.keys import new_key
    from tests.conftest import ISSUER

    key, line = new_key("shop", ["challenges"])
    other, other_line = new_key("auth", ["totp"])
    mode = {"refuse": False, "crash": False}

    async def probe(request: Request) -> Response:
        api_key = await authenticate(request, "challenges")
        body = await request.body()

        async def handler() -> Response:
            if mode["crash"]:
                raise RuntimeError("the handler failed")
            if mode["refuse"]:
                raise RateLimited()
            return Response(b'{"ok":true}', media_type="application/json")

        return await run_idempotent(request, api_key, body, handler)

    results: list[str] = []
    with captured_records() as records:
        settings = ApiSettings(
            issuer=ISSUER, keys=parse_api_keys(f"{line},{other_line}"), key_requests=8
        )
        app = make_app("redis", api=settings)
        app.router.routes.append(ExactRoute("/v1/probe", probe, methods=["POST"]))
        client = client_for(app)
        auth = {"authorization": f"Bearer {key}"}
        for headers in (
            {},
            # The last character changed (the key is random: never to the one it already is).
            {"authorization": f"Bearer {key[:-1]}{'y' if key.endswith('x') else 'x'}"},
            {"authorization": f"Bearer {other}"},
            {"authorization": f"Basic {key}"},
        ):
            assert (await client.post("/v1/probe", headers=headers)).status_code in (401, 403)
        once = {**auth, "idempotency-key": "order-1"}
        assert (await client.post("/v1/probe", headers=once, content=b"{}")).status_code == 200
        assert (await client.post("/v1/probe", headers=once, content=b"{}")).status_code == 200
        assert (await client.post("/v1/probe", headers=once, content=b"[]")).status_code == 422
        mode["refuse"] = True
        assert (
            await client.post("/v1/probe", headers={**auth, "idempotency-key": "o2"})
        ).status_code == 429
        mode["refuse"], mode["crash"] = False, True
        assert (
            await client.post("/v1/probe", headers={**auth, "idempotency-key": "o3"})
        ).status_code == 500
        mode["crash"] = False
        while (await client.post("/v1/probe", headers=auth)).status_code != 429:
            pass
        browser = Browser(client)
        await browser.create("ada@example.com")
        results.append((await browser.verify(sender.last_code)).json()["result"])
    plain = redis.Redis.from_url(redis_url)
    memos = [plain.get(name) for name in plain.scan_iter(match=MARKER_PREFIX + b"*")]
    plain.close()
    kinds = records.text
    assert "rate limited: api key" in kinds, "the run never logged a per-key refusal"
    assert memos, "the run kept no idempotency memo to look for"
    secrets = [key, other, key.rpartition("_")[2], line.split(":")[1], other_line.split(":")[1]]
    secrets += [*results, *(r.split(".")[2] for r in results), MASTER_KEY_TEXT]
    secrets += [m.decode() for m in memos if isinstance(m, bytes) and m.isascii()]
    secrets += [m[33:].decode() for m in memos if isinstance(m, bytes) and len(m) > 40]
    assert_no_leaks(records.text, secrets)


async def test_second_factor_paths_log_no_secret(
    make_app: AppFactory, store: str, clock: FakeClock, client_for: Callable[[OtpApp], Any]
) -> None:
    """Enrolment, confirmation, verification, generation and redemption, right and wrong,
    and tampered, are audited and log no TOTP secret, URI, QR code, code, blob, result or
    subject."""
    keys = factor_support.api_keys("totp", "backup_codes", "devices")
    with captured_records() as capture:
        client = client_for(make_app(store, api=ApiSettings(issuer=ISSUER, keys=keys)))
        seen: list[str] = [factor_support.API_KEY, factor_support.SUBJECT]
        started = await factor_support.call(
            client,
            "/v1/totp/enrolments",
            {"subject": factor_support.SUBJECT, "account": "ada@example.com"},
        )
        secret = started["secret"]
        seen += [secret, started["uri"], started["qr"], started["pending"]]
        seen += encodings(base64.b32decode(secret + "=" * (-len(secret) % 8)))
        code = factor_support.app_code(secret, clock.now)
        confirmed = await factor_support.call(
            client,
            "/v1/totp/enrolments/confirm",
            {"subject": factor_support.SUBJECT, "pending": started["pending"], "code": code},
        )
        seen += [code, confirmed["enrolment"]]
        clock.advance(30)
        code = factor_support.app_code(secret, clock.now)
        for attempt in (code, code, "000000", "12345x"):
            await client.post(
                "/v1/totp/verify",
                json={
                    "subject": factor_support.SUBJECT,
                    "enrolment": confirmed["enrolment"],
                    "code": attempt,
                },
                headers=factor_support.auth(),
            )
        made = await factor_support.call(
            client, "/v1/backup-codes", {"subject": factor_support.SUBJECT, "count": 5}
        )
        seen += [made["set"], *made["codes"], *(c.replace("-", "") for c in made["codes"])]
        for attempt in (made["codes"][0], made["codes"][0], "0000-0000-0000-0000", "x"):
            response = await client.post(
                "/v1/backup-codes/redeem",
                json={"subject": factor_support.SUBJECT, "set": made["set"], "code": attempt},
                headers=factor_support.auth(),
            )
            seen += [str(v) for k, v in response.json().items() if k in ("set", "result")]
        await client.post(
            "/v1/totp/verify",
            json={"subject": "user-2", "enrolment": confirmed["enrolment"] + "x", "code": code},
            headers=factor_support.auth(),
        )
    for event in (
        "totp.enrolled",
        "totp.verified",
        "backup_codes.generated",
        "backup_code.redeemed",
    ):
        assert f"audit {event}" in capture.text
    assert_no_leaks(capture.text, seen)


async def test_sign_in_links_log_no_token_or_code(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
    clock: FakeClock,
) -> None:
    """Link pages, scanner POSTs, wrong and right numbers, approvals, polls, tampered and
    expired links and a crash in the final hook, with the access log on, at DEBUG: no
    record carries a link token, a code or a cookie."""
    from otpserver.settings.links import LinkSettings
    from otpserver.settings.operations import OperationsConfig

    crash = {"on": False}

    async def final(verified: VerifiedCredential, request: Request) -> Response:
        if crash["on"]:
            raise RuntimeError("the fork's final hook failed")
        return await HOOKS.final(verified, request)

    base = "https://otp.example.com"
    with captured_records() as records:
        app = make_app(
            hooks=dataclasses.replace(HOOKS, final=final),
            links=LinkSettings(enabled=True, cross_device=True, base_url=base),
            operations=OperationsConfig(access_log=True),
        )
        client = client_for(app)
        browsers = [Browser(client) for _ in range(3)]
        for index, browser in enumerate(browsers):
            await browser.create(f"user{index}@example.com")
            path = (sender.sent[-1].link or "")[len(base) :]
            await client.get(path)
            await client.head(path)
            await client.post(path)
            await client.post(path[:-3] + "AAA")
            status = (await browser.post("/api/otp/status")).json()
            wrong_number = f"{(int(status['match']) + 1) % 100:02d}"
            await client.post(path, data={"match": wrong_number})
            if index == 0:
                await client.post(path, data={"match": status["match"]})
                await browser.post("/api/otp/status")
            elif index == 1:
                crash["on"] = True
                assert (await browser.post(path)).status_code == 500
                crash["on"] = False
            else:
                await client.post(path, data={"match": wrong_number})
                clock.advance(301)
                await client.get(path)
    links = [m.link for m in sender.sent if m.link is not None]
    assert len(links) == 3
    tokens = [link.rpartition("/")[2] for link in links]
    assert "/l/{token}" in records.text, "the access log never saw a link"
    cookies = [c for b in browsers for c in b.history]
    # The test's own HTTP client logs the URLs it requests; the server's records are swept.
    server_lines = "\n".join(line for line in records.lines if "httpx" not in line)
    assert_no_leaks(server_lines, [*tokens, *cookies, *(m.code for m in sender.sent)])
