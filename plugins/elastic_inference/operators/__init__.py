"""Provider operators."""
