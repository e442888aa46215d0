"""The README's production example starts as written, with a real Redis and a real SMTP server.

The test copies the lines between `<!-- production-example:begin -->` and
`<!-- production-example:end -->` into a script and runs it unchanged with bash, in an empty
directory whose `.venv` is this test run's environment, against Redis on 127.0.0.1:6379 and
aiosmtpd on 127.0.0.1:25 (the addresses the README names). A user then signs in with the
code that arrived by email, and the metrics listener answers.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.hygiene import assert_no_leaks
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parent.parent
BEGIN = "<!-- production-example:begin -->"
END = "<!-- production-example:end -->"
PORTS = {"redis": 6379, "smtp": 25, "server": 8000, "metrics": 9100}
COOKIE = "__Host-otp"


def readme_commands() -> str:
    """The shell lines of the README's production example, exactly as written there."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)]
    match = re.fullmatch(r"\s*```sh\n(.*?)```\s*", section, re.DOTALL)
    assert match is not None, "the example is one ```sh block"
    return match.group(1)


class Mailbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(envelope.content)
        return "250 OK"


def assert_free(port: int) -> None:
    """Fail clearly when something already listens where the README says a service is."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise AssertionError(f"127.0.0.1:{port} is taken ({error}); the example needs it")


@pytest.fixture
def services() -> Iterator[Mailbox]:
    """Redis and an SMTP relay at the README's addresses."""
    for port in PORTS.values():
        assert_free(port)
    redis = RedisServer(port=PORTS["redis"])
    redis.start()
    mailbox = Mailbox()
    relay = Controller(mailbox, hostname="127.0.0.1", port=PORTS["smtp"])
    relay.start()
    try:
        yield mailbox
    finally:
        relay.stop()
        redis.close()


def code_in(message: bytes) -> str:
    """The six-digit code from an email's subject."""
    subject = str(message_from_bytes(message)["subject"])
    match = re.search(r"\b(\d{6})\b", subject)
    assert match is not None, subject
    return match.group(1)


def cookie_from(response: httpx.Response) -> str:
    """The value of the production cookie a response sets (the TLS proxy is not here, so
    the test carries the Secure cookie by hand)."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name == COOKIE:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no {COOKIE} cookie in {response.headers}")


def wait_ready(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the example exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{PORTS['server']}/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the example never became ready:\n{log.read_text()}")


def test_the_readme_production_example_starts_and_signs_a_user_in(
    services: Mailbox, tmp_path: Path
) -> None:
    """The README's lines, run unchanged, pass `check`, serve two workers on Redis, email a
    code through SMTP that verifies, serve metrics, and keep `.env` private."""
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    script = tmp_path / "production.sh"
    script.write_text(readme_commands())
    log = tmp_path / "server.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bash", str(script)],
            cwd=tmp_path,
            env=clean,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(process, log)
        base = f"http://127.0.0.1:{PORTS['server']}"
        with httpx.Client(base_url=base, timeout=10) as client:
            created = client.post("/api/otp/create", json={"email": "ada@example.com"})
            assert created.status_code == 200, created.text
            deadline = time.monotonic() + 10
            while not services.messages:
                assert time.monotonic() < deadline, "no email reached the relay"
                time.sleep(0.05)
            code = code_in(services.messages[-1])
            verified = client.post(
                "/api/otp/verify",
                data={"otp": code},
                headers={"cookie": f"{COOKIE}={cookie_from(created)}"},
            )
            assert verified.status_code == 200, verified.text
            scraped = httpx.get(f"http://127.0.0.1:{PORTS['metrics']}/metrics", timeout=10)
            assert 'otp_challenges_created_total{channel="email"} 1.0' in scraped.text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    output_text = log.read_text()
    assert "configuration OK" in output_text
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0
    assert_no_leaks(output_text, [code])
