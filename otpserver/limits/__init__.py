"""Abuse limits: the pure rules, client addresses, and the limiter that charges them."""
