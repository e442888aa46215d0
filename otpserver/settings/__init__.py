"""Deployment settings: the environment, read once and checked, and sample.env generated from it."""
