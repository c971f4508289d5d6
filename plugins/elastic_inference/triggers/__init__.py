"""Provider triggers."""
