"""`otpserver.client`'s TOTP, backup-code and device calls against the real application."""

from __future__ import annotations

import httpx

from otpserver.client import CheckOutcome, LinkWaiting, OtpClient
from otpserver.settings.api import ApiSettings
from otpserver.settings.links import LinkSettings
from tests.conftest import ISSUER, AppFactory
from tests.support.factors import API_KEY, KEY_ID, SUBJECT, api_keys, app_code, decode_result
from tests.support.fakes import FakeClock, RecordingSender


async def test_a_host_runs_every_second_factor_through_the_client(
    make_app: AppFactory, clock: FakeClock
) -> None:
    """Enrol, confirm, verify, generate, redeem, trust, check and revoke, as a host would."""
    app = make_app(
        "memory", api=ApiSettings(issuer=ISSUER, keys=api_keys("totp", "backup_codes", "devices"))
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        OtpClient("https://otp.example.com", API_KEY, issuer=ISSUER, transport=transport) as otp,
        httpx.AsyncClient(transport=transport, base_url="https://otp.example.com") as plain,
    ):
        started = await otp.totp_enrol(subject=SUBJECT, account="ada@example.com", digits=8)
        assert started.qr.startswith("<svg")
        code = app_code(started.secret, clock.now, digits=8)
        confirmed = await otp.totp_confirm(subject=SUBJECT, pending=started.pending, code=code)
        assert confirmed.approved
        assert confirmed.enrolment is not None
        repeated = await otp.totp_verify(subject=SUBJECT, enrolment=confirmed.enrolment, code=code)
        assert repeated.status == "incorrect"
        clock.advance(30)
        verified = await otp.totp_verify(
            subject=SUBJECT,
            enrolment=confirmed.enrolment,
            code=app_code(started.secret, clock.now, digits=8),
            nonce="n-7",
        )
        assert verified.approved
        assert verified.result is not None
        claims = await decode_result(plain, verified.result, audience=KEY_ID, now=clock.now)
        assert (claims["otp_method"], claims["nonce"]) == ("totp", "n-7")

        made = await otp.backup_codes_generate(subject=SUBJECT, count=5)
        assert len(made.codes) == 5
        spent = await otp.backup_code_redeem(subject=SUBJECT, set=made.set, code=made.codes[0])
        assert (spent.status, spent.remaining, spent.set_id) == ("approved", 4, made.set_id)
        again = await otp.backup_code_redeem(subject=SUBJECT, set=made.set, code=made.codes[0])
        assert again.status == "incorrect"

        device = await otp.device_trust(subject=SUBJECT, days=7)
        assert device.trusted
        assert device.device is not None
        checked = await otp.device_check(subject=SUBJECT, device=device.device)
        assert (checked.trusted, checked.device_id) == (True, device.device_id)
        assert await otp.device_revoke(subject=SUBJECT, device_id=device.device_id) == (
            device.device_id
        )
        refused = await otp.device_check(subject=SUBJECT, device=device.device)
        assert (refused.trusted, refused.reason) == (False, "revoked")


async def test_a_host_polls_a_linked_challenge_through_the_client(
    make_app: AppFactory, clock: FakeClock, sender: RecordingSender
) -> None:
    """`start(link=True)` gets the number to show; `status` waits (changing nothing) until
    the right number is picked on the link's page, then answers the approval with its
    signed result; the spent token is then `invalid`."""
    from tests.test_v1_challenges import API, API_KEY
    from tests.test_v1_challenges import KEY_ID as CHALLENGES_KEY_ID

    links = LinkSettings(enabled=True, cross_device=True, base_url="https://otp.example.com")
    app = make_app("memory", api=API, links=links)
    transport = httpx.ASGITransport(app=app)
    async with (
        OtpClient("https://otp.example.com", API_KEY, issuer=ISSUER, transport=transport) as otp,
        httpx.AsyncClient(transport=transport, base_url="https://otp.example.com") as page,
    ):
        started = await otp.start(email="ada@example.com", link=True)
        assert started.match is not None
        waiting = await otp.status(started.challenge)
        assert isinstance(waiting, LinkWaiting)
        assert (waiting.match, waiting.approval) == (started.match, "waiting")
        link = sender.sent[-1].link
        assert link is not None
        approved_page = await page.post(
            link.removeprefix("https://otp.example.com"), data={"match": started.match}
        )
        assert "Approved" in approved_page.text
        done = await otp.status(started.challenge)
        assert isinstance(done, CheckOutcome)
        assert done.approved
        assert done.result is not None
        claims = await decode_result(page, done.result, audience=CHALLENGES_KEY_ID, now=clock.now)
        assert claims["otp_method"] == "link"
        again = await otp.status(started.challenge)
        assert isinstance(again, CheckOutcome)
        assert again.status == "invalid"
        plain = await otp.start(email="ada@example.com")
        assert plain.match is None
