"""The server-to-server API (SPEC §10): API keys, idempotency, and the routes under `/v1`.

Above `limits`, `delivery` and `results` (it charges limits and signs results), below `http`
(which mounts its routes).
"""
