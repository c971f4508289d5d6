"""Hooks: I/O and auth only (CS OpenAPI, OSS)."""
