"""Redis round trips per request, counted with MONITOR while requests run one at a time.

MONITOR lists every command a client sends (`client_type` tcp) and, separately, every
command a Lua script runs inside Redis (`client_type` lua); only the former are round
trips. Markers (`ECHO bench:<kind>`) sent between batches attribute commands to requests.
Key-ring fetches (`otp:kek:*`) happen once per process every 30 s whatever the traffic:
they are listed but not counted per request.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import httpx
import redis

from bench.harness import CODE, COOKIE_NAME, FLOW_PREFIX, WRONG_CODE
from otpserver.stores.redis import KEY_PREFIX, SEQUENCE_KEY

KINDS = ("create", "resend", "verify_wrong", "verify_correct")
STOP = "stop"
KEY_RING = KEY_PREFIX.decode()
SEQUENCE = SEQUENCE_KEY.decode()


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
                seen.append((marker, f"{name} (key ring)" if KEY_RING in text else name))
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
        markers.echo(f"bench:{STOP}")
    watcher.join(10)
    markers.close()
    per_kind: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in KINDS}
    for marker, command in seen:
        if marker in per_kind:
            per_kind[marker][command] += 1
    return {
        kind: {
            "round_trips_per_request": sum(
                n
                for name, n in commands.items()
                if not name.endswith(("(key ring)", "(sequence, pipelined)"))
            )
            / samples,
            "commands": {name: n / samples for name, n in sorted(commands.items())},
        }
        for kind, commands in per_kind.items()
    }
