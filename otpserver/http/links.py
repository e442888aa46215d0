"""Sign-in link routes (SPEC §18): `/l/<token>` pages and `POST /api/otp/status`.

Why a mail scanner is harmless here, by construction:

- `GET` and `HEAD` only open the token and render a page; they never touch a store.
- The page's one button is a plain same-origin form `POST` (no script submits anything).
  That `POST` checks the code only when the browser's cookie (`SameSite=Strict`, so never
  sent from another site) holds the very entry the link was sent for, and then through
  `BrowserEndpoints.complete`: the same single-use ID, attempts, limits, final hook and
  signed result as a typed code. Without that cookie nothing is checked or spent: the page
  shows the code to type on the first device, or (`OTP_LINK_CROSS_DEVICE=true`) asks for
  the first tab's two-digit number, whose approval only the first tab can turn into a
  sign-in, on its next `POST /api/otp/status`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from otpserver.delivery.templates import LinkPageTexts, Templates
from otpserver.errors import BodyInvalid, InvalidCookie, OtpError
from otpserver.http.browser import BrowserEndpoints, request_host
from otpserver.http.exchange import ApiRequest, ApiResponse, header_map, json_response
from otpserver.otp import flow
from otpserver.otp.payload import TokenList
from otpserver.verification.links import (
    MAX_TOKEN_CHARS,
    Approval,
    LinkApprovals,
    LinkGrant,
    LinkTokens,
)

_STYLE = (
    "body{margin:0;padding:24px;font-family:system-ui,sans-serif;line-height:1.5;"
    "color:#1a1a1a;background:#fff}main{max-width:28rem;margin:0 auto}"
    "button{font:inherit;padding:.6rem 1.2rem;border-radius:6px;border:0;"
    "background:#1a56db;color:#fff;cursor:pointer}"
    "input{font:inherit;font-size:1.5rem;width:4ch;padding:.3rem;text-align:center}"
    ".code{font-family:monospace;font-size:2rem;letter-spacing:.2em;font-weight:bold}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode("ascii")).digest()).decode("ascii")
PAGE_HEADERS = {
    # No script at all, and the form may post only here: a page nothing can make submit.
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}
MAX_FORM_FIELDS = 4
_TOKEN_TEXT = re.compile(r"[A-Za-z0-9_-]+")
"""Link tokens are unpadded base64url: anything else is not a link at all."""


def mask(address: str) -> str:
    """The address as the page shows it: enough to recognise, too little to harvest."""
    local, at, domain = address.partition("@")
    if at:
        return f"{local[:1]}{'•' * min(max(len(local) - 1, 1), 8)}@{domain}"
    return f"{address[:3]}{'•' * max(len(address) - 5, 1)}{address[-2:]}"


def page(
    texts: LinkPageTexts, title: str, *paragraphs: str, form: str = "", status: int = 200
) -> Response:
    """A static page in `texts`' language: the text under the key `title`, then HTML
    paragraphs (escaped already), no script, headers that keep it out of caches."""
    heading = texts.html(title)
    body = "".join(f"<p>{text}</p>" for text in paragraphs)
    document = (
        f'<!DOCTYPE html><html lang="{html.escape(texts.language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{heading}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{heading}</h1>{body}{form}</main></body></html>"
    )
    return Response(document, status, headers=PAGE_HEADERS, media_type="text/html")


def button_form(label: str, fields: str = "") -> str:
    """A form posting back to this very URL (no `action`: the link's own path); `label`
    is HTML, escaped already."""
    return f'<form method="post">{fields}<button type="submit">{label}</button></form>'


@dataclass(frozen=True, slots=True)
class LinkEndpoints:
    """The link page and the first tab's status poll, bound to the browser flow."""

    browser: BrowserEndpoints
    tokens: LinkTokens
    approvals: LinkApprovals
    cross_device: bool
    clock: Callable[[], float]
    pages: Templates
    """Where the pages' texts come from (`link_page.json` of each language folder)."""

    async def link(self, request: Request) -> Response:
        """`GET`/`HEAD` render the confirm page; `POST` acts as the module docstring says.
        Pages speak the language the browser opening the link asks for."""
        now = int(self.clock())
        texts = self.pages.link_page(request.headers.get("accept-language"))
        token = request.path_params["token"]
        if not (0 < len(token) <= MAX_TOKEN_CHARS and _TOKEN_TEXT.fullmatch(token)):
            return page(texts, "not_a_link_title", texts.html("not_a_link_text"), status=400)
        try:
            grant = await self.tokens.open(token, now)
        except InvalidCookie:
            # Well-formed but dead: like a route that does not exist (any more).
            return page(
                texts, "dead_title", texts.html("dead_text"), texts.html("dead_next"), status=404
            )
        # The configured site name (always set in production), never a Host header's.
        public_host = self.browser.verifications.public_host
        named = {
            "site": public_host or request_host(request.headers.get("host", "")),
            "address": mask(grant.credential.address),
        }
        if request.method != "POST":
            return page(
                texts,
                "confirm_title",
                texts.html("confirm_text", **named),
                form=button_form(texts.html("confirm_button")),
            )
        api_request = ApiRequest(request.scope, header_map(request.scope["headers"]), b"")
        held = await self.browser.open(api_request, now)
        if held is not None and grant.matches(held.current_entry):
            return await self._complete(api_request, held, grant, texts, now)
        if not self.cross_device:
            return _code_page(grant, texts)
        number = _form_field(await request.body(), "match")
        if number is None:
            return _number_page(texts, named)
        outcome = await self.approvals.approve(grant, token, number, now)
        if outcome is Approval.APPROVED:
            return page(
                texts, "approved_title", texts.html("approved_text"), texts.html("approved_next")
            )
        if outcome is Approval.WRONG:
            return _number_page(texts, named, wrong=True)
        return page(
            texts, "ended_title", texts.html("ended_text"), texts.html("ended_next"), status=403
        )

    async def status(self, request: ApiRequest) -> ApiResponse | Response:
        """The first tab's poll: the pending state and its number, or, once another device
        approved the link, the sign-in itself (the final hook's response)."""
        now = int(self.clock())
        held = await self.browser.require(request, now)
        entry = held.current_entry
        match = approval = None
        if self.cross_device:
            grant = await self.approvals.approved(entry, now)
            if grant is not None:
                return await self.browser.complete(request, held, grant.code, now, via_link=True)
            match = self.tokens.match_number(entry.digest)
            approval = "ended" if await self.approvals.ended(entry) else "waiting"
        return json_response(
            {
                "status": "pending",
                "match": match,
                "approval": approval,
                **flow.public_state(held, now, sent=False),
            }
        )

    async def _complete(
        self,
        request: ApiRequest,
        held: TokenList,
        grant: LinkGrant,
        texts: LinkPageTexts,
        now: int,
    ) -> Response:
        """The same check as a typed code; a refusal becomes a page, keeping its cookie."""
        try:
            return await self.browser.complete(request, held, grant.code, now, via_link=True)
        except OtpError as error:
            headers = {**PAGE_HEADERS, **error.headers}
            response = page(
                texts,
                "refused_title",
                # The error's own message is the API's, in English: the page's next step
                # below says what to do in the reader's language.
                html.escape(error.message),
                texts.html("refused_next"),
                status=error.status,
            )
            response.headers.update(headers)
            return response


def _code_page(grant: LinkGrant, texts: LinkPageTexts) -> Response:
    """Another browser than the one that asked: show the code to type over there."""
    return page(
        texts,
        "code_title",
        texts.html("code_text"),
        texts.html("code_next"),
        f'<span class="code">{html.escape(grant.code)}</span>',
    )


def _number_page(texts: LinkPageTexts, named: dict[str, str], *, wrong: bool = False) -> Response:
    """Ask for the two-digit number the first tab shows."""
    hint = (texts.html("number_wrong"),) if wrong else ()
    field = (
        f'<p><label for="match">{texts.html("number_label")}</label></p>'
        '<p><input id="match" name="match" inputmode="numeric" autocomplete="off" '
        'pattern="[0-9]{2}" maxlength="2" required autofocus></p>'
    )
    return page(
        texts,
        "number_title",
        texts.html("number_text", **named),
        texts.html("number_next"),
        *hint,
        form=button_form(texts.html("number_button"), field),
        status=403 if wrong else 200,
    )


def _form_field(body: bytes, name: str) -> str | None:
    """One field of a small urlencoded form, or None; a malformed form is `BODY:INVALID`."""
    try:
        fields = parse_qs(
            body.decode("ascii"), max_num_fields=MAX_FORM_FIELDS, strict_parsing=bool(body)
        )
    except (UnicodeDecodeError, ValueError):
        raise BodyInvalid("The form is not valid.") from None
    values = fields.get(name)
    return values[0].strip() if values else None
