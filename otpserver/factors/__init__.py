"""Second factors without per-user rows: TOTP, backup codes (SPEC §13-§14), sealed for the host."""
