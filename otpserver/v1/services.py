"""What `/v1` routes share, built once in `create_app` and reached through `request.app.state`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from otpserver.crypto.atrest import AtRestRing
from otpserver.limits.refusals import RefusalMemo
from otpserver.results.signer import ResultSigner
from otpserver.settings.proxies import TrustedProxies
from otpserver.stores.base import CounterStore, MarkerStore
from otpserver.v1.keys import ApiKeyring


@dataclass(frozen=True, slots=True)
class ApiServices:
    """The collaborators of every `/v1` route: keys, limits, signer, at-rest ring, markers."""

    keys: ApiKeyring
    counters: CounterStore
    limit_secret: bytes
    """Keys the per-API-key counter's name, as the other limits' secret keys theirs."""
    key_requests: int
    key_window_seconds: int
    proxies: TrustedProxies
    results: ResultSigner
    atrest: AtRestRing
    markers: MarkerStore
    memo_secrets: tuple[bytes, ...]
    """Key the names of idempotency memos: the current master key's first, then those of
    `OTP_MASTER_KEY_PREVIOUS`, so memos kept before a rotation are still found."""
    clock: Callable[[], float]
    refused_keys: RefusalMemo = field(default_factory=RefusalMemo)
    """API key ids refused until an instant: answered 429 before any work or store call."""


def api_services(request: Request) -> ApiServices:
    """The app's `ApiServices` (`app.state.api`), typed."""
    services = getattr(request.app.state, "api", None)
    if not isinstance(services, ApiServices):
        raise TypeError("create_app did not configure the /v1 services (app.state.api)")
    return services
