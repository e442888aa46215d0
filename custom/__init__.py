"""The hooks a fork edits, gathered into one `Hooks` value for the composition root.

Each module here opens with what to edit and why; this file only wires them together.
"""

from __future__ import annotations

from custom.credential import CreateRequest
from custom.final import final
from custom.id import make_id_store
from custom.kms import make_key_store
from custom.limits import LIMITS, make_counter_store
from custom.markers import make_marker_store
from custom.otp import POLICY, generate_code
from custom.send import make_sender
from otpserver.hooks import Hooks

HOOKS = Hooks(
    credential_body=CreateRequest,
    policy=POLICY,
    generate_code=generate_code,
    make_sender=make_sender,
    final=final,
    make_id_store=make_id_store,
    make_key_store=make_key_store,
    limits=LIMITS,
    make_counter_store=make_counter_store,
    make_marker_store=make_marker_store,
)
