"""Signed results (SPEC §11): Ed25519 keys per period derived from a secret, compact JWS, JWKS."""
