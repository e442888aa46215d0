"""Shared test helpers: a real Redis server, an injected clock, a recording sender, processes."""
