"""Crypto and keys: the envelope, the key-encryption-key ring, MACs."""
