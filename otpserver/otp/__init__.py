"""The pure OTP domain: credentials, codes, policy, the pending-list payload, its state machine."""
