"""In-process figures: cookie sizes as a production server writes them, and ID store memory.

Run alone with `python -m bench.sizes` to print both as JSON.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import random
import string
import tracemalloc
from typing import Any

import httpx

from bench.serve import prefill, rss_bytes
from custom import HOOKS
from otpserver.hooks import Hooks
from otpserver.http.app import create_app
from otpserver.settings.api import ApiSettings
from otpserver.settings.delivery import DeliveryConfig
from otpserver.settings.environment import Settings
from otpserver.stores import MemoryIdStore
from tests.support.fakes import RecordingSender

TYPICAL = ("ada@example.com", "grace.hopper@example.org", "+14155550100")
LONGEST_EMAIL = 254


def longest_email(seed: int) -> str:
    """A 254-character address (the schema's maximum) of random letters, so that deflate
    cannot shrink it: the worst case for the cookie's size."""
    rng = random.Random(seed)

    def letters(n: int) -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))

    domain = f"{letters(60)}.{letters(60)}.{letters(60)}.com"
    return f"{letters(LONGEST_EMAIL - len(domain) - 1)}@{domain}"


def _body(address: str) -> dict[str, str]:
    return {"phone": address} if address.startswith("+") else {"email": address}


async def cookie_sizes() -> dict[str, Any]:
    """`Set-Cookie` and cookie sizes in production form (`__Host-otp`, Secure)."""
    sender = RecordingSender()
    hooks: Hooks = dataclasses.replace(HOOKS, make_sender=lambda settings: sender)
    settings = Settings(
        env="production",
        master_key=bytes(range(32)),
        delivery=DeliveryConfig.from_env({"OTP_AUTOFILL_DOMAIN": "example.com"}),
        api=ApiSettings(issuer="https://example.com"),
    )
    app = create_app(settings, hooks)
    policy = app.state.policy
    name = app.state.endpoints.codec.name
    results: dict[str, Any] = {"cookie_name": name, "max_credentials": policy.max_credentials}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://example.com") as client:

        async def fill(label: str, addresses: list[str]) -> None:
            value = ""
            sizes: list[dict[str, int]] = []
            for address in addresses:
                headers = {"cookie": f"{name}={value}"} if value else {}
                response = await client.post(
                    "/api/otp/create", json=_body(address), headers=headers
                )
                assert response.status_code == 200, response.text
                client.cookies.clear()  # the cookie travels only as the header above
                set_cookie = response.headers["set-cookie"]
                value = set_cookie.partition("=")[2].partition(";")[0]
                sizes.append(
                    {
                        "credentials": len(sizes) + 1,
                        "value_bytes": len(value),
                        "cookie_header_bytes": len(f"{name}={value}"),
                        "set_cookie_bytes": len(set_cookie),
                    }
                )
            results[label] = sizes

        await fill("typical", list(TYPICAL[: policy.max_credentials]))
        await fill(
            "longest",
            [longest_email(i) for i in range(policy.max_credentials)],
        )
    await app.state.verifications.ids.aclose()
    return results


def store_memory(count: int) -> dict[str, float]:
    """Bytes per live ID in a `MemoryIdStore`: traced allocations and resident memory."""
    gc.collect()
    rss_before = rss_bytes()
    tracemalloc.start()
    store = MemoryIdStore(max_ids=count * 2)
    prefill(store, count, 300)
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    gc.collect()
    return {
        "live_ids": len(store),
        "traced_bytes_per_id": traced / len(store),
        "rss_bytes_per_id_incl_tracing": (rss_bytes() - rss_before) / len(store),
    }


def main() -> None:
    print(json.dumps({"cookies": asyncio.run(cookie_sizes()), "memory": store_memory(100_000)}))


if __name__ == "__main__":
    main()
