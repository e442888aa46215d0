"""Edit this file to change the abuse limits: how many codes, guesses and SMS anyone may get.

Contract
    `LIMITS` is a `LimitPolicy`; the environment may override single values (`OTP_LIMIT_*`,
    `OTP_SMS_*`, see `sample.env`), and the result is checked at start-up (`max_failures` at
    most 100, every window and allowance at least 1, a `"*"` entry in
    `channel_sends_per_hour`). Where the counts are kept is decided in `custom/stores.py`.

What the core guarantees
    Counters are charged after the request is validated and before anything is sent or
    compared, so a refused request sends nothing and a refusal never costs a guess. Store
    keys are HMAC-SHA256 of the credential or client address under a key derived from
    `OTP_MASTER_KEY`: the store never holds either in clear. Every refusal is the same
    429 `RATE:LIMITED` with `Retry-After`, whichever limit said no; a phone number outside
    the SMS lists is a 400 `CREDENTIAL:INVALID` instead, because waiting will not help.

What to raise
    Nothing: a broken policy is refused at start-up with a line naming what to fix.

The limits and what each one stops
    * `max_failures` consecutive wrong codes lock a credential for `lockout_seconds`, across
      codes, browsers and clients; creating or resending never resets the count, a correct
      code does (NIST SP 800-63B rev 4). A count that has not locked by
      `failure_window_seconds` after its first wrong code is forgotten. Once locked, an
      attacker gets at most `max_failures` guesses per `lockout_seconds` per credential.
    * `failure_cap` consecutive wrong codes within `failure_cap_window_seconds` (100 in 30
      days, NIST SP 800-63B §3.2.2) lock the credential for that window, however many short
      lockouts ended in between; a correct code or `python -m otpserver unlock` clears it.
    * `credential_sends` per `credential_window_seconds` stops mailbox and phone bombing.
      Emails count per mailbox: `+tags`, Gmail dots and googlemail.com are one inbox.
    * `address_requests` (create and resend, invalid ones included) and `address_verifies`
      per `address_window_seconds` slow one client spraying many credentials. IPv6 clients
      are counted per /64, and `network_requests`/`network_verifies` apply per IPv4 /24 and
      IPv6 /56 and /48. Behind a proxy, set `OTP_TRUSTED_PROXIES` or every user shares the
      proxy's allowance.
    * `channel_sends_per_hour` caps the bill if everything else fails: one budget per
      channel for all users together (`"*"` for channels not named), of which one IPv4 /24
      or IPv6 /48 may spend `network_budget_percent`.
    * For `sms_channel` only: `sms_allowlist`/`sms_denylist` (ISO region codes or E.164
      prefixes) and a breaker per number prefix (`prefix_digits`): `prefix_sends` SMS per
      `prefix_window_seconds` trip it for `prefix_breaker_seconds` (SMS pumping).

Trade-offs of the default
    Windows are fixed and start at a counter's first hit: exact and one small record per
    key, but a client can use a whole allowance at the end of a window and another at the
    start of the next (up to twice the limit in one window's length). Any per-credential
    limit can be spent by someone else: an attacker who knows an address can lock it or use
    its sends, at the cost of sending those codes to the real owner; lower `lockout_seconds`
    if that matters more to you than guessing speed (SECURITY.md, "Locking a victim out").
    An office or campus behind one /24 shares the per-network allowances: raise
    `network_requests` if your users sit behind such networks. The SMS allow-list is empty, so every
    country can receive codes: list the countries you serve, e.g. `("GB", "IE")`.
"""

from __future__ import annotations

from otpserver import LimitPolicy

LIMITS = LimitPolicy()
"""The shipped limits (see the README's configuration table). To change one, name it:
`LimitPolicy(credential_sends=3, sms_allowlist=("GB", "IE"))`; fields you leave out keep
their defaults."""
