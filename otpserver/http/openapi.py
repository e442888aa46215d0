"""`openapi.json`, generated from the code's own models, error classes and route table.

`python -m otpserver.http.openapi` prints the document; `--write` updates the file in the
repository root. A test fails when the committed file differs from what this produces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from otpserver import errors
from otpserver.factors import models as factor_models
from otpserver.http.bodies import MAX_FORM_FIELDS
from otpserver.http.models import ErrorBody, Health, LinkStatus, TokenState, Verified
from otpserver.otp.codes import ASCII_WHITESPACE
from otpserver.otp.credentials import CredentialBody
from otpserver.otp.policy import OtpPolicy
from otpserver.v1.challenges import (
    ChallengeCanceled,
    ChallengeOutcome,
    ChallengePending,
    CheckBody,
    LinkWaiting,
    TokenBody,
    create_body_model,
)
from otpserver.verification.links import MAX_TOKEN_CHARS as LINK_MAX_CHARS
from otpserver.verification.sealing import MAX_VALUE_CHARS

OPENAPI_PATH = Path(__file__).parents[2] / "openapi.json"

COMMON_ERRORS: tuple[type[errors.OtpError], ...] = (
    errors.OriginNotAllowed,
    errors.BodyTooLarge,
    errors.StoreUnavailable,
    errors.ServerError,
)

ROUTE_ERRORS: dict[str, tuple[type[errors.OtpError], ...]] = {
    "create": (
        errors.CredentialInvalid,
        errors.BodyInvalid,
        errors.TooManyCredentials,
        errors.UnsupportedMediaType,
        errors.RateLimited,
        errors.SendFailed,
        *COMMON_ERRORS,
    ),
    "resend": (
        errors.InvalidCookie,
        errors.OtpExpired,
        errors.TooManyAttempts,
        errors.ResendNotAllowed,
        errors.RateLimited,
        errors.SendFailed,
        *COMMON_ERRORS,
    ),
    "verify": (
        errors.OtpInvalidFormat,
        errors.BodyInvalid,
        errors.InvalidCookie,
        errors.OtpExpired,
        errors.OtpIncorrect,
        errors.TooManyAttempts,
        errors.VerificationNotAllowed,
        errors.UnsupportedMediaType,
        errors.RateLimited,
        *COMMON_ERRORS,
    ),
}

_RETRY_AFTER = {
    "description": "Seconds until the request may succeed.",
    "schema": {"type": "integer", "minimum": 0},
}
_RATE_LIMIT = {
    "description": 'IETF RateLimit fields on RATE:LIMITED, e.g. `"otp";r=0;t=30`.',
    "schema": {"type": "string"},
}
_JWKS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["keys"],
    "properties": {
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kty", "crv", "x", "kid", "use", "alg"],
                "properties": {
                    "kty": {"const": "OKP"},
                    "crv": {"const": "Ed25519"},
                    "x": {"type": "string", "description": "The public key, base64url."},
                    "kid": {"type": "string", "description": "RFC 7638 thumbprint."},
                    "use": {"const": "sig"},
                    "alg": {"const": "EdDSA"},
                },
            },
        }
    },
}
_SET_COOKIE = {
    "description": "The OTP cookie (`__Host-otp` in production, `otp` in development): "
    "HttpOnly, SameSite=Strict, Path=/; Secure in production.",
    "schema": {"type": "string"},
}


def _cookie_parameter(*, required: bool) -> dict[str, Any]:
    """The OTP cookie as a request parameter: resend and verify cannot work without it;
    create reads it if it is usable and otherwise ignores it, whatever its value."""
    description = "The sealed list of pending codes (named `otp` in development)."
    if not required:
        return {
            "name": "__Host-otp",
            "in": "cookie",
            "required": False,
            "description": f"{description} Any unusable value is ignored: a new list starts.",
            "schema": {},
        }
    return {
        "name": "__Host-otp",
        "in": "cookie",
        "required": True,
        "description": description,
        # Cookies are only ever written as unpadded base64url (see otpserver.http.cookies).
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": MAX_VALUE_CHARS},
    }


def _regex_class(characters: str) -> str:
    """The inside of a regex character class, valid in ECMA-262 and Python alike: letters
    and digits as themselves, anything else as `\\xHH` (alphabets are printable ASCII)."""
    return "".join(c if c.isalnum() else f"\\x{ord(c):02x}" for c in characters)


def _code_schema(policy: OtpPolicy | None) -> dict[str, Any]:
    """The `otp` field: with a policy, exactly the texts `codes.parse_code` accepts."""
    schema: dict[str, Any] = {"type": "string", "description": "The code the user received."}
    if policy is not None:
        space = f"[{_regex_class(ASCII_WHITESPACE)}]*"
        schema["pattern"] = f"^{space}[{_regex_class(policy.alphabet)}]{{{policy.length}}}{space}$"
        schema["description"] += (
            f" {policy.length} characters of `{policy.alphabet}` (with the shipped policy); "
            "surrounding ASCII whitespace is ignored."
        )
    return schema


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error_responses(
    classes: tuple[type[errors.OtpError], ...], *, reissues_cookie: tuple[int, ...] = ()
) -> dict[str, Any]:
    """Error responses by status; `reissues_cookie` lists statuses that may re-set the cookie."""
    by_status: dict[int, list[type[errors.OtpError]]] = {}
    for cls in classes:
        by_status.setdefault(cls.status, []).append(cls)
    responses: dict[str, Any] = {}
    for status in sorted(by_status):
        codes = [cls.code for cls in by_status[status]]
        response: dict[str, Any] = {
            "description": "; ".join(f"`{cls.code}`: {cls.message}" for cls in by_status[status]),
            "content": _json(
                {"allOf": [_ref(ErrorBody), {"properties": {"error": {"enum": codes}}}]}
            ),
        }
        headers: dict[str, Any] = {}
        if status == 429 or errors.VerificationNotAllowed in by_status[status]:
            headers["Retry-After"] = _RETRY_AFTER
        if errors.RateLimited in by_status[status]:
            headers["RateLimit"] = _RATE_LIMIT
        if errors.ApiUnauthorized in by_status[status]:
            headers["WWW-Authenticate"] = {
                "description": "`Bearer`: send `Authorization: Bearer otpk_<id>_<secret>`.",
                "schema": {"type": "string"},
            }
        if errors.OtpIncorrect in by_status[status] or status in reissues_cookie:
            headers["Set-Cookie"] = _SET_COOKIE
        if headers:
            response["headers"] = headers
        responses[str(status)] = response
    return responses


API_KEY_ERRORS: tuple[type[errors.OtpError], ...] = (
    errors.ApiUnauthorized,
    errors.ApiForbidden,
    errors.RateLimited,
)
"""What every `/v1` route may refuse with before it runs: no or a wrong key (401), a key
without the route's scope (403), the key's own rate limit (429)."""

IDEMPOTENCY_ERRORS: tuple[type[errors.OtpError], ...] = (
    errors.IdempotencyKeyInvalid,
    errors.IdempotencyInFlight,
    errors.IdempotencyMismatch,
)
"""What a `/v1` route that takes `Idempotency-Key` may add (`idempotency_parameter`)."""


def idempotency_parameter() -> dict[str, Any]:
    """The `Idempotency-Key` request header of the routes that run `run_idempotent`."""
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Makes a retry safe: the first 2xx answer is kept for 24 hours and "
        "replayed byte for byte (with `Idempotent-Replayed: true`) to a retry with the same "
        "key, route and body; another body is 422, a retry while the first runs 409.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    }


FACTOR_ERRORS: tuple[type[errors.OtpError], ...] = (
    *API_KEY_ERRORS,
    errors.BodyInvalid,
    errors.UnsupportedMediaType,
    *COMMON_ERRORS,
)
"""What every second-factor route may refuse with: its API key's refusals, the key's own
rate limit, and malformed bodies."""

_FACTOR_ROUTES: tuple[tuple[str, str, str, type[BaseModel], type[BaseModel], int], ...] = (
    (
        "/v1/totp/enrolments",
        "totpEnrol",
        "Start a TOTP enrolment: a new secret, its otpauth URI and QR code (scope totp).",
        factor_models.TotpEnrolRequest,
        factor_models.TotpEnrolment,
        201,
    ),
    (
        "/v1/totp/enrolments/confirm",
        "totpConfirm",
        "Activate a pending enrolment with a code from the app (scope totp).",
        factor_models.TotpConfirmRequest,
        factor_models.TotpConfirmation,
        200,
    ),
    (
        "/v1/totp/verify",
        "totpVerify",
        "Check a TOTP code; each time step is accepted at most once (scope totp).",
        factor_models.TotpVerifyRequest,
        factor_models.TotpVerification,
        200,
    ),
    (
        "/v1/backup-codes",
        "backupCodesGenerate",
        "Generate a set of backup codes; older sets stop working (scope backup_codes).",
        factor_models.BackupCodesRequest,
        factor_models.BackupCodeSet,
        201,
    ),
    (
        "/v1/backup-codes/redeem",
        "backupCodeRedeem",
        "Spend one backup code of a set, at most once (scope backup_codes).",
        factor_models.BackupCodeRedeemRequest,
        factor_models.BackupCodeRedemption,
        200,
    ),
    (
        "/v1/devices/trust",
        "deviceTrust",
        "Trust a device for up to OTP_TRUSTED_DEVICE_DAYS; it only waives a second factor "
        "(scope devices).",
        factor_models.DeviceTrustRequest,
        factor_models.DeviceTrusted,
        201,
    ),
    (
        "/v1/devices/check",
        "deviceCheck",
        "Whether a device token is still trusted, else why not (scope devices).",
        factor_models.DeviceCheckRequest,
        factor_models.DeviceCheck,
        200,
    ),
    (
        "/v1/devices/revoke",
        "deviceRevoke",
        "Revoke one device, or every device of the subject (scope devices).",
        factor_models.DeviceRevokeRequest,
        factor_models.DeviceRevoked,
        200,
    ),
)


def _factor_paths() -> dict[str, Any]:
    """The second-factor routes (SPEC §13-§14), from their own request and response models."""
    paths: dict[str, Any] = {}
    for path, operation, summary, request, response, status in _FACTOR_ROUTES:
        refusals = FACTOR_ERRORS
        if "code" in request.model_fields:
            refusals = (errors.OtpInvalidFormat, *refusals)
        paths[path] = {
            "post": {
                "operationId": operation,
                "summary": summary,
                "security": [{"apiKey": []}],
                "requestBody": {"required": True, "content": _json(_ref(request))},
                "responses": {
                    str(status): {
                        "description": "Created." if status == 201 else "The outcome, as `status`.",
                        "content": _json(_ref(response)),
                    },
                    **_error_responses(refusals),
                },
            }
        }
    return paths


CHALLENGE_ERRORS: tuple[type[errors.OtpError], ...] = (
    errors.ApiUnauthorized,
    errors.ApiForbidden,
    errors.RateLimited,
    errors.BodyInvalid,
    errors.UnsupportedMediaType,
    *COMMON_ERRORS,
)
"""What every challenge route may refuse with, as HTTP errors: transport problems only."""
_IDEMPOTENCY_ERRORS = (
    errors.IdempotencyKeyInvalid,
    errors.IdempotencyMismatch,
    errors.IdempotencyInFlight,
)
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "1-255 printable ASCII characters: a retry with the same key and body gets "
    "the first answer back, byte for byte, for 24 hours.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}


def _challenge_paths(credential_body: type[CredentialBody]) -> dict[str, Any]:
    """The challenge routes (SPEC §10): domain outcomes are 200s with a `status`."""

    def post(
        operation: str,
        summary: str,
        request: dict[str, Any],
        answers: dict[str, Any],
        refusals: tuple[type[errors.OtpError], ...],
        *,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "operationId": operation,
            "summary": summary,
            "security": [{"apiKey": []}],
            "requestBody": {"required": True, "content": _json(request)},
            "responses": {**answers, **_error_responses((*refusals, *CHALLENGE_ERRORS))},
        }
        if idempotent:
            body["parameters"] = [_IDEMPOTENCY_KEY]
            body["responses"].update(
                _error_responses((*refusals, *_IDEMPOTENCY_ERRORS, *CHALLENGE_ERRORS))
            )
        return {"post": body}

    pending = {"description": "Pending: keep this token.", "content": _json(_ref(ChallengePending))}
    outcome = {"description": "The outcome, as `status`.", "content": _json(_ref(ChallengeOutcome))}
    return {
        "/v1/challenges": post(
            "challengeCreate",
            "Send a code to an address; answers the first challenge token (scope challenges).",
            _ref(create_body_model(credential_body)),
            {"201": {**pending, "description": "Sent: keep this token."}},
            (errors.CredentialInvalid, errors.SendFailed),
            idempotent=True,
        ),
        "/v1/challenges/resend": post(
            "challengeResend",
            "Send a new code; the old code and every older token stop working.",
            _ref(TokenBody),
            {
                "200": {
                    "description": "Pending with a new token, or why not (`status`).",
                    "content": _json({"oneOf": [_ref(ChallengePending), _ref(ChallengeOutcome)]}),
                }
            },
            (errors.ResendNotAllowed, errors.SendFailed),
        ),
        "/v1/challenges/check": post(
            "challengeCheck",
            "Check a code; approved answers carry a signed result.",
            _ref(CheckBody),
            {"200": outcome},
            (errors.OtpInvalidFormat,),
            idempotent=True,
        ),
        "/v1/challenges/status": post(
            "challengeStatus",
            "For a challenge created with `link`: still waiting (with the number to show), or, "
            "once the user typed that number on the link's page, the check itself.",
            _ref(TokenBody),
            {
                "200": {
                    "description": "`pending` (the token stays valid), or the outcome of the "
                    "check with the link's code, as for `/v1/challenges/check`.",
                    "content": _json({"oneOf": [_ref(LinkWaiting), _ref(ChallengeOutcome)]}),
                }
            },
            (),
        ),
        "/v1/challenges/cancel": post(
            "challengeCancel",
            "Spend a challenge so that no copy of its token works again.",
            _ref(TokenBody),
            {
                "200": {
                    "description": "`canceled`, or `invalid`.",
                    "content": _json(_ref(ChallengeCanceled)),
                }
            },
            (),
        ),
    }


_HTML_PAGE = {"text/html": {"schema": {"type": "string"}}}


def _link_paths(verified: dict[str, Any]) -> dict[str, Any]:
    """The sign-in link routes (SPEC §18), served only with `OTP_LINKS=true`."""
    token = {
        "name": "token",
        "in": "path",
        "required": True,
        "description": "The sealed link token from the email (unpadded base64url).",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": LINK_MAX_CHARS},
    }
    gone = {
        "description": "A page: the link expired, was replaced or was tampered with.",
        "content": _HTML_PAGE,
    }
    malformed = {
        "description": "A page: the path is not a link token (outside the pattern or length).",
        "content": _HTML_PAGE,
    }
    invalid_form = _error_responses((errors.BodyInvalid,))["400"]
    page = {
        "description": "A static HTML page without script (`Cache-Control: no-store`, "
        "`Referrer-Policy: no-referrer`, a CSP allowing no script).",
        "content": _HTML_PAGE,
    }
    return {
        "/api/otp/status": {
            "post": {
                "operationId": "status",
                "summary": "The first tab's poll: pending (with the number to match), or, "
                "once another device approved the link, the sign-in itself. Only with "
                "OTP_LINKS=true.",
                "parameters": [_cookie_parameter(required=True)],
                "responses": {
                    "200": {
                        "description": "`LinkStatus` while pending (nothing changes, no cookie "
                        "is set); after an approval, the final hook's response, as for a "
                        "verify, with the cookie cleared.",
                        "headers": {"Set-Cookie": _SET_COOKIE},
                        "content": _json({"oneOf": [_ref(LinkStatus), _ref(Verified)]}),
                    },
                    **_error_responses(ROUTE_ERRORS["verify"], reissues_cookie=(429, 503)),
                },
            }
        },
        "/l/{token}": {
            "get": {
                "operationId": "linkPage",
                "summary": "The confirm page of an emailed sign-in link: the site, the masked "
                "address and one button. GET and HEAD change nothing. Only with OTP_LINKS=true.",
                "parameters": [token],
                "responses": {"200": page, "400": malformed, "404": gone},
            },
            "post": {
                "operationId": "linkSubmit",
                "summary": "The button: with the cookie of the browser that asked for the code, "
                "checks the code exactly as a verify does and answers the final hook's "
                "response. Without it nothing is spent: a page shows the code to type there, "
                "or (OTP_LINK_CROSS_DEVICE=true) takes the first tab's two-digit number.",
                "parameters": [token, _cookie_parameter(required=False)],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "match": {
                                        "type": "string",
                                        "description": "The number the first tab shows.",
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The final hook's response (with the cookie), or a page.",
                        "headers": {"Set-Cookie": _SET_COOKIE},
                        "content": {**verified, **_HTML_PAGE},
                    },
                    "403": {
                        "description": "A page: a wrong number, approval ended, or a limit "
                        "of the code (the cookie is re-set when it was spent).",
                        "headers": {"Set-Cookie": _SET_COOKIE},
                        "content": _HTML_PAGE,
                    },
                    **_error_responses(
                        (errors.BodyTooLarge, errors.StoreUnavailable, errors.ServerError)
                    ),
                    "404": gone,
                    "400": {
                        "description": f"{malformed['description']} Or `BODY:INVALID` (JSON): "
                        "the form is malformed.",
                        "content": {**_HTML_PAGE, **invalid_form["content"]},
                    },
                },
            },
        },
    }


def build_openapi(
    credential_body: type[CredentialBody], policy: OtpPolicy | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the API, with the fork's credential schema and code policy."""
    models: list[type[BaseModel]] = [
        credential_body,
        TokenState,
        LinkStatus,
        Verified,
        Health,
        ErrorBody,
    ]
    models += [*factor_models.REQUEST_MODELS, *factor_models.RESPONSE_MODELS]
    models += [
        create_body_model(credential_body),
        TokenBody,
        CheckBody,
        ChallengePending,
        ChallengeOutcome,
        ChallengeCanceled,
        LinkWaiting,
    ]
    schemas = {
        model.__name__: model.model_json_schema(ref_template="#/components/schemas/{model}")
        for model in models
    }
    # A challenge check takes the same code text as the browser's verify.
    schemas[CheckBody.__name__]["properties"]["code"] = _code_schema(policy)
    state_ok = {
        "description": "The current pending credential; the cookie is (re)set.",
        "headers": {"Set-Cookie": _SET_COOKIE},
        "content": _json(_ref(TokenState)),
    }
    otp_json = {
        "type": "object",
        "properties": {"otp": _code_schema(policy)},
        "required": ["otp"],
        "description": "Other members are ignored.",
    }
    otp_form = {
        **otp_json,
        "additionalProperties": {"type": "string"},
        "maxProperties": MAX_FORM_FIELDS,
        "description": f"Other fields are ignored; at most {MAX_FORM_FIELDS} fields in all.",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "otpserver",
            "version": "1",
            "description": "Stateless, encrypted-cookie one-time-password server. Every error "
            "body is `{error, message, ...}` with a stable `error` code. Unknown routes and "
            "methods answer 404 with an empty body.",
        },
        "paths": {
            "/api/otp/create": {
                "post": {
                    "operationId": "create",
                    "summary": "Send a code to a credential, or make a pending one current.",
                    "parameters": [_cookie_parameter(required=False)],
                    "requestBody": {
                        "required": True,
                        "content": _json(_ref(credential_body)),
                    },
                    "responses": {"200": state_ok, **_error_responses(ROUTE_ERRORS["create"])},
                }
            },
            "/api/otp/resend": {
                "post": {
                    "operationId": "resend",
                    "summary": "Send a new code for the current credential; the old one dies.",
                    "parameters": [_cookie_parameter(required=True)],
                    "responses": {"200": state_ok, **_error_responses(ROUTE_ERRORS["resend"])},
                }
            },
            "/api/otp/verify": {
                "post": {
                    "operationId": "verify",
                    "summary": "Check a code; on success the final hook answers.",
                    "parameters": [_cookie_parameter(required=True)],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {"schema": otp_form},
                            "application/json": {"schema": otp_json},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The final hook's response (default shown); the "
                            "cookie is cleared, or re-set with the other pending credentials.",
                            "headers": {"Set-Cookie": _SET_COOKIE},
                            "content": _json(_ref(Verified)),
                        },
                        # A verify refused after its cookie ID was claimed (a limit, or the
                        # store failing mid-way) hands the unchanged entries back re-sealed.
                        **_error_responses(ROUTE_ERRORS["verify"], reissues_cookie=(429, 503)),
                    },
                }
            },
            **_link_paths(_json(_ref(Verified))),
            **_challenge_paths(credential_body),
            **_factor_paths(),
            "/.well-known/jwks.json": {
                "get": {
                    "operationId": "jwks",
                    "summary": "The public keys that verify signed results (previous, current "
                    "and next signing period).",
                    "responses": {
                        "200": {
                            "description": "A JSON Web Key Set (RFC 7517) of Ed25519 keys "
                            "(RFC 8037); cache it for the `max-age` given, at most a third of "
                            "a signing period.",
                            "headers": {
                                "Cache-Control": {
                                    "description": "`public, max-age=N`.",
                                    "schema": {"type": "string"},
                                }
                            },
                            "content": {"application/jwk-set+json": {"schema": _JWKS_SCHEMA}},
                        }
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness: 200 while the process serves requests.",
                    "responses": {"200": {"description": "Alive.", "content": _json(_ref(Health))}},
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key `otpk_<id>_<secret>` with the route's scope "
                    "(`python -m otpserver apikey new`). `/v1` reads no cookie and answers no "
                    "CORS request; each key has its own rate limit besides every other limit.",
                }
            },
        },
    }


def render(credential_body: type[CredentialBody], policy: OtpPolicy | None = None) -> str:
    """The document as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(build_openapi(credential_body, policy), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    from custom.credential import CreateRequest
    from custom.otp import POLICY

    text = render(CreateRequest, POLICY)
    if "--write" in argv:
        OPENAPI_PATH.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
