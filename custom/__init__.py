"""The hooks a fork edits, gathered into one `Hooks` value for the composition root.

One file per decision: `credential.py` (what a client may ask a code for), `otp.py` (the
code's rules), `limits.py` (the abuse limits), `send.py` (delivery), `final.py` (what a
verified code does), `stores.py` (where IDs, keys, counters and markers live), and `templates/`
(the messages, one folder per language). This file only wires them together.
"""

from __future__ import annotations

from custom.credential import CreateRequest
from custom.final import final
from custom.limits import LIMITS
from custom.otp import POLICY, generate_code
from custom.send import make_sender
from custom.stores import make_counter_store, make_id_store, make_key_store, make_marker_store
from otpserver import Hooks

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
