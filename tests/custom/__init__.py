"""Tests of the hooks shipped in `custom/`: edit them together with `custom/` in a fork."""
