"""Redis round trips per request, counted with MONITOR while requests run one at a time.

MONITOR lists every command a client sends (`client_type` tcp) and, separately, every
command a Lua script runs inside Redis (`client_type` lua); only the former are round
trips. Markers (`ECHO bench:<kind>`) sent between requests attribute commands to them.
Key-ring fetches (`otp:kek:*`) happen once per process every 30 s whatever the traffic:
they are listed but not counted per request. Scripts are named by what they run.

The challenge steps and the second-factor checks go through `/v1`, where every call is
charged against its API key's own allowance. For these requests that charge is the gate of
their one store step (the claim script charges it first), so it costs no round trip of its
own and every request here should count exactly one.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

import httpx
import redis

from bench.harness import (
    API_KEY,
    CODE,
    COOKIE_NAME,
    FLOW_PREFIX,
    WRONG_CODE,
    enrol_totp,
    next_totp_code,
)
from otpserver.stores.markers_redis import _ADVANCE, _GATED_READ, _MARKER_CLAIM
from otpserver.stores.redis import _CLAIM, _HIT, _ROTATE, KEY_PREFIX, SEQUENCE_KEY

BROWSER_KINDS = ("create", "resend", "verify_wrong", "verify_correct")
CHALLENGE_KINDS = (
    "challenge_create",
    "challenge_create_invalid",
    "challenge_check_wrong",
    "challenge_check_right",
)
FACTOR_KINDS = (
    "totp_confirm",
    "totp_verify_wrong",
    "totp_verify_right",
    "backup_wrong",
    "backup_right",
    "device_check",
    "device_revoke",
)
API_KINDS = CHALLENGE_KINDS + FACTOR_KINDS
KINDS = BROWSER_KINDS + API_KINDS
API_SAMPLES = 10
"""`/v1` requests counted per kind: enough, as every request of a kind sends the same
commands; more would only add scrypt hashes (tens of ms each) to the run."""
STOP = "stop"
KEY_RING = KEY_PREFIX.decode()
SEQUENCE = SEQUENCE_KEY.decode()
SCRIPTS = {
    script.sha.decode(): label
    for script, label in (
        (_HIT, "hit"),
        (_CLAIM, "claim"),
        (_ROTATE, "rotate"),
        (_ADVANCE, "advance"),
        (_MARKER_CLAIM, "marker claim"),
        (_GATED_READ, "gated read"),
    )
}
WRONG_BACKUP_CODE = "0000-0000-0000-0000"


def _cookie(response: httpx.Response) -> str:
    header: str = response.headers.get("set-cookie", "")
    return header.partition("=")[2].partition(";")[0]


def _watch(redis_url: str, ready: threading.Event, seen: list[tuple[str, str]]) -> None:
    client = redis.Redis.from_url(redis_url)
    marker = ""
    with client.monitor() as monitor:  # type: ignore[no-untyped-call]
        ready.set()
        for command in monitor.listen():
            text = str(command["command"])
            if text.startswith("ECHO bench:"):
                marker = text.removeprefix("ECHO bench:")
                if marker == STOP:
                    break
                continue
            if command["client_type"] != "lua":
                name = text.split(" ", 1)[0].upper()
                if SEQUENCE in text:
                    # The store sequence's INCR is pipelined behind the step it follows:
                    # MONITOR lists it apart, but it shares that step's round trip.
                    seen.append((marker, f"{name} (sequence, pipelined)"))
                    continue
                # The key ring's fetches are per process per 30 s, not per request.
                if KEY_RING in text:
                    name = f"{name} (key ring)"
                elif name == "EVALSHA":
                    name = f"{name} ({SCRIPTS.get(text.split(' ', 2)[1], 'other')})"
                seen.append((marker, name))
    client.close()


def count(server_url: str, redis_url: str, samples: int = 50) -> dict[str, Any]:
    """Mean round trips per request of each kind, and which commands they were.

    The server must run with `OTP_RESEND_COOLDOWN_SECONDS=0` so resends are allowed at once.
    """
    seen: list[tuple[str, str]] = []
    ready = threading.Event()
    watcher = threading.Thread(target=_watch, args=(redis_url, ready, seen), daemon=True)
    markers = redis.Redis.from_url(redis_url)
    with httpx.Client(base_url=server_url, timeout=10) as http:

        def post(path: str, cookie: str | None = None, **kwargs: Any) -> httpx.Response:
            headers = {"cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {}
            response = http.post(path, headers=headers, **kwargs)
            http.cookies.clear()  # each request carries exactly the cookie it is given
            return response

        def create(i: int) -> str:
            response = post("/api/otp/create", json={"email": f"{FLOW_PREFIX}{i}@example.com"})
            assert response.status_code == 200, response.text
            return _cookie(response)

        # Warm up: key ring, script cache and connection pools are per process, not per request.
        for i in range(1, 4):
            post("/api/otp/verify", create(i), data={"otp": CODE})
        watcher.start()
        ready.wait(10)
        markers.echo("bench:create")
        cookies = [create(i) for i in range(1, samples + 1)]
        markers.echo("bench:resend")
        resent = [post("/api/otp/resend", c) for c in cookies]
        assert all(r.status_code == 200 for r in resent), resent[0].text
        markers.echo("bench:verify_wrong")
        wrong = [post("/api/otp/verify", _cookie(r), data={"otp": WRONG_CODE}) for r in resent]
        assert all(r.status_code == 403 for r in wrong), wrong[0].text
        markers.echo("bench:verify_correct")
        right = [post("/api/otp/verify", _cookie(r), data={"otp": CODE}) for r in wrong]
        assert all(r.status_code == 200 for r in right), right[0].text
        challenges(http, markers.echo, first=samples + 1)
        factors(http, markers.echo)
        markers.echo(f"bench:{STOP}")
    watcher.join(10)
    markers.close()
    per_kind: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in KINDS}
    for marker, command in seen:
        if marker in per_kind:
            per_kind[marker][command] += 1
    results: dict[str, Any] = {}
    for kind, commands in per_kind.items():
        n = API_SAMPLES if kind in API_KINDS else samples
        results[kind] = {
            "round_trips_per_request": sum(
                count
                for name, count in commands.items()
                if not name.endswith(("(key ring)", "(sequence, pipelined)"))
            )
            / n,
            "commands": {name: count / n for name, count in sorted(commands.items())},
        }
    return results


def challenges(http: httpx.Client, echo: Callable[[str], object], first: int) -> None:
    """Server-to-server challenges: a create, then a wrong and a right check of each, for
    test identities from `first` on (fixed codes, nothing delivered)."""
    headers = {"Authorization": f"Bearer {API_KEY}"}

    def call(path: str, body: dict[str, Any], expected: str) -> dict[str, Any]:
        response = http.post(path, json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        assert answer["status"] == expected, answer
        return answer

    for i in range(first, first + API_SAMPLES):
        echo("bench:challenge_create")
        created = call("/v1/challenges", {"email": f"{FLOW_PREFIX}{i}@example.com"}, "pending")
        # Refused as invalid, yet metered against the caller's address like any create.
        echo("bench:challenge_create_invalid")
        invalid = http.post("/v1/challenges", json={"email": "not an address"}, headers=headers)
        assert invalid.status_code == 400, invalid.text
        echo("bench:challenge_check_wrong")
        body = {"challenge": created["challenge"], "code": WRONG_CODE}
        wrong = call("/v1/challenges/check", body, "incorrect")
        echo("bench:challenge_check_right")
        call("/v1/challenges/check", {"challenge": wrong["challenge"], "code": CODE}, "approved")


def factors(http: httpx.Client, echo: Callable[[str], object]) -> None:
    """TOTP confirmations, then verifications and backup-code redemptions, a wrong code
    then a right one each time (the right one clears the failure the wrong one charged, so
    nothing locks), then checks of a trusted device and revocations."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    # Enrolling and generating are not counted; a first confirmation loads the script.
    echo("bench:setup")

    def call(path: str, body: dict[str, Any], expected: str | None = None) -> dict[str, Any]:
        response = http.post(path, json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        assert expected is None or answer["status"] == expected, answer
        return answer

    def enrol(subject: str, *, counted: bool) -> tuple[str, bytes, str]:
        echo("bench:setup")
        marked = (lambda: echo("bench:totp_confirm")) if counted else (lambda: None)
        secret, enrolment = enrol_totp(call, subject, marked)
        return subject, secret, enrolment

    enrol("bench-totp-warm", counted=False)
    enrolments = [enrol(f"bench-totp-{i}", counted=True) for i in range(API_SAMPLES)]
    echo("bench:setup")
    made = call("/v1/backup-codes", {"subject": "bench-backup", "count": API_SAMPLES})
    for subject, secret, enrolment in enrolments:
        right = next_totp_code(secret)
        wrong = "000000" if right != "000000" else "111111"
        for kind, code, expected in (
            ("totp_verify_wrong", wrong, "incorrect"),
            ("totp_verify_right", right, "approved"),
        ):
            echo(f"bench:{kind}")
            body = {"subject": subject, "enrolment": enrolment, "code": code}
            call("/v1/totp/verify", body, expected)
    code_set = made["set"]
    for code in made["codes"]:
        echo("bench:backup_wrong")
        body = {"subject": "bench-backup", "set": code_set, "code": WRONG_BACKUP_CODE}
        call("/v1/backup-codes/redeem", body, "incorrect")
        echo("bench:backup_right")
        body = {"subject": "bench-backup", "set": code_set, "code": code}
        code_set = call("/v1/backup-codes/redeem", body, "approved")["set"]
    echo("bench:setup")
    trusted = call("/v1/devices/trust", {"subject": "bench-device"})
    check = {"subject": "bench-device", "device": trusted["device"]}
    call("/v1/devices/check", check)  # loads the script
    for _ in range(API_SAMPLES):
        echo("bench:device_check")
        if call("/v1/devices/check", check)["trusted"] is not True:
            raise AssertionError("the trusted device did not check trusted")
    for index in range(API_SAMPLES):
        echo("bench:setup")
        device_id = call("/v1/devices/trust", {"subject": "bench-device"})["deviceId"]
        # One device at a time, then every device of the subject: both are one marker write.
        revoke = (
            {"subject": "bench-device", "deviceId": device_id}
            if index % 2
            else {"subject": "bench-device"}
        )
        echo("bench:device_revoke")
        call("/v1/devices/revoke", revoke)
