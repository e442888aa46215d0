"""Audit events of the second factors: the one place they leave the core.

Every event is one JSON object on the `otpserver.audit` logger, named as in SPEC §16
(`totp.enrolled`, `totp.verified`, `backup_codes.generated`, `backup_code.redeemed`). The
fields never hold a subject, a code, a secret or a blob: the subject appears as a keyed
hash (`subjectMac`), enrolments and sets by their random public ids. Routing audit events
elsewhere (a webhook, a SIEM) means changing `audit` alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

audit_log = logging.getLogger("otpserver.audit")


def audit(event: str, fields: Mapping[str, str | int]) -> None:
    """Record one security outcome."""
    audit_log.info("%s", json.dumps({"event": event, **fields}, sort_keys=True))
