"""HTTP plumbing shared by the SMS senders: one client with timeouts, bounded retries.

Only network errors (`httpx.TransportError`: refused, reset, timed out) are retried. An HTTP
answer, even a 5xx, is the provider's decision and is returned as is: a 4xx can never succeed
when repeated. A request that timed out may still have been delivered, so a retry can send the
same message twice; it carries the same code, and the request is byte-for-byte the same so a
receiver can deduplicate it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import httpx

logger = logging.getLogger(__name__)


def make_client(timeout_seconds: float) -> httpx.AsyncClient:
    """A client whose every phase (connect, write, read, pool) is bounded by the timeout."""
    # Redirects are not followed: a provider endpoint that moves is a configuration error,
    # and following one would resend credentials and codes to wherever it points.
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_seconds), follow_redirects=False)


async def post_with_retries(
    client: httpx.AsyncClient,
    url: str,
    *,
    retries: int,
    content: bytes,
    headers: Mapping[str, str],
    auth: httpx.Auth | None = None,
) -> httpx.Response:
    """POST `content`, trying again up to `retries` times after a network error only.

    The last network error is raised when every attempt failed.
    """
    retries_left = retries
    while True:
        try:
            return await client.post(
                url,
                content=content,
                headers=headers,
                auth=httpx.USE_CLIENT_DEFAULT if auth is None else auth,
            )
        except httpx.TransportError as exc:
            if retries_left <= 0:
                raise
            retries_left -= 1
            # The URL may carry a token in its query string: log the error kind only.
            logger.warning("SMS provider request failed (%s); retrying", type(exc).__name__)
