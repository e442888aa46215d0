"""Crypto and keys: the envelope, the key-encryption-key ring, the at-rest ring, MACs."""
