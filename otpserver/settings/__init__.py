"""Deployment settings: every default once, the environment read once with all its problems
reported together, and sample.env generated from it."""
